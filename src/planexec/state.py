"""The graph's three schemas: what callers send, what nodes share, what callers get back.

Everything in state is plain JSON data, except `messages`, which holds LangChain
messages (the conversation chat front ends show, `planexec.chat`); LangGraph's
serializer saves and loads both, so any checkpoint can be read by any process, shown
by the LangGraph server as it is, and audited later. Histories (plan revisions,
review decisions, the conversation) grow through reducers: a node returns only what
it adds, and nothing written before is lost.

A thread holds one goal at a time. Each human message (or `{"goal": ...}`) sent to a
thread whose run has ended starts the next goal, numbered from 1 (`goal_index`): that
goal's results, usage and working time start empty, as its budgets do, and the goal
before it moves to `earlier_goals`. Plan revisions and reviews stay in one list,
numbered across the thread, each naming its goal.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

from langchain_core.messages import AnyMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph.message import add_messages
from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs it before 3.12

from planexec.interrupts import ApprovalDecisionType, ReviewDecisionType
from planexec.interrupts import LibrarySource as LibrarySource
from planexec.interrupts import PlanSource as PlanSource
from planexec.plan import PlanDict, PlanDiff, StepDict, diff_plans, plan_hash

_DOCUMENTED = ConfigDict(use_attribute_docstrings=True)
"""Field docstrings become the descriptions in the JSON Schemas that Studio shows."""

Status = Literal["completed", "failed", "cancelled", "budget_exhausted"]
"""How a run ended."""

StepStatus = Literal["done", "failed", "skipped"]
Role = Literal["planner", "executor", "replanner"]
ROLES: tuple[Role, ...] = ("planner", "executor", "replanner")
"""Every role, in the order a run uses them."""


class Usage(TypedDict):
    """Model use by one role, or by one step."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class ToolCallRecord(TypedDict):
    """A tool call that a model asked for."""

    name: str
    args: dict[str, Any]


class StepResult(TypedDict, total=False):
    """What happened to one step. `status`, `output` and `error` are always present."""

    status: StepStatus
    output: Any
    """The tool's or the model's result as JSON data; None unless the step is done."""
    error: str | None
    """Why the step failed or was skipped; None when it is done."""
    tool: str | None
    args: dict[str, Any] | None
    """The arguments the tool was called with, after `{{id}}` substitution."""
    attempts: int
    started_at: str | None
    duration_s: float
    revision: int
    """The plan revision the step ran under."""
    usage: Usage | None
    """Executor model use by this step, when it asked the model."""
    model: str | None
    """The executor model the step asked, when it asked one."""
    refused_calls: list[ToolCallRecord]
    """Tool calls the model asked for that the plan did not allow; none of them ran."""
    resolution: str
    """How a person settled the step after a call that must not run twice may or may not
    have happened (`planexec.uncertain`); absent otherwise."""


class PlanRevision(TypedDict):
    """One version of the plan, with who or what produced it and why."""

    revision: int
    source: PlanSource
    reason: str | None
    plan: PlanDict
    diff: PlanDiff
    """What changed from the revision before (everything is "added" in the first)."""
    at: str
    goal: NotRequired[int]
    """The goal the revision is for (`goal_index`); absent means the first."""
    library: NotRequired[LibrarySource]
    """For a plan replayed from the library: where it came from."""


class ReviewRecord(TypedDict):
    """A person's decision on a plan revision."""

    revision: int
    decision: ReviewDecisionType
    message: str | None
    plan_hash: str
    """Digest of the plan the decision was made on."""
    at: str
    goal: NotRequired[int]
    """The goal whose plan was decided on; absent means the first."""
    edited_hash: NotRequired[str]
    """For an edit, the digest of the plan the reviewer wrote (the next revision's)."""
    seal: NotRequired[str]
    """Proof that the review node made this record (`planexec.seals`)."""


class StepApproval(TypedDict):
    """A person's decision on one step that calls a tool requiring approval."""

    decision: ApprovalDecisionType
    args: dict[str, Any] | None
    """For "edit", the arguments that replace the step's."""
    message: str | None
    revision: int
    step_hash: str
    """Digest of the step decided on; the decision stands while the step is unchanged."""
    at: str
    seal: NotRequired[str]
    """Proof that the approval node made this record (`planexec.seals`)."""


def merge_results(
    old: dict[str, StepResult] | None, new: dict[str, StepResult] | None
) -> dict[str, StepResult]:
    """Add step results; a result whose status is "done" is final and never replaced."""
    merged = dict(old or {})
    for step_id, result in (new or {}).items():
        if merged.get(step_id, {}).get("status") != "done":
            merged[step_id] = result
    return merged


def add_usage(old: dict[str, Usage] | None, new: dict[str, Usage] | None) -> dict[str, Usage]:
    """Sum model use per role."""
    total = dict(old or {})
    for role, usage in (new or {}).items():
        before = total.get(role)
        total[role] = usage if before is None else sum_usage(before, usage)
    return total


def sum_usage(a: Usage, b: Usage) -> Usage:
    """The use of `a` and `b` together."""
    return {
        "calls": a["calls"] + b["calls"],
        "input_tokens": a["input_tokens"] + b["input_tokens"],
        "output_tokens": a["output_tokens"] + b["output_tokens"],
        "cost_usd": round(a["cost_usd"] + b["cost_usd"], 8),
    }


def total_usage(usages: Iterable[Usage | None]) -> Usage | None:
    """The use of every call in `usages` together (None entries skipped); None if there is none."""
    total: Usage | None = None
    for usage in usages:
        if usage:
            total = usage if total is None else sum_usage(total, usage)
    return total


def merge_approvals(
    old: dict[str, StepApproval] | None, new: dict[str, StepApproval] | None
) -> dict[str, StepApproval]:
    """Record step approvals; a later decision on the same step replaces the earlier."""
    return {**(old or {}), **(new or {})}


class GoalRecord(TypedDict):
    """A goal of the thread that has ended, as it ended."""

    goal: int
    """Its number (`goal_index`)."""
    text: str
    status: Status | None
    answer: str | None
    reason: str | None
    results: dict[str, StepResult]
    usage: dict[str, Usage]


def append_all(old: list[Any], batches: Sequence[list[Any]]) -> list[Any]:
    """`old` followed by every item of `batches`, in order (a new list)."""
    return [*old, *(item for batch in batches for item in batch)]


def merge_all_results(
    old: dict[str, StepResult], batches: Sequence[dict[str, StepResult] | None]
) -> dict[str, StepResult]:
    """`merge_results` of `old` with each of `batches` in turn."""
    merged = old
    for batch in batches:
        merged = merge_results(merged, batch)
    return merged


HISTORY_SNAPSHOT_EVERY = 1_000_000
"""Updates between full copies of a history channel (`DeltaChannel`'s snapshot
frequency). So large that LangGraph's own bound decides instead: a full copy once
every `LANGGRAPH_DELTA_MAX_SUPERSTEPS_SINCE_SNAPSHOT` steps (5,000 by default), which
bounds how many stored updates a state load replays."""


def _history(reducer: Callable[[Any, Sequence[Any]], Any]) -> DeltaChannel[Any]:
    """A channel that checkpoints store as the updates written, not as the whole value.

    Each checkpoint keeps what the step before it wrote (LangGraph saves every write
    anyway); loading a checkpoint replays its ancestors' writes through `reducer`, as
    `get_state`, `get_state_history` and a fork from an old checkpoint all do.
    """
    return DeltaChannel(reducer, snapshot_frequency=HISTORY_SNAPSHOT_EVERY)


@with_config(_DOCUMENTED)
class InputState(TypedDict, total=False):
    """What a caller sends to start a run: a goal, or a chat message that holds it."""

    goal: str
    """What the run should achieve, in plain language."""
    messages: Annotated[list[AnyMessage], add_messages]
    """Chat messages, as chat front ends send them: the last human message's text is
    the goal (or, while a plan waits for review, the reviewer's feedback)."""


@with_config(_DOCUMENTED)
class OutputState(TypedDict, total=False):
    """What a caller gets back."""

    goal: str
    status: Status | None
    """How the run ended; None while it is still going (paused for review, say)."""
    answer: str | None
    """The final answer, when the run completed."""
    reason: str | None
    """Why the run ended as it did, in a sentence."""
    plan: PlanDict | None
    """The last plan."""
    results: Annotated[dict[str, StepResult], _history(merge_all_results)]
    """Every step's outcome by step id, including steps of earlier plan revisions."""
    revisions: Annotated[list[PlanRevision], _history(append_all)]
    """Every plan revision, in order."""
    reviews: Annotated[list[ReviewRecord], _history(append_all)]
    """Every plan review decision, in order."""
    usage: Annotated[dict[str, Usage], add_usage]
    """Model calls, tokens and cost per role (planner, executor, replanner), this goal's."""
    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation: each goal and feedback as a human message, a short AI message
    per plan revision (the plan in its `additional_kwargs["planexec"]`), and how each
    goal ended, its final answer last. Never tool outputs."""
    goal_index: int
    """The number of the thread's current goal, from 1."""
    earlier_goals: Annotated[list[GoalRecord], _history(append_all)]
    """The thread's goals before the current one, as each ended."""


class State(OutputState, total=False):
    """What the nodes share."""

    revision: int
    """The current plan revision's number, kept beside `revisions` so that a reader of
    one checkpoint (`planexec threads`) has it without replaying the history."""

    draft_errors: list[str]
    """Why the planner's or replanner's last reply was not a valid plan; empty otherwise."""
    draft: str | None
    """That invalid reply, as text, to show the model what it wrote."""
    draft_attempts: int
    """Invalid replies in a row from the planner or replanner."""
    approvals: Annotated[dict[str, StepApproval], merge_approvals]
    """Decisions on steps that need approval, by step id."""
    awaiting_approval: list[str]
    """Steps ready to run that wait for a person's approval."""
    active_s: Annotated[float, operator.add]
    """Seconds spent working on this goal so far (planning, executing, replanning)."""
    heard: str | None
    """The id of the last human message taken as a goal or as feedback."""
    goal_message: str | None
    """The id of the human message that holds the current goal."""
    answer_id: str | None
    """The id of the message whose chunks streamed the final answer
    (`planexec.streaming`); the goal's end message carries it, so a chat front end
    that showed the chunks sees the same message, not a second one."""
    chat_answer: str | None
    """Feedback sent as a chat message while the plan waited for review, for the review
    node to take as a rejection; None otherwise."""


def goal_number(state: State) -> int:
    """The current goal's number; a thread from before goals were numbered has goal 1."""
    return state.get("goal_index") or 1


def goal_field(state: State) -> dict[str, int]:
    """`{"goal": n}` for a record of the current goal past the first; `{}` for the first."""
    goal = goal_number(state)
    return {"goal": goal} if goal > 1 else {}


def goal_of_record(record: PlanRevision | ReviewRecord) -> int:
    """The goal a revision or review record belongs to."""
    return record.get("goal") or 1


def current_revision(state: State) -> PlanRevision | None:
    """The revision that produced the current plan; None before the current goal's first."""
    revisions = state.get("revisions") or []
    if not revisions or goal_of_record(revisions[-1]) != goal_number(state):
        return None
    return revisions[-1]


def revision_number(state: State) -> int:
    """The current plan revision's number, 0 before the current goal's first plan."""
    revision = current_revision(state)
    return revision["revision"] if revision else 0


def next_revision(state: State, plan: PlanDict, source: PlanSource, reason: str) -> PlanRevision:
    """The record of `plan`, written by `source`, as the revision after the thread's last.

    Revisions are numbered across the thread's goals, so a number names one plan. Its
    diff is from the plan it replaces (the plan in `state`).
    """
    revisions = state.get("revisions") or []
    record: PlanRevision = {
        "revision": (revisions[-1]["revision"] if revisions else 0) + 1,
        "source": source,
        "reason": reason,
        "plan": plan,
        "diff": diff_plans(state.get("plan"), plan),
        "at": timestamp(),
    }
    record.update(goal_field(state))  # type: ignore[typeddict-item]
    return record


def is_approved(state: State, genuine: Callable[[ReviewRecord], bool]) -> bool:
    """Whether a person approved the current plan revision, as it is, or wrote it.

    An approval counts for the revision it names and only while that revision's plan
    has the digest the person approved; an edit approves the plan the person wrote.
    Only records that `genuine` accepts count (`planexec.seals.Sealer.review`).
    """
    revision = current_revision(state)
    if revision is None:
        return False
    digest = plan_hash(revision["plan"])
    for review in state.get("reviews") or []:
        approves = (
            review["decision"] == "approve"
            and review["revision"] == revision["revision"]
            and review["plan_hash"] == digest
        )
        wrote = (
            review["decision"] == "edit"
            and revision["source"] == "human"
            and review["revision"] == revision["revision"] - 1
            and review.get("edited_hash") == digest
        )
        same_goal = goal_of_record(review) == goal_of_record(revision)
        if (approves or wrote) and same_goal and genuine(review):
            return True
    return False


def rejection_feedback(state: State) -> str | None:
    """The reviewer's message when the current plan revision was just rejected."""
    reviews = state.get("reviews") or []
    revision = current_revision(state)
    if not reviews or revision is None:
        return None
    last = reviews[-1]
    if last["decision"] != "reject" or last["revision"] != revision["revision"]:
        return None
    return last["message"] or ""


def replans_used(state: State) -> int:
    """How many plan revisions the replanner has made for the current goal."""
    goal = goal_number(state)
    return sum(
        1
        for r in state.get("revisions") or []
        if r["source"] == "replanner" and goal_of_record(r) == goal
    )


def done_steps(state: State) -> dict[str, StepDict]:
    """The current plan's finished steps, by id, as they ran."""
    results = state.get("results") or {}
    plan = state.get("plan") or {"steps": []}
    return {s["id"]: s for s in plan["steps"] if results.get(s["id"], {}).get("status") == "done"}


def retired_ids(state: State) -> set[str]:
    """Ids of steps that failed or were skipped; new steps may not reuse them."""
    return {i for i, r in (state.get("results") or {}).items() if r["status"] != "done"}


def timestamp() -> str:
    """The time now, as recorded in state (UTC, ISO 8601)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
