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

from typing import TYPE_CHECKING, Any, Literal

from langgraph.types import StreamWriter
from pydantic import TypeAdapter
from typing_extensions import TypedDict

if TYPE_CHECKING:
    from planexec.state import PlanRevision

EVENT_VERSION = 1
WARNING_FRACTION = 0.8
"""The share of a budget whose use triggers a `budget_warning`."""


class _Event(TypedDict):
    planexec: int
    event: str


class PlanReady(_Event):
    """The planner, an edit or a replayed saved plan made a revision (the replanner's: `replan`)."""

    revision: int
    source: Literal["planner", "replanner", "human", "library"]
    steps: int
    reason: str | None


class ReviewRequested(_Event):
    """The run is about to pause for a person to review plan `revision`."""

    revision: int


class ReviewDecided(_Event):
    """A person decided on plan `revision`."""

    revision: int
    decision: Literal["approve", "edit", "reject", "cancel"]
    message: str | None


class ApprovalRequested(_Event):
    """These steps wait for a person's approval before they call their tools."""

    steps: list[str]


class StepStarted(_Event):
    """A step began its first attempt."""

    step: str
    tool: str | None
    revision: int


class StepFinished(_Event):
    """A step is done, failed or skipped."""

    step: str
    status: Literal["done", "failed", "skipped"]
    duration_s: float | None
    attempts: int | None
    error: str | None
    tokens: int


class Replanned(_Event):
    """The replanner revised the plan."""

    revision: int
    reason: str | None
    diff: dict[str, list[str]]


class BudgetWarning(_Event):
    """A budget passed `WARNING_FRACTION` of its limit."""

    budget: str
    used: float
    limit: float
    fraction: float


class RunFinished(_Event):
    """The run ended."""

    status: Literal["completed", "failed", "cancelled", "budget_exhausted"]
    reason: str | None
    answer: str | None


_TYPES: dict[str, type] = {
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


def emit(writer: StreamWriter | None, event: str, **fields: Any) -> None:
    """Write one progress event to the graph's custom stream, if anyone listens."""
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
