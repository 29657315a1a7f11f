from typing import Any

import pytest
from langgraph.types import Command

from helpers import Harness, step
from planexec import Context
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.usefixtures("both_apis")


def direct(answer: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "Plan", "args": {"steps": [], "answer": answer}}]}


async def test_a_short_goal_is_answered_without_review_or_execution() -> None:
    h = Harness(planner=[direct("Hello! How can I help?")])
    out = await h.run({"goal": "Say hello"}, Context())
    assert "__interrupt__" not in out
    assert out["status"] == "completed"
    assert out["answer"] == "Hello! How can I help?"
    assert out["results"] == {}
    assert h.executor.calls == []
    assert h.replanner.calls == []
    assert out["revisions"][0]["plan"] == {"steps": []}
    assert out["revisions"][0]["reason"] == "answered directly: the goal needs no steps"
    assert "reply with an empty steps list" in h.planner.calls[0].prompt


async def test_with_direct_answers_off_the_planner_must_plan_and_the_plan_is_reviewed() -> None:
    h = Harness(
        planner=[
            direct("48"),
            plan_reply([step("s1", args={"expression": "12*4"})]),
        ],
        replanner=[replan_reply("finish", answer="48")],
    )
    context = Context(direct_answers=False)
    out = await h.run({"goal": "12*4?"}, context)
    assert out["__interrupt__"][0].value["type"] == "plan_review"
    first, second = h.planner.calls
    assert "Always write at least one step" in first.prompt
    assert "direct answers are off: write a plan with at least one step" in second.prompt
    out = await h.run(Command(resume={"type": "approve"}), context)
    assert out["status"] == "completed"
    assert out["results"]["s1"]["output"] == 48


async def test_a_plan_with_steps_is_reviewed_even_when_it_also_answers() -> None:
    reply = {
        "tool_calls": [
            {
                "name": "Plan",
                "args": {"steps": [step("s1", args={"expression": "1+1"})], "answer": "2"},
            }
        ]
    }
    h = Harness(planner=[reply])
    out = await h.run({"goal": "1+1?"}, Context())
    assert out["__interrupt__"][0].value["type"] == "plan_review"
    assert out.get("status") is None
    assert out["answer"] is None


async def test_an_empty_plan_without_an_answer_is_sent_back() -> None:
    h = Harness(planner=[plan_reply([]), direct("hi")])
    out = await h.run({"goal": "hi"}, Context())
    assert out["status"] == "completed"
    assert "the plan has no steps" in h.planner.calls[1].prompt
