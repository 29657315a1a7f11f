"""The plan library's benchmark code runs: a short repeated-goal workload, checked, never timed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `bench` sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.library import MODES, markdown, measure_all, targets

pytestmark = pytest.mark.integration


async def test_the_repeated_goal_workload_counts_planner_calls_and_reports_targets() -> None:
    rows = await measure_all(repeats=2, latency=0.0)

    by = {(row.mode, row.phase): row for row in rows}
    assert [row.mode for row in rows] == [m for m in MODES for _ in range(3)]
    assert all(row.completed == row.runs for row in rows)
    # Every seed plans once; "off" plans every run; "replay" skips the planner on repeats.
    assert [by[(m, "seed")].planner_calls for m in MODES] == [1, 1, 1]
    assert by[("off", "exact repeats")].planner_calls == 2
    assert by[("suggest", "exact repeats")].planner_calls == 2
    assert by[("replay", "exact repeats")].planner_calls == 0
    assert by[("replay", "exact repeats")].planner_tokens_in == 0
    # Only the library's modes send examples, and only once there is a saved plan.
    assert by[("off", "paraphrases")].examples_tokens == 0
    assert by[("suggest", "seed")].examples_tokens == 0
    assert by[("suggest", "paraphrases")].examples_tokens > 0
    assert all(targets(rows).values())
    table = markdown(rows, 2, 0.0)
    assert "| replay | exact repeats | 2 | 2 | 0 | 0/0 |" in table
    assert "- replay: 0 planner calls on exact repeats: PASS" in table
