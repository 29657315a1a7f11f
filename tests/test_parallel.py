"""Issue 3, item 1: the plan runs as a task graph, steps in parallel, dataflow order."""

from __future__ import annotations

import asyncio
import time
from itertools import combinations
from typing import Any

import pytest
from langchain_core.tools import BaseTool, ToolException, tool

from helpers import Harness, context, step, stream
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.usefixtures("both_apis")

Interval = tuple[str, float, float]


def timed_tools(log: list[Interval]) -> list[BaseTool]:
    """`work` sleeps and records its interval; `broken` records its interval and fails."""

    @tool
    async def work(name: str, seconds: float) -> str:
        """Sleep for `seconds` and return `name`."""
        start = time.monotonic()
        await asyncio.sleep(seconds)
        log.append((name, start, time.monotonic()))
        return f"result of {name}"

    @tool
    async def broken(name: str) -> str:
        """Always fail."""
        start = time.monotonic()
        await asyncio.sleep(0.01)
        log.append((name, start, time.monotonic()))
        raise ToolException(f"{name} exploded")

    return [work, broken]


def work_step(id: str, seconds: float, depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    return step(id, tool="work", args={"name": id, "seconds": seconds}, depends_on=depends_on)


def overlap(a: Interval, b: Interval) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def by_name(log: list[Interval]) -> dict[str, Interval]:
    return {entry[0]: entry for entry in log}


async def run_four(
    max_tool_concurrency: int, max_concurrency: int = 4
) -> tuple[dict[str, Any], list[Interval], Harness]:
    log: list[Interval] = []
    h = Harness(
        planner=[plan_reply([work_step(f"s{i}", 0.2) for i in range(1, 5)])],
        replanner=[replan_reply("finish", answer="all four")],
        tools=timed_tools(log),
    )
    settings = context(max_concurrency=max_concurrency, max_tool_concurrency=max_tool_concurrency)
    out = await h.run({"goal": "four lookups"}, settings)
    return out, log, h


async def test_independent_steps_overlap_pairwise() -> None:
    out, log, h = await run_four(max_tool_concurrency=4)
    assert out["status"] == "completed"
    assert len(log) == 4
    for a, b in combinations(log, 2):
        assert overlap(a, b), f"{a[0]} and {b[0]} did not overlap"
    assert {i: r["output"] for i, r in out["results"].items()} == {
        f"s{i}": f"result of s{i}" for i in range(1, 5)
    }
    # Fully specified tool steps run without the executor model.
    assert h.executor.calls == []


async def test_a_step_starts_when_its_dependency_finishes_not_when_a_wave_ends() -> None:
    log: list[Interval] = []
    steps = [
        work_step("slow", 0.8),
        work_step("fast", 0.02),
        work_step("next", 0.02, depends_on=("fast",)),
        work_step("last", 0.02, depends_on=("next",)),
    ]
    h = Harness(
        planner=[plan_reply(steps)],
        replanner=[replan_reply("finish", answer="done")],
        tools=timed_tools(log),
    )
    out = await h.run({"goal": "dataflow"}, context())
    assert out["status"] == "completed"
    times = by_name(log)
    assert times["fast"][2] <= times["next"][1]
    assert times["next"][2] <= times["last"][1]
    # Two dependent steps ran while the unrelated slow branch was still running.
    assert times["last"][1] < times["slow"][2]
    assert times["next"][1] < times["slow"][2]


async def test_dependent_receives_its_dependency_result() -> None:
    log: list[Interval] = []
    steps = [
        work_step("a", 0.01),
        step("b", tool="work", args={"name": "after {{a}}", "seconds": 0.01}, depends_on=["a"]),
    ]
    h = Harness(
        planner=[plan_reply(steps)],
        replanner=[replan_reply("finish", answer="done")],
        tools=timed_tools(log),
    )
    out = await h.run({"goal": "chain"}, context())
    assert out["results"]["b"]["output"] == "result of after result of a"
    assert out["results"]["b"]["args"] == {"name": "after result of a", "seconds": 0.01}


async def test_a_failing_branch_leaves_independent_results_and_the_replanner_sees_all() -> None:
    log: list[Interval] = []
    steps = [
        step("bad", tool="broken", args={"name": "bad"}),
        step("after_bad", tool="work", args={"name": "x", "seconds": 0.01}, depends_on=["bad"]),
        work_step("left", 0.1),
        work_step("right", 0.1),
        work_step("join", 0.01, depends_on=("left", "right")),
    ]
    h = Harness(
        planner=[plan_reply(steps)],
        replanner=[replan_reply("finish", answer="partial")],
        tools=timed_tools(log),
    )
    out = await h.run({"goal": "branches"}, context())
    results = out["results"]
    assert results["bad"]["status"] == "failed"
    assert "bad exploded" in results["bad"]["error"]
    # A ToolException is not transient: one attempt only.
    assert results["bad"]["attempts"] == 1
    assert results["after_bad"]["status"] == "skipped"
    assert "bad" in results["after_bad"]["error"]
    for done in ("left", "right", "join"):
        assert results[done]["status"] == "done"
        assert results[done]["output"] == f"result of {done}"
    assert [name for name, _, _ in log].count("bad") == 1
    assert "x" not in by_name(log)
    # The replanner is asked once, after the branches settled, and sees everything.
    assert len(h.replanner.calls) == 1
    prompt = h.replanner.calls[0].prompt
    assert "bad exploded" in prompt
    assert '<result step="bad" status="failed">' in prompt
    assert '<result step="after_bad" status="skipped">' in prompt
    for done in ("left", "right", "join"):
        assert f'<result step="{done}" status="done">' in prompt
        assert f"result of {done}" in prompt
    assert out["status"] == "completed"
    assert out["answer"] == "partial"


async def test_each_step_is_its_own_task_and_emits_progress_events() -> None:
    log: list[Interval] = []
    h = Harness(
        planner=[plan_reply([work_step("s1", 0.01), work_step("s2", 0.01)])],
        replanner=[replan_reply("finish", answer="ok")],
        tools=timed_tools(log),
    )
    events: list[dict[str, Any]] = []
    tasks: list[str] = []
    async for mode, chunk in stream(
        h.graph,
        {"goal": "events"},
        {"configurable": {"thread_id": "ev"}},
        context=context(),
        stream_mode=["custom", "tasks"],
    ):
        if mode == "custom":
            events.append(chunk)
        elif "input" in chunk:
            tasks.append(chunk["name"])
    started = sorted(e["step"] for e in events if e["event"] == "step_started")
    finished = sorted(e["step"] for e in events if e["event"] == "step_finished")
    assert started == finished == ["s1", "s2"]
    assert [t for t in tasks if t.startswith("step-")] == ["step-s1", "step-s2"]
