"""The concurrency benchmark's code runs: a few runs on SQLite, checked, never timed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `bench` sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.concurrency import (
    RemoteServer,
    expected_answer,
    markdown,
    measure_all,
    measure_processes,
)

pytestmark = pytest.mark.integration


async def test_concurrent_runs_are_counted_and_reported() -> None:
    rows = await measure_all(runs=5, latency=0.0, sqlite_only=True)

    assert [row.checkpointer for row in rows] == ["sqlite"]
    row = rows[0]
    assert (row.completed, row.wrong, row.errors) == (5, 0, [])
    assert row.model_requests == 5 * 3  # plan, one text step, finish
    assert len(row.latencies_s) == 5
    assert row.percentile(50) <= row.percentile(95) <= row.wall_s
    # The runs took CPU in this process's event loop; the server's is in its own process.
    assert 0 < row.loop_cpu_s <= row.cpu_s
    assert row.ceiling == pytest.approx(row.completed / row.loop_cpu_s)
    table = markdown(rows, 5, 0.0)
    assert "| sqlite | 5/5 | 0 | 0 |" in table
    assert "| ≥ 45: " in table
    assert table.splitlines()[2].count("|") == table.splitlines()[4].count("|")
    assert expected_answer(3) == "run 3: 22 (the result is 22)"


def test_runs_split_over_processes_are_added_up(tmp_path: Path) -> None:
    with RemoteServer(0.0) as server:
        row = measure_processes("sqlite, 2 processes", str(tmp_path / "c.sqlite"), server, 6, 2)
    assert (row.runs, row.completed, row.wrong, row.errors) == (6, 6, 0, [])
    assert row.model_requests == 6 * 3  # the processes' warm-up runs are not counted
    assert len(row.latencies_s) == 6
    assert 0 < row.loop_cpu_s <= row.cpu_s
    assert max(row.latencies_s) <= row.wall_s
