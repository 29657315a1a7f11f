"""The approval node: a person approves, edits or rejects steps that call risky tools.

The interrupt has the shape of LangChain's human-in-the-loop middleware, so its front
ends can answer it::

    {"type": "step_approval",
     "action_requests": [{"name": "write_file", "args": {...}, "description": "..."}],
     "review_configs": [{"action_name": "write_file", "allowed_decisions": [...]}],
     "steps": ["s3"], "revision": 1}

Resume with `{"decisions": [<one per action request, in order>]}`, each
`{"type": "approve"}`, `{"type": "edit", "edited_action": {"name": ..., "args": {...}}}`
or `{"type": "reject", "message": "..."}`. An edit changes only that step's arguments
(`{{id}}` references to the step's dependencies are resolved); a rejection skips the step
and the replanner is told why. A malformed answer interrupts again with `errors`.

For a step whose `args` are null, the executor model first proposes the arguments (in a
LangGraph task, so answering the interrupt does not ask the model again), and the person
approves that exact call; the executor then runs it without asking the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from langgraph.func import task
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from planexec.budget import Budget, BudgetExhaustedError
from planexec.context import Context, resolve_context
from planexec.errors import ExecutorReplyError, ModelCallError, StepTimeoutError
from planexec.execution import StepEnv, StepRecord, propose_args, step_retry_policy
from planexec.interrupts import (
    APPROVAL_DECISIONS,
    ActionRequest,
    ReviewConfig,
    StepApprovalRequest,
)
from planexec.nodes.executor import unauthorised
from planexec.plan import (
    MAX_ARGS_DEPTH,
    StepDict,
    args_size,
    check_args,
    digest,
    nesting_problem,
    references,
    resolve_args,
    step_hash,
)
from planexec.resources import Resources
from planexec.state import (
    State,
    StepApproval,
    StepResult,
    ToolCallRecord,
    Usage,
    revision_number,
    timestamp,
    total_usage,
)

ALLOWED = list(APPROVAL_DECISIONS)


def _ready(state: State) -> list[StepDict]:
    plan = state.get("plan") or {"steps": []}
    waiting = set(state.get("awaiting_approval") or [])
    return [s for s in plan["steps"] if s["id"] in waiting]


def _outputs(step: StepDict, state: State) -> dict[str, Any]:
    results = state.get("results") or {}
    return {d: results[d]["output"] for d in step["depends_on"] if d in results}


def _call_args(
    step: StepDict, state: State, proposals: Mapping[str, Proposal], resources: Resources
) -> dict[str, Any] | None:
    """The arguments the step's tool will be called with, as the person is shown them."""
    if step["args"] is None:
        proposal = proposals.get(step["id"])
        return proposal["args"] if proposal else None
    tool = resources.tools.get(step["tool"] or "")
    return resolve_args(step["args"], _outputs(step, state), tool)


class Proposal(TypedDict):
    """The executor model's arguments for a step whose `args` are null, or why it gave none."""

    args: dict[str, Any] | None
    error: str | None
    usage: Usage | None
    refused_calls: list[ToolCallRecord]
    duration_s: NotRequired[float]
    """Seconds spent proposing, retries included: working time for the time budget."""
    exhausted: NotRequired[bool]
    """Whether a budget ran out while proposing (`error` says which)."""


def approval_request(
    state: State,
    errors: list[str],
    steps: list[StepDict],
    calls: Mapping[str, dict[str, Any] | None],
) -> StepApprovalRequest:
    """The interrupt value asking for decisions on `steps`, to be called with `calls`."""
    requests: list[ActionRequest] = []
    configs: list[ReviewConfig] = []
    for step in steps:
        # Only steps that call a tool wait for approval.
        tool = step["tool"] or ""
        args = calls[step["id"]]
        note = " (arguments proposed by the executor model)" if step["args"] is None else ""
        requests.append(
            {
                "name": tool,
                "args": args or {},
                "description": f"Step {step['id']}: {step['description']}{note}",
            }
        )
        configs.append({"action_name": tool, "allowed_decisions": list(APPROVAL_DECISIONS)})
    value: StepApprovalRequest = {
        "type": "step_approval",
        "action_requests": requests,
        "review_configs": configs,
        "steps": [step["id"] for step in steps],
        "revision": revision_number(state),
        "request_hash": request_hash(steps, calls),
    }
    if errors:
        value["errors"] = errors
    return value


def request_hash(steps: list[StepDict], calls: Mapping[str, dict[str, Any] | None]) -> str:
    """A digest of the steps and calls a step approval shows, to tie decisions to them."""
    return digest([{**step, "args": calls[step["id"]]} for step in steps])


def parse_decisions(
    value: object,
    steps: list[StepDict],
    resources: Resources,
    *,
    shown: str | None = None,
    max_args_chars: int | None = None,
    max_text_chars: int | None = None,
) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """The decisions for `steps` from a resume value, or the reasons they are not usable.

    `shown` is the `request_hash` of the interrupt; an answer that names another one was
    made on other steps or calls, and is refused. So is an edit whose args are larger
    than `max_args_chars`, or a message longer than `max_text_chars`. Never raises.
    """
    decisions = value.get("decisions") if isinstance(value, dict) else None
    if not isinstance(decisions, list):
        return None, ['answer with {"decisions": [...]}, one decision per action request']
    answered = value.get("request_hash") if isinstance(value, dict) else None
    if shown is not None and answered not in (None, shown):
        return None, [
            f"the decisions are for request {answered}, but the steps waiting for approval "
            f"are request {shown}; decide on the steps shown"
        ]
    if len(decisions) != len(steps):
        return None, [
            f"expected {len(steps)} decision(s), one per action request, got {len(decisions)}"
        ]
    errors: list[str] = []
    for step, decision in zip(steps, decisions, strict=True):
        kind = decision.get("type") if isinstance(decision, dict) else None
        message = decision.get("message") if isinstance(decision, dict) else None
        if kind not in ALLOWED:
            errors.append(f"step {step['id']}: decision type must be one of {', '.join(ALLOWED)}")
        elif message is not None and not isinstance(message, str):
            errors.append(f"step {step['id']}: the message must be text")
        elif max_text_chars is not None and message is not None and len(message) > max_text_chars:
            errors.append(
                f"step {step['id']}: the message is {len(message)} characters long; the most "
                f"allowed is {max_text_chars} (Context.max_text_chars)"
            )
        elif kind == "edit":
            errors.extend(
                f"step {step['id']}: {e}"
                for e in _edit_errors(step, decision, resources, max_args_chars)
            )
    return (None, errors) if errors else (decisions, [])


def _edit_errors(
    step: StepDict, decision: dict[str, Any], resources: Resources, max_args_chars: int | None
) -> list[str]:
    action = decision.get("edited_action")
    if not isinstance(action, dict) or not isinstance(action.get("args"), dict):
        return ['an edit needs "edited_action": {"name": <tool>, "args": {...}}']
    deep = nesting_problem(action["args"], MAX_ARGS_DEPTH)
    if deep is not None:
        return [f"the edited args {deep}"]
    size = args_size(action["args"], max_args_chars)
    if max_args_chars is not None and size > max_args_chars:
        return [
            f"the edited args are {size} characters of JSON; the most allowed is {max_args_chars}"
        ]
    if action.get("name", step["tool"]) != step["tool"]:
        return [f"an edit may change only the arguments, not the tool ({step['tool']})"]
    unknown = [r for r in dict.fromkeys(references(action["args"])) if r not in step["depends_on"]]
    if unknown:
        return [
            f"the edited args use {{{{{r}}}}}, which is not a dependency of the step"
            for r in unknown
        ]
    tool = resources.tools[step["tool"]]  # type: ignore[index]
    return check_args(tool, action["args"])


async def approval(
    state: State, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Interrupt for decisions on the steps that wait for approval and record them."""
    context = resolve_context(runtime.context)
    seal = await resources.sealer(runtime)
    if unauthorised(state, context, seal) is not None:
        # Nothing is proposed or asked for a plan that may not run; the executor says why.
        return {"awaiting_approval": []}
    budget = Budget.of(state, context, runtime.stream_writer)
    env = StepEnv.of(state, runtime, resources, context, budget)
    ready = _ready(state)
    began = time.monotonic()
    proposals = await _proposals(ready, state, env)
    # Proposals made before an earlier pause of this node come back from their tasks at
    # once: their time is counted from the proposals, this run's own time around them.
    proposing = sum(p.get("duration_s", 0.0) for p in proposals.values())
    active_s = budget.elapsed() - (time.monotonic() - began) + proposing
    update: dict[str, Any] = {"awaiting_approval": [], "results": {}, "active_s": active_s}
    usage = total_usage(p["usage"] for p in proposals.values())
    if usage is not None:
        update["usage"] = {"executor": usage}
    stopped = next((p for p in proposals.values() if p.get("exhausted")), None)
    if stopped is not None:
        reason = f"{stopped['error']}; every finished step's result is kept"
        return {**update, "status": "budget_exhausted", "reason": reason}
    for step in ready:
        proposal = proposals.get(step["id"])
        if proposal is not None and proposal["args"] is None:
            update["results"][step["id"]] = _unproposed(step, proposal, env.revision)
    steps = [s for s in ready if s["id"] not in update["results"]]
    if not steps:
        return update
    calls = {s["id"]: _call_args(s, state, proposals, resources) for s in steps}
    errors: list[str] = []
    shown = request_hash(steps, calls)
    while True:
        answer = interrupt(approval_request(state, errors, steps, calls))
        decisions, errors = parse_decisions(
            answer,
            steps,
            resources,
            shown=shown,
            max_args_chars=context.max_args_chars,
            max_text_chars=context.max_text_chars,
        )
        if decisions is not None:
            break
    approvals: dict[str, StepApproval] = {}
    for step, decision in zip(steps, decisions, strict=True):
        kind = decision["type"]
        args: dict[str, Any] | None
        if kind == "edit":
            args = resolve_args(decision["edited_action"]["args"], _outputs(step, state))
        else:
            args = calls[step["id"]]
        message = decision.get("message")
        approval: StepApproval = {
            "decision": kind,
            "args": args,
            "message": message,
            "revision": env.revision,
            "step_hash": step_hash(step),
            "at": timestamp(),
        }
        approvals[step["id"]] = seal.seal("step", approval)
        if kind == "reject":
            update["results"][step["id"]] = {
                "status": "skipped",
                "output": None,
                "error": "rejected by the reviewer" + (f": {message}" if message else ""),
                "tool": step["tool"],
                "args": args,
                "attempts": 0,
                "revision": env.revision,
            }
    return {**update, "approvals": approvals}


async def _proposals(steps: list[StepDict], state: State, env: StepEnv) -> dict[str, Proposal]:
    """The executor model's arguments for each step whose `args` are null.

    Each proposal is a LangGraph task, so its result is saved: when the person's answer
    resumes this node, the proposals come back from the checkpoint, not from the model.
    Each attempt has the step's timeout, and all of it the time budget's deadline.
    """
    retry = step_retry_policy(env.context)
    records: dict[str, StepRecord] = {}

    async def attempt(step_id: str) -> dict[str, Any]:
        step = next(s for s in steps if s["id"] == step_id)
        record = records.setdefault(step_id, StepRecord())
        timeout = env.context.timeout_for(step["tool"])
        async with env.budget.deadline():
            try:
                async with asyncio.timeout(timeout) as deadline:
                    return await propose_args(step, _outputs(step, state), env, record)
            except TimeoutError as exc:
                if deadline.expired():
                    raise StepTimeoutError(f"timed out after {timeout:g}s") from exc
                raise

    async def propose(step_id: str) -> Proposal:
        # Failures are part of the saved result too, so a resumed node asks no model again.
        began = time.monotonic()
        as_task: Any = task(name=f"propose-attempt-{step_id}", retry_policy=retry)
        args: dict[str, Any] | None = None
        error: str | None = None
        exhausted = False
        try:
            args = await as_task(attempt)(step_id)
        except BudgetExhaustedError as exc:
            error, exhausted = str(exc), True
        except (ExecutorReplyError, ModelCallError, StepTimeoutError) as exc:
            error = str(exc)
        record = records.get(step_id, StepRecord())
        return {
            "args": args,
            "error": error,
            "usage": record.usage,
            "refused_calls": record.refused,
            "duration_s": round(time.monotonic() - began, 4),
            "exhausted": exhausted,
        }

    proposals: dict[str, Proposal] = {}
    for step in steps:
        if step["args"] is None:
            as_task: Any = task(name=f"propose-{step['id']}")
            proposals[step["id"]] = await as_task(propose)(step["id"])
    return proposals


def _unproposed(step: StepDict, proposal: Proposal, revision: int) -> StepResult:
    return {
        "status": "failed",
        "output": None,
        "error": f"the executor model proposed no usable arguments: {proposal['error']}",
        "tool": step["tool"],
        "args": None,
        "attempts": 1,
        "revision": revision,
        "usage": proposal["usage"],
        "refused_calls": proposal["refused_calls"],
    }
