"""A run survives process boundaries and crashes, on a real SQLite file.

Each part of a run happens in its own process (`persist_worker.py`), sharing only the
SQLite file and, for the crash tests, an effects file where every tool call appends a
line. A process is killed with SIGKILL, so nothing is flushed or closed on the way out.
Each scenario runs on the async API (`AsyncSqliteSaver`, `ainvoke`) and on the sync one
(`SqliteSaver`, `invoke`): the `worker_api` fixture picks the workers' API.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_config

from helpers import step
from persist_worker import ANSWER, EXPLANATION, SCENARIOS
from planexec import Context, ScriptedChatModel, build_graph
from planexec.scripted import plan_reply, replan_reply

WORKER = Path(__file__).with_name("persist_worker.py")
DEADLINE_S = 30.0
"""How long a test waits for a worker to reach a point (startup is about a second)."""
WORKER_API = "ainvoke"
"""The API the workers use (`--api`); the `worker_api` fixture sets it per test."""


@pytest.fixture(params=["ainvoke", "invoke"])
def worker_api(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test's workers on LangGraph's async API, then on its sync API."""
    monkeypatch.setattr(sys.modules[__name__], "WORKER_API", request.param)
    return str(request.param)


def _command(scenario: str, action: str, tmp_path: Path, thread: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-W",
        "error",
        str(WORKER),
        scenario,
        action,
        "--db",
        str(tmp_path / "checkpoints.sqlite"),
        "--thread",
        thread,
        "--effects",
        str(tmp_path / "effects.txt"),
        "--api",
        WORKER_API,
        *extra,
    ]


def run_worker(
    scenario: str, action: str, tmp_path: Path, thread: str, *extra: str
) -> dict[str, Any]:
    """Run one worker process to its end and return its report."""
    command = _command(scenario, action, tmp_path, thread, *extra)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=DEADLINE_S, cwd=tmp_path
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{scenario} {action} did not finish in {DEADLINE_S}s:\n{exc.stderr!r}")
    assert done.returncode == 0, (
        f"{scenario} {action} exited with {done.returncode}:\n{done.stderr}"
    )
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@dataclass
class Launched:
    """A worker running in the background, its output going to files."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @classmethod
    def start(
        cls, scenario: str, action: str, tmp_path: Path, thread: str, *extra: str
    ) -> Launched:
        stdout, stderr = tmp_path / f"{action}.out", tmp_path / f"{action}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                _command(scenario, action, tmp_path, thread, *extra),
                stdout=out,
                stderr=err,
                cwd=tmp_path,
            )
        return cls(process, stdout, stderr)

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll `condition` until it holds; fail if the worker exits or time runs out."""
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(
                    f"the worker exited ({self.process.returncode}) before {what}:\n"
                    f"{self.stderr.read_text()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"timed out waiting for {what}:\n{self.stderr.read_text()}")
            time.sleep(0.02)

    def report(self) -> dict[str, Any] | None:
        """The worker's report, once it has printed a whole line."""
        text = self.stdout.read_text()
        if not text.endswith("\n"):
            return None
        report: dict[str, Any] = json.loads(text.splitlines()[-1])
        return report

    def kill(self) -> None:
        """SIGKILL the worker: no cleanup, no flushing, no closing of the saver."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=DEADLINE_S)
        assert self.process.returncode == -signal.SIGKILL


@dataclass(frozen=True)
class Effect:
    """One line of the effects file."""

    kind: str  # "begin" (the side effect happened) or "end" (the tool returned)
    step: str
    pid: int
    key: str | None  # the idempotency key the tool was given, on "begin" lines


def effects(tmp_path: Path) -> list[Effect]:
    path = tmp_path / "effects.txt"
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [
        Effect(parts[0], parts[1], int(parts[2]), parts[3] if len(parts) > 3 else None)
        for parts in lines
    ]


def began(tmp_path: Path, pid: int | None = None) -> Counter[str]:
    """How many times each step's side effect happened (in process `pid`, if given)."""
    return Counter(
        e.step for e in effects(tmp_path) if e.kind == "begin" and (pid is None or e.pid == pid)
    )


def ended(tmp_path: Path) -> set[str]:
    return {e.step for e in effects(tmp_path) if e.kind == "end"}


def recorded_results(tmp_path: Path) -> int:
    """How many executor tasks have their return value saved in the SQLite file.

    A step's result is recorded when LangGraph saves its task's return value as a
    pending write; until then a crash loses it and the step runs again on resume.
    """
    uri = f"file:{tmp_path / 'checkpoints.sqlite'}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM writes WHERE channel = '__return__'"
            ).fetchone()
    except sqlite3.OperationalError:  # the file or its tables do not exist yet
        return 0
    return int(row[0])


def interrupt_of(report: dict[str, Any]) -> dict[str, Any]:
    interrupts = report["output"]["__interrupt__"]
    assert len(interrupts) == 1, interrupts
    value: dict[str, Any] = interrupts[0]["value"]
    return value


# --- plan review across processes ------------------------------------------------------


@pytest.mark.usefixtures("worker_api")
def test_paused_at_review_in_one_process_is_approved_and_finished_in_another(
    tmp_path: Path,
) -> None:
    first = run_worker("review", "start", tmp_path, "t-review")
    paused = interrupt_of(first)
    assert paused["type"] == "plan_review"
    assert paused["revision"] == 1
    assert paused["plan"] == {"steps": SCENARIOS["review"]}
    assert first["output"]["results"] == {}
    assert first["calls"] == {"planner": 1, "executor": 0, "replanner": 0}

    second = run_worker("review", "approve", tmp_path, "t-review")
    assert second["pid"] != first["pid"]
    # B found the run where A left it, waiting on the same review.
    assert second["before"]["next"] == ["review"]
    assert [i["value"] for i in second["before"]["interrupts"]] == [paused]
    out = second["output"]
    assert out["status"] == "completed"
    assert out["answer"] == ANSWER
    assert {k: (r["status"], r["output"]) for k, r in out["results"].items()} == {
        "s1": ("done", 48),
        "s2": ("done", 53),
        "s3": ("done", EXPLANATION),
    }
    # B planned nothing: its planner has no script and was never asked.
    assert second["calls"] == {"planner": 0, "executor": 1, "replanner": 1}
    assert "53" in second["prompts"]["executor"][0]
    assert [r["revision"] for r in out["revisions"]] == [1]
    assert out["revisions"][0]["plan"] == paused["plan"]
    assert [(r["revision"], r["decision"], r["plan_hash"]) for r in out["reviews"]] == [
        (1, "approve", paused["plan_hash"])
    ]
    # A's planner call is still counted after the process boundary.
    assert out["usage"]["planner"]["calls"] == 1
    assert out["usage"]["replanner"]["calls"] == 1


@pytest.mark.parametrize("durability", ["async", "exit"])
@pytest.mark.usefixtures("worker_api")
def test_a_run_killed_while_paused_at_review_loses_nothing(tmp_path: Path, durability: str) -> None:
    holder = Launched.start(
        "review", "start", tmp_path, "t-held", "--linger", "--durability", durability
    )
    holder.wait_until(lambda: holder.report() is not None, "the run paused at review")
    first = holder.report()
    assert first is not None
    paused = interrupt_of(first)
    holder.kill()  # the saver is still open: the process dies holding the paused run

    later = run_worker("review", "approve", tmp_path, "t-held")
    assert later["before"]["next"] == ["review"]
    assert [i["value"] for i in later["before"]["interrupts"]] == [paused]
    assert later["before"]["values"]["plan"] == paused["plan"]
    assert later["before"]["values"]["results"] == {}
    out = later["output"]
    assert out["status"] == "completed"
    assert sorted(k for k, r in out["results"].items() if r["status"] == "done") == [
        "s1",
        "s2",
        "s3",
    ]
    assert later["calls"]["planner"] == 0
    assert [r["decision"] for r in out["reviews"]] == ["approve"]


# --- kill -9 during execution ----------------------------------------------------------


def _kill_mid_run(
    tmp_path: Path, scenario: str, thread: str, finished: set[str], in_flight: set[str]
) -> int:
    """Start `scenario`, SIGKILL it once `finished` are recorded and `in_flight` began.

    Returns the killed process's pid.
    """
    run = Launched.start(scenario, "start", tmp_path, thread, "--durability", "sync")

    def reached() -> bool:
        return (
            finished <= ended(tmp_path)
            and in_flight <= set(began(tmp_path))
            and recorded_results(tmp_path) >= len(finished)
        )

    run.wait_until(reached, f"{sorted(finished)} recorded and {sorted(in_flight)} running")
    run.kill()
    assert ended(tmp_path) == finished, "a slow step finished before the kill"
    assert recorded_results(tmp_path) == len(finished)
    return run.process.pid


def _check_resumed(
    tmp_path: Path, scenario: str, thread: str, resumed: dict[str, Any], in_flight: set[str]
) -> None:
    steps = [s["id"] for s in SCENARIOS[scenario]]
    out = resumed["output"]
    assert out["status"] == "completed", out.get("reason")
    assert sorted(out["results"]) == steps
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in out["results"].values())
    assert resumed["before"]["next"] == ["executor"]
    assert resumed["calls"] == {"planner": 0, "executor": 0, "replanner": 1}

    # Every step's side effect happened once, except the step the kill interrupted: it
    # had no recorded result, so it ran again (at least once, LangGraph's guarantee).
    assert began(tmp_path) == {s: 2 if s in in_flight else 1 for s in steps}
    # Both runs of an interrupted step carried the same idempotency key.
    for step_id in in_flight:
        keys = {e.key for e in effects(tmp_path) if e.kind == "begin" and e.step == step_id}
        assert keys == {f"{thread}:r1:{step_id}"}


@pytest.mark.usefixtures("worker_api")
def test_killed_chain_resumes_after_the_last_recorded_step(tmp_path: Path) -> None:
    killed = _kill_mid_run(tmp_path, "chain", "t-chain", finished={"s1", "s2"}, in_flight={"s3"})
    assert began(tmp_path, killed) == {"s1": 1, "s2": 1, "s3": 1}

    resumed = run_worker("chain", "continue", tmp_path, "t-chain", "--fast")
    _check_resumed(tmp_path, "chain", "t-chain", resumed, in_flight={"s3"})
    assert began(tmp_path, resumed["pid"]) == {"s3": 1, "s4": 1}
    # The resumed s3 used s2's output from the killed process's records.
    outputs = {k: r["output"] for k, r in resumed["output"]["results"].items()}
    assert outputs == {"s1": "s1", "s2": "s1,s2", "s3": "s1,s2,s3", "s4": "s1,s2,s3,s4"}


@pytest.mark.usefixtures("worker_api")
def test_killed_parallel_wave_resumes_only_the_unfinished_steps(tmp_path: Path) -> None:
    # s1 and s3 finish quickly; s2 and s4 are still running when the process dies.
    killed = _kill_mid_run(
        tmp_path, "wave", "t-wave", finished={"s1", "s3"}, in_flight={"s2", "s4"}
    )
    assert began(tmp_path, killed) == {"s1": 1, "s2": 1, "s3": 1, "s4": 1}

    resumed = run_worker("wave", "continue", tmp_path, "t-wave", "--fast")
    _check_resumed(tmp_path, "wave", "t-wave", resumed, in_flight={"s2", "s4"})
    assert began(tmp_path, resumed["pid"]) == {"s2": 1, "s4": 1, "s5": 1}
    outputs = {k: r["output"] for k, r in resumed["output"]["results"].items()}
    assert outputs["s5"] == "s1,s2,s3,s4,s5"


@pytest.mark.parametrize(("given", "seen"), [(None, "sync"), ("exit", "exit")])
async def test_runs_with_a_checkpointer_default_to_sync_durability(
    given: str | None, seen: str
) -> None:
    modes: list[str] = []

    @tool
    def probe() -> str:
        """Report the run's durability mode."""
        modes.append(get_config()["configurable"]["__pregel_durability"])
        return "ok"

    graph = build_graph(
        tools=[probe],
        checkpointer=InMemorySaver(),
        planner=ScriptedChatModel([plan_reply([step("s1", tool="probe", args={})])]),
        replanner=ScriptedChatModel([replan_reply("finish", answer="done")]),
    )
    options = {} if given is None else {"durability": given}
    run = {"configurable": {"thread_id": "t1"}}
    out = await graph.ainvoke({"goal": "probe"}, run, context=Context(review="never"), **options)
    assert out["status"] == "completed"
    assert modes == [seen]
