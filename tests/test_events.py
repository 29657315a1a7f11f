from typing import Any

import pytest
from langgraph.types import Command
from pydantic import TypeAdapter

from helpers import Harness, config, step, stream
from planexec import Context
from planexec.events import _TYPES, EVENT_SCHEMAS, EVENT_VERSION, emit, is_event
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.usefixtures("both_apis")


async def events_of(h: Harness, value: Any, context: Context) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async for chunk in stream(h.graph, value, config(), context=context, stream_mode="custom"):
        assert is_event(chunk)
        seen.append(chunk)
    return seen


def check_schema(event: dict[str, Any]) -> None:
    TypeAdapter(_TYPES[event["event"]]).validate_python(event, strict=True)


async def test_a_reviewed_run_with_a_failure_and_a_replan_tells_its_story_in_order() -> None:
    plan = [step("s1", args={"expression": "2*3"}), step("s2", args={"expression": "1/0"})]
    fix = [step("s3", args={"expression": "{{s1}} + 1"}, depends_on=["s1"])]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[
            replan_reply("replan", steps=fix, reason="s2 divides by zero"),
            replan_reply("finish", answer="7"),
        ],
    )
    context = Context(retry_initial_interval=0)
    first = await events_of(h, {"goal": "g"}, context)
    assert [e["event"] for e in first] == ["plan_ready", "review_requested"]
    second = await events_of(h, Command(resume={"type": "approve"}), context)
    names = [e["event"] for e in second]
    # Resuming the review did not announce it again.
    assert names[0] == "review_decided"
    assert "review_requested" in names  # the revised plan is reviewed again
    assert names[-1] == "review_requested"
    finished = {e["step"]: e["status"] for e in second if e["event"] == "step_finished"}
    assert finished == {"s1": "done", "s2": "failed"}
    replan = next(e for e in second if e["event"] == "replan")
    assert replan["diff"]["added"] == ["s3"]
    assert replan["reason"] == "s2 divides by zero"
    third = await events_of(h, Command(resume={"type": "approve"}), context)
    assert [e["event"] for e in third] == [
        "review_decided",
        "step_started",
        "step_finished",
        "run_finished",
    ]
    assert third[-1]["status"] == "completed"
    assert third[-1]["answer"] == "7"
    for event in first + second + third:
        assert event["planexec"] == EVENT_VERSION
        check_schema(event)


async def test_a_budget_warning_comes_once_when_use_passes_80_percent() -> None:
    chain = [
        step(f"s{i}", args={"expression": f"{i}+1"}, depends_on=[f"s{i - 1}"] if i > 1 else [])
        for i in range(1, 6)
    ]
    h = Harness(planner=[plan_reply(chain)], replanner=[replan_reply("finish", answer="done")])
    context = Context(review="never", max_steps_executed=5)
    seen = await events_of(h, {"goal": "g"}, context)
    warnings = [e for e in seen if e["event"] == "budget_warning"]
    assert len(warnings) == 1
    assert warnings[0]["budget"] == "max_steps_executed"
    assert (warnings[0]["used"], warnings[0]["limit"], warnings[0]["fraction"]) == (4.0, 5.0, 0.8)
    check_schema(warnings[0])
    assert seen[-1]["event"] == "run_finished"
    assert seen[-1]["status"] == "completed"


async def test_steps_waiting_for_approval_are_announced() -> None:
    plan = [step("w", tool="write_file", args={"path": "a.txt", "content": "x"})]
    h = Harness(planner=[plan_reply(plan)], replanner=[replan_reply("finish", answer="ok")])
    seen = await events_of(h, {"goal": "g"}, Context(review="never", approval_tools=["write_file"]))
    assert seen[-1] == {"planexec": EVENT_VERSION, "event": "approval_requested", "steps": ["w"]}


async def test_a_failed_run_announces_its_end_with_the_reason() -> None:
    h = Harness(planner=[{"text": "no plan here"}] * 3)
    seen = await events_of(h, {"goal": "g"}, Context())
    assert seen[-1]["event"] == "run_finished"
    assert seen[-1]["status"] == "failed"
    assert "did not produce a valid plan" in seen[-1]["reason"]


def test_every_event_has_a_json_schema_and_unknown_events_are_refused() -> None:
    assert set(EVENT_SCHEMAS) == set(_TYPES)
    for name, schema in EVENT_SCHEMAS.items():
        assert {"planexec", "event"} <= set(schema["required"]), name
    with pytest.raises(ValueError, match="unknown planexec event"):
        emit(lambda _: None, "step_exploded", step="s1")
