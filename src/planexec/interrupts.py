"""Every decision a person makes in a run: what the run asks, what the person answers.

A run pauses with one of three interrupts; each is answered with `Command(resume=...)`:

- `plan_review`, when a plan waits for review (`Context.review="always"`): answered with
  a `ReviewDecision` (approve, edit, reject, cancel);
- `step_approval`, when steps call tools that require approval: answered with
  `{"decisions": [...]}`, one `ApprovalDecision` (approve, edit, reject) per action;
- `uncertain_step`, when a tool that must not run twice may have run: answered with an
  `UncertainDecision` (rerun, done, skip).

While it waits, a thread's status is `PAUSED_STATUS[type]`.

`step_approval` has the shape of LangChain's human-in-the-loop middleware (`HITLRequest`:
`action_requests`, `review_configs`; answered as an `HITLResponse`), so front ends made
for it answer planexec's too; `tests/test_interrupts.py` holds the two shapes together.
`plan_review` carries that shape as well, and Agent Inbox's `HumanInterrupt`
(`action_request`, `config`), for one action named `REVIEW_ACTION`, so Agent Chat UI
renders it; their answers (`ChatReviewAnswer`) resume it like a `ReviewDecision`.

The nodes, events, command line and evals take their names from here. Adding a kind
of decision is one model here (with its paused status), one branch in the node that takes
it, and one key in the command line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, get_args

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs it before 3.12

from planexec.pauses import NEEDS_MODEL as NEEDS_MODEL
from planexec.pauses import PAUSED_STATUS as PAUSED_STATUS
from planexec.pauses import InterruptType as InterruptType
from planexec.pauses import PausedStatus as PausedStatus
from planexec.plan import PlanDict, PlanDiff

ReviewDecisionType = Literal["approve", "edit", "reject", "cancel"]
"""A reviewer's decisions on a plan."""
REVIEW_DECISIONS: tuple[ReviewDecisionType, ...] = get_args(ReviewDecisionType)

ApprovalDecisionType = Literal["approve", "edit", "reject"]
"""A person's decisions on a step waiting for approval (LangChain's, without "respond")."""
APPROVAL_DECISIONS: tuple[ApprovalDecisionType, ...] = get_args(ApprovalDecisionType)

ChatDecisionType = Literal["approve", "edit", "reject", "respond"]
"""LangChain's human-in-the-loop decisions (`DecisionType`). At a plan review, "reject"
and "respond" both send their message to the planner as feedback."""
CHAT_REVIEW_DECISIONS: tuple[ChatDecisionType, ...] = get_args(ChatDecisionType)

InboxResponseType = Literal["accept", "edit", "response", "ignore"]
"""Agent Inbox's answers (`HumanResponse.type`). At a plan review they are approve,
edit, reject with the text as feedback, and cancel."""

REVIEW_ACTION = "review_plan"
"""The one action a plan review shows chat front ends; its args are `{"plan": <plan>}`."""

UncertainDecisionType = Literal["rerun", "done", "skip"]
"""A person's decisions on a step whose tool may or may not have run."""
UNCERTAIN_DECISIONS: tuple[UncertainDecisionType, ...] = get_args(UncertainDecisionType)


# --- what the run asks ----------------------------------------------------------------

PlanSource = Literal["planner", "replanner", "human", "library"]
"""Who wrote a plan revision: "library" is a saved plan replayed (`planexec.library`)."""


class LibrarySource(TypedDict):
    """The saved plan that a replayed revision came from (`planexec.library`)."""

    entry: str
    """The saved plan's id."""
    uses: int
    """How many runs had run it before."""
    success_rate: float | None
    """The share of those runs that completed with it unchanged; None before any use."""
    last_edit: str | None
    """When a reviewer last edited it before it was saved, if ever."""
    template: str | None
    """The template whose `{{param:name}}` slots the goal filled, for a template."""
    params: dict[str, str]
    """The values the goal gave those slots."""


class ActionRequest(TypedDict):
    """One call waiting for approval (LangChain's `ActionRequest`)."""

    name: str
    args: dict[str, Any]
    description: NotRequired[str]


class ReviewConfig(TypedDict):
    """What a person may decide on one action (LangChain's `ReviewConfig`)."""

    action_name: str
    allowed_decisions: list[ChatDecisionType]
    args_schema: NotRequired[dict[str, Any]]


class InboxAction(TypedDict):
    """An action as Agent Inbox shows and edits it (its `ActionRequest`)."""

    action: str
    args: dict[str, Any]


class InboxConfig(TypedDict):
    """Which answers Agent Inbox offers (its `HumanInterruptConfig`)."""

    allow_ignore: bool
    allow_respond: bool
    allow_edit: bool
    allow_accept: bool


class PlanReviewRequest(TypedDict):
    """The `plan_review` interrupt: the plan to approve, edit, reject or cancel.

    `action_requests` and `review_configs` (LangChain's `HITLRequest`), and
    `action_request`, `config` and `description` (Agent Inbox's `HumanInterrupt`), show
    the same plan to chat front ends as the one action `REVIEW_ACTION`.
    """

    type: Literal["plan_review"]
    goal: str | None
    plan: PlanDict
    revision: int
    source: PlanSource
    reason: str | None
    plan_hash: str
    """Digest of the plan shown; a decision that carries another one is refused."""
    changes: PlanDiff | None
    """For a revision after the first, what changed."""
    finished: list[str]
    """Steps that have run and stay as they are."""
    allowed_decisions: list[ReviewDecisionType]
    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]
    action_request: InboxAction
    config: InboxConfig
    description: str
    library: NotRequired[LibrarySource]
    """For a plan replayed from the library: which saved plan it is."""
    errors: NotRequired[list[str]]
    """Why the last answer was refused; the review is asked again."""


class StepApprovalRequest(TypedDict):
    """The `step_approval` interrupt: LangChain's `HITLRequest`, with planexec's fields."""

    type: Literal["step_approval"]
    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]
    steps: list[str]
    """The step of each action request, in the same order."""
    revision: int
    request_hash: str
    """Digest of the steps and calls shown; an answer that carries another is refused."""
    errors: NotRequired[list[str]]


class UncertainStepRequest(TypedDict):
    """The `uncertain_step` interrupt: a call that must not run twice may have run."""

    type: Literal["uncertain_step"]
    step: str
    revision: int
    tool: str
    args: dict[str, Any]
    key: str
    """The call's idempotency key; a decision may name it."""
    description: str
    message: str
    allowed_decisions: list[UncertainDecisionType]
    errors: NotRequired[list[str]]


InterruptRequest = PlanReviewRequest | StepApprovalRequest | UncertainStepRequest
"""Any interrupt value planexec raises; `type` tells which."""


# --- what the person answers ------------------------------------------------------------


class _ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="ignore")
    plan_hash: str | None = Field(
        default=None, description="Digest of the plan decided on, from the interrupt."
    )


class Approve(_ReviewDecision):
    """Run the plan as shown."""

    type: Literal["approve"]


class Edit(_ReviewDecision):
    """Run this plan instead (validated first)."""

    type: Literal["edit"]
    plan: dict[str, Any]
    message: str | None = None


class Reject(_ReviewDecision):
    """Write a new plan that addresses the feedback."""

    type: Literal["reject"]
    message: str = Field(min_length=1)


class Cancel(_ReviewDecision):
    """End the run, status "cancelled"."""

    type: Literal["cancel"]
    message: str | None = None


ReviewDecision = Annotated[Approve | Edit | Reject | Cancel, Field(discriminator="type")]
"""A resume value for `plan_review` (the review node parses it with these models)."""


class EditedAction(TypedDict):
    """The call a person wants instead (LangChain's `Action`)."""

    name: str
    args: dict[str, Any]


class ApproveAction(TypedDict):
    """Make the call as shown."""

    type: Literal["approve"]


class EditAction(TypedDict):
    """Make the call with these arguments."""

    type: Literal["edit"]
    edited_action: EditedAction


class RejectAction(TypedDict):
    """Skip the step; the replanner is told why."""

    type: Literal["reject"]
    message: NotRequired[str]


ApprovalDecision = ApproveAction | EditAction | RejectAction
"""One decision in a `step_approval` answer."""


class ApprovalAnswer(TypedDict):
    """A resume value for `step_approval` (LangChain's `HITLResponse`)."""

    decisions: list[ApprovalDecision]
    request_hash: NotRequired[str]


class InboxResponse(TypedDict):
    """An Agent Inbox answer (its `HumanResponse`); Agent Chat UI sends a list of one.

    `args` is None for accept and ignore, the feedback text for response, and the
    edited `InboxAction` for edit (its plan an object or JSON text).
    """

    type: InboxResponseType
    args: str | InboxAction | None


class HITLAnswer(TypedDict):
    """LangChain's `HITLResponse` to a plan review: one decision, on `REVIEW_ACTION`.

    An edit's `edited_action.args` is `{"plan": <plan object or JSON text>}`; a
    "respond" or "reject" message is feedback for the planner.
    """

    decisions: list[dict[str, Any]]
    plan_hash: NotRequired[str]


ChatReviewAnswer = HITLAnswer | InboxResponse | list[InboxResponse]
"""What chat front ends resume a `plan_review` with, besides a `ReviewDecision`."""


class RerunStep(TypedDict):
    """Call the tool again, with the same arguments and key."""

    type: Literal["rerun"]
    key: NotRequired[str]
    message: NotRequired[str]


class MarkDone(TypedDict):
    """The effect happened: the step is done with this output."""

    type: Literal["done"]
    output: Any
    key: NotRequired[str]
    message: NotRequired[str]


class SkipStep(TypedDict):
    """Skip the step; the replanner is told why."""

    type: Literal["skip"]
    key: NotRequired[str]
    message: NotRequired[str]


UncertainDecision = RerunStep | MarkDone | SkipStep
"""A resume value for `uncertain_step`."""
