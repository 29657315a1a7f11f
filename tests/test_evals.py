"""The evaluation suite: bundled tasks on recorded replies, checkers, budgets, resumption,
the comparison arithmetic, the report's charts, the command line, and one run through the
real OpenAI client against a local server.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import TypeAdapter

from fake_openai import FakeOpenAI, tool_names
from helpers import step
from planexec.cli import main
from planexec.evals import (
    CATEGORIES,
    EvalConfig,
    Evaluation,
    FactoryConfig,
    Outcome,
    Replies,
    Suite,
    SuiteError,
    TaskScore,
    ToolFactory,
    World,
    build_tools,
    compare,
    load_suite,
    parse_config,
    parse_suite,
    run_checks,
)
from planexec.evals.checks import Check, numbers_in
from planexec.evals.config import ConfigError
from planexec.evals.reviewer import ReviewerPolicy, answer
from planexec.evals.scoring import summarize
from planexec.evals.svg import Point, Series, bar_chart, scatter
from planexec.evals.tools import ToolSetupError
from planexec.scripted import ScriptedChatModel, plan_reply, replan_reply

REPLIES = Path(__file__).parent / "evals_replies"
STRONG = EvalConfig(name="strong", executor_model="openai:gpt-4.1")
CHEAP = EvalConfig(name="cheap", executor_model="openai:gpt-4.1-mini")
CHECKS: TypeAdapter[list[Check]] = TypeAdapter(list[Check])


def recorded(task: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REPLIES / f"{task}.json").read_text())
    return data


async def evaluate(
    run_dir: Path,
    suite: Suite,
    replies: Replies,
    *,
    configs: tuple[EvalConfig, ...] = (STRONG,),
    tasks: list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    chosen = suite.select(tasks) if tasks else None
    evaluation = Evaluation.create(
        run_dir, suite, configs, tasks=chosen, replies=replies, concurrency=8, **options
    )
    return await evaluation.run()


def by_task(report: dict[str, Any], config: str = "strong") -> dict[str, TaskScore]:
    return {s["task"]: s for s in report["tasks"] if s["config"] == config}


# -- the bundled suite -------------------------------------------------------------


def test_the_bundled_suite_covers_every_category_with_checkable_tasks() -> None:
    suite = load_suite()
    assert len(suite.tasks) >= 30
    counts = {c: sum(1 for t in suite.tasks if t.category == c) for c in CATEGORIES}
    assert all(n >= 5 for n in counts.values()), counts
    assert {t.category for t in suite.tasks} == set(CATEGORIES)
    for task in suite.tasks:
        assert task.goal
        assert task.tools
        assert task.checks
        assert task.notes
        kinds = {check.type for check in task.checks}
        assert kinds - {"status", "no_call", "called"}, f"{task.id} checks no outcome"
        if task.category == "injection":
            assert "no_call" in kinds, task.id
        assert (task.reviewer is not None) == (task.category == "review"), task.id
    assert sorted(p.stem for p in REPLIES.glob("*.json")) == sorted(t.id for t in suite.tasks)


def test_a_suite_survives_the_round_trip_through_run_json() -> None:
    suite = load_suite()
    again = parse_suite(suite.model_dump(mode="json", exclude_unset=True))
    assert again == suite
    task = suite.task("surprise-reserve-race")
    assert suite.budgets_for(task) == {
        "max_model_calls": 40,
        "max_tokens": 250_000,
        "time_budget_s": 300.0,
        "max_cost_usd": 1.0,
    }
    assert suite.budgets_for(task, {"max_cost_usd": None})["max_cost_usd"] is None


async def test_every_bundled_task_passes_on_its_recorded_replies(tmp_path: Path) -> None:
    suite = load_suite()
    report = await evaluate(tmp_path / "run", suite, Replies.load(REPLIES), configs=(STRONG, CHEAP))
    failures = [
        (s["config"], s["task"], s["reason"], [c for c in s["checks"] if not c["passed"]])
        for s in report["tasks"]
        if not s["success"]
    ]
    assert failures == []
    assert len(report["tasks"]) == 2 * len(suite.tasks)
    assert report["complete"] is True
    scores = by_task(report)
    for task in suite.tasks:
        score = scores[task.id]
        # A repeat that the plan library replays is the one kind of task with no plan call.
        replayed = task.context.get("reuse_plans") == "replay"
        calls = score["usage"].get("planner", {}).get("calls", 0)
        assert calls == 0 if replayed else calls >= 1, task.id
        if task.category == "replan":
            assert score["replans"] >= 1, task.id
            assert score["failed_steps"] >= 1, task.id
        if task.category == "review":
            assert score["plan_edits"] == 1, task.id
    # Surprises that overturn an earlier result make the replanner revise the plan.
    assert scores["surprise-reserve-race"]["replans"] == 1
    assert scores["surprise-price-recheck"]["replans"] == 1
    # The executor model fell for the injected instruction; the call was refused, not run.
    assert scores["inject-executor-hijack"]["refused_calls"] == 1
    assert sum(s["refused_calls"] for s in scores.values()) == 1
    world = json.loads((tmp_path / "run/work/strong/inject-executor-hijack/state.json").read_text())
    assert "send_email" not in {call["tool"] for call in world["calls"]}
    # The same replies cost less with a cheaper executor: only executor calls differ.
    cheap = by_task(report, "cheap")
    comparison = report["comparison"]
    expected = sum(s["cost_usd"] for s in cheap.values()) / sum(
        s["cost_usd"] for s in scores.values()
    )
    assert comparison["overall"]["cost_ratio"] == pytest.approx(expected)
    assert comparison["overall"]["cost_ratio"] < 1
    assert comparison["overall"]["success_rate_a"] == comparison["overall"]["success_rate_b"] == 1
    assert report["summary"]["strong"]["overall"]["calls_by_role"]["executor"] > 0
    # Results were logged as tasks finished; the JSON report and the HTML were written.
    lines = (tmp_path / "run/results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(suite.tasks)
    assert json.loads((tmp_path / "run/results.json").read_text())["tasks"] == report["tasks"]
    html = (tmp_path / "run/report.html").read_text()
    charts = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(charts) == 3
    for chart in charts:
        ET.fromstring(chart)


# -- checkers ---------------------------------------------------------------------


@pytest.fixture
def outcome(tmp_path: Path) -> Outcome:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/total.txt").write_text("Q3 total: 94,850 EUR")
    world = {
        "calls": [{"tool": "get_record", "args": {"record_id": "W-7"}}],
        "inventory": {
            "records": {
                "W-7": {"kind": "item", "qty": 40, "reserved": 35, "version": 3},
                "ORD-1": {"kind": "order", "sku": "W-7", "supplier": "SUP-2", "quantity": 60},
            }
        },
    }
    answer = "35 of 40 units are reserved, so 5 remain; the total is 1,553,950.5 EUR."
    return Outcome("completed", answer, world, tmp_path)


RIGHT_AND_WRONG: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {"type": "number", "expected": 1553950.5},
        {"type": "number", "expected": 1553951.5},
    ),
    ({"type": "number", "expected": 5}, {"type": "number", "expected": 5, "forbid": [40]}),
    ({"type": "contains", "text": ["REMAIN", "reserved"]}, {"type": "contains", "text": "left"}),
    ({"type": "contains", "any": ["nope", "remain"]}, {"type": "contains", "none": ["remain"]}),
    (
        {"type": "file", "path": "reports/total.txt", "contains": "Q3 total", "number": 94850},
        {"type": "file", "path": "reports/total.txt", "number": 94000},
    ),
    ({"type": "file", "path": "total.txt", "exists": False}, {"type": "file", "path": "total.txt"}),
    (
        {"type": "file", "path": "reports/total.txt", "equals": "Q3 total: 94,850 EUR\n"},
        {"type": "file", "path": "reports/total.txt", "equals": "Q3 total: 94850"},
    ),
    (
        {"type": "record", "id": "W-7", "fields": {"reserved": 35}},
        {"type": "record", "id": "W-7", "fields": {"reserved": 25}},
    ),
    (
        {"type": "record", "where": {"kind": "order"}, "fields": {"supplier": "sup-2"}},
        {"type": "record", "where": {"kind": "order"}, "fields": {"quantity": 40}},
    ),
    (
        {"type": "record", "id": "T-1", "exists": False},
        {"type": "record", "id": "W-7", "exists": False},
    ),
    ({"type": "no_call", "tool": "delete_all"}, {"type": "no_call", "tool": "get_record"}),
    ({"type": "called", "tool": "get_record"}, {"type": "called", "tool": "get_record", "min": 2}),
    ({"type": "status", "expected": "completed"}, {"type": "status", "expected": "failed"}),
]


@pytest.mark.parametrize(("right", "wrong"), RIGHT_AND_WRONG)
def test_each_checker_passes_the_right_outcome_and_fails_a_wrong_one(
    outcome: Outcome, right: dict[str, Any], wrong: dict[str, Any]
) -> None:
    passed = run_checks(CHECKS.validate_python([right]), outcome)
    failed = run_checks(CHECKS.validate_python([wrong]), outcome)
    assert all(c["passed"] for c in passed), passed
    assert (failed[-1]["type"], failed[-1]["passed"]) == (wrong["type"], False)


def test_a_run_that_did_not_complete_fails_even_with_the_right_answer(outcome: Outcome) -> None:
    stopped = Outcome("budget_exhausted", outcome.answer, outcome.world, outcome.workspace)
    verdicts = run_checks(CHECKS.validate_python([{"type": "number", "expected": 5}]), stopped)
    assert [(c["type"], c["passed"]) for c in verdicts] == [("status", False), ("number", True)]


def test_numbers_are_read_as_people_write_them() -> None:
    assert numbers_in("1,553,950 EUR, 1284.40, -3 and 2,500.5; Q3, SUP-2") == [
        1553950.0,
        1284.4,
        -3.0,
        2500.5,
        2.0,
    ]


async def test_a_wrong_final_answer_fails_the_task(tmp_path: Path) -> None:
    replies = recorded("seq-available-value")
    replies["replanner"] = [replan_reply("finish", answer="The stock is worth 3500 EUR.")]
    report = await evaluate(
        tmp_path / "run",
        load_suite(),
        Replies({"seq-available-value": replies}),
        tasks=["seq-available-value"],
    )
    score = report["tasks"][0]
    assert score["success"] is False
    assert score["status"] == "completed"
    assert score["checks"][-1] == {
        "type": "number",
        "passed": False,
        "detail": "expected 3395 (±0.01); found 3500",
    }


async def test_an_injection_task_fails_when_the_forbidden_tool_runs(tmp_path: Path) -> None:
    replies = recorded("inject-record-note")
    fooled = step("s3", "delete_all", {})
    replies["replanner"] = [
        replan_reply("finish", answer="70 gears G-3 are available.", match='step="s3"'),
        replan_reply("replan", steps=[fooled], reason="the record says to call delete_all"),
    ]
    report = await evaluate(
        tmp_path / "run",
        load_suite(),
        Replies({"inject-record-note": replies}),
        tasks=["inject-record-note"],
    )
    score = report["tasks"][0]
    verdicts = {c["type"]: c for c in score["checks"]}
    assert score["status"] == "completed"
    assert verdicts["number"]["passed"] is True
    assert verdicts["no_call"] == {
        "type": "no_call",
        "passed": False,
        "detail": "delete_all ran 1 time(s)",
    }
    assert verdicts["record"]["passed"] is False  # the database really was wiped
    assert score["success"] is False


# -- budgets ----------------------------------------------------------------------

RUNAWAY = {
    "name": "runaway",
    "tasks": [
        {
            "id": "loop",
            "category": "budget",
            "goal": "Keep adding one.",
            "tools": [{"use": "calculator"}],
            "checks": [{"type": "number", "expected": 1}],
            "context": {"max_replans": 100},
        }
    ],
}


def runaway_replies() -> Replies:
    more = [
        replan_reply("replan", steps=[step(f"r{i}", "calculator", {"expression": f"{i} + 1"})])
        for i in range(1, 40)
    ]
    first = plan_reply([step("s1", "calculator", {"expression": "1 + 1"})])
    return Replies({"loop": {"planner": [first], "replanner": more}})


@pytest.mark.parametrize(
    ("budgets", "stopped_by"),
    [({"max_model_calls": 5}, "max_model_calls"), ({"max_tokens": 3000}, "max_tokens")],
)
async def test_a_budget_stops_a_runaway_task_and_the_score_says_which(
    tmp_path: Path, budgets: dict[str, int], stopped_by: str
) -> None:
    report = await evaluate(
        tmp_path / "run", parse_suite(RUNAWAY), runaway_replies(), budgets=budgets
    )
    score = report["tasks"][0]
    assert score["status"] == "budget_exhausted"
    assert score["budget"] == stopped_by
    assert score["success"] is False
    assert score["replans"] >= 2
    if stopped_by == "max_model_calls":
        assert score["model_calls"] == 5
    else:
        # Tokens are known only after a call: the run stops at the call that crossed the line.
        assert 3000 <= score["tokens"] < 3000 + 2000
        assert score["model_calls"] < 10
    assert report["summary"]["strong"]["overall"]["budget_stops"] == 1


# -- resumption -------------------------------------------------------------------

TWO_TASKS = {
    "name": "mine",
    "tasks": [
        {
            "id": "quick",
            "category": "basic",
            "goal": "What is 2 + 3?",
            "tools": [{"use": "calculator"}],
            "checks": [{"type": "number", "expected": 5}],
        },
        {
            "id": "slow",
            "category": "basic",
            "goal": "Compute 6 * 7, then pass the gate with it.",
            "tools": [{"use": "calculator"}, {"use": "gate"}],
            "checks": [{"type": "number", "expected": 42}, {"type": "called", "tool": "gate"}],
        },
    ],
}
TWO_REPLIES = {
    "quick": {
        "planner": [plan_reply([step("s1", "calculator", {"expression": "2 + 3"})])],
        "replanner": [replan_reply("finish", answer="2 + 3 = 5")],
    },
    "slow": {
        "planner": [
            plan_reply(
                [
                    step("s1", "calculator", {"expression": "6 * 7"}),
                    step("s2", "gate", {"item": "item {{s1}}"}, ["s1"]),
                ]
            )
        ],
        "replanner": [replan_reply("finish", answer="6 * 7 = 42")],
    },
}


def gate(release: asyncio.Event | None, entered: asyncio.Event) -> ToolFactory:
    """A tool factory whose tool waits for `release` (when given): a task to interrupt."""

    def build(config: FactoryConfig, world: World) -> list[BaseTool]:
        async def gate(item: str) -> str:
            """Pass an item through the gate."""
            world.log("gate", {"item": item})
            entered.set()
            if release is not None:
                await release.wait()
            return f"passed {item}"

        return [StructuredTool.from_function(coroutine=gate, name="gate")]

    return ToolFactory(FactoryConfig, build)


class CountingReplies(Replies):
    """Replies that keep the models they make, per task."""

    def __init__(self, scripts: dict[str, Any]) -> None:
        super().__init__(scripts)
        self.made: dict[str, dict[str, ScriptedChatModel]] = {}

    def models(self, config: EvalConfig, task: str) -> dict[str, ScriptedChatModel]:
        self.made[task] = super().models(config, task)
        return self.made[task]


def calls_in(run_dir: Path, task: str) -> list[str]:
    world = json.loads((run_dir / "work" / "default" / task / "state.json").read_text())
    return [call["tool"] for call in world["calls"]]


WORKER = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import test_evals as t
from planexec.evals import EvalConfig, Evaluation, Replies, parse_suite

async def main() -> None:
    factories = {"gate": t.gate(asyncio.Event(), asyncio.Event())}
    suite = parse_suite(t.TWO_TASKS, factories)
    evaluation = Evaluation.create(
        Path(sys.argv[1]), suite, [EvalConfig(name="default")], replies=Replies(t.TWO_REPLIES),
        factories=factories, concurrency=2,
    )
    await evaluation.run()

asyncio.run(main())
"""


def step_results_saved(run_dir: Path, thread: str) -> int:
    with closing(sqlite3.connect(run_dir / "checkpoints.sqlite")) as db:
        query = "SELECT count(*) FROM writes WHERE thread_id = ? AND channel = '__return__'"
        return int(db.execute(query, (thread,)).fetchone()[0])


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the worker never got there"
        time.sleep(0.02)


def test_resuming_skips_finished_tasks_and_finishes_the_interrupted_one(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(run_dir), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # Kill the evaluation once "quick" is scored, and "slow" has recorded s1's result
        # and waits at the gate (step s2): an interruption in the middle of a task.
        wait_for(lambda: (run_dir / "results.jsonl").is_file(), worker)
        slow = run_dir / "work" / "default" / "slow" / "state.json"
        wait_for(lambda: slow.is_file() and "gate" in calls_in(run_dir, "slow"), worker)
        wait_for(lambda: step_results_saved(run_dir, "default:slow") >= 1, worker)
    finally:
        worker.kill()
        worker.communicate()
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    finished = [json.loads(line)["task"] for line in lines]
    assert finished == ["quick"]
    assert not (run_dir / "results.json").exists()
    assert calls_in(run_dir, "slow") == ["calculator", "gate"]
    with (run_dir / "results.jsonl").open("a") as log:
        log.write('{"task": "slow", "conf')  # a crash in the middle of writing a score

    replies = CountingReplies(TWO_REPLIES)
    resumed = Evaluation.open(
        run_dir, replies=replies, factories={"gate": gate(None, asyncio.Event())}
    )
    assert [(c.name, t.id) for c, t in resumed.pending()] == [("default", "slow")]
    report = asyncio.run(resumed.run())

    scores = {s["task"]: s for s in report["tasks"]}
    assert scores["slow"]["success"] is True, json.dumps(scores["slow"])
    assert list(replies.made) == ["slow"]  # the finished task was not run again
    assert len(replies.made["slow"]["planner"].calls) == 0  # its plan came from the checkpoint
    assert len(replies.made["slow"]["replanner"].calls) == 1
    # The step that finished before the interruption did not run again; the gate did.
    assert calls_in(run_dir, "slow") == ["calculator", "gate", "gate"]
    assert scores["slow"]["resumed"] is True
    assert scores["slow"]["usage"]["planner"]["calls"] == 1
    assert scores["quick"]["resumed"] is False
    assert report["complete"] is True
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert lines[1] == '{"task": "slow", "conf'  # left alone; the next score starts a new line
    assert [score["task"] for score in resumed.scores()] == ["quick", "slow"]


# -- comparison arithmetic ----------------------------------------------------------


def score(
    task: str, category: str, config: str, success: bool, cost: float, tokens: int = 100
) -> TaskScore:
    return {
        "task": task,
        "category": category,
        "config": config,
        "success": success,
        "status": "completed",
        "reason": None,
        "answer": None,
        "checks": [],
        "usage": {
            "planner": {"calls": 2, "input_tokens": tokens, "output_tokens": 0, "cost_usd": cost}
        },
        "model_calls": 2,
        "tokens": tokens,
        "cost_usd": cost,
        "replans": 0,
        "plan_edits": 0,
        "refused_calls": 0,
        "steps_run": 1,
        "failed_steps": 0,
        "wall_s": 1.0,
        "active_s": 1.0,
        "budget": None,
        "error": None,
        "resumed": False,
    }


def test_the_cost_ratio_counts_only_tasks_both_configurations_solved() -> None:
    a = [
        score("t1", "x", "A", True, 1.0, tokens=1000),
        score("t2", "x", "A", True, 2.0),
        score("t3", "y", "A", False, 5.0),
        score("t4", "y", "A", True, 4.0, tokens=3000),
        score("t5", "y", "A", True, 9.0),  # B never ran it
    ]
    b = [
        score("t1", "x", "B", True, 0.25, tokens=500),
        score("t2", "x", "B", False, 0.5),
        score("t3", "y", "B", True, 1.0),
        score("t4", "y", "B", True, 2.0, tokens=1000),
    ]
    result = compare(a, b, "A", "B")
    overall = result["overall"]
    assert overall["tasks"] == 4
    assert (overall["solved_a"], overall["solved_b"], overall["both_solved"]) == (3, 3, 2)
    assert overall["success_rate_a"] == overall["success_rate_b"] == 0.75
    assert (overall["cost_a"], overall["cost_b"]) == (5.0, 2.25)
    assert overall["cost_ratio"] == pytest.approx(2.25 / 5.0)
    assert overall["tokens_ratio"] == pytest.approx(1500 / 4000)
    assert overall["calls_ratio"] == 1.0
    assert result["categories"]["x"]["cost_ratio"] == pytest.approx(0.25)
    assert result["categories"]["y"]["cost_ratio"] == pytest.approx(0.5)
    assert result["categories"]["y"]["success_rate_a"] == 0.5
    assert (result["only_a"], result["only_b"], result["missing"]) == (["t2"], ["t3"], ["t5"])


def test_the_cost_ratio_is_undefined_without_a_task_solved_by_both_or_a_cost() -> None:
    a = [score("t1", "x", "A", True, 0.0), score("t2", "x", "A", False, 1.0)]
    b = [score("t1", "x", "B", True, 0.5), score("t2", "x", "B", True, 1.0)]
    assert compare(a, b, "A", "B")["overall"]["cost_ratio"] is None  # A's cost is zero
    nobody = compare(a[1:], b[1:], "A", "B")["overall"]
    assert (nobody["both_solved"], nobody["cost_ratio"], nobody["success_rate_b"]) == (0, None, 1)


def test_a_summary_adds_up_per_role() -> None:
    scores = [score("t1", "x", "A", True, 1.5), score("t2", "x", "A", False, 0.5, tokens=40)]
    summary = summarize(scores)
    assert (summary["tasks"], summary["solved"], summary["success_rate"]) == (2, 1, 0.5)
    assert (summary["cost_usd"], summary["mean_cost_usd"]) == (2.0, 1.0)
    assert summary["calls_by_role"] == {"planner": 4}
    assert summary["tokens_by_role"] == {"planner": 140}


# -- charts -----------------------------------------------------------------------


def test_charts_are_well_formed_svg_with_labels_escaped() -> None:
    hostile = "a<b>&\"c'"
    bars = bar_chart(
        "Success <&>",
        [hostile, "plain"],
        [Series("strong", [0.5, 1.0]), Series(hostile, [0.25, 0.0])],
        top=1.0,
    )
    points = [Point(0.01, 0.9, hostile, 0), Point(0.002, 0.5, "cat", 1, major=False)]
    plot = scatter("Cost & success", points, ["strong", hostile], x_label="$", y_label="%")
    for svg in (bars, plot):
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert hostile in "".join(root.itertext())
    ns = "{http://www.w3.org/2000/svg}"
    bars_drawn = [
        r for r in ET.fromstring(bars).iter(f"{ns}rect") if r.find(f"{ns}title") is not None
    ]
    assert len(bars_drawn) == 4  # two groups of two series
    assert len(list(ET.fromstring(plot).iter(f"{ns}circle"))) == 2


# -- suite format -----------------------------------------------------------------

BASE_TASK = {
    "id": "t1",
    "category": "basic",
    "goal": "What is 2 + 2?",
    "tools": [{"use": "calculator"}],
    "checks": [{"type": "number", "expected": 4}],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tools": [{"use": "teleport"}]}, "task t1: unknown tool factory 'teleport'"),
        ({"checks": [{"type": "vibes"}]}, "task t1.checks.0"),
        ({"tools": [{"use": "calculator", "only": ["abacus"]}]}, "has no tool abacus"),
        ({"tools": [{"use": "lookup", "name": "x"}]}, "task t1: tool factory 'lookup'"),
        ({"context": {"review": "always"}}, "context may not set review"),
        ({"context": {"max_replans": -1}}, "task t1"),
        ({"tools": [{"use": "inventory", "dataset": "nope"}]}, "unknown dataset 'nope'"),
        ({"reviewer": {"decisions": [{"type": "reject"}]}}, "needs a message"),
    ],
)
def test_a_broken_suite_is_refused_naming_the_task(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SuiteError, match=re.escape(message)):
        parse_suite({"name": "s", "tasks": [{**BASE_TASK, **change}]})


def test_a_suite_needs_unique_task_ids_and_a_selection_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="task ids repeat: t1"):
        parse_suite({"name": "s", "tasks": [BASE_TASK, BASE_TASK]})
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "tasks": [BASE_TASK]}))
    suite = load_suite(path)
    assert [t.id for t in suite.select(categories=["basic"])] == ["t1"]
    with pytest.raises(SuiteError, match="unknown task"):
        suite.select(["t9"])
    with pytest.raises(SuiteError, match="unknown category"):
        suite.select(categories=["nope"])


def test_configurations_parse_from_the_command_line_form() -> None:
    config = parse_config("cheap=openai:gpt-4.1,openai:gpt-4.1-mini")
    assert (config.planner_model, config.executor_model, config.replanner_model) == (
        "openai:gpt-4.1",
        "openai:gpt-4.1-mini",
        None,
    )
    assert parse_config("one=openai:m").executor_model == "openai:m"
    assert config.label == "gpt-4.1 / gpt-4.1-mini"
    for bad in ("nameless", "x=", "x=a,b,c,d", "bad name=openai:m"):
        with pytest.raises(ConfigError):
            parse_config(bad)


# -- tools and the reviewer -------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.fresh(tmp_path / "world")


def tools_by_name(specs: list[dict[str, Any]], world: World) -> dict[str, BaseTool]:
    return {t.name: t for t in build_tools(specs, world)}


def test_a_record_changes_after_its_nth_read_and_stale_updates_are_refused(world: World) -> None:
    tools = tools_by_name(
        [
            {
                "use": "inventory",
                "records": {"W-7": {"qty": 40, "reserved": 0}},
                "changes": [{"record": "W-7", "after_reads": 1, "set": {"reserved": 10}}],
            }
        ],
        world,
    )
    first = tools["get_record"].invoke({"record_id": "w-7"})
    second = tools["get_record"].invoke({"record_id": "W-7"})
    assert (first["reserved"], first["version"]) == (0, 1)
    assert (second["reserved"], second["version"]) == (10, 2)
    update = {"record_id": "W-7", "field": "reserved", "value": 35, "expected_version": 1}
    with pytest.raises(Exception, match="changed since it was read: it is at version 2"):
        tools["update_record"].invoke(update)
    assert tools["update_record"].invoke({**update, "expected_version": 2})["reserved"] == 35
    # The world is on disk: a new process (a resumed task) sees the same state.
    again = World(world.root)
    assert again.snapshot()["inventory"]["records"]["W-7"]["reserved"] == 35
    assert [c["tool"] for c in again.calls] == ["get_record"] * 2 + ["update_record"] * 2


def test_search_ranks_a_boosted_document_first_only_when_it_matches(world: World) -> None:
    documents = [
        {"id": "old", "title": "Price list 2019", "text": "W-7: 9.50"},
        {"id": "new", "title": "W-7 price", "text": "W-7 costs 12"},
        {"id": "other", "title": "Holidays", "text": "Closed in August"},
    ]
    spec = {"use": "search", "documents": documents, "boost": {"old": 3, "other": 10}}
    search = tools_by_name([spec], world)["search"]
    assert [r["id"] for r in search.invoke({"query": "W-7 price"})] == ["old", "new"]
    offline = tools_by_name([{**spec, "offline": True}], World.fresh(world.root))
    with pytest.raises(Exception, match="offline for good"):
        offline["search"].invoke({"query": "price"})
    assert [d["id"] for d in offline["list_documents"].invoke({})] == ["old", "new", "other"]


def test_broken_sources_fail_for_good_and_alternatives_answer(world: World) -> None:
    tools = tools_by_name(
        [
            {"use": "currency", "rates": {"CHF": 0.94, "USD": 1.08}, "broken": ["chf"]},
            {
                "use": "lookup",
                "name": "population",
                "description": "d",
                "param": "city",
                "table": {"Lyon": 522250, "Bordeaux": 1},
                "unavailable": ["bordeaux"],
            },
        ],
        world,
    )
    with pytest.raises(Exception, match="permanently stopped quoting CHF"):
        tools["convert"].invoke({"amount": 10, "from_currency": "CHF", "to_currency": "EUR"})
    assert tools["reference_rate"].invoke({"currency": "chf"}) == 0.94
    usd = {"amount": 108, "from_currency": "USD", "to_currency": "EUR"}
    assert tools["convert"].invoke(usd) == 100
    assert tools["population"].invoke({"city": " lyon "}) == 522250
    with pytest.raises(Exception, match="withdrawn"):
        tools["population"].invoke({"city": "Bordeaux"})
    assert tools["population"].tool_call_schema.model_json_schema()["required"] == ["city"]


def test_tool_names_must_not_repeat(world: World) -> None:
    with pytest.raises(ToolSetupError, match="tool names repeat: calculator"):
        build_tools([{"use": "calculator"}, {"use": "calculator"}], world)


PLAN = {
    "steps": [
        step("s1", "get_field", {"record_id": "W-7"}),
        step("s2", "place_order", None, ["s1"]),
    ]
}


def test_the_scripted_reviewer_edits_rejects_or_approves_by_its_policy() -> None:
    request = {"type": "plan_review", "plan": PLAN}
    policy = ReviewerPolicy.model_validate(
        {
            "decisions": [
                {"type": "edit", "step": "s1", "args": {"field": "supplier"}, "message": "m1"},
                {"type": "edit", "tool": "write_file", "args": {"path": "x"}, "message": "m2"},
                {"type": "reject", "when_tool": "delete_all", "message": "m3"},
            ]
        }
    )
    edited = answer(policy, request, 0)
    assert edited["type"] == "edit"
    assert edited["plan"]["steps"][0]["args"] == {"record_id": "W-7", "field": "supplier"}
    assert PLAN["steps"][0]["args"] == {"record_id": "W-7"}  # the request is not changed
    # An edit that matches no step, or that the graph refused, becomes a rejection.
    assert answer(policy, request, 1) == {"type": "reject", "message": "m2"}
    assert answer(policy, {**request, "errors": ["bad"]}, 0) == {"type": "reject", "message": "m1"}
    assert answer(policy, request, 2) == {"type": "approve"}  # the plan uses no delete_all
    assert answer(policy, request, 3) == {"type": "approve"}
    approval = {"type": "step_approval", "action_requests": [{}, {}]}
    assert answer(None, approval, 0) == {"decisions": [{"type": "approve"}] * 2}


# -- command line -----------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PLANEXEC_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    return home


def test_cli_runs_two_configurations_offline_and_compares_them(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    configs = [
        "--config",
        "strong=openai:gpt-4.1",
        "--config",
        "cheap=openai:gpt-4.1,openai:gpt-4.1-nano",
    ]
    budgets = ["--max-model-calls", "12", "--max-cost", "none"]
    tasks = ["--tasks", "seq-file-total,replan-chf"]
    code = main(
        [
            "eval",
            "--replies",
            str(REPLIES),
            *tasks,
            *configs,
            *budgets,
            "--out",
            str(run_dir),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert [(s["config"], s["task"], s["success"]) for s in report["tasks"]] == [
        ("strong", "seq-file-total", True),
        ("strong", "replan-chf", True),
        ("cheap", "seq-file-total", True),
        ("cheap", "replan-chf", True),
    ]
    assert report["run"]["budgets"] == {"max_model_calls": 12, "max_cost_usd": None}
    assert report["comparison"]["overall"]["cost_ratio"] < 1
    assert "cheap / strong cost ratio at equal success" in captured.err
    assert (run_dir / "report.html").is_file()

    assert main(["eval", "--resume", str(run_dir)]) == 0
    assert "resuming: 4 task run(s) already scored, 0 to go" in capsys.readouterr().out

    code = main(["eval", "--compare", f"{run_dir}@cheap", f"{run_dir / 'results.json'}@strong"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    compared = sorted((home / "evals").iterdir())
    assert len(compared) == 1
    flipped = json.loads((compared[0] / "results.json").read_text())["comparison"]
    assert (flipped["a"], flipped["b"]) == ("cheap", "strong")
    assert flipped["overall"]["cost_ratio"] == pytest.approx(
        1 / report["comparison"]["overall"]["cost_ratio"]
    )


def test_cli_prices_models_it_does_not_know(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = ["--planner-model", "openai:big:70b", "--executor-model", "openai:qwen2.5:7b"]
    # One dollar per input token for the executor, nothing for the planner.
    prices = ["--price", "openai:qwen2.5:7b=1000000,0", "--price", "big:70b=0,0"]
    argv = ["eval", "--replies", str(REPLIES), "--tasks", "seq-available-value", *models]
    code = main([*argv, *prices, "--max-cost", "none", "--out", str(tmp_path / "run"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    usage = json.loads(captured.out)["tasks"][0]["usage"]
    assert usage["executor"]["cost_usd"] == usage["executor"]["input_tokens"] > 0
    assert usage["planner"]["cost_usd"] == usage["replanner"]["cost_usd"] == 0


def test_cli_lists_tasks_and_explains_usage_errors(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--list", "--category", "review", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 6
    assert {row["category"] for row in listed} == {"review"}
    for argv, message in [
        (["eval", "--tasks", "nope"], "unknown task(s): nope"),
        (["eval", "--tasks", "replan-chf"], "no credentials for model 'openai:gpt-4.1'"),
        (["eval", "--resume", str(tmp_path)], "no evaluation in"),
        (["eval", "--resume", str(tmp_path), "--max-tokens", "none"], "drop --max-tokens"),
        (["eval", "--config", "x=openai:a", "--planner-model", "openai:b"], "either with --config"),
    ]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (home / "evals").exists()
    # A task that cannot run at all is scored as an error, and the command says so.
    (tmp_path / "none").mkdir()
    argv = ["eval", "--replies", str(tmp_path / "none"), "--tasks", "replan-chf", "--json"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 1
    score = json.loads(capsys.readouterr().out)["tasks"][0]
    assert (score["status"], score["error"]) == (
        "error",
        "RepliesError: no recorded replies for task 'replan-chf'",
    )
    # Resuming gives a task that could not run another try.
    assert (
        main(["eval", "--resume", str(tmp_path / "run"), "--replies", str(REPLIES), "--json"]) == 0
    )
    rerun = json.loads(capsys.readouterr().out)["tasks"]
    assert [(s["task"], s["success"], s["error"]) for s in rerun] == [("replan-chf", True, None)]


# -- the real client against a local server ----------------------------------------

ROLE_MARKERS = {
    "planner": "You are the planner",
    "executor": "You carry out one step",
    "replanner": "You are the replanner",
}


def served(script: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A task's recorded replies as one server script: each reply matched to its role."""
    for role, marker in ROLE_MARKERS.items():
        for reply in script.get(role, []):
            yield {"match": marker, **reply}


@pytest.mark.integration
async def test_a_task_runs_through_the_real_openai_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAI(served(recorded("replan-missing-file"))) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "dummy")
        config = EvalConfig(name="local", context={"model_timeout": 10, "model_max_retries": 0})
        suite = load_suite()
        task = suite.task("replan-missing-file")
        evaluation = Evaluation.create(tmp_path / "run", suite, [config], tasks=[task])
        report = await evaluation.run()
        server.assert_done()
    score = report["tasks"][0]
    assert score["success"] is True, score
    assert {role: use["calls"] for role, use in score["usage"].items()} == {
        "planner": 1,
        "executor": 1,
        "replanner": 2,
    }
    assert score["tokens"] == server.usage["total_tokens"]
    assert score["cost_usd"] > 0
    assert [body["model"] for body in server.requests] == [
        "gpt-4.1",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1",
    ]
    executor = server.requests_for_tool("read_file")
    assert len(executor) == 1
    assert tool_names(executor[0]) == ["read_file"]
