"""Follow-up goals: checkpoint bytes per goal on one thread that takes goal after goal.

`python -m bench.goals [--quick]` runs the real graph (`build_graph`) with scripted models
and an `AsyncSqliteSaver` file (`planexec.checkpoints.open_checkpointer`, as the command
line opens it) on one thread sent `GOALS` chat messages, one after another, each a goal
of a two-step calculator plan with no review and an answer of about 300 characters. After
each goal it sums the bytes the thread holds in the database (checkpoints and their
writes) and records what that goal added, and the size of the thread's latest checkpoint.

SQLite keeps every channel's value in every checkpoint, so a goal's checkpoints carry
what the thread kept of the goals before it (`messages`, `revisions`, `earlier_goals`):
what a goal adds grows with the thread by that much per goal, and the thread's total with
the square of its length unless that is small. The target: goal `GOALS` adds at most
`GROWTH_FACTOR` times what goal 1 added.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import calculator

GOALS = 20
GROWTH_FACTOR = 2.0
"""Target: the last goal adds at most this times the bytes the first added."""
THREAD = "conversation"


@dataclass
class GoalRow:
    """One goal of the thread: what its checkpoints added, and the thread after it."""

    goal: int
    added_bytes: int
    total_bytes: int
    latest_checkpoint_bytes: int
    checkpoints: int


def _script(goals: int) -> list[Any]:
    replies: list[Any] = []
    for n in range(1, goals + 1):
        replies.append(
            plan_reply(
                [
                    {
                        "id": "s1",
                        "description": f"Multiply {n} by 7",
                        "tool": "calculator",
                        "args": {"expression": f"{n}*7"},
                        "depends_on": [],
                    },
                    {
                        "id": "s2",
                        "description": "Add 5 to it",
                        "tool": "calculator",
                        "args": {"expression": "{{s1}} + 5"},
                        "depends_on": ["s1"],
                    },
                ]
            )
        )
        answer = f"Goal {n}: {n} times 7 plus 5 is {n * 7 + 5}. " + "Explained at length. " * 12
        replies.append(replan_reply("finish", answer=answer))
    return replies


def _bytes(path: Path) -> tuple[int, int, int]:
    """The thread's bytes (checkpoints and writes), its latest checkpoint's, and its count."""
    with sqlite3.connect(path) as conn:
        stored = conn.execute(
            "SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0), count(*) "
            "FROM checkpoints WHERE thread_id = ?",
            (THREAD,),
        ).fetchone()
        writes = conn.execute(
            "SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = ?", (THREAD,)
        ).fetchone()
        latest = conn.execute(
            "SELECT length(checkpoint) FROM checkpoints WHERE thread_id = ? "
            "ORDER BY checkpoint_id DESC LIMIT 1",
            (THREAD,),
        ).fetchone()
    return int(stored[0]) + int(writes[0]), int(latest[0]), int(stored[1])


async def measure(goals: int = GOALS) -> tuple[list[GoalRow], float]:
    """One row per goal of a `goals`-goal thread; and the wall seconds it took."""
    model = ScriptedChatModel(_script(goals))
    context = Context(review="never", retry_initial_interval=0.0)
    config = {"configurable": {"thread_id": THREAD}}
    rows: list[GoalRow] = []
    with tempfile.TemporaryDirectory(prefix="planexec-goals-") as where:
        path = Path(where) / "checkpoints.sqlite"
        began = time.perf_counter()
        async with open_checkpointer(path) as saver:
            graph = build_graph(tools=[calculator], checkpointer=saver, planner=model)
            before = 0
            for n in range(1, goals + 1):
                message = {"type": "human", "content": f"Goal {n}: what is {n} times 7 plus 5?"}
                out = await graph.ainvoke({"messages": [message]}, config, context=context)
                if out["status"] != "completed" or out["goal_index"] != n:
                    raise RuntimeError(f"goal {n} ended {out['status']}: {out.get('reason')}")
                total, latest, count = _bytes(path)
                rows.append(GoalRow(n, total - before, total, latest, count))
                before = total
        wall = time.perf_counter() - began
    return rows, wall


def summary(rows: list[GoalRow]) -> list[str]:
    """One line per target, saying whether it holds."""
    first, last = rows[0], rows[-1]
    ratio = last.added_bytes / first.added_bytes
    verdict = "PASS" if ratio <= GROWTH_FACTOR else "FAIL"
    per = (last.added_bytes - first.added_bytes) / max(1, last.goal - first.goal)
    return [
        f"goal {last.goal} added / goal {first.goal} added = {ratio:.2f} "
        f"(at most {GROWTH_FACTOR}: {verdict})",
        f"growth: {per:,.0f} more bytes added per goal, from goal {first.goal} to {last.goal}",
    ]


def markdown(rows: list[GoalRow], wall: float) -> str:
    """The report as a Markdown table, with the target's verdict."""
    shown = [r for r in rows if r.goal in {1, 2, 5, 10, 15, 20} or r is rows[-1]]
    lines = [
        "### Follow-up goals: checkpoint bytes per goal on one thread (SQLite)",
        "",
        f"One thread, {rows[-1].goal} goals sent as chat messages ({wall:.1f} s), each a "
        "two-step plan and a 300-character answer:",
        "",
        "| goal | bytes added | thread total | latest checkpoint | checkpoints |",
        "|---|---|---|---|---|",
        *(
            f"| {r.goal} | {r.added_bytes:,} | {r.total_bytes:,} | "
            f"{r.latest_checkpoint_bytes:,} | {r.checkpoints} |"
            for r in shown
        ),
        "",
        *(f"- {line}" for line in summary(rows)),
    ]
    return "\n".join(lines) + "\n"


def as_json(rows: list[GoalRow], wall: float) -> dict[str, Any]:
    """The figures as JSON data."""
    return {"rows": [asdict(r) for r in rows], "wall_s": wall, "summary": summary(rows)}


def main(argv: list[str] | None = None) -> int:
    """Print the report; always 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.goals", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 goals only")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rows, wall = asyncio.run(measure(5 if args.quick else GOALS))
    print(markdown(rows, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
