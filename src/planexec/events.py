"""Progress events written to LangGraph's "custom" stream: a versioned schema.

Every event is a JSON object with `"planexec": EVENT_VERSION` and an `"event"` name.
Stream them with `graph.astream(..., stream_mode="custom")`, or with other modes as a
list (`stream_mode=["updates", "custom"]`); through the LangGraph server, ask for the
"custom" stream mode. Within a version, fields are only ever added; a change that
removes or reshapes a field raises the version.

| event | when | fields |
|---|---|---|
| `plan_ready` | the planner, a person's edit or the library wrote a plan | revision, source, |
| | | steps, reason |
| `review_requested` | the run is about to pause for plan review | revision |
| `review_decided` | a person decided on a plan | revision, decision, message |
| `approval_requested` | steps wait for a person's approval | steps |
| `step_started` | a step began its first attempt | step, tool, revision |
| `step_finished` | a step is done, failed or skipped | step, status, duration_s, |
| | | attempts, error, tokens |
| `replan` | the replanner revised the plan | revision, reason, diff |
| `budget_warning` | a budget passed 80% of its limit | budget, used, limit, fraction |
| `run_finished` | the run ended | status, reason, answer |

`EVENT_SCHEMAS` has the same as JSON Schemas, for clients in other languages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from langgraph.types import StreamWriter
from pydantic import TypeAdapter
from typing_extensions import TypedDict, Unpack

from planexec.interrupts import ReviewDecisionType
from planexec.plan import PlanDiff
from planexec.state import PlanSource, Status, StepStatus

if TYPE_CHECKING:
    from planexec.state import PlanRevision

EVENT_VERSION = 1
WARNING_FRACTION = 0.8
"""The share of a budget whose use triggers a `budget_warning`."""


class _Event(TypedDict):
    planexec: int
    event: str


# Each event's fields are their own TypedDict, so that `emit(writer, "<event>", **fields)`
# is checked by mypy against them (the overloads below); the event adds the header.


class PlanReadyFields(TypedDict):
    """The fields of `plan_ready`."""

    revision: int
    source: PlanSource
    steps: int
    reason: str | None


class PlanReady(_Event, PlanReadyFields):
    """The planner, an edit or a replayed saved plan made a revision (the replanner's: `replan`)."""


class ReviewRequestedFields(TypedDict):
    """The fields of `review_requested`."""

    revision: int


class ReviewRequested(_Event, ReviewRequestedFields):
    """The run is about to pause for a person to review plan `revision`."""


class ReviewDecidedFields(TypedDict):
    """The fields of `review_decided`."""

    revision: int
    decision: ReviewDecisionType
    message: str | None


class ReviewDecided(_Event, ReviewDecidedFields):
    """A person decided on plan `revision`."""


class ApprovalRequestedFields(TypedDict):
    """The fields of `approval_requested`."""

    steps: list[str]


class ApprovalRequested(_Event, ApprovalRequestedFields):
    """These steps wait for a person's approval before they call their tools."""


class StepStartedFields(TypedDict):
    """The fields of `step_started`."""

    step: str
    tool: str | None
    revision: int


class StepStarted(_Event, StepStartedFields):
    """A step began its first attempt."""


class StepFinishedFields(TypedDict):
    """The fields of `step_finished`."""

    step: str
    status: StepStatus
    duration_s: float | None
    attempts: int | None
    error: str | None
    tokens: int


class StepFinished(_Event, StepFinishedFields):
    """A step is done, failed or skipped."""


class ReplannedFields(TypedDict):
    """The fields of `replan`."""

    revision: int
    reason: str | None
    diff: PlanDiff


class Replanned(_Event, ReplannedFields):
    """The replanner revised the plan."""


class BudgetWarningFields(TypedDict):
    """The fields of `budget_warning`."""

    budget: str
    used: float
    limit: float
    fraction: float


class BudgetWarning(_Event, BudgetWarningFields):
    """A budget passed `WARNING_FRACTION` of its limit."""


class RunFinishedFields(TypedDict):
    """The fields of `run_finished`."""

    status: Status
    reason: str | None
    answer: str | None


class RunFinished(_Event, RunFinishedFields):
    """The run ended."""


EventName = Literal[
    "plan_ready",
    "review_requested",
    "review_decided",
    "approval_requested",
    "step_started",
    "step_finished",
    "replan",
    "budget_warning",
    "run_finished",
]
"""The name of each planexec progress event."""

_TYPES: dict[EventName, type] = {
    "plan_ready": PlanReady,
    "review_requested": ReviewRequested,
    "review_decided": ReviewDecided,
    "approval_requested": ApprovalRequested,
    "step_started": StepStarted,
    "step_finished": StepFinished,
    "replan": Replanned,
    "budget_warning": BudgetWarning,
    "run_finished": RunFinished,
}

EVENT_SCHEMAS: dict[str, dict[str, Any]] = {
    name: TypeAdapter(kind).json_schema() for name, kind in _TYPES.items()
}
"""JSON Schema of each event, by event name."""


@overload
def emit(
    writer: StreamWriter | None, event: Literal["plan_ready"], **fields: Unpack[PlanReadyFields]
) -> None: ...


@overload
def emit(
    writer: StreamWriter | None,
    event: Literal["review_requested"],
    **fields: Unpack[ReviewRequestedFields],
) -> None: ...


@overload
def emit(
    writer: StreamWriter | None,
    event: Literal["review_decided"],
    **fields: Unpack[ReviewDecidedFields],
) -> None: ...


@overload
def emit(
    writer: StreamWriter | None,
    event: Literal["approval_requested"],
    **fields: Unpack[ApprovalRequestedFields],
) -> None: ...


@overload
def emit(
    writer: StreamWriter | None, event: Literal["step_started"], **fields: Unpack[StepStartedFields]
) -> None: ...


@overload
def emit(
    writer: StreamWriter | None,
    event: Literal["step_finished"],
    **fields: Unpack[StepFinishedFields],
) -> None: ...


@overload
def emit(
    writer: StreamWriter | None, event: Literal["replan"], **fields: Unpack[ReplannedFields]
) -> None: ...


@overload
def emit(
    writer: StreamWriter | None,
    event: Literal["budget_warning"],
    **fields: Unpack[BudgetWarningFields],
) -> None: ...


@overload
def emit(
    writer: StreamWriter | None, event: Literal["run_finished"], **fields: Unpack[RunFinishedFields]
) -> None: ...


def emit(writer: StreamWriter | None, event: EventName, **fields: Any) -> None:
    """Write one progress event to the graph's custom stream, if anyone listens.

    Each event's fields are typed (`<Event>Fields`): mypy checks every call.
    """
    if event not in _TYPES:
        raise ValueError(f"unknown planexec event {event!r}")
    if writer is not None:
        writer({"planexec": EVENT_VERSION, "event": event, **fields})


def emit_plan_ready(writer: StreamWriter | None, revision: PlanRevision) -> None:
    """Write the `plan_ready` event of `revision`."""
    emit(
        writer,
        "plan_ready",
        revision=revision["revision"],
        source=revision["source"],
        steps=len(revision["plan"]["steps"]),
        reason=revision["reason"],
    )


def is_event(chunk: object) -> bool:
    """Whether a custom-stream chunk is a planexec progress event."""
    return isinstance(chunk, dict) and chunk.get("planexec") == EVENT_VERSION
