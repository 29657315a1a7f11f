"""Issue 3, item 4: replan policies, plan revisions and their review."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.tools import BaseTool, ToolException, tool
from langgraph.types import Command

from helpers import Harness, context, step
from planexec import Context
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.usefixtures("both_apis")

CONTINUE = '"continue": the plan is on track'


def tools(calls: list[str]) -> list[BaseTool]:
    @tool
    def fetch(name: str) -> str:
        """Fetch a named value."""
        calls.append(name)
        return f"value of {name}"

    @tool
    def broken(name: str) -> str:
        """Always fail."""
        calls.append(name)
        raise ToolException(f"{name} is unavailable")

    return [fetch, broken]


def fetch(id: str, depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    return step(id, tool="fetch", args={"name": id}, depends_on=depends_on)


def statuses(out: dict[str, Any]) -> dict[str, str]:
    return {i: r["status"] for i, r in out["results"].items()}


def system_prompt(call: Any) -> str:
    return str(call.messages[0].text)


# --- on_failure ---------------------------------------------------------------------


async def test_on_failure_asks_the_replanner_once_at_the_end_of_a_good_plan() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([fetch("a"), fetch("b"), fetch("c", depends_on=("a", "b"))])],
        replanner=[replan_reply("finish", answer="abc")],
        tools=tools(calls),
    )
    out = await h.run({"goal": "abc"}, context())
    assert out["status"] == "completed"
    assert out["answer"] == "abc"
    assert len(h.replanner.calls) == 1
    assert sorted(calls) == ["a", "b", "c"]
    prompt = h.replanner.calls[0].prompt
    for name in ("a", "b", "c"):
        assert f"value of {name}" in prompt
    assert CONTINUE not in system_prompt(h.replanner.calls[0])


async def test_on_failure_replans_after_a_failure_and_records_the_revision() -> None:
    calls: list[str] = []
    plan = [
        fetch("a"),
        step("b", tool="broken", args={"name": "b"}),
        fetch("c", depends_on=("a", "b")),
    ]
    new_steps = [fetch("b2"), fetch("c2", depends_on=("a", "b2"))]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[
            replan_reply("replan", steps=new_steps, reason="b is down; fetch b2 instead"),
            replan_reply("finish", answer="a and b2"),
        ],
        tools=tools(calls),
    )
    out = await h.run({"goal": "abc"}, context())
    assert out["status"] == "completed"
    assert len(h.replanner.calls) == 2
    first = h.replanner.calls[0].prompt
    assert "b is unavailable" in first
    assert "value of a" in first
    assert statuses(out) == {
        "a": "done",
        "b": "failed",
        "c": "skipped",
        "b2": "done",
        "c2": "done",
    }
    # a ran once: the revision kept it as it ran.
    assert calls.count("a") == 1
    assert [s["id"] for s in out["plan"]["steps"]] == ["a", "b2", "c2"]
    revision = out["revisions"][-1]
    assert revision["revision"] == 2
    assert revision["source"] == "replanner"
    assert revision["reason"] == "b is down; fetch b2 instead"
    assert revision["diff"] == {
        "added": ["b2", "c2"],
        "removed": ["b", "c"],
        "changed": [],
        "unchanged": ["a"],
    }
    assert revision["plan"] == out["plan"]


# --- after_each_step ----------------------------------------------------------------


async def test_after_each_step_asks_the_replanner_after_every_step() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([fetch("a"), fetch("b"), fetch("c", depends_on=("a", "b"))])],
        replanner=[
            replan_reply("continue"),
            replan_reply("continue"),
            replan_reply("finish", answer="abc"),
        ],
        tools=tools(calls),
    )
    out = await h.run({"goal": "abc"}, context(replan_policy="after_each_step"))
    assert out["status"] == "completed"
    assert out["answer"] == "abc"
    assert calls == ["a", "b", "c"]
    assert len(h.replanner.calls) == 3
    # Each call saw one more finished step than the one before.
    for number, call in enumerate(h.replanner.calls, start=1):
        assert call.prompt.count('status="done"') == number
    # "continue" is offered only while steps remain.
    assert CONTINUE in system_prompt(h.replanner.calls[0])
    assert CONTINUE in system_prompt(h.replanner.calls[1])
    assert CONTINUE not in system_prompt(h.replanner.calls[2])
    assert len(out["revisions"]) == 1


async def test_after_each_step_continue_with_nothing_left_is_sent_back() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([fetch("a")])],
        replanner=[replan_reply("continue"), replan_reply("finish", answer="a")],
        tools=tools(calls),
    )
    out = await h.run({"goal": "a"}, context(replan_policy="after_each_step"))
    assert out["status"] == "completed"
    assert len(h.replanner.calls) == 2
    assert "no step is left to run" in h.replanner.calls[1].prompt


async def test_after_each_step_can_revise_midway() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([fetch("a"), fetch("b", depends_on=("a",))])],
        replanner=[
            replan_reply("replan", steps=[fetch("z", depends_on=("a",))], reason="z, not b"),
            replan_reply("finish", answer="a then z"),
        ],
        tools=tools(calls),
    )
    out = await h.run({"goal": "az"}, context(replan_policy="after_each_step"))
    assert out["status"] == "completed"
    assert calls == ["a", "z"]
    assert out["revisions"][-1]["diff"]["removed"] == ["b"]
    assert "b" not in out["results"]


# --- never --------------------------------------------------------------------------


async def test_never_answers_from_the_sink_step_without_a_replanner() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([fetch("a"), fetch("b"), fetch("c", depends_on=("a", "b"))])],
        tools=tools(calls),
    )
    out = await h.run({"goal": "abc"}, context(replan_policy="never"))
    assert out["status"] == "completed"
    assert out["answer"] == "value of c"
    assert h.replanner.calls == []


async def test_never_answers_with_every_sink_when_there_are_several() -> None:
    calls: list[str] = []
    h = Harness(planner=[plan_reply([fetch("a"), fetch("b")])], tools=tools(calls))
    out = await h.run({"goal": "ab"}, context(replan_policy="never"))
    assert out["status"] == "completed"
    assert out["answer"] == "a: value of a\nb: value of b"
    assert h.replanner.calls == []


async def test_never_fails_on_a_failed_step() -> None:
    calls: list[str] = []
    plan = [fetch("a"), step("b", tool="broken", args={"name": "b"}), fetch("c", depends_on=("b",))]
    h = Harness(planner=[plan_reply(plan)], tools=tools(calls))
    out = await h.run({"goal": "abc"}, context(replan_policy="never"))
    assert out["status"] == "failed"
    assert "step b failed" in out["reason"]
    assert "b is unavailable" in out["reason"]
    assert out.get("answer") is None
    assert statuses(out) == {"a": "done", "b": "failed", "c": "skipped"}
    assert h.replanner.calls == []


# --- revisions may not rewrite history -----------------------------------------------


async def test_a_revision_changing_a_finished_step_is_sent_back() -> None:
    calls: list[str] = []
    changed_a = step("a", tool="fetch", args={"name": "other"})
    h = Harness(
        planner=[plan_reply([fetch("a"), step("b", tool="broken", args={"name": "b"})])],
        replanner=[
            replan_reply("replan", steps=[changed_a, fetch("b2")]),
            replan_reply("replan", steps=[fetch("b2")]),
            replan_reply("finish", answer="a, b2"),
        ],
        tools=tools(calls),
    )
    out = await h.run({"goal": "ab"}, context())
    assert out["status"] == "completed"
    retry = h.replanner.calls[1].prompt
    assert "<invalid_reply>" in retry
    assert "step a: the step has finished; it cannot be changed" in retry
    assert calls.count("a") == 1
    assert out["results"]["a"]["args"] == {"name": "a"}
    assert [s["id"] for s in out["plan"]["steps"]] == ["a", "b2"]


async def test_a_revision_reusing_a_failed_step_id_is_sent_back() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([fetch("a"), step("b", tool="broken", args={"name": "b"})])],
        replanner=[
            replan_reply("replan", steps=[fetch("b")]),
            replan_reply("replan", steps=[fetch("b2")]),
            replan_reply("finish", answer="a, b2"),
        ],
        tools=tools(calls),
    )
    out = await h.run({"goal": "ab"}, context())
    assert out["status"] == "completed"
    retry = h.replanner.calls[1].prompt
    assert "step b: the id belongs to an earlier step that failed" in retry
    assert out["results"]["b"]["status"] == "failed"
    assert "b2" in out["results"]


async def test_a_finished_step_restated_unchanged_is_kept_once() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([fetch("a"), step("b", tool="broken", args={"name": "b"})])],
        replanner=[
            replan_reply("replan", steps=[fetch("a"), fetch("b2", depends_on=("a",))]),
            replan_reply("finish", answer="a, b2"),
        ],
        tools=tools(calls),
    )
    out = await h.run({"goal": "ab"}, context())
    assert out["status"] == "completed"
    assert len(h.replanner.calls) == 2
    assert [s["id"] for s in out["plan"]["steps"]] == ["a", "b2"]
    assert calls.count("a") == 1


async def test_an_invalid_revision_fails_the_run_after_max_plan_attempts() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([step("b", tool="broken", args={"name": "b"})])],
        replanner=[replan_reply("replan", steps=[fetch("b")])] * 2,
        tools=tools(calls),
    )
    out = await h.run({"goal": "b"}, context(max_plan_attempts=2))
    assert out["status"] == "failed"
    assert "the replanner did not produce a valid plan in 2 attempt(s)" in out["reason"]
    assert len(h.replanner.calls) == 2


async def test_max_replans_bounds_revisions() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([step("b", tool="broken", args={"name": "b"})])],
        replanner=[replan_reply("replan", steps=[step("b2", tool="broken", args={"name": "b2"})])],
        tools=tools(calls),
    )
    out = await h.run({"goal": "b"}, context(max_replans=1))
    assert out["status"] == "budget_exhausted"
    assert "max_replans=1" in out["reason"]
    assert len(h.replanner.calls) == 1
    assert calls == ["b", "b2"]


# --- a revision is reviewed again ----------------------------------------------------


async def test_a_revised_plan_is_reviewed_again_with_its_changes() -> None:
    calls: list[str] = []
    plan = [fetch("a"), step("b", tool="broken", args={"name": "b"}), fetch("c", depends_on=("b",))]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[
            replan_reply("replan", steps=[fetch("b2")], reason="b failed"),
            replan_reply("finish", answer="a, b2"),
        ],
        tools=tools(calls),
    )
    ctx = Context(review="always", retry_initial_interval=0.0)
    first = await h.run({"goal": "abc"}, ctx)
    assert first["__interrupt__"][0].value["revision"] == 1
    assert first["__interrupt__"][0].value["changes"] is None
    second = await h.run(Command(resume={"type": "approve"}), ctx)
    review = second["__interrupt__"][0].value
    assert review["type"] == "plan_review"
    assert review["revision"] == 2
    assert review["source"] == "replanner"
    assert review["reason"] == "b failed"
    assert review["changes"] == {
        "added": ["b2"],
        "removed": ["b", "c"],
        "changed": [],
        "unchanged": ["a"],
    }
    assert review["finished"] == ["a"]
    assert [s["id"] for s in review["plan"]["steps"]] == ["a", "b2"]
    # Nothing of the revision ran before it was approved.
    assert "b2" not in calls
    out = await h.run(Command(resume={"type": "approve"}), ctx)
    assert out["status"] == "completed"
    assert calls.count("b2") == 1
    assert [r["revision"] for r in out["reviews"]] == [1, 2]


async def test_a_rejected_revision_goes_back_to_the_replanner_with_the_feedback() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply([fetch("a"), step("b", tool="broken", args={"name": "b"})])],
        replanner=[
            replan_reply("replan", steps=[fetch("b2")]),
            replan_reply("replan", steps=[fetch("b3")]),
            replan_reply("finish", answer="a, b3"),
        ],
        tools=tools(calls),
    )
    ctx = Context(review="always", retry_initial_interval=0.0)
    await h.run({"goal": "ab"}, ctx)
    await h.run(Command(resume={"type": "approve"}), ctx)
    again = await h.run(Command(resume={"type": "reject", "message": "use b3, not b2"}), ctx)
    review = again["__interrupt__"][0].value
    assert review["revision"] == 3
    assert review["finished"] == ["a"]
    assert "use b3, not b2" in h.replanner.calls[1].prompt
    assert h.planner.calls[1:] == []
    out = await h.run(Command(resume={"type": "approve"}), ctx)
    assert out["status"] == "completed"
    assert "b2" not in calls
    assert calls.count("b3") == 1
