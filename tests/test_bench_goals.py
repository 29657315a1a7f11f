"""The follow-up-goals benchmark measures each goal of one thread and judges its target."""

from __future__ import annotations

import sys
from pathlib import Path

# `bench` sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import goals
from bench.__main__ import parse


async def test_the_report_has_every_goal_and_the_target() -> None:
    rows, wall = await goals.measure(3)
    assert [r.goal for r in rows] == [1, 2, 3]
    assert all(r.added_bytes > 0 for r in rows)
    assert rows[-1].total_bytes == sum(r.added_bytes for r in rows)
    assert [r.checkpoints for r in rows] == [7, 14, 21]
    assert rows[0].latest_checkpoint_bytes < rows[-1].latest_checkpoint_bytes
    assert wall > 0
    [ratio, growth] = goals.summary(rows)
    assert ratio.startswith("goal 3 added / goal 1 added = ")
    assert growth.startswith("growth: ")
    report = goals.markdown(rows, wall)
    assert "| 3 | " in report
    assert set(goals.as_json(rows, wall)) == {"rows", "wall_s", "summary"}


def test_growth_past_the_factor_fails_and_within_it_passes() -> None:
    grown = [goals.GoalRow(1, 20_000, 20_000, 5_000, 7), goals.GoalRow(20, 360_000, 0, 0, 140)]
    assert goals.summary(grown)[0].endswith("FAIL)")
    flat = [goals.GoalRow(1, 20_000, 20_000, 5_000, 7), goals.GoalRow(20, 30_000, 0, 0, 140)]
    assert goals.summary(flat)[0].endswith("PASS)")


def test_only_goals_is_a_known_part() -> None:
    options, out = parse(["--only", "goals"])
    assert (options.only, out) == (["goals"], None)
