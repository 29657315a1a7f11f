"""Issue 14, "Review in the chat UI": a plan review is also one action in the shapes Agent
Chat UI renders (LangChain's `HITLRequest`, Agent Inbox's `HumanInterrupt`), and their
answers resume it through the real graph, checked exactly as planexec's own decisions."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from langchain.agents.middleware import human_in_the_loop as hitl
from langgraph.prebuilt import interrupt as inbox
from langgraph.types import Command
from pydantic import TypeAdapter

from helpers import Harness, config, interrupt_of, invoke, state_history, step
from planexec import Context
from planexec.interrupts import (
    CHAT_REVIEW_DECISIONS,
    REVIEW_ACTION,
    ChatReviewAnswer,
    HITLAnswer,
    InboxResponse,
    PlanReviewRequest,
)
from planexec.plan import plan_hash
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import calculator

pytestmark = pytest.mark.usefixtures("both_apis")

CTX = Context(retry_initial_interval=0)
PLAN_STEPS = [
    step("s1", args={"expression": "12*4"}),
    step("s2", args={"expression": "{{s1}} + 5"}, depends_on=["s1"]),
]
PLAN = {"steps": PLAN_STEPS}
EDITED = {"steps": [step("s1", args={"expression": "6*7"})]}
OTHER = {"steps": [step("s1", args={"expression": "666*1"})]}
SECOND = [step("s1", args={"expression": "12*4+5"}, description="Compute it in one go")]


def harness() -> Harness:
    return Harness(
        planner=[plan_reply(PLAN_STEPS), plan_reply(SECOND)],
        replanner=[replan_reply("finish", answer="done")],
        tools=[calculator],
    )


def outputs(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v["output"] for k, v in (out.get("results") or {}).items()}


def fits(kind: Any, value: Any) -> None:
    TypeAdapter(kind).validate_python(value, strict=True)


def hitl_edit(plan: object) -> HITLAnswer:
    return {
        "decisions": [
            {"type": "edit", "edited_action": {"name": REVIEW_ACTION, "args": {"plan": plan}}}
        ]
    }


def inbox_edit(plan: object) -> InboxResponse:
    return {"type": "edit", "args": {"action": REVIEW_ACTION, "args": {"plan": plan}}}


# --- what the chat UI is shown ----------------------------------------------------------


async def test_the_review_is_one_action_in_the_hitl_and_agent_inbox_shapes() -> None:
    h = harness()
    request = interrupt_of(await h.run({"goal": "Compute 12*4+5"}, CTX))
    fits(PlanReviewRequest, request)
    # The contract's keys are all still there, with the same values.
    assert (request["type"], request["plan"], request["revision"]) == ("plan_review", PLAN, 1)
    assert request["allowed_decisions"] == ["approve", "edit", "reject", "cancel"]

    fits(hitl.HITLRequest, {k: request[k] for k in typing.get_type_hints(hitl.HITLRequest)})
    [action] = request["action_requests"]
    assert (action["name"], action["args"]) == (REVIEW_ACTION, {"plan": PLAN})
    assert action["description"].startswith("Plan revision 1, 2 steps. Approve")
    assert request["review_configs"] == [
        {
            "action_name": REVIEW_ACTION,
            "allowed_decisions": ["approve", "edit", "reject", "respond"],
        }
    ]
    assert typing.get_args(hitl.DecisionType) == CHAT_REVIEW_DECISIONS

    shown = {k: request[k] for k in typing.get_type_hints(inbox.HumanInterrupt)}
    fits(inbox.HumanInterrupt, shown)
    assert shown["action_request"] == {"action": REVIEW_ACTION, "args": {"plan": PLAN}}
    assert all(shown["config"].values())
    assert shown["description"] == action["description"]


def test_the_answer_types_are_langchains_and_agent_inboxs() -> None:
    hints = typing.get_type_hints
    assert set(hints(hitl.HITLResponse)) <= set(hints(HITLAnswer))
    assert set(hints(inbox.HumanResponse)) == set(hints(InboxResponse))
    theirs = typing.get_args(hints(inbox.HumanResponse)["type"])
    assert set(typing.get_args(hints(InboxResponse)["type"])) == set(theirs)


# --- every answer shape resumes the real graph -----------------------------------------

APPROVALS: dict[str, Any] = {
    "hitl approve": {"decisions": [{"type": "approve"}]},
    "inbox accept": {"type": "accept", "args": None},
    "inbox accept, a list": [{"type": "accept", "args": None}],
    "inbox accept of the action shown": [
        {"type": "accept", "args": {"action": REVIEW_ACTION, "args": {"plan": PLAN}}}
    ],
    "inbox accept of the action shown, as JSON": [
        {"type": "accept", "args": {"action": REVIEW_ACTION, "args": {"plan": json.dumps(PLAN)}}}
    ],
    "hitl edit to the same plan": hitl_edit(PLAN),
}


@pytest.mark.parametrize("answer", APPROVALS.values(), ids=APPROVALS.keys())
async def test_each_approval_runs_the_plan_shown(answer: ChatReviewAnswer) -> None:
    h = harness()
    request = interrupt_of(await h.run({"goal": "Compute 12*4+5"}, CTX))
    out = await h.run(Command(resume=answer), CTX)
    assert out["status"] == "completed"
    assert outputs(out) == {"s1": 48, "s2": 53}
    [record] = out["reviews"]
    assert (record["decision"], record["plan_hash"]) == ("approve", request["plan_hash"])
    assert record["seal"]


EDITS: dict[str, Any] = {
    "hitl edit": hitl_edit(EDITED),
    "hitl edit, JSON": hitl_edit(json.dumps(EDITED)),
    "hitl edit, the decision alone": hitl_edit(EDITED)["decisions"][0],
    "inbox edit": inbox_edit(EDITED),
    "inbox edit, a list of JSON": [inbox_edit(json.dumps(EDITED, indent=4))],
}


@pytest.mark.parametrize("answer", EDITS.values(), ids=EDITS.keys())
async def test_each_edit_runs_the_edited_plan(answer: ChatReviewAnswer) -> None:
    h = harness()
    request = interrupt_of(await h.run({"goal": "Compute 12*4+5"}, CTX))
    out = await h.run(Command(resume=answer), CTX)
    assert out["status"] == "completed"
    assert outputs(out) == {"s1": 42}
    assert out["plan"] == EDITED
    [record] = out["reviews"]
    assert (record["decision"], record["plan_hash"]) == ("edit", request["plan_hash"])
    assert record["edited_hash"] == plan_hash(EDITED)
    assert [r["source"] for r in out["revisions"]] == ["planner", "human"]


FEEDBACK: dict[str, Any] = {
    "hitl respond": {"decisions": [{"type": "respond", "message": "Use a single step"}]},
    "hitl reject": {"decisions": [{"type": "reject", "message": "Use a single step"}]},
    "hitl respond, the decision alone": {"type": "respond", "message": "Use a single step"},
    "inbox response": [{"type": "response", "args": "Use a single step"}],
}


@pytest.mark.parametrize("answer", FEEDBACK.values(), ids=FEEDBACK.keys())
async def test_each_text_answer_is_feedback_for_a_new_plan(answer: ChatReviewAnswer) -> None:
    h = harness()
    await h.run({"goal": "Compute 12*4+5"}, CTX)
    again = interrupt_of(await h.run(Command(resume=answer), CTX))
    assert (again["type"], again["revision"], again["plan"]) == (
        "plan_review",
        2,
        {"steps": SECOND},
    )
    assert again["action_requests"][0]["args"] == {"plan": {"steps": SECOND}}
    assert "Use a single step" in h.planner.calls[1].prompt
    out = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), CTX)
    assert outputs(out) == {"s1": 53}
    assert [(r["revision"], r["decision"], r["message"]) for r in out["reviews"]] == [
        (1, "reject", "Use a single step"),
        (2, "approve", None),
    ]


async def test_ignore_cancels_the_run() -> None:
    h = harness()
    await h.run({"goal": "Compute 12*4+5"}, CTX)
    out = await h.run(Command(resume=[{"type": "ignore", "args": None}]), CTX)
    assert (out["status"], out["reason"]) == ("cancelled", "cancelled by the reviewer")
    assert outputs(out) == {}
    assert h.executor.calls == h.replanner.calls == []


# --- a malformed or mismatched answer asks again and changes nothing -------------------

OTHER_HASH = plan_hash(OTHER)


def refusal(decided_on: str, shown: str) -> str:
    return (
        f"the decision is for plan {decided_on}, but the plan under review is {shown}; "
        "decide on the plan shown"
    )


MALFORMED: dict[str, tuple[Any, str]] = {
    "no decisions": (
        {"decisions": []},
        'answer with {"decisions": [<one decision>]}: the plan review shows one action',
    ),
    "two decisions": (
        {"decisions": [{"type": "approve"}, {"type": "approve"}]},
        'answer with {"decisions": [<one decision>]}: the plan review shows one action',
    ),
    "unknown decision": (
        {"decisions": [{"type": "accept"}]},
        "decision type must be one of approve, edit, reject, respond",
    ),
    "edit without an action": (
        {"decisions": [{"type": "edit"}]},
        'an edit needs the action {"name": "review_plan", "args": {"plan": <plan>}}',
    ),
    "edit of another action": (
        {
            "decisions": [
                {"type": "edit", "edited_action": {"name": "calculator", "args": {"plan": OTHER}}}
            ]
        },
        "an edit may name only the action review_plan",
    ),
    "edit with broken JSON": (
        hitl_edit('{"steps": ['),
        "the edited plan is not valid JSON: Expecting value: line 1 column 12 (char 11)",
    ),
    "edit to an invalid plan": (
        inbox_edit({"steps": [step("s1", tool="nope", args={})]}),
        "edited plan: step s1: unknown tool 'nope'",
    ),
    "respond without text": (
        {"decisions": [{"type": "respond"}]},
        "reject decision: message: Field required",
    ),
    "inbox response without text": (
        [{"type": "response", "args": None}],
        "reject decision: message: Input should be a valid string",
    ),
    "inbox list of two": (
        [{"type": "accept", "args": None}, {"type": "accept", "args": None}],
        "answer with one response for the plan review, not a list of 2",
    ),
    "inbox unknown type": (
        [{"type": "approve", "args": None}],
        "response type must be one of accept, edit, response, ignore",
    ),
    "accept of another action": (
        [{"type": "accept", "args": {"action": "calculator", "args": {"plan": PLAN}}}],
        "an accept may name only the action review_plan",
    ),
    "accept without a plan": (
        [{"type": "accept", "args": {"action": REVIEW_ACTION, "args": {}}}],
        'an accept needs the action {"action": "review_plan", "args": {"plan": <plan>}}',
    ),
    "two plan hashes": (
        {"decisions": [{"type": "approve", "plan_hash": OTHER_HASH}], "plan_hash": "x"},
        "the answer names two different plan_hash values",
    ),
}


@pytest.mark.parametrize(("answer", "error"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_answer_asks_again_and_changes_nothing(answer: Any, error: str) -> None:
    h = harness()
    first = interrupt_of(await h.run({"goal": "Compute 12*4+5"}, CTX))
    before = await h.state()
    again = interrupt_of(await h.run(Command(resume=answer), CTX))
    if error.startswith("edited plan:"):
        assert again["errors"][0].startswith(error), again["errors"]
    else:
        assert again["errors"] == [error]
    assert {k: v for k, v in again.items() if k != "errors"} == first
    after = await h.state()
    for key in ("plan", "revisions", "reviews", "results", "status"):
        assert after.get(key) == before.get(key), key
    assert (len(h.planner.calls), h.executor.calls) == (1, [])
    out = await h.run(Command(resume=[{"type": "accept", "args": None}]), CTX)
    assert outputs(out) == {"s1": 48, "s2": 53}


MISMATCHED: dict[str, Any] = {
    "hitl approve naming another plan": {
        "decisions": [{"type": "approve"}],
        "plan_hash": OTHER_HASH,
    },
    "hitl approve, the decision naming another plan": {
        "decisions": [{"type": "approve", "plan_hash": OTHER_HASH}]
    },
    "hitl edit naming another plan": {**hitl_edit(EDITED), "plan_hash": OTHER_HASH},
    "hitl respond naming another plan": {
        "decisions": [{"type": "respond", "message": "again"}],
        "plan_hash": OTHER_HASH,
    },
    "inbox accept naming another plan": [{"type": "accept", "args": None, "plan_hash": OTHER_HASH}],
    "inbox accept of another plan": [
        {"type": "accept", "args": {"action": REVIEW_ACTION, "args": {"plan": OTHER}}}
    ],
    "inbox accept of another plan, as JSON": [
        {"type": "accept", "args": {"action": REVIEW_ACTION, "args": {"plan": json.dumps(OTHER)}}}
    ],
}


@pytest.mark.parametrize("answer", MISMATCHED.values(), ids=MISMATCHED.keys())
async def test_an_answer_about_another_plan_approves_nothing(answer: Any) -> None:
    h = harness()
    first = interrupt_of(await h.run({"goal": "Compute 12*4+5"}, CTX))
    again = interrupt_of(await h.run(Command(resume=answer), CTX))
    assert again["errors"] == [refusal(OTHER_HASH, first["plan_hash"])]
    assert (again["plan"], again["revision"]) == (PLAN, 1)
    state = await h.state()
    assert (state.get("reviews") or [], state.get("results") or {}) == ([], {})
    assert (len(h.planner.calls), h.executor.calls, h.replanner.calls) == (1, [], [])


async def test_an_accept_whose_plan_and_plan_hash_disagree_is_refused() -> None:
    h = harness()
    first = interrupt_of(await h.run({"goal": "Compute 12*4+5"}, CTX))
    forged = {
        "type": "accept",
        "args": {"action": REVIEW_ACTION, "args": {"plan": OTHER}},
        "plan_hash": first["plan_hash"],
    }
    again = interrupt_of(await h.run(Command(resume=[forged]), CTX))
    assert again["errors"] == ["the accepted plan is not the one its plan_hash names"]
    assert ((await h.state()).get("reviews") or []) == []


async def test_a_replayed_review_with_a_chat_accept_of_another_plan_runs_the_approved() -> None:
    # As for planexec's own decisions: a resume at the old checkpoint gets the decision
    # saved there, so only the plan approved there runs.
    h = Harness(
        planner=[plan_reply(PLAN_STEPS)],
        replanner=[replan_reply("finish", answer="done"), replan_reply("finish", answer="again")],
        tools=[calculator],
    )
    await h.run({"goal": "Compute 12*4+5"}, CTX)
    done = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), CTX)
    assert done["status"] == "completed"
    [waiting] = [s for s in await state_history(h.graph, config()) if s.next == ("review",)]
    stale = [{"type": "accept", "args": {"action": REVIEW_ACTION, "args": {"plan": OTHER}}}]
    replayed = await invoke(h.graph, Command(resume=stale), waiting.config, context=CTX)
    assert (replayed["plan"], outputs(replayed)) == (PLAN, {"s1": 48, "s2": 53})
    assert [r["decision"] for r in replayed["reviews"]] == ["approve"]
