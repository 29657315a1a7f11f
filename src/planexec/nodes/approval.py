"""The approval node: a person approves, edits or rejects steps that call risky tools.

The interrupt has the shape of LangChain's human-in-the-loop middleware, so its front
ends can answer it::

    {"type": "step_approval",
     "action_requests": [{"name": "write_file", "args": {...}, "description": "..."}],
     "review_configs": [{"action_name": "write_file", "allowed_decisions": [...]}],
     "steps": ["s3"], "revision": 1}

Resume with `{"decisions": [<one per action request, in order>]}`, each
`{"type": "approve"}`, `{"type": "edit", "edited_action": {"name": ..., "args": {...}}}`
or `{"type": "reject", "message": "..."}`. An edit changes only that step's arguments;
a rejection skips the step and the replanner is told why. A malformed answer
interrupts again with `errors`.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from planexec.context import Context, resolve_context
from planexec.plan import StepDict, check_args, resolve_args, step_hash
from planexec.resources import Resources
from planexec.state import (
    State,
    StepApproval,
    StepResult,
    current_revision,
    timestamp,
)

ALLOWED = ["approve", "edit", "reject"]


def _ready(state: State) -> list[StepDict]:
    plan = state.get("plan") or {"steps": []}
    waiting = set(state.get("awaiting_approval") or [])
    return [s for s in plan["steps"] if s["id"] in waiting]


def _proposed_args(step: StepDict, state: State) -> dict[str, Any] | None:
    if step["args"] is None:
        return None
    results = state.get("results") or {}
    outputs = {d: results[d]["output"] for d in step["depends_on"] if d in results}
    return resolve_args(step["args"], outputs)


def approval_request(state: State, errors: list[str]) -> dict[str, Any]:
    """The interrupt value asking for decisions on the steps that wait for approval."""
    steps = _ready(state)
    revision = current_revision(state)
    requests = []
    for step in steps:
        args = _proposed_args(step, state)
        note = "" if args is not None else " (the executor model will choose the arguments)"
        requests.append(
            {
                "name": step["tool"],
                "args": args if args is not None else {},
                "description": f"Step {step['id']}: {step['description']}{note}",
            }
        )
    value: dict[str, Any] = {
        "type": "step_approval",
        "action_requests": requests,
        "review_configs": [
            {"action_name": step["tool"], "allowed_decisions": list(ALLOWED)} for step in steps
        ],
        "steps": [step["id"] for step in steps],
        "revision": revision["revision"] if revision else 0,
    }
    if errors:
        value["errors"] = errors
    return value


def parse_decisions(
    value: object, steps: list[StepDict], resources: Resources
) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """The decisions for `steps` from a resume value, or the reasons they are not usable."""
    decisions = value.get("decisions") if isinstance(value, dict) else None
    if not isinstance(decisions, list):
        return None, ['answer with {"decisions": [...]}, one decision per action request']
    if len(decisions) != len(steps):
        return None, [
            f"expected {len(steps)} decision(s), one per action request, got {len(decisions)}"
        ]
    errors: list[str] = []
    for step, decision in zip(steps, decisions, strict=True):
        kind = decision.get("type") if isinstance(decision, dict) else None
        if kind not in ALLOWED:
            errors.append(f"step {step['id']}: decision type must be one of {', '.join(ALLOWED)}")
        elif kind == "edit":
            errors.extend(
                f"step {step['id']}: {e}" for e in _edit_errors(step, decision, resources)
            )
    return (None, errors) if errors else (decisions, [])


def _edit_errors(step: StepDict, decision: dict[str, Any], resources: Resources) -> list[str]:
    action = decision.get("edited_action")
    if not isinstance(action, dict) or not isinstance(action.get("args"), dict):
        return ['an edit needs "edited_action": {"name": <tool>, "args": {...}}']
    if action.get("name", step["tool"]) != step["tool"]:
        return [f"an edit may change only the arguments, not the tool ({step['tool']})"]
    tool = resources.tools[step["tool"]]  # type: ignore[index]
    return check_args(tool, action["args"])


async def approval(
    state: State, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Interrupt for decisions on the steps that wait for approval and record them."""
    resolve_context(runtime.context)
    steps = _ready(state)
    revision = current_revision(state)
    number = revision["revision"] if revision else 0
    errors: list[str] = []
    while True:
        decisions, errors = parse_decisions(
            interrupt(approval_request(state, errors)), steps, resources
        )
        if decisions is not None:
            break
    approvals: dict[str, StepApproval] = {}
    skipped: dict[str, StepResult] = {}
    for step, decision in zip(steps, decisions, strict=True):
        kind = decision["type"]
        args = decision["edited_action"]["args"] if kind == "edit" else _proposed_args(step, state)
        message = decision.get("message")
        approvals[step["id"]] = {
            "decision": kind,
            "args": args,
            "message": message,
            "revision": number,
            "step_hash": step_hash(step),
            "at": timestamp(),
        }
        if kind == "reject":
            skipped[step["id"]] = {
                "status": "skipped",
                "output": None,
                "error": "rejected by the reviewer" + (f": {message}" if message else ""),
                "tool": step["tool"],
                "args": args,
                "attempts": 0,
                "revision": number,
            }
    return {"approvals": approvals, "results": skipped, "awaiting_approval": []}
