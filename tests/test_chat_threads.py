"""Issue 14, a thread as a conversation: a chat message sent while a plan waits for review is
feedback for the planner (and never a second run), and a message after a run has ended is
the thread's next goal, planned with the earlier answers in view, under budgets of its own."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.tools import tool
from langgraph.types import Command

from helpers import Harness, config, get_state, interrupt_of, state_history, step
from planexec import Context
from planexec.audit import audit_trail, audit_trail_sync
from planexec.scripted import plan_reply, replan_reply
from planexec.state import is_approved
from planexec.tools import calculator

pytestmark = pytest.mark.usefixtures("both_apis")

CTX = Context(retry_initial_interval=0)
NO_REVIEW = Context(review="never", retry_initial_interval=0)
SECRET = "step-output-canary-5521"


@tool
def fetch(name: str) -> str:
    """A record by name."""
    return f"{name}={SECRET}"


FIRST = [step("s1", args={"expression": "12*4"})]
SECOND = [step("s1", args={"expression": "12*5"})]


def human(text: str) -> dict[str, Any]:
    """The input Agent Chat UI sends for a new message."""
    return {"messages": [{"type": "human", "content": text}]}


# --- a chat message while the plan waits for review -------------------------------------


async def test_a_message_while_paused_is_feedback_and_the_plan_is_rewritten() -> None:
    h = Harness(
        planner=[plan_reply(FIRST), plan_reply(SECOND)],
        replanner=[replan_reply("finish", answer="60")],
        tools=[calculator],
    )
    first = interrupt_of(await h.run(human("What is 12 times 4 or 5?"), CTX))
    out = await h.run(human("Use 5, not 4"), CTX)
    again = interrupt_of(out)
    assert (first["revision"], again["revision"]) == (1, 2)
    assert again["plan"] == {"steps": SECOND}
    assert again["goal"] == "What is 12 times 4 or 5?"
    # The planner was asked again with the message as the reviewer's feedback.
    prompt = h.planner.calls[1].prompt
    assert "<feedback>\nUse 5, not 4\n</feedback>" in prompt
    assert "<goal>\nWhat is 12 times 4 or 5?\n</goal>" in prompt
    state = await h.state()
    [review] = state["reviews"]
    assert (review["revision"], review["decision"], review["message"]) == (
        1,
        "reject",
        "Use 5, not 4",
    )
    assert review["seal"]
    assert state["chat_answer"] is None
    # One run, paused at one review: nothing ran meanwhile.
    snapshot = await get_state(h.graph, config())
    assert snapshot.next == ("review",)
    assert len(snapshot.interrupts) == 1
    assert (h.executor.calls, h.replanner.calls, state.get("results") or {}) == ([], [], {})
    assert [(m.type, m.text.split("\n")[0]) for m in state["messages"]] == [
        ("human", "What is 12 times 4 or 5?"),
        ("ai", "Plan (revision 1, 1 step):"),
        ("human", "Use 5, not 4"),
        ("ai", "Plan (revision 2, 1 step):"),
    ]
    done = await h.run(Command(resume={"type": "approve"}), CTX)
    assert done["status"] == "completed"
    assert done["results"]["s1"]["output"] == 60
    assert done["goal_index"] == 1
    assert [r["decision"] for r in done["reviews"]] == ["reject", "approve"]


async def test_the_old_review_never_resumes_after_a_message() -> None:
    h = Harness(
        planner=[plan_reply(FIRST), plan_reply(SECOND)],
        replanner=[replan_reply("finish", answer="60")],
        tools=[calculator],
    )
    await h.run(human("What is 12 times 4 or 5?"), CTX)
    await h.run(human("Use 5"), CTX)
    # An approval now answers the new revision's review, and the plan runs once.
    done = await h.run(Command(resume={"type": "approve"}), CTX)
    assert done["status"] == "completed"
    assert [r["revision"] for r in done["reviews"]] == [1, 2]
    assert list(done["results"]) == ["s1"]
    assert done["results"]["s1"]["args"] == {"expression": "12*5"}
    history = await state_history(h.graph, config())
    assert history[0].next == ()
    assert sum(1 for s in history if s.next == ("executor",)) == 1


async def test_a_goal_input_while_paused_is_feedback_too_and_keeps_the_goal() -> None:
    h = Harness(planner=[plan_reply(FIRST), plan_reply(SECOND)], tools=[calculator])
    await h.run({"goal": "What is 12 times 4 or 5?"}, CTX)
    again = interrupt_of(await h.run({"goal": "Use 5"}, CTX))
    assert again["revision"] == 2
    assert again["goal"] == "What is 12 times 4 or 5?"
    assert "<feedback>\nUse 5\n</feedback>" in h.planner.calls[1].prompt
    state = await h.state()
    assert state["goal"] == "What is 12 times 4 or 5?"
    assert [m.text for m in state["messages"] if m.type == "human"] == [
        "What is 12 times 4 or 5?",
        "Use 5",
    ]


async def test_feedback_too_long_for_a_review_pauses_again_with_the_error() -> None:
    h = Harness(planner=[plan_reply(FIRST), plan_reply(SECOND)], tools=[calculator])
    await h.run(human("What is 12 times 4?"), CTX)
    strict = Context(max_text_chars=100)
    out = await h.run(human("x" * 150), strict)
    request = interrupt_of(out)
    assert request["revision"] == 1
    assert request["errors"] == [
        "reject decision: the message is 150 characters long; the most allowed is 100 "
        "(Context.max_text_chars)"
    ]
    assert len(h.planner.calls) == 1
    assert (await h.state()).get("reviews", []) == []
    done = interrupt_of(await h.run(Command(resume={"type": "reject", "message": "5"}), strict))
    assert done["revision"] == 2
    state = await h.state()
    assert [(r["decision"], r["message"]) for r in state["reviews"]] == [("reject", "5")]
    assert state["chat_answer"] is None


async def test_a_message_at_the_review_of_a_revised_plan_goes_to_the_replanner() -> None:
    h = Harness(
        planner=[plan_reply(FIRST)],
        replanner=[
            replan_reply(
                "replan",
                steps=[step("s2", args={"expression": "{{s1}}+1"}, depends_on=["s1"])],
                reason="one more",
            ),
            replan_reply(
                "replan",
                steps=[step("s3", args={"expression": "{{s1}}+2"}, depends_on=["s1"])],
                reason="as asked",
            ),
            replan_reply("finish", answer="50"),
        ],
        tools=[calculator],
    )
    await h.run({"goal": "g"}, CTX)
    revised = interrupt_of(await h.run(Command(resume={"type": "approve"}), CTX))
    assert revised["revision"] == 2
    again = interrupt_of(await h.run(human("Add 2 instead"), CTX))
    assert again["revision"] == 3
    assert len(h.planner.calls) == 1
    assert "Add 2 instead" in h.replanner.calls[1].prompt
    done = await h.run(Command(resume={"type": "approve"}), CTX)
    assert done["status"] == "completed"
    assert {k: r["output"] for k, r in done["results"].items()} == {"s1": 48, "s3": 50}


# --- follow-up goals ----------------------------------------------------------------------


def follow_up_harness() -> Harness:
    return Harness(
        planner=[
            plan_reply([step("s1", tool="fetch", args={"name": "lyon"})]),
            plan_reply([step("s1", args={"expression": "2*21"})]),
        ],
        replanner=[
            replan_reply("finish", answer="Lyon's record is on file."),
            replan_reply("finish", answer="42"),
        ],
        tools=[fetch, calculator],
    )


async def test_a_message_after_the_run_ended_is_the_next_goal_on_the_same_thread() -> None:
    h = follow_up_harness()
    first = await h.run(human("Fetch Lyon's record"), NO_REVIEW)
    assert (first["status"], first["goal_index"]) == ("completed", 1)
    out = await h.run(human("Now what is 2*21?"), NO_REVIEW)
    assert (out["status"], out["answer"], out["goal"]) == ("completed", "42", "Now what is 2*21?")
    assert out["goal_index"] == 2
    # This goal's results; the first goal's are kept with it.
    assert {k: r["output"] for k, r in out["results"].items()} == {"s1": 42}
    [earlier] = out["earlier_goals"]
    assert earlier["goal"] == 1
    assert (earlier["text"], earlier["status"]) == ("Fetch Lyon's record", "completed")
    assert earlier["answer"] == "Lyon's record is on file."
    assert earlier["results"]["s1"]["output"] == f"lyon={SECRET}"
    assert earlier["usage"]["planner"]["calls"] == 1
    assert out["usage"]["planner"]["calls"] == 1
    assert [(r["revision"], r.get("goal", 1)) for r in out["revisions"]] == [(1, 1), (2, 2)]
    assert [(m.type, m.text) for m in out["messages"] if m.type == "human"] == [
        ("human", "Fetch Lyon's record"),
        ("human", "Now what is 2*21?"),
    ]
    assert out["messages"][-1].text == "42"
    assert out["messages"][-1].additional_kwargs["planexec"]["goal"] == 2


async def test_the_planner_sees_earlier_answers_but_not_their_step_results() -> None:
    h = follow_up_harness()
    await h.run(human("Fetch Lyon's record"), NO_REVIEW)
    await h.run({"goal": "Now what is 2*21?"}, NO_REVIEW)
    first, second = (call.prompt for call in h.planner.calls)
    assert "<earlier_goals>" not in first
    assert "<earlier_goals>" in second
    assert "<asked>\nFetch Lyon's record\n</asked>" in second
    assert "<answer>\nLyon's record is on file.\n</answer>" in second
    assert "<goal>\nNow what is 2*21?\n</goal>" in second
    assert SECRET not in second
    assert all(SECRET not in call.prompt for call in h.replanner.calls[1:])


async def test_the_planner_sees_only_the_latest_earlier_goals_each_cut() -> None:
    goals = 5
    direct = [
        {
            "tool_calls": [
                {"name": "Plan", "args": {"steps": [], "answer": f"answer {n} " + "a" * 2000}}
            ]
        }
        for n in range(goals)
    ]
    h = Harness(planner=direct, tools=[calculator])
    for n in range(goals):
        out = await h.run(human(f"question {n}"), CTX)
        assert out["status"] == "completed", out.get("reason")
    last = h.planner.calls[-1].prompt
    assert last.count("<earlier_goal>") == 3
    assert "question 0" not in last
    assert all(f"<asked>\nquestion {n}\n</asked>" in last for n in (1, 2, 3))
    assert "a" * 1_001 not in last


async def test_budgets_apply_per_goal() -> None:
    failing = step("s1", args={"expression": "1/0"})
    h = Harness(
        planner=[plan_reply([failing]), plan_reply([failing])],
        replanner=[
            replan_reply("replan", steps=[step("s2", args={"expression": "1+1"})], reason="retry"),
            replan_reply("finish", answer="2"),
            replan_reply("replan", steps=[step("s2", args={"expression": "2+2"})], reason="retry"),
            replan_reply("finish", answer="4"),
        ],
        tools=[calculator],
    )
    budget = Context(review="never", max_replans=1, retry_initial_interval=0)
    first = await h.run(human("one"), budget)
    assert (first["status"], first["answer"]) == ("completed", "2")
    # The first goal used its one replan; the second has its own.
    second = await h.run(human("two"), budget)
    assert (second["status"], second["answer"]) == ("completed", "4")
    assert [r["source"] for r in second["revisions"]] == ["planner", "replanner"] * 2


async def test_an_approval_of_an_earlier_goal_never_approves_a_later_one() -> None:
    same = [step("s1", args={"expression": "12*4"})]
    h = Harness(
        planner=[plan_reply(same), plan_reply(same)],
        replanner=[replan_reply("finish", answer="48"), replan_reply("finish", answer="48")],
        tools=[calculator],
    )
    await h.run(human("12*4?"), CTX)
    await h.run(Command(resume={"type": "approve"}), CTX)
    out = await h.run(human("12*4 again?"), CTX)
    request = interrupt_of(out)
    assert request["revision"] == 2
    assert request["plan"] == {"steps": same}
    state = await h.state()
    assert not is_approved(state, lambda record: True)
    assert len(h.executor.calls) == 0
    done = await h.run(Command(resume={"type": "approve"}), CTX)
    assert [(r["revision"], r.get("goal", 1)) for r in done["reviews"]] == [(1, 1), (2, 2)]


async def test_a_follow_up_after_a_failed_goal_starts_afresh() -> None:
    h = Harness(
        planner=["not a plan"] * 3 + [plan_reply(FIRST)],
        replanner=[replan_reply("finish", answer="48")],
        tools=[calculator],
    )
    failed = await h.run(human("first"), NO_REVIEW)
    assert failed["status"] == "failed"
    out = await h.run(human("second"), NO_REVIEW)
    assert (out["status"], out["answer"]) == ("completed", "48")
    assert out["earlier_goals"][0]["status"] == "failed"
    assert "(failed: the planner did not produce" in h.planner.calls[-1].prompt


async def test_the_audit_trail_tells_the_goals_apart(both_apis: str) -> None:
    h = follow_up_harness()
    await h.run(human("Fetch Lyon's record"), CTX)
    await h.run(Command(resume={"type": "approve"}), CTX)
    await h.run(human("Now what is 2*21?"), CTX)
    await h.run(Command(resume={"type": "approve"}), CTX)
    if both_apis == "invoke":
        trail = audit_trail_sync(h.graph, "t1")
    else:
        trail = await audit_trail(h.graph, "t1")
    summary = [
        (r["type"], r.get("goal_index"), r.get("revision"))
        for r in trail
        if r["type"] in {"run_started", "plan_revision", "review_decision", "run_finished"}
    ]
    assert summary == [
        ("run_started", 1, None),
        ("plan_revision", 1, 1),
        ("review_decision", 1, 1),
        ("run_finished", 1, None),
        ("run_started", 2, None),
        ("plan_revision", 2, 2),
        ("review_decision", 2, 2),
        ("run_finished", 2, None),
    ]
    started = [r["goal"] for r in trail if r["type"] == "run_started"]
    assert started == ["Fetch Lyon's record", "Now what is 2*21?"]
    steps = [(r["step"], r["revision"]) for r in trail if r["type"] == "step_finished"]
    assert steps == [("s1", 1), ("s1", 2)]
    assert json.dumps(trail, default=str)


async def test_a_message_while_a_step_waits_for_approval_leaves_the_run_where_it_was() -> None:
    h = Harness(
        planner=[plan_reply(FIRST)],
        replanner=[replan_reply("finish", answer="48")],
        tools=[calculator],
    )
    gated = Context(review="never", approval_tools=["calculator"], retry_initial_interval=0)
    request = interrupt_of(await h.run(human("12*4?"), gated))
    assert request["type"] == "step_approval"
    again = interrupt_of(await h.run(human("is it done yet?"), gated))
    assert again == request
    state = await h.state()
    assert [m.text for m in state["messages"] if m.type == "human"] == ["12*4?", "is it done yet?"]
    assert state["goal"] == "12*4?"
    assert (state.get("reviews", []), state.get("results") or {}) == ([], {})
    done = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), gated)
    assert (done["status"], done["answer"], done["goal_index"]) == ("completed", "48", 1)
    assert len(h.planner.calls) == 1


async def test_a_follow_up_goal_starts_its_working_time_at_zero() -> None:
    h = follow_up_harness()
    await h.run(human("Fetch Lyon's record"), NO_REVIEW)
    assert (await h.state())["active_s"] > 0
    await h.run(human("Now what is 2*21?"), NO_REVIEW)
    history = await state_history(h.graph, config())
    [taken] = [s for s in history if s.values.get("goal_index") == 2 and s.next == ("planner",)]
    assert taken.values["active_s"] == 0.0
    assert taken.values["results"] == {}
    assert taken.values["usage"] == {}


async def test_a_follow_up_goals_first_plan_is_reviewed_as_a_first_plan() -> None:
    h = Harness(
        planner=[plan_reply(FIRST), plan_reply(FIRST), plan_reply(SECOND)],
        replanner=[
            replan_reply("finish", answer="48"),
            replan_reply("replan", steps=[step("s2", args={"expression": "1+1"})], reason="more"),
            replan_reply("finish", answer="2"),
        ],
        tools=[calculator],
    )
    await h.run(human("one"), CTX)
    await h.run(human("no, again"), CTX)
    await h.run(Command(resume={"type": "approve"}), CTX)
    request = interrupt_of(await h.run(human("two"), CTX))
    # Revision 3 is goal 2's first plan: no changes to show, whatever goal 1 had.
    assert (request["revision"], request["changes"]) == (3, None)
    revised = interrupt_of(await h.run(Command(resume={"type": "approve"}), CTX))
    assert revised["revision"] == 4
    assert revised["changes"] is not None
    # The replanner's history section counts this goal's revisions only.
    await h.run(Command(resume={"type": "approve"}), CTX)
    last = h.replanner.calls[-1].prompt
    assert "<earlier_revisions>" in last
    section = last.split("<earlier_revisions>")[1]
    assert "rejected" not in section
    assert "1 by the planner, 1 by the replanner" in section


async def test_model_call_budgets_count_each_goal_on_its_own() -> None:
    h = follow_up_harness()
    budget = Context(review="never", max_model_calls=2, retry_initial_interval=0)
    first = await h.run(human("Fetch Lyon's record"), budget)
    assert (first["status"], sum(u["calls"] for u in first["usage"].values())) == ("completed", 2)
    second = await h.run(human("Now what is 2*21?"), budget)
    assert (second["status"], second["answer"]) == ("completed", "42")
