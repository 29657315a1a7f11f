"""Bounded replanner prompts: the replanner's prompt size as a thread is revised.

`python -m bench.prompts [--quick]` runs the real graph (`build_graph`, in memory) with
scripted models on a thread that the replanner revises again and again
(`tests/helpers.py`'s `replanning_script`: each revision adds one calculator step,
every fifth one that fails), and records what the replanner was sent at revisions 10,
50 and 200: characters (system and user message together) and messages. The live plan
is one step at every revision, so the prompt should stay the same size.

The target: the prompt at the last revision is at most `SAME_FACTOR` times the prompt at
revision 10, and at most `CAP` characters. Before, the replanner was sent every step
and result of every revision: 4,900 characters at revision 10, 12,866 at 50 and 43,163
at 200, about 200 more per revision.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# `tests` is not a package: its helpers are imported as top-level modules, as the
# tests themselves import them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import REPLANNED_START, Harness, context, replanning_script
from planexec.scripted import plan_reply

REVISIONS = (10, 50, 200)
SAME_FACTOR = 1.2
"""Target: the last revision's prompt at most this times revision 10's."""
CAP = 5_000
"""Target: the last revision's prompt at most this many characters."""


@dataclass
class PromptRow:
    """What the replanner was sent at one revision of the thread."""

    revision: int
    chars: int
    messages: int


async def measure(revisions: tuple[int, ...] = REVISIONS) -> tuple[list[PromptRow], float]:
    """The replanner's prompt at each of `revisions`, from one thread; and its wall seconds."""
    last = max(revisions)
    harness = Harness(planner=[plan_reply(REPLANNED_START)], replanner=replanning_script(last))
    began = time.perf_counter()
    out = await harness.run({"goal": "count up"}, context(max_replans=last))
    wall = time.perf_counter() - began
    if out["status"] != "completed":
        raise RuntimeError(f"the replanning run ended {out['status']}: {out.get('reason')}")
    calls = harness.replanner.calls
    rows = [PromptRow(n, len(calls[n - 1].prompt), len(calls[n - 1].messages)) for n in revisions]
    return rows, wall


def summary(rows: list[PromptRow]) -> list[str]:
    """One line per target, saying whether it holds."""
    first, last = rows[0], rows[-1]
    ratio = last.chars / first.chars
    same = "PASS" if ratio <= SAME_FACTOR else "FAIL"
    capped = "PASS" if last.chars <= CAP else "FAIL"
    per = (last.chars - first.chars) / (last.revision - first.revision)
    return [
        f"revision {last.revision} / revision {first.revision} = {ratio:.2f} ({same})",
        f"revision {last.revision}: {last.chars:,} characters, at most {CAP:,} ({capped})",
        f"growth: {per:.1f} characters per revision from {first.revision} to {last.revision}",
    ]


def markdown(rows: list[PromptRow], wall: float) -> str:
    """The report as a Markdown table, with the targets' verdicts."""
    lines = [
        "### Bounded replanner prompts: prompt size as a thread is revised",
        "",
        f"One thread revised {rows[-1].revision} times ({wall:.1f} s), a one-step live plan "
        "at every revision; the replanner's prompt at each revision:",
        "",
        "| revision | characters | messages |",
        "|---|---|---|",
        *(f"| {r.revision} | {r.chars:,} | {r.messages} |" for r in rows),
        "",
        *(f"- {line}" for line in summary(rows)),
    ]
    return "\n".join(lines) + "\n"


def as_json(rows: list[PromptRow], wall: float) -> dict[str, Any]:
    """The figures as JSON data."""
    return {"rows": [asdict(r) for r in rows], "wall_s": wall, "summary": summary(rows)}


def main(argv: list[str] | None = None) -> int:
    """Print the report; always 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.prompts", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="up to revision 50 only")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rows, wall = asyncio.run(measure((10, 50) if args.quick else REVISIONS))
    print(markdown(rows, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
