"""The cold-start benchmark measures what it says (structure and outcomes, not speed)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

# `bench` sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cold
from bench.server import ModelServer


def thread_count(directory: Path) -> int:
    with closing(sqlite3.connect(directory / "checkpoints.sqlite")) as conn:
        return int(conn.execute("SELECT COUNT(DISTINCT thread_id) FROM checkpoints").fetchone()[0])


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    running = ModelServer().start()
    monkeypatch.setenv("OPENAI_BASE_URL", running.url)
    monkeypatch.setenv("OPENAI_API_KEY", "bench")
    yield running
    running.stop()


def test_every_start_up_command_runs_and_is_measured_over_bare_python(tmp_path: Path) -> None:
    rows = cold.measure_starts(tmp_path, starts=1)
    assert [r.command for r in rows] == [
        "import planexec",
        "planexec --help",
        "planexec completion bash",
        "planexec completion zsh",
        "planexec completion fish",
        "TAB: planexec __complete threads",
        "planexec threads",
        "planexec show THREAD",
    ]
    for row in rows:
        assert 0 < row.over_python_s < row.median_s
        assert row.passed == (row.over_python_s <= row.target_s)
        assert row.cpu_s > 0


async def test_cold_runs_open_a_saver_and_build_a_graph_for_each_run(
    server: ModelServer, tmp_path: Path
) -> None:
    rows = await cold.measure_cold_runs(server, tmp_path, runs=1)
    assert [r.workload for r in rows] == ["chain4", "fanout4", "fanout8", "fanout4_flaky"]
    for row in rows:
        assert row.statuses == ["completed"]
        assert row.bound_s > 0
        assert 0 < row.build_ms < 1000 * row.wall_s
    # Each run was a new thread in the workload's one file: a warm-up and the timed run.
    for row in rows:
        assert await asyncio.to_thread(thread_count, tmp_path / row.workload) == 2


async def test_framework_rows_compare_a_new_graph_with_a_warm_one(
    server: ModelServer, tmp_path: Path
) -> None:
    rows = await cold.measure_framework(server, tmp_path, runs=1)
    assert [r.target_ms for r in rows] == [cold.FIRST_RUN_MS, cold.WARM_RUN_MS]
    assert all(r.median_ms > 0 for r in rows)


def test_a_new_process_per_run_completes_through_the_command_line(
    server: ModelServer, tmp_path: Path
) -> None:
    [row] = cold.measure_processes(server, tmp_path, runs=1)
    assert row.statuses == ["completed"]
    assert row.bound_s > 0
    assert row.wall_s > row.bound_s
    report = cold.ColdReport([], [], [], [row])
    assert "via planexec run" in cold.markdown(report)
    assert report.as_json()["processes"][0]["over_bound_s"] == row.wall_s - row.bound_s
    assert row.ratio == row.wall_s / row.bound_s
    assert row.passed == (row.ratio <= cold.WALL_FACTOR)
    verdict = "pass" if row.passed else "**miss**"
    assert f"| {row.ratio:.2f} |" in cold.markdown(report)
    assert f"{verdict} (≤ {cold.WALL_FACTOR}) |" in cold.markdown(report)
    assert os.environ["OPENAI_BASE_URL"] == server.url


def test_the_summary_names_every_row_that_missed_its_target() -> None:
    report = cold.ColdReport(
        [cold.StartRow("planexec --help", 1.0, 0.1, 0.3), cold.StartRow("threads", 2, 0.9, 0.6)],
        [cold.ColdRow("chain4", 1.0, 1.0, 5.0, ["completed"])],
        [cold.FrameworkRow("warm graph, a run", 20.0, 15.0)],
        [cold.ProcessRow("chain4 via planexec run", 3.0, 1.0, 1.2, ["completed"])],
    )
    line = cold.markdown(report).splitlines()[-1]
    assert line == (
        "cold summary: 2/5 rows pass; missed: start: threads; framework: warm graph, a run; "
        "new process per run: chain4 via planexec run"
    )
    assert report.as_json()["summary"] == line


def test_the_listing_rows_list_every_copied_thread_newest_first(tmp_path: Path) -> None:
    rows = cold.measure_listings(tmp_path, starts=1, threads=30)
    assert [(r.command, r.threads, r.target_s) for r in rows] == [
        ("planexec threads", 30, cold.PAGE_S),
        ("planexec threads --all --json", 30, None),
        ("planexec threads --all", 30, None),
    ]
    assert all(r.median_s > 0 and r.cpu_s > 0 for r in rows)
    assert thread_count(tmp_path) == 30
    with closing(sqlite3.connect(tmp_path / "checkpoints.sqlite")) as conn:
        histories = conn.execute("SELECT COUNT(*) FROM checkpoints GROUP BY thread_id").fetchall()
    assert len(set(histories)) == 1  # every copy has the first thread's whole history
    env = {**os.environ, "PLANEXEC_HOME": str(tmp_path)}
    program = str(Path(sys.executable).with_name("planexec"))
    done = subprocess.run(
        [program, "threads", "--all", "--json"], env=env, capture_output=True, check=True
    )
    listed = json.loads(done.stdout)
    assert listed["total"] == 30
    assert [t["thread_id"] for t in listed["threads"]][:2] == ["thread-00029", "thread-00028"]
    assert {t["status"] for t in listed["threads"]} == {"completed"}
    report = cold.ColdReport([], [], [], [], rows)
    assert "among 30 threads" in cold.markdown(report)
    assert report.as_json()["listings"][0]["passed"] == rows[0].passed
