"""The executor node: runs the approved plan's steps as a task graph.

Each pending step is one LangGraph task, launched up front in a fixed topological order
so that task ids are the same when a crashed run resumes: a step whose task finished
is not run again. A task waits for its dependencies inside the run, so a step starts as
soon as its last dependency finishes: at most `max_concurrency` steps that call a model
and at most `max_tool_concurrency` direct tool calls at a time. A step whose
dependency failed or was skipped is skipped. Transient failures are retried by
LangGraph's retry policy with exponential backoff (a sub-agent step has one attempt).

An interrupt raised inside a step (a sub-agent asking a person) pauses the run once
every step that could still run has finished: steps that depend on the interrupted
one wait. Resuming runs the node again; the finished steps' tasks return their saved
results and the interrupted step's task resumes where it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from langgraph.errors import GraphBubbleUp, GraphInterrupt
from langgraph.func import task
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy

from planexec.budget import Budget, BudgetExhaustedError
from planexec.context import Context, resolve_context
from planexec.errors import LeaseLostError, StepAbandonedError
from planexec.events import emit
from planexec.execution import (
    StepEnv,
    StepRecord,
    bounded_text,
    idempotency_key,
    run_step,
    step_retry_policy,
)
from planexec.inflight import RESULT as _RESULT
from planexec.inflight import STEP as _STEP
from planexec.inflight import in_flight_results as in_flight_results
from planexec.lease import check_lease
from planexec.plan import StepDict, step_hash, topological_order
from planexec.resources import Resources
from planexec.seals import Sealer
from planexec.state import (
    State,
    StepApproval,
    StepResult,
    Usage,
    current_revision,
    is_approved,
    total_usage,
)
from planexec.subagents import SubAgent
from planexec.threads import still_running


class _Unreached(Exception):
    """A step was not run because a budget ran out before it or a dependency ran."""


def unauthorised(state: State, context: Context, seal: Sealer) -> str | None:
    """Why the current plan may not run, or None when it may."""
    revision = current_revision(state)
    if revision is None or state.get("plan") is None:
        return "there is no plan to run"
    if state["plan"] != revision["plan"]:
        return "the plan in state is not the plan of its recorded revision; refusing to run it"
    if context.review == "always" and not is_approved(state, seal.review):
        number = revision["revision"]
        if is_approved(state, lambda record: True):
            return (
                f"plan revision {number}'s approval was not made by this graph's review (it "
                "was written some other way, or sealed with another approval key); refusing "
                "to run it"
            )
        return f"plan revision {number} has not been approved; refusing to run it"
    return None


def approval_of(
    step: StepDict, approvals: Mapping[str, StepApproval], seal: Sealer
) -> StepApproval | None:
    """A person's standing decision on `step`, if it was made on the step as it is now.

    Only an approval the approval node made counts (`planexec.seals`).
    """
    approval = approvals.get(step["id"])
    if (
        approval is not None
        and approval.get("step_hash") == step_hash(step)
        and seal.step(approval)
    ):
        return approval
    return None


def held_steps(
    pending: list[StepDict],
    results: Mapping[str, StepResult],
    state: State,
    context: Context,
    resources: Resources,
    seal: Sealer,
) -> set[str]:
    """Pending steps that wait for a person's approval, with the steps that depend on them."""
    approvals = state.get("approvals") or {}
    held: set[str] = set()
    for step in pending:
        deps = [results.get(d, {}).get("status") for d in step["depends_on"]]
        if any(d in held for d in step["depends_on"]):
            held.add(step["id"])
        elif any(status in ("failed", "skipped") for status in deps):
            continue
        elif (
            resources.needs_approval(step["tool"], context)
            and approval_of(step, approvals, seal) is None
        ):
            held.add(step["id"])
    return held


async def executor(
    state: State, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Run every pending step that may run now, and record each one's result."""
    if state.get("status"):
        return {}  # the run ended before it got here: a budget ran out during approval
    context = resolve_context(runtime.context)
    budget = Budget.of(state, context, runtime.stream_writer)
    seal = await resources.sealer(runtime)
    refusal = unauthorised(state, context, seal)
    if refusal is not None:
        return {"status": "failed", "reason": refusal, "active_s": budget.elapsed()}
    revision = current_revision(state)
    plan = state.get("plan")
    if revision is None or plan is None:  # unauthorised() said otherwise
        raise AssertionError("no plan to run")
    results: dict[str, StepResult] = dict(state.get("results") or {})
    steps = topological_order(plan["steps"])
    pending = [s for s in steps if s["id"] not in results]
    held = held_steps(pending, results, state, context, resources, seal)
    runnable = [s for s in pending if s["id"] not in held]
    if context.replan_policy == "after_each_step":
        runnable = [s for s in runnable if all(d in results for d in s["depends_on"])][:1]
    env = StepEnv.of(state, runtime, resources, context, budget)
    work = _Pass(runnable, results, env, seal)
    finished = await work.run()
    exhausted = work.exhausted[0] if work.exhausted else None
    update: dict[str, Any] = {"results": finished, "active_s": budget.elapsed()}
    usage = total_usage([*(r.get("usage") for r in finished.values()), *work.stopped])
    if usage is not None:
        update["usage"] = {"executor": usage}
    done = {**results, **finished}
    update["awaiting_approval"] = [
        s["id"]
        for s in pending
        if s["id"] in held and all(done.get(d, {}).get("status") == "done" for d in s["depends_on"])
    ]
    if context.replan_policy == "after_each_step" and finished:
        # The replanner sees every step before anything else is asked or run.
        update["awaiting_approval"] = []
    if update["awaiting_approval"]:
        emit(runtime.stream_writer, "approval_requested", steps=update["awaiting_approval"])
    unsettled = "; ".join(f"step {i} {why}" for i, why in work.unsettled.items())
    if exhausted is not None:
        update["status"] = "budget_exhausted"
        update["reason"] = f"{exhausted}; every finished step's result is kept"
        if unsettled:
            update["reason"] += f"; {unsettled}, and may still have its effect"
    elif unsettled:
        update["status"] = "failed"
        update["reason"] = f"{unsettled}; every finished step's result is kept"
    return update


class _Pass:
    """One executor pass: a task per runnable step, each waiting for its dependencies."""

    def __init__(
        self,
        runnable: list[StepDict],
        results: Mapping[str, StepResult],
        env: StepEnv,
        seal: Sealer,
    ) -> None:
        self.seal = seal
        self.steps = {step["id"]: step for step in runnable}
        self.results = results
        self.env = env
        self.records = {step_id: StepRecord() for step_id in self.steps}
        self.approvals = env.state.get("approvals") or {}
        self.model_gate = asyncio.Semaphore(env.context.max_concurrency)
        """Held by steps that call a model: its rate limit is what `max_concurrency` is for."""
        self.tool_gate = asyncio.Semaphore(env.context.max_tool_concurrency)
        """Held by direct tool calls, which no model's rate limit needs to queue."""
        self.futures: dict[str, Awaitable[dict[str, Any]]] = {}
        self.outcomes: dict[str, asyncio.Task[tuple[str, StepResult | None]]] = {}
        self.exhausted: list[BudgetExhaustedError] = []
        self.stopped: list[Usage] = []
        """Model use by steps a budget stopped: they have no result, but their calls count."""
        self.unsettled: dict[str, str] = {}
        """Steps left without a result while their plain `def` tool's call still runs."""
        self.bubbled: list[GraphBubbleUp] = []
        self.lost: list[LeaseLostError] = []

    async def run(self) -> dict[str, StepResult]:
        """Run the pass; the results of the steps that ran or were skipped, in plan order."""
        retry = step_retry_policy(self.env.context)
        # Launch order fixes each task's id. It depends on the state alone, so a resumed
        # run finds the results its tasks already recorded instead of running them again;
        # naming each task after its step makes a mismatch re-run a step, never swap results.
        # A sub-agent retries inside itself. A second attempt would start it afresh
        # under another checkpoint namespace (LangGraph numbers a task's second subgraph
        # call), where the resume of an interrupt raised in it could not reach it.
        once = RetryPolicy(max_attempts=1)
        for step_id in self.steps:
            tool = self.env.resources.tools.get(self.steps[step_id]["tool"] or "")
            policy = once if isinstance(tool, SubAgent) else retry
            # `task` is typed for decorating functions; here it wraps a bound method.
            as_task: Any = task(name=f"step-{step_id}", retry_policy=policy)
            launch: Callable[[str], Awaitable[dict[str, Any]]] = as_task(self._labelled)
            self.futures[step_id] = launch(step_id)
        for step_id in self.steps:
            self.outcomes[step_id] = asyncio.ensure_future(self._settle(step_id))
        finished: dict[str, StepResult] = {}
        for next_done in asyncio.as_completed(list(self.outcomes.values())):
            step_id, result = await next_done
            if result is not None:
                finished[step_id] = result
        if self.lost:
            raise self.lost[0]  # the run stops: nothing of this pass may be written
        if self.bubbled and not self.exhausted:
            # The node pauses (or hands LangGraph its command); the steps that finished
            # keep their results in their tasks' saved writes.
            raise _bubble(self.bubbled)
        return {i: finished[i] for i in self.steps if i in finished}

    async def _settle(self, step_id: str) -> tuple[str, StepResult | None]:
        """The step's outcome, reported before any step that depends on it can start."""
        result = await self._outcome_of(step_id)
        if result is not None:
            self._report(step_id, result)
        return step_id, result

    async def _outcome_of(self, step_id: str) -> StepResult | None:
        try:
            labelled = await self.futures[step_id]
            # A pass saved by an earlier planexec kept the bare result.
            return cast(StepResult, labelled[_RESULT] if _STEP in labelled else labelled)
        except GraphBubbleUp as exc:
            self.bubbled.append(exc)
        except BudgetExhaustedError as exc:
            self.exhausted.append(exc)
            used = self.records[step_id].usage
            if used:
                self.stopped.append(used)
            if still_running(idempotency_key(self.env.thread_id, self.env.revision, step_id)):
                self.unsettled[step_id] = "its call was still running when the run stopped"
        except LeaseLostError as exc:
            self.lost.append(exc)
        except StepAbandonedError as exc:
            self.unsettled[step_id] = str(exc)
            used = self.records[step_id].usage
            if used:
                self.stopped.append(used)
        except _Unreached:
            pass
        except Exception as exc:
            record = self.records[step_id]
            step = self.steps[step_id]
            error = bounded_text(_describe(exc), self.env.context.max_output_chars)
            return record.result(step, self.env.revision, status="failed", error=error)
        return None

    async def _outcome(self, step_id: str) -> StepResult | None:
        if step_id in self.results:
            return self.results[step_id]
        return (await self.outcomes[step_id])[1]

    async def _labelled(self, step_id: str) -> dict[str, Any]:
        """The task body: the step's result, saved with its step id (see `in_flight_results`)."""
        return {_STEP: step_id, _RESULT: await self._run_one(step_id)}

    async def _run_one(self, step_id: str) -> StepResult:
        step = self.steps[step_id]
        record = self.records[step_id]
        outputs: dict[str, Any] = {}
        for dep in step["depends_on"]:
            result = await self._outcome(dep)
            if result is None:
                raise _Unreached(step_id)
            if result["status"] != "done":
                error = f"not run: step {dep} {result['status']}"
                return record.result(step, self.env.revision, status="skipped", error=error)
            outputs[dep] = result["output"]
        approval = approval_of(step, self.approvals, self.seal)
        approved_args = approval["args"] if approval else None
        async with self._gate(step, approved_args):
            check_lease(self.env.thread_id, f"starting step {step_id}")
            if record.attempts == 0:
                self.env.budget.reserve_step()
                emit(
                    self.env.runtime.stream_writer,
                    "step_started",
                    step=step_id,
                    tool=step["tool"],
                    revision=self.env.revision,
                )
            return await run_step(step, outputs, self.env, record, approved_args)

    def _gate(self, step: StepDict, approved_args: dict[str, Any] | None) -> asyncio.Semaphore:
        """The model gate for a step that calls a model, the tool gate for a direct call."""
        tool = self.env.resources.tools.get(step["tool"] or "")
        direct = tool is not None and not isinstance(tool, SubAgent)
        if direct and (approved_args is not None or step["args"] is not None):
            return self.tool_gate
        return self.model_gate

    def _report(self, step_id: str, result: StepResult) -> None:
        emit(
            self.env.runtime.stream_writer,
            "step_finished",
            step=step_id,
            status=result["status"],
            duration_s=result.get("duration_s"),
            attempts=result.get("attempts"),
            error=result.get("error"),
            tokens=_tokens(result.get("usage")),
        )


def _bubble(raised: list[GraphBubbleUp]) -> GraphBubbleUp:
    """One exception for LangGraph: every step's interrupts together, else the first."""
    others = [exc for exc in raised if not isinstance(exc, GraphInterrupt)]
    if others:
        return others[0]
    return GraphInterrupt([i for exc in raised for i in exc.args[0]])


def _describe(exc: BaseException) -> str:
    message = str(exc) or type(exc).__name__
    return message if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {message}"


def _tokens(usage: Usage | None) -> int:
    return 0 if usage is None else usage["input_tokens"] + usage["output_tokens"]
