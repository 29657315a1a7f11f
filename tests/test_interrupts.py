"""The decision vocabulary (`planexec.interrupts`) is what the run really asks and takes:
each interrupt a run raises fits its request type, each answer type resumes it, and the
step-approval shapes are LangChain's human-in-the-loop middleware's."""

from __future__ import annotations

import asyncio
import typing
from typing import Annotated, Any

import pytest
from langchain.agents.middleware import human_in_the_loop as hitl
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.types import Command, Interrupt
from pydantic import TypeAdapter

from helpers import Harness, interrupt_of, step
from planexec import Context
from planexec.interrupts import (
    APPROVAL_DECISIONS,
    REVIEW_DECISIONS,
    UNCERTAIN_DECISIONS,
    ActionRequest,
    ApprovalAnswer,
    ApprovalDecision,
    EditAction,
    EditedAction,
    PlanReviewRequest,
    ReviewConfig,
    ReviewDecision,
    StepApprovalRequest,
    UncertainDecision,
    UncertainStepRequest,
)
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.usefixtures("both_apis")


def fits(kind: Any, value: Any) -> None:
    TypeAdapter(kind).validate_python(value, strict=True)


def keys(kind: type) -> set[str]:
    return set(typing.get_type_hints(kind))


def required(kind: type) -> set[str]:
    return set(TypeAdapter(kind).json_schema().get("required", []))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (ActionRequest, hitl.ActionRequest),
        (ReviewConfig, hitl.ReviewConfig),
        (EditedAction, hitl.Action),
        (EditAction, hitl.EditDecision),
        (ApprovalAnswer, hitl.HITLResponse),
    ],
)
def test_step_approval_has_langchains_shapes(ours: type, theirs: type) -> None:
    assert keys(theirs) <= keys(ours)
    assert keys(ours) - keys(theirs) <= {"request_hash"}
    assert required(ours) == required(theirs)


def test_step_approval_request_is_an_hitl_request_and_decisions_are_langchains() -> None:
    assert keys(hitl.HITLRequest) <= keys(StepApprovalRequest)
    assert set(APPROVAL_DECISIONS) <= set(typing.get_args(hitl.DecisionType))
    assert set(REVIEW_DECISIONS) == {"approve", "edit", "reject", "cancel"}
    assert set(UNCERTAIN_DECISIONS) == {"rerun", "done", "skip"}


async def test_a_plan_review_fits_its_request_and_every_decision_type_resumes_it() -> None:
    plan = [step("s1", args={"expression": "2*3"})]
    h = Harness(
        planner=[plan_reply(plan), plan_reply(plan)],
        replanner=[replan_reply("finish", answer="6")],
    )
    ctx = Context(retry_initial_interval=0)
    request = interrupt_of(await h.run({"goal": "g"}, ctx))
    fits(PlanReviewRequest, request)
    assert request["allowed_decisions"] == list(REVIEW_DECISIONS)
    reject: ReviewDecision = {
        "type": "reject",
        "message": "again",
        "plan_hash": request["plan_hash"],
    }
    fits(ReviewDecision, reject)
    again = interrupt_of(await h.run(Command(resume=reject), ctx))
    fits(PlanReviewRequest, again)
    assert again["revision"] == 2
    edit: ReviewDecision = {"type": "edit", "plan": again["plan"]}
    fits(ReviewDecision, edit)
    done = await h.run(Command(resume=edit), ctx)
    assert done["status"] == "completed"


async def test_a_step_approval_fits_its_request_and_an_answer_resumes_it() -> None:
    @tool
    def send(to: str) -> str:
        """Send a message."""
        return f"sent to {to}"

    send.metadata = {"requires_approval": True}
    h = Harness(
        planner=[plan_reply([step("s1", tool="send", args={"to": "ann"})])],
        replanner=[replan_reply("finish", answer="sent")],
        tools=[send],
    )
    ctx = Context(review="never")
    request = interrupt_of(await h.run({"goal": "g"}, ctx))
    fits(StepApprovalRequest, request)
    fits(hitl.HITLRequest, {k: request[k] for k in ("action_requests", "review_configs")})
    decision: ApprovalDecision = {
        "type": "edit",
        "edited_action": {"name": "send", "args": {"to": "bo"}},
    }
    answer: ApprovalAnswer = {"decisions": [decision], "request_hash": request["request_hash"]}
    fits(ApprovalAnswer, answer)
    done = await h.run(Command(resume=answer), ctx)
    assert done["results"]["s1"]["output"] == "sent to bo"


async def test_an_uncertain_step_fits_its_request_and_a_decision_resumes_it() -> None:
    calls: list[str] = []

    @tool
    async def charge(amount: int, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Charge a card."""
        calls.append(tool_call_id)
        if len(calls) == 1:
            await asyncio.sleep(30)
        return "receipt"

    charge.metadata = {"idempotent": False}
    h = Harness(
        planner=[plan_reply([step("s1", tool="charge", args={"amount": 5})])],
        replanner=[replan_reply("finish", answer="charged")],
        tools=[charge],
    )
    ctx = Context(review="never", retry_initial_interval=0.0, tool_timeouts={"charge": 0.3})
    request = interrupt_of(await h.run({"goal": "g"}, ctx))
    fits(UncertainStepRequest, request)
    decision: UncertainDecision = {"type": "done", "output": "receipt-1", "key": request["key"]}
    fits(UncertainDecision, decision)
    done = await h.run(Command(resume=decision), ctx)
    assert done["results"]["s1"]["output"] == "receipt-1"
    assert len(calls) == 1


def test_the_nodes_events_cli_and_evals_use_this_vocabulary() -> None:
    """One home: what each of them accepts or names is the module's, not a copy."""
    from planexec.cli.commands import PAUSES
    from planexec.cli.review import UNCERTAIN_KINDS, ScriptedKind
    from planexec.cli.threads import LABELS, thread_status
    from planexec.evals.reviewer import ReviewDecision as ScriptedReview
    from planexec.events import ReviewDecidedFields
    from planexec.interrupts import PAUSED_STATUS, InterruptType
    from planexec.nodes import approval, review
    from planexec.state import ReviewRecord, StepApproval

    assert review.DECISIONS == REVIEW_DECISIONS
    assert list(APPROVAL_DECISIONS) == approval.ALLOWED
    assert UNCERTAIN_KINDS == UNCERTAIN_DECISIONS
    # The command line can say how to answer every kind of pause.
    assert set(typing.get_args(InterruptType)) <= set(PAUSES)
    # A thread paused at each kind is listed with that kind's status, under a label.
    assert set(PAUSED_STATUS) == set(typing.get_args(InterruptType))
    for kind, status in PAUSED_STATUS.items():
        assert thread_status({}, [Interrupt(value={"type": kind})], ("review",)) == status
        assert status in LABELS
    kinds = {kind for part in typing.get_args(ScriptedKind) for kind in typing.get_args(part)}
    assert kinds == set(REVIEW_DECISIONS) | set(UNCERTAIN_DECISIONS)
    hints = typing.get_type_hints
    assert typing.get_args(hints(ReviewDecidedFields)["decision"]) == REVIEW_DECISIONS
    assert typing.get_args(hints(ReviewRecord)["decision"]) == REVIEW_DECISIONS
    assert typing.get_args(hints(StepApproval)["decision"]) == APPROVAL_DECISIONS
    assert typing.get_args(ScriptedReview.model_fields["type"].annotation) == REVIEW_DECISIONS
