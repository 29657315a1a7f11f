"""`planexec threads`: every thread in a checkpoint database, newest first.

The thread ids come from one query on the saver's `checkpoints` table (SQLite or
PostgreSQL; any other saver is scanned); then each listed thread's latest checkpoint
alone is read, never its history.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg_pool import AsyncConnectionPool
from rich.table import Table

from planexec.checkpoints import redact
from planexec.cli.inert import inert
from planexec.cli.render import STATUS_STYLE, when
from planexec.cli.session import (
    DEMO_KEY,
    GOAL_KEY,
    Environment,
    checkpoint_location,
    open_saver,
    positive_int,
    prepare_checkpoint,
)
from planexec.graph import build_graph
from planexec.pictures import short

if TYPE_CHECKING:
    from planexec.cli.commands import Output

LABELS = {
    "paused_for_review": "paused for review",
    "awaiting_approval": "awaiting approval",
    "uncertain_step": "uncertain step",
    "interrupted": "interrupted",
    "not_started": "not started",
}
"""How the statuses of unfinished threads read; finished ones read as their status."""

_LATEST = (
    "SELECT thread_id, MAX(checkpoint_id) AS latest FROM checkpoints "
    "WHERE checkpoint_ns = '' GROUP BY thread_id ORDER BY latest DESC"
)
"""Thread ids, newest first: checkpoint ids are UUIDv6, which sort by time."""


@dataclass(frozen=True)
class ThreadSummary:
    """One line of `planexec threads`."""

    thread_id: str
    status: str
    """A run's status (completed, failed, cancelled, budget_exhausted), or
    paused_for_review, awaiting_approval, uncertain_step, interrupted, not_started."""
    goal: str
    updated_at: str | None
    """When the latest checkpoint was written (ISO 8601, UTC)."""
    revision: int | None
    """The current plan revision, if there is a plan."""
    demo: bool
    """Whether `planexec demo` started the thread."""

    @property
    def label(self) -> str:
        """The status in words."""
        return LABELS.get(self.status, self.status)


def thread_status(values: Mapping[str, Any], interrupts: Sequence[Any], next_nodes: Any) -> str:
    """A thread's status: how its run ended, or why it has not."""
    if values.get("status"):
        return str(values["status"])
    if interrupts:
        request = interrupts[0].value
        kind = request.get("type") if isinstance(request, dict) else None
        if kind == "uncertain_step":
            return "uncertain_step"
        return "awaiting_approval" if kind == "step_approval" else "paused_for_review"
    return "interrupted" if next_nodes else "not_started"


async def thread_ids(saver: BaseCheckpointSaver[Any], limit: int | None = None) -> list[str]:
    """The ids of the threads in `saver`, most recently updated first."""
    if isinstance(saver, AsyncSqliteSaver):
        await saver.setup()
        query = _LATEST + (" LIMIT ?" if limit is not None else "")
        async with saver.conn.execute(query, (limit,) if limit is not None else ()) as cursor:
            return [str(row[0]) for row in await cursor.fetchall()]
    postgres = await _postgres_ids(saver, limit)
    if postgres is not None:
        return postgres
    latest: dict[str, str] = {}
    async for found in saver.alist(None):
        configurable = found.config["configurable"]
        if configurable.get("checkpoint_ns", ""):
            continue
        thread, checkpoint = str(configurable["thread_id"]), str(configurable["checkpoint_id"])
        latest[thread] = max(latest.get(thread, ""), checkpoint)
    ordered = sorted(latest, key=lambda t: latest[t], reverse=True)
    return ordered[:limit] if limit is not None else ordered


async def _postgres_ids(saver: BaseCheckpointSaver[Any], limit: int | None) -> list[str] | None:
    if not isinstance(saver, AsyncPostgresSaver):
        return None
    query = _LATEST + (" LIMIT %s" if limit is not None else "")
    params = (limit,) if limit is not None else ()
    conn = saver.conn
    if isinstance(conn, AsyncConnectionPool):
        async with conn.connection() as connection, connection.cursor() as cursor:
            await cursor.execute(query, params)
            rows = await cursor.fetchall()
    else:
        async with conn.cursor() as cursor:
            await cursor.execute(query, params)
            rows = await cursor.fetchall()
    return [str(row["thread_id"] if isinstance(row, Mapping) else row[0]) for row in rows]


async def list_threads(
    saver: BaseCheckpointSaver[Any], limit: int | None = None
) -> list[ThreadSummary]:
    """A summary of each thread in `saver` (the `limit` newest), newest first."""
    graph = build_graph(checkpointer=saver)
    summaries = []
    for thread in await thread_ids(saver, limit):
        snapshot = await graph.aget_state({"configurable": {"thread_id": thread}})
        if snapshot.created_at is None:
            continue
        values = dict(snapshot.values)
        metadata = snapshot.metadata or {}
        revisions = values.get("revisions") or []
        summaries.append(
            ThreadSummary(
                thread_id=thread,
                status=thread_status(values, snapshot.interrupts, snapshot.next),
                goal=str(values.get("goal") or metadata.get(GOAL_KEY) or ""),
                updated_at=snapshot.created_at,
                revision=revisions[-1]["revision"] if revisions else None,
                demo=bool(metadata.get(DEMO_KEY)),
            )
        )
    summaries.sort(key=lambda s: (s.updated_at or "", s.thread_id), reverse=True)
    return summaries


def add_parsers(
    sub: argparse._SubParsersAction[Any],
    add_checkpoint: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`threads`, and the hidden `__complete` that shell completion calls."""
    threads = sub.add_parser(
        "threads",
        help="list the threads in the checkpoint database, newest first",
        description="List every thread in the checkpoint database, newest first: its "
        "status, when it was last updated, and its goal.",
    )
    add_checkpoint(threads)
    threads.add_argument(
        "--limit", type=positive_int, metavar="N", help="only the N most recently updated"
    )
    threads.add_argument("--json", action="store_true", help="print the threads as JSON")
    complete = sub.add_parser("__complete")  # no help: hidden from the command list
    complete.add_argument("what", choices=("threads",))
    add_checkpoint(complete)


def threads(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec threads`."""
    location = prepare_checkpoint(checkpoint_location(args.checkpoint, env), create=False)

    async def read() -> list[ThreadSummary]:
        async with open_saver(location, env.checkpoint_key) as saver:
            return await list_threads(saver, args.limit)

    summaries = asyncio.run(read())
    where = redact(location)
    if out.json_mode:
        document = {"checkpoint": where, "threads": [asdict(s) for s in summaries]}
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return 0
    if not summaries:
        out.console.print(f"no threads in {inert(where)}")
        return 0
    table = Table(title=f"threads in {inert(where)}", title_justify="left")
    for name in ("thread", "status", "updated", "goal"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for s in summaries:
        style = STATUS_STYLE.get(s.status, "yellow")
        goal = ("[dim](demo)[/] " if s.demo else "") + inert(short(s.goal, 70))
        table.add_row(inert(s.thread_id), f"[{style}]{s.label}[/]", when(s.updated_at), goal)
    out.console.print(table)
    return 0


def complete(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec __complete threads`: thread ids, one per line, for shell completion.

    Prints nothing, and succeeds, when there is no checkpoint database to read.
    """
    location = checkpoint_location(args.checkpoint, env)
    if isinstance(location, Path) and not location.is_file():
        return 0

    async def read() -> list[str]:
        async with open_saver(location, env.checkpoint_key) as saver:
            return await thread_ids(saver)

    try:
        ids = asyncio.run(read())
    except Exception:  # a completion helper prints no traceback into the shell
        return 0
    sys.stdout.write("".join(f"{thread}\n" for thread in ids))
    return 0
