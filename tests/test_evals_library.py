"""`planexec eval`'s repeated category: tasks that share a plan library, run in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from planexec.evals.config import EvalConfig
from planexec.evals.replay import Replies
from planexec.evals.runner import Evaluation
from planexec.evals.suite import CATEGORIES, load_suite, parse_suite

REPLIES = Path(__file__).parent / "evals_replies"
STRONG = EvalConfig(name="strong", executor_model="openai:gpt-4.1")
CHEAP = EvalConfig(name="cheap", executor_model="openai:gpt-4.1-mini")
REPEATED = [
    "repeat-bolts-first",
    "repeat-bolts-again",
    "repeat-bolts-spaced",
    "repeat-bolts-near",
    "repeat-bolts-near-usd",
]


async def run(tmp_path: Path, **options: Any) -> dict[str, dict[str, Any]]:
    suite = load_suite()
    evaluation = Evaluation.create(
        tmp_path / "run",
        suite,
        (STRONG, CHEAP),
        tasks=suite.select(REPEATED),
        replies=Replies.load(REPLIES),
        concurrency=8,
        **options,
    )
    report = await evaluation.run()
    return {f"{s['config']}:{s['task']}": s for s in report["tasks"]}


def planner_calls(score: dict[str, Any]) -> int:
    calls: int = (score["usage"].get("planner") or {}).get("calls", 0)
    return calls


async def test_repeats_replay_with_no_planner_call_and_paraphrases_plan(tmp_path: Path) -> None:
    scores = await run(tmp_path)
    assert all(s["success"] for s in scores.values()), scores
    for config in ("strong", "cheap"):
        calls = [planner_calls(scores[f"{config}:{task}"]) for task in REPEATED]
        # Each configuration has its own library: its first task plans for both.
        assert calls == [1, 0, 0, 1, 1], (config, calls)
    assert (tmp_path / "run" / "checkpoints.plans.sqlite").is_file()


async def test_reuse_off_measures_the_same_tasks_without_the_library(tmp_path: Path) -> None:
    scores = await run(tmp_path, reuse="off")
    assert all(s["success"] for s in scores.values())
    assert [planner_calls(scores[f"strong:{task}"]) for task in REPEATED] == [1, 1, 1, 1, 1]


def test_the_repeated_category_is_bundled_and_shares_one_library() -> None:
    suite = load_suite()
    assert "repeated" in CATEGORIES
    repeated = [t for t in suite.tasks if t.category == "repeated"]
    assert [t.id for t in repeated] == REPEATED
    assert {t.library for t in repeated} == {"bolts"}
    assert all(t.library is None for t in suite.tasks if t.category != "repeated")


def test_a_library_name_must_be_a_plain_id() -> None:
    suite = load_suite().model_dump(mode="json", exclude_unset=True)
    suite["tasks"][0]["library"] = "no spaces please"
    with pytest.raises(ValueError, match="library"):
        parse_suite(suite)
