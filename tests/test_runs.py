import asyncio
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool, tool
from langgraph.types import Command

from helpers import Harness, config, get_state, interrupt_of, step, update_state
from planexec import Context, InvalidGoalError, TransientError
from planexec.plan import diff_plans, plan_hash
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.state import merge_results
from planexec.tools import calculator, file_tools

pytestmark = pytest.mark.usefixtures("both_apis")

FAST = {"retry_initial_interval": 0}
NO_REVIEW = Context(review="never", **FAST)
NO_REVIEW_NO_REPLAN = Context(review="never", replan_policy="never", **FAST)


def calc(id: str, expression: str, depends_on: tuple[str, ...] = (), **kw: Any) -> dict[str, Any]:
    return step(id, args={"expression": expression}, depends_on=depends_on, **kw)


def outputs(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v["output"] for k, v in out["results"].items()}


def statuses(out: dict[str, Any]) -> dict[str, str]:
    return {k: v["status"] for k, v in out["results"].items()}


def recording_tool() -> tuple[BaseTool, list[str]]:
    """A tool with a side effect the test can see: every call is recorded."""
    launched: list[str] = []

    @tool
    def launch(target: str) -> str:
        """Launch the rocket at a target. Irreversible."""
        launched.append(target)
        return f"launched at {target}"

    return launch, launched


def flaky_tool(
    make_error: Callable[[], BaseException], failures: int
) -> tuple[BaseTool, list[str]]:
    """A tool that fails `failures` times, then answers."""
    calls: list[str] = []

    @tool
    async def fetch(key: str) -> str:
        """Fetch the value stored under a key."""
        calls.append(key)
        if len(calls) <= failures:
            raise make_error()
        return f"value of {key}"

    return fetch, calls


# --- plan review --------------------------------------------------------------------------

PLAN_STEPS = [
    calc("s1", "12*4", description="Multiply twelve by four"),
    calc("s2", "{{s1}} + 5", depends_on=("s1",), description="Add five"),
]
PLAN = {"steps": PLAN_STEPS}


async def test_approve_runs_the_plan() -> None:
    h = Harness(
        planner=[plan_reply(PLAN_STEPS)],
        replanner=[replan_reply("finish", answer="The result is 53.")],
        tools=[calculator],
    )
    paused = await h.run({"goal": "Compute 12*4+5"})
    request = interrupt_of(paused)
    assert request["type"] == "plan_review"
    assert request["goal"] == "Compute 12*4+5"
    assert request["plan"] == PLAN
    assert request["revision"] == 1
    assert request["source"] == "planner"
    assert request["plan_hash"] == plan_hash(PLAN)
    assert request["allowed_decisions"] == ["approve", "edit", "reject", "cancel"]
    assert "errors" not in request
    assert h.executor.calls == []
    assert h.replanner.calls == []

    out = await h.run(Command(resume={"type": "approve"}))
    assert out["status"] == "completed"
    assert out["answer"] == "The result is 53."
    assert outputs(out) == {"s1": 48, "s2": 53}
    assert out["results"]["s2"]["args"] == {"expression": "48 + 5"}
    assert [(r["revision"], r["decision"], r["plan_hash"]) for r in out["reviews"]] == [
        (1, "approve", plan_hash(PLAN))
    ]
    assert len(h.planner.calls) == 1
    assert h.executor.calls == []
    assert len(h.replanner.calls) == 1


async def test_edit_runs_the_edited_plan() -> None:
    h = Harness(
        planner=[plan_reply(PLAN_STEPS)],
        replanner=[replan_reply("finish", answer="7")],
        tools=[calculator],
    )
    await h.run({"goal": "Compute 12*4+5"})
    edited = {"steps": [calc("s1", "3+4", description="Add three and four")]}
    out = await h.run(Command(resume={"type": "edit", "plan": edited, "message": "simpler"}))
    assert out["status"] == "completed"
    assert outputs(out) == {"s1": 7}
    assert out["plan"] == edited
    first, second = out["revisions"]
    assert (first["revision"], first["source"]) == (1, "planner")
    assert (second["revision"], second["source"], second["reason"]) == (2, "human", "simpler")
    assert second["plan"] == edited
    assert second["diff"] == {"added": [], "removed": ["s2"], "changed": ["s1"], "unchanged": []}
    [record] = out["reviews"]
    assert (record["revision"], record["decision"], record["message"]) == (1, "edit", "simpler")
    assert record["plan_hash"] == plan_hash(PLAN)
    assert "3+4" in h.replanner.calls[0].prompt


async def test_an_edit_that_changes_nothing_is_an_approval() -> None:
    h = Harness(
        planner=[plan_reply(PLAN_STEPS)],
        replanner=[replan_reply("finish", answer="53")],
        tools=[calculator],
    )
    await h.run({"goal": "Compute 12*4+5"})
    out = await h.run(Command(resume={"type": "edit", "plan": PLAN}))
    assert out["status"] == "completed"
    assert len(out["revisions"]) == 1
    assert [r["decision"] for r in out["reviews"]] == ["approve"]


async def test_reject_then_approve() -> None:
    second_plan = [calc("s1", "12*4+5", description="Compute it in one go")]
    h = Harness(
        planner=[plan_reply(PLAN_STEPS), plan_reply(second_plan)],
        replanner=[replan_reply("finish", answer="53")],
        tools=[calculator],
    )
    await h.run({"goal": "Compute 12*4+5"})
    paused = await h.run(Command(resume={"type": "reject", "message": "Use a single step"}))
    request = interrupt_of(paused)
    assert request["revision"] == 2
    assert request["plan"] == {"steps": second_plan}
    assert request["changes"] == diff_plans(PLAN, {"steps": second_plan})

    first, again = h.planner.calls
    assert "<reviewer_feedback>" not in first.prompt
    assert "<reviewer_feedback>" in again.prompt
    assert "Use a single step" in again.prompt
    previous = again.prompt.split("<previous_plan>")[1].split("</previous_plan>")[0]
    assert json.loads(previous) == PLAN
    assert h.executor.calls == []

    out = await h.run(Command(resume={"type": "approve"}))
    assert out["status"] == "completed"
    assert outputs(out) == {"s1": 53}
    assert [(r["revision"], r["decision"], r["message"]) for r in out["reviews"]] == [
        (1, "reject", "Use a single step"),
        (2, "approve", None),
    ]
    assert [r["source"] for r in out["revisions"]] == ["planner", "planner"]
    assert out["revisions"][1]["reason"] == "rewritten after the reviewer's feedback"


async def test_cancel_ends_the_run_without_running_anything() -> None:
    h = Harness(planner=[plan_reply(PLAN_STEPS)], tools=[calculator])
    await h.run({"goal": "Compute 12*4+5"})
    out = await h.run(Command(resume={"type": "cancel", "message": "not needed"}))
    assert out["status"] == "cancelled"
    assert out["reason"] == "cancelled by the reviewer: not needed"
    assert out.get("results", {}) == {}
    assert out.get("answer") is None
    assert [r["decision"] for r in out["reviews"]] == ["cancel"]
    assert h.executor.calls == []
    assert h.replanner.calls == []


@pytest.mark.parametrize(
    ("decision", "error"),
    [
        pytest.param(
            "approve",
            """a decision must be an object such as {"type": "approve"}, not 'approve'""",
            id="not a dict",
        ),
        pytest.param(
            ["approve"],
            """a decision must be an object such as {"type": "approve"}, not ['approve']""",
            id="a list",
        ),
        pytest.param(
            {"type": "maybe"},
            "unknown decision type 'maybe': use one of approve, edit, reject, cancel",
            id="unknown type",
        ),
        pytest.param(
            {"decision": "approve"},
            "unknown decision type None: use one of approve, edit, reject, cancel",
            id="no type",
        ),
        pytest.param(
            {"type": "reject"}, "reject decision: message: Field required", id="reject no message"
        ),
        pytest.param(
            {"type": "reject", "message": ""},
            "reject decision: message: String should have at least 1 character",
            id="reject empty message",
        ),
        pytest.param({"type": "edit"}, "edit decision: plan: Field required", id="edit no plan"),
    ],
)
async def test_a_malformed_decision_asks_again_and_changes_nothing(
    decision: Any, error: str
) -> None:
    h = Harness(
        planner=[plan_reply(PLAN_STEPS)],
        replanner=[replan_reply("finish", answer="53")],
        tools=[calculator],
    )
    first = interrupt_of(await h.run({"goal": "Compute 12*4+5"}))
    before = await h.state()

    request = interrupt_of(await h.run(Command(resume=decision)))
    assert request["errors"] == [error]
    assert {k: v for k, v in request.items() if k != "errors"} == first
    after = await h.state()
    for key in ("plan", "revisions", "reviews", "results", "status"):
        assert after.get(key) == before.get(key), key
    assert len(h.planner.calls) == 1
    assert h.executor.calls == []

    out = await h.run(Command(resume={"type": "approve"}))
    assert out["status"] == "completed"
    assert outputs(out) == {"s1": 48, "s2": 53}
    assert [r["decision"] for r in out["reviews"]] == ["approve"]


@pytest.mark.parametrize(
    ("plan", "error"),
    [
        pytest.param(
            {"steps": [step("s1", tool="search", args={"q": "x"})]},
            "edited plan: step s1: unknown tool 'search' (available: calculator)",
            id="unknown tool",
        ),
        pytest.param(
            {"steps": [{"id": "s1", "tool": None}]},
            "edited plan: step s1: description: Field required",
            id="not a plan",
        ),
        pytest.param(
            {"steps": [calc("s1", "1"), calc("s2", "{{s1}}")]},
            "edited plan: step s2: args use {{s1}} but depends_on does not list 's1'",
            id="undeclared reference",
        ),
        pytest.param({"steps": []}, "edited plan: the plan has no steps", id="empty"),
    ],
)
async def test_an_invalid_edited_plan_asks_again_and_changes_nothing(
    plan: dict[str, Any], error: str
) -> None:
    h = Harness(
        planner=[plan_reply(PLAN_STEPS)],
        replanner=[replan_reply("finish", answer="53")],
        tools=[calculator],
    )
    await h.run({"goal": "Compute 12*4+5"})
    before = await h.state()
    request = interrupt_of(await h.run(Command(resume={"type": "edit", "plan": plan})))
    assert request["errors"] == [error]
    assert request["plan"] == PLAN
    after = await h.state()
    for key in ("plan", "revisions", "reviews", "results"):
        assert after.get(key) == before.get(key), key

    out = await h.run(Command(resume={"type": "approve"}))
    assert out["status"] == "completed"
    assert outputs(out) == {"s1": 48, "s2": 53}


async def test_a_decision_on_a_stale_plan_hash_is_refused() -> None:
    h = Harness(
        planner=[plan_reply(PLAN_STEPS)],
        replanner=[replan_reply("finish", answer="53")],
        tools=[calculator],
    )
    shown = interrupt_of(await h.run({"goal": "Compute 12*4+5"}))["plan_hash"]
    stale = "0123456789abcdef"
    request = interrupt_of(await h.run(Command(resume={"type": "approve", "plan_hash": stale})))
    assert request["errors"] == [
        f"the decision is for plan {stale}, but the plan under review is {shown}; "
        "decide on the plan shown"
    ]
    assert (await h.state()).get("reviews", []) == []
    assert h.executor.calls == []
    out = await h.run(Command(resume={"type": "approve", "plan_hash": shown}))
    assert out["status"] == "completed"


@pytest.mark.parametrize(
    "value", [{"goal": ""}, {"goal": "   \n\t"}, {}, {"goal": None}, {"goal": 42}]
)
async def test_a_missing_or_empty_goal_is_refused_before_any_model_call(value: Any) -> None:
    h = Harness(planner=[plan_reply(PLAN_STEPS)], tools=[calculator])
    with pytest.raises(InvalidGoalError, match="the goal is empty"):
        await h.run(value)
    assert h.planner.calls == []


# --- invalid planner replies -----------------------------------------------------------------


async def test_an_invalid_plan_is_sent_back_with_its_errors() -> None:
    h = Harness(
        planner=[
            plan_reply([step("s1", tool="search", args={"q": "weather"})]),
            plan_reply([calc("s1", "6*7")]),
        ],
        tools=[calculator],
    )
    out = await h.run({"goal": "Multiply"}, NO_REVIEW_NO_REPLAN)
    assert out["status"] == "completed"
    assert out["answer"] == "42"
    first, second = h.planner.calls
    assert "<invalid_reply>" not in first.prompt
    section = second.prompt.split("<invalid_reply>")[1]
    assert "- step s1: unknown tool 'search' (available: calculator)" in section
    assert '"tool": "search"' in section.split("<reply>")[1]
    assert len(out["revisions"]) == 1
    assert out["usage"]["planner"]["calls"] == 2


async def test_a_reply_without_a_plan_is_sent_back() -> None:
    h = Harness(planner=["I would rather chat.", plan_reply([calc("s1", "6*7")])])
    out = await h.run({"goal": "Multiply"}, NO_REVIEW_NO_REPLAN)
    assert out["status"] == "completed"
    assert "the reply has no Plan call; it said: 'I would rather chat.'" in (
        h.planner.calls[1].prompt
    )


async def test_the_planner_runs_out_of_attempts() -> None:
    bad = plan_reply([step("s1", tool="search", args={"q": "weather"})])
    h = Harness(planner=[bad, bad, bad], tools=[calculator])
    out = await h.run({"goal": "Multiply"}, Context(max_plan_attempts=2))
    assert "__interrupt__" not in out
    assert out["status"] == "failed"
    assert out["reason"] == (
        "the planner did not produce a valid plan in 2 attempt(s): "
        "step s1: unknown tool 'search' (available: calculator)"
    )
    assert len(h.planner.calls) == 2
    assert h.executor.calls == []
    assert out.get("revisions", []) == []


# --- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_error",
    [
        pytest.param(lambda: TransientError("try later"), id="TransientError"),
        pytest.param(lambda: ConnectionError("reset by peer"), id="ConnectionError"),
    ],
)
async def test_a_transient_failure_is_retried(make_error: Callable[[], BaseException]) -> None:
    fetch, calls = flaky_tool(make_error, failures=1)
    h = Harness(planner=[plan_reply([step("s1", tool="fetch", args={"key": "k"})])], tools=[fetch])
    out = await h.run({"goal": "fetch k"}, NO_REVIEW_NO_REPLAN)
    assert out["status"] == "completed"
    result = out["results"]["s1"]
    assert (result["status"], result["output"], result["attempts"]) == ("done", "value of k", 2)
    assert calls == ["k", "k"]


async def test_a_transient_failure_that_persists_fails_after_step_attempts() -> None:
    fetch, calls = flaky_tool(lambda: TransientError("still down"), failures=99)
    h = Harness(planner=[plan_reply([step("s1", tool="fetch", args={"key": "k"})])], tools=[fetch])
    context = Context(review="never", replan_policy="never", step_attempts=3, **FAST)
    out = await h.run({"goal": "fetch k"}, context)
    result = out["results"]["s1"]
    assert (result["status"], result["attempts"]) == ("failed", 3)
    assert result["error"] == "TransientError: still down"
    assert len(calls) == 3
    assert out["status"] == "failed"


async def test_each_retry_waits_twice_as_long_as_the_one_before() -> None:
    began: list[float] = []

    @tool
    async def fetch(key: str) -> str:
        """Fetch the value stored under a key."""
        began.append(time.monotonic())
        if len(began) < 4:
            raise TransientError("try later")
        return f"value of {key}"

    h = Harness(planner=[plan_reply([step("s1", tool="fetch", args={"key": "k"})])], tools=[fetch])
    context = Context(
        review="never", replan_policy="never", step_attempts=4, retry_initial_interval=0.05
    )
    out = await h.run({"goal": "fetch k"}, context)
    assert out["results"]["s1"]["attempts"] == 4
    waits = [later - earlier for earlier, later in itertools.pairwise(began)]
    # Lower bounds only: a busy machine makes a wait longer, never shorter.
    for wait, expected in zip(waits, (0.05, 0.1, 0.2), strict=True):
        assert wait >= 0.9 * expected, waits


async def test_a_non_transient_failure_fails_at_once() -> None:
    fetch, calls = flaky_tool(lambda: ValueError("no such key"), failures=99)
    h = Harness(planner=[plan_reply([step("s1", tool="fetch", args={"key": "k"})])], tools=[fetch])
    out = await h.run({"goal": "fetch k"}, NO_REVIEW_NO_REPLAN)
    result = out["results"]["s1"]
    assert (result["status"], result["attempts"]) == ("failed", 1)
    assert result["error"] == "ValueError: no such key"
    assert result["output"] is None
    assert calls == ["k"]
    assert out["status"] == "failed"
    assert out["reason"] == "step s1 failed: ValueError: no such key"


async def test_an_attempt_that_times_out_is_retried() -> None:
    attempts: list[int] = []

    @tool
    async def slow(n: int) -> int:
        """Return n, slowly the first time."""
        attempts.append(n)
        if len(attempts) == 1:
            await asyncio.sleep(30)
        return n

    h = Harness(planner=[plan_reply([step("s1", tool="slow", args={"n": 5})])], tools=[slow])
    context = Context(review="never", replan_policy="never", tool_timeouts={"slow": 0.5}, **FAST)
    out = await h.run({"goal": "slow"}, context)
    result = out["results"]["s1"]
    assert (result["status"], result["output"], result["attempts"]) == ("done", 5, 2)


# --- replanning -------------------------------------------------------------------------------


async def test_a_failed_step_is_replanned_around() -> None:
    steps = [calc("s1", "6*7"), calc("s2", "{{s1}}/0", ("s1",), description="Divide by zero")]
    new_steps = [calc("s3", "{{s1}}/2", ("s1",), description="Halve it")]
    h = Harness(
        planner=[plan_reply(steps)],
        replanner=[
            replan_reply("replan", steps=new_steps, reason="halve instead of dividing by zero"),
            replan_reply("finish", answer="Half of 42 is 21.", reason="done"),
        ],
        tools=[calculator],
    )
    await h.run({"goal": "Halve 6*7"})
    paused = await h.run(Command(resume={"type": "approve"}))

    [asked] = h.replanner.calls
    assert '<result step="s2" status="failed">\nCalculatorError: division by zero' in asked.prompt
    assert '<result step="s1" status="done">\n42\n</result>' in asked.prompt

    request = interrupt_of(paused)
    assert request["revision"] == 2
    assert request["source"] == "replanner"
    assert request["reason"] == "halve instead of dividing by zero"
    assert request["finished"] == ["s1"]
    assert request["plan"] == {"steps": [steps[0], *new_steps]}
    assert request["changes"] == {
        "added": ["s3"],
        "removed": ["s2"],
        "changed": [],
        "unchanged": ["s1"],
    }

    out = await h.run(Command(resume={"type": "approve"}))
    assert out["status"] == "completed"
    assert out["answer"] == "Half of 42 is 21."
    assert statuses(out) == {"s1": "done", "s2": "failed", "s3": "done"}
    assert out["results"]["s3"]["output"] == 21
    assert out["results"]["s3"]["revision"] == 2
    assert out["results"]["s1"]["revision"] == 1
    assert '<result step="s3" status="done">\n21\n</result>' in h.replanner.calls[1].prompt
    revision = out["revisions"][-1]
    assert (revision["revision"], revision["source"]) == (2, "replanner")
    assert revision["reason"] == "halve instead of dividing by zero"
    assert revision["diff"] == request["changes"]
    assert [(r["revision"], r["decision"]) for r in out["reviews"]] == [
        (1, "approve"),
        (2, "approve"),
    ]


async def test_max_replans_zero_ends_budget_exhausted_without_asking() -> None:
    steps = [calc("s1", "6*7"), calc("s2", "1/0"), calc("s3", "{{s1}}+1", ("s1",))]
    h = Harness(planner=[plan_reply(steps)], tools=[calculator])
    out = await h.run({"goal": "x"}, Context(review="never", max_replans=0, **FAST))
    assert out["status"] == "budget_exhausted"
    assert "max_replans=0" in out["reason"]
    assert "step s2 failed" in out["reason"]
    assert statuses(out) == {"s1": "done", "s2": "failed", "s3": "done"}
    assert outputs(out)["s1"] == 42
    assert outputs(out)["s3"] == 43
    assert h.replanner.calls == []


async def test_max_replans_used_up_keeps_every_finished_result() -> None:
    steps = [calc("s1", "6*7"), calc("s2", "{{s1}}/0", ("s1",))]
    h = Harness(
        planner=[plan_reply(steps)],
        replanner=[
            replan_reply("replan", steps=[calc("s3", "{{s1}}+1", ("s1",)), calc("s4", "1/0")])
        ],
        tools=[calculator],
    )
    out = await h.run({"goal": "x"}, Context(review="never", max_replans=1, **FAST))
    assert out["status"] == "budget_exhausted"
    assert "max_replans=1" in out["reason"]
    assert statuses(out) == {"s1": "done", "s2": "failed", "s3": "done", "s4": "failed"}
    assert outputs(out)["s3"] == 43
    assert len(h.replanner.calls) == 1


async def test_a_replan_asked_for_with_no_replans_left_ends_budget_exhausted() -> None:
    h = Harness(
        planner=[plan_reply([calc("s1", "6*7")])],
        replanner=[replan_reply("replan", steps=[calc("s2", "1+1")], reason="want more")],
        tools=[calculator],
    )
    out = await h.run({"goal": "x"}, Context(review="never", max_replans=0, **FAST))
    assert out["status"] == "budget_exhausted"
    assert out["reason"].startswith("the replanner asked to revise the plan (want more)")
    assert "max_replans=0" in out["reason"]
    assert outputs(out) == {"s1": 42}


# --- the executor ------------------------------------------------------------------------------


async def test_an_args_null_step_offers_only_its_tool_and_refuses_others() -> None:
    launch, launched = recording_tool()
    steps = [
        calc("s1", "6*7"),
        step("s2", tool="calculator", args=None, depends_on=["s1"], description="Add one"),
    ]
    h = Harness(
        planner=[plan_reply(steps)],
        executor=[
            {
                "tool_calls": [
                    {"name": "launch", "args": {"target": "the moon"}},
                    {"name": "calculator", "args": {"expression": "42+1"}},
                ]
            }
        ],
        tools=[calculator, launch],
    )
    out = await h.run({"goal": "x"}, NO_REVIEW_NO_REPLAN)
    [call] = h.executor.calls
    assert call.tools == ["calculator"]
    assert call.tool_choice == "calculator"
    assert '<result step="s1">\n42\n</result>' in call.prompt
    result = out["results"]["s2"]
    assert (result["status"], result["output"]) == ("done", 43)
    assert result["args"] == {"expression": "42+1"}
    assert result["refused_calls"] == [{"name": "launch", "args": {"target": "the moon"}}]
    assert launched == []
    assert out["answer"] == "43"


async def test_an_executor_that_only_calls_another_tool_fails_the_step() -> None:
    launch, launched = recording_tool()
    wrong = tool_call_reply("launch", {"target": "the moon"})
    h = Harness(
        planner=[plan_reply([step("s1", tool="calculator", args=None)])],
        executor=[wrong, wrong],
        tools=[calculator, launch],
    )
    context = Context(review="never", replan_policy="never", step_attempts=2, **FAST)
    out = await h.run({"goal": "x"}, context)
    result = out["results"]["s1"]
    assert result["status"] == "failed"
    assert result["attempts"] == 2
    assert result["error"] == (
        "ExecutorReplyError: the executor model did not call calculator; "
        "it asked for launch, which the plan does not allow"
    )
    assert result["refused_calls"] == [{"name": "launch", "args": {"target": "the moon"}}] * 2
    assert [c.tools for c in h.executor.calls] == [["calculator"], ["calculator"]]
    assert launched == []


async def test_dependents_of_a_failed_step_are_skipped_and_other_branches_finish() -> None:
    steps = [
        calc("a", "1/0"),
        calc("b", "{{a}}+1", ("a",)),
        calc("c", "{{b}}+1", ("b",)),
        calc("d", "2+2"),
        calc("e", "{{d}}*10", ("d",)),
    ]
    h = Harness(planner=[plan_reply(steps)], tools=[calculator])
    out = await h.run({"goal": "x"}, NO_REVIEW_NO_REPLAN)
    assert statuses(out) == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "d": "done",
        "e": "done",
    }
    assert out["results"]["b"]["error"] == "not run: step a failed"
    assert out["results"]["c"]["error"] == "not run: step b skipped"
    assert out["results"]["b"]["attempts"] == 0
    assert out["results"]["e"]["output"] == 40
    assert out["status"] == "failed"
    assert out["reason"] == "step a failed: CalculatorError: division by zero"
    assert h.replanner.calls == []


async def test_the_executor_prompt_holds_only_the_step_dependencies_results() -> None:
    steps = [
        step("s1", tool=None, description="Write slogan one"),
        step("s2", tool=None, description="Write slogan two"),
        step("s3", tool=None, depends_on=["s1"], description="Polish slogan one"),
    ]
    h = Harness(
        planner=[plan_reply(steps)],
        executor=[
            {"text": "ALPHA-OUTPUT-111", "match": "Write slogan one"},
            {"text": "BRAVO-OUTPUT-222", "match": "Write slogan two"},
            {"text": "CHARLIE-OUTPUT-333", "match": "Polish slogan one"},
        ],
        tools=[calculator],
    )
    out = await h.run({"goal": "Slogans"}, NO_REVIEW_NO_REPLAN)
    assert outputs(out) == {
        "s1": "ALPHA-OUTPUT-111",
        "s2": "BRAVO-OUTPUT-222",
        "s3": "CHARLIE-OUTPUT-333",
    }
    prompts = {c.prompt.split('<step id="')[1][:2]: c.prompt for c in h.executor.calls}
    assert sorted(prompts) == ["s1", "s2", "s3"]
    assert '<result step="s1">\nALPHA-OUTPUT-111\n</result>' in prompts["s3"]
    assert "BRAVO-OUTPUT-222" not in prompts["s3"]
    for other in ("s1", "s2"):
        assert "OUTPUT" not in prompts[other]
        assert "(this step depends on no other step)" in prompts[other]
        # The rest of the plan is not shown either.
        assert "Polish slogan one" not in prompts[other]
    assert all(c.tools == [] for c in h.executor.calls)
    assert out["answer"] == "s2: BRAVO-OUTPUT-222\ns3: CHARLIE-OUTPUT-333"


async def test_a_step_added_by_a_replan_sees_only_its_dependencies() -> None:
    steps = [
        step("s1", tool=None, description="Write slogan one"),
        step("s2", tool=None, description="Write slogan two"),
    ]
    added = [step("s3", tool=None, depends_on=["s1"], description="Polish slogan one")]
    h = Harness(
        planner=[plan_reply(steps)],
        executor=[
            {"text": "ALPHA-OUTPUT-111", "match": "Write slogan one"},
            {"text": "BRAVO-OUTPUT-222", "match": "Write slogan two"},
            {"text": "CHARLIE-OUTPUT-333", "match": "Polish slogan one"},
        ],
        replanner=[
            replan_reply("replan", steps=added, reason="polish"),
            replan_reply("finish", answer="CHARLIE-OUTPUT-333"),
        ],
        tools=[calculator],
    )
    out = await h.run({"goal": "Slogans"}, NO_REVIEW)
    assert out["status"] == "completed"
    [polish] = [c for c in h.executor.calls if "Polish slogan one" in c.prompt]
    assert '<result step="s1">\nALPHA-OUTPUT-111\n</result>' in polish.prompt
    assert "BRAVO-OUTPUT-222" not in polish.prompt
    assert "Write slogan" not in polish.prompt


async def test_a_fully_specified_tool_step_makes_no_model_call() -> None:
    steps = [calc("s1", "6*7"), step("s2", tool=None, depends_on=["s1"], description="Say it")]
    h = Harness(planner=[plan_reply(steps)], executor=["It is 42."], tools=[calculator])
    out = await h.run({"goal": "x"}, NO_REVIEW_NO_REPLAN)
    [call] = h.executor.calls
    assert '<step id="s2">' in call.prompt
    assert out["results"]["s1"]["usage"] is None
    assert out["results"]["s2"]["usage"]["calls"] == 1
    assert out["answer"] == "It is 42."


async def test_review_never_runs_without_interrupt() -> None:
    h = Harness(
        planner=[plan_reply(PLAN_STEPS)],
        replanner=[replan_reply("finish", answer="53")],
        tools=[calculator],
    )
    out = await h.run({"goal": "Compute 12*4+5"}, NO_REVIEW)
    assert "__interrupt__" not in out
    assert out["status"] == "completed"
    assert out.get("reviews", []) == []
    assert outputs(out) == {"s1": 48, "s2": 53}
    snapshot = await get_state(h.graph, config())
    assert snapshot.next == ()


async def test_usage_is_recorded_per_role() -> None:
    steps = [calc("s1", "6*7"), step("s2", tool=None, depends_on=["s1"])]
    h = Harness(
        planner=[plan_reply(steps, usage={"input_tokens": 100, "output_tokens": 20})],
        executor=[{"text": "42 it is", "usage": {"input_tokens": 30, "output_tokens": 3}}],
        replanner=[
            replan_reply("finish", answer="42", usage={"input_tokens": 50, "output_tokens": 10})
        ],
        tools=[calculator],
    )
    context = Context(
        review="never",
        prices={"planner-model": (1.0, 2.0), "executor-model": (0.5, 0.5)},
        **FAST,
    )
    out = await h.run({"goal": "x"}, context)
    assert out["usage"] == {
        "planner": {"calls": 1, "input_tokens": 100, "output_tokens": 20, "cost_usd": 0.00014},
        "executor": {"calls": 1, "input_tokens": 30, "output_tokens": 3, "cost_usd": 0.0000165},
        "replanner": {"calls": 1, "input_tokens": 50, "output_tokens": 10, "cost_usd": 0.0},
    }
    assert out["results"]["s2"]["usage"] == out["usage"]["executor"]


async def test_replan_policy_never_answers_with_the_sink_output() -> None:
    steps = [calc("s1", "6*7"), calc("s2", "{{s1}}+1", ("s1",))]
    h = Harness(planner=[plan_reply(steps)], tools=[calculator])
    out = await h.run({"goal": "x"}, NO_REVIEW_NO_REPLAN)
    assert out["status"] == "completed"
    assert out["answer"] == "43"
    assert out["reason"] == "every step of the plan is done"
    assert h.replanner.calls == []


async def test_replan_policy_never_fails_on_a_failure_without_asking() -> None:
    steps = [calc("s1", "6*7"), calc("s2", "{{s1}}/0", ("s1",))]
    h = Harness(planner=[plan_reply(steps)], tools=[calculator])
    out = await h.run({"goal": "x"}, NO_REVIEW_NO_REPLAN)
    assert out["status"] == "failed"
    assert out["reason"] == "step s2 failed: CalculatorError: division by zero"
    assert out.get("answer") is None
    assert outputs(out)["s1"] == 42
    assert h.replanner.calls == []


# --- the results reducer --------------------------------------------------------------------------


def test_merge_results_never_replaces_a_done_result() -> None:
    done = {"status": "done", "output": 42, "error": None}
    failed = {"status": "failed", "output": None, "error": "boom"}
    skipped = {"status": "skipped", "output": None, "error": "not run"}
    merged = merge_results({"s1": done, "s2": failed}, {"s1": failed, "s2": done, "s3": skipped})
    assert merged == {"s1": done, "s2": done, "s3": skipped}
    assert merge_results({"s1": failed}, {"s1": skipped}) == {"s1": skipped}
    assert merge_results(None, None) == {}


async def test_a_done_result_in_a_checkpoint_is_never_overwritten() -> None:
    h = Harness(planner=[plan_reply([calc("s1", "6*7")])], tools=[calculator])
    await h.run({"goal": "x"}, NO_REVIEW_NO_REPLAN)
    overwrite = {"s1": {"status": "failed", "output": None, "error": "late failure"}}
    await update_state(h.graph, config(), {"results": overwrite}, as_node="executor")
    assert (await h.state())["results"]["s1"]["output"] == 42
    assert (await h.state())["results"]["s1"]["status"] == "done"


async def test_a_whole_reference_to_a_number_becomes_text_for_a_string_argument(
    workspace: Path,
) -> None:
    plan = [
        step("s1", args={"expression": "6*7"}),
        step(
            "s2",
            tool="write_file",
            args={"path": "answer.txt", "content": "{{s1}}"},
            depends_on=["s1"],
        ),
        step("s3", args={"expression": "{{s1}} + 1"}, depends_on=["s1"]),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="42")],
        tools=[calculator, *file_tools(workspace)],
    )
    out = await h.run({"goal": "write 6*7"}, Context(review="never"))
    assert out["status"] == "completed"
    # write_file's content is a string: the number is written as text...
    assert out["results"]["s2"]["args"] == {"path": "answer.txt", "content": "42"}
    assert (workspace / "answer.txt").read_text() == "42"
    # ...while the calculator still does arithmetic on it.
    assert out["results"]["s3"]["output"] == 43
