"""The replanner-prompt benchmark measures each revision asked for and judges its targets."""

from __future__ import annotations

import sys
from pathlib import Path

# `bench` sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import prompts


async def test_the_report_has_every_revision_and_target() -> None:
    rows, wall = await prompts.measure((5, 20))
    assert [(r.revision, r.messages) for r in rows] == [(5, 2), (20, 2)]
    assert wall > 0
    [same, capped, growth] = prompts.summary(rows)
    assert same.startswith("revision 20 / revision 5 = ")
    assert same.endswith("(PASS)")
    assert capped.endswith("at most 5,000 (PASS)")
    assert growth.startswith("growth: ")
    report = prompts.markdown(rows, wall)
    assert "| 20 | " in report
    assert set(prompts.as_json(rows, wall)) == {"rows", "wall_s", "summary"}


def test_a_prompt_that_grows_fails_the_targets() -> None:
    grown = [prompts.PromptRow(10, 4_900, 2), prompts.PromptRow(200, 43_163, 2)]
    assert [line[-6:] for line in prompts.summary(grown)[:2]] == ["(FAIL)", "(FAIL)"]
