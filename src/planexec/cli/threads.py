"""`planexec threads`: the threads in a checkpoint database, newest first, a page at a time.

One query per page reads each listed thread's latest checkpoint, with the pending
interrupt it waits on, from the saver's own tables (SQLite or PostgreSQL; any other
saver is scanned). No thread's history is read, and no state is rebuilt, so a page
costs the same with 10 threads or 10,000 (`bench/cold.py`). A SQLite file is read with
`sqlite3` and `planexec.cli.latest`, without LangGraph; LangGraph's savers are imported
for a PostgreSQL database, and to word why a row cannot be read. A row that cannot be
read (a flipped byte, a thread encrypted with another key) is listed as unreadable,
with the reason; the others are listed as usual. Shell completion reads the same
query, and thread ids given to `resume`, `show` and `audit` may be any unique prefix.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.table import Table

from planexec.cli.complete import NEWEST_FIRST
from planexec.cli.environment import (
    Environment,
    UserError,
    checkpoint_location,
    reading_checkpoint,
)
from planexec.cli.latest import Decoder, Unsupported, metadata_of, reading
from planexec.cli.opening import DEMO_KEY, GOAL_KEY
from planexec.cli.parser import DEFAULT_LIMIT
from planexec.cli.render import STATUS_STYLE, when
from planexec.cli.sqlitefiles import sqlite_problem
from planexec.errors import PlanexecError
from planexec.inert import inert, visible
from planexec.locations import redact
from planexec.pauses import NEEDS_MODEL, PAUSED_STATUS
from planexec.pictures import short

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.serde.base import SerializerProtocol
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from planexec.cli.environment import Output

LABELS = {
    "paused_for_review": "paused for review",
    "awaiting_approval": "awaiting approval",
    "uncertain_step": "uncertain step",
    "awaiting_model": "waits for a real model",
    "interrupted": "interrupted",
    "not_started": "not started",
    "unreadable": "unreadable",
}
"""How the statuses of unfinished threads read; finished ones read as their status."""

_INTERRUPT = "__interrupt__"
"""LangGraph's channel for a pending interrupt in a checkpoint's writes."""

_SQLITE_ROWS = f"""
WITH page AS ({NEWEST_FIRST} LIMIT ? OFFSET ?)
SELECT page.thread_id, c.type, c.checkpoint, c.metadata, w.type, w.value
FROM page
JOIN checkpoints c
  ON c.thread_id = page.thread_id AND c.checkpoint_ns = '' AND c.checkpoint_id = page.latest
LEFT JOIN writes w
  ON w.thread_id = page.thread_id AND w.checkpoint_ns = '' AND w.checkpoint_id = page.latest
  AND w.channel = '{_INTERRUPT}'
ORDER BY page.latest DESC, w.task_id, w.idx
"""

_POSTGRES_ROWS = f"""
WITH page AS ({NEWEST_FIRST} LIMIT %s OFFSET %s)
SELECT page.thread_id, c.checkpoint, c.metadata,
  (SELECT array_agg(array[b.channel::bytea, b.type::bytea, b.blob])
     FROM checkpoint_blobs b
     WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = '' AND b.channel = ANY(%s)
       AND b.version = c.checkpoint -> 'channel_versions' ->> b.channel) AS blobs,
  (SELECT array_agg(array[w.type::bytea, w.blob] ORDER BY w.task_id, w.idx)
     FROM checkpoint_writes w
     WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = '' AND w.checkpoint_id = page.latest
       AND w.channel = '{_INTERRUPT}') AS interrupts
FROM page
JOIN checkpoints c
  ON c.thread_id = page.thread_id AND c.checkpoint_ns = '' AND c.checkpoint_id = page.latest
ORDER BY page.latest DESC
"""

_CHANNELS = ["status", "goal", "revision", "revisions"]
"""The state channels a summary reads (PostgreSQL keeps strings inline, the rest in blobs)."""

_NO_LIMIT = -1
"""`LIMIT -1` is SQLite's "no limit"; PostgreSQL takes `LIMIT NULL`."""


@dataclass(frozen=True)
class ThreadSummary:
    """One line of `planexec threads`."""

    thread_id: str
    status: str
    """A run's status (completed, failed, cancelled, budget_exhausted), or
    paused_for_review, awaiting_approval, uncertain_step, awaiting_model, interrupted,
    not_started, or unreadable (see `problem`)."""
    goal: str
    updated_at: str | None
    """When the latest checkpoint was written (ISO 8601, UTC)."""
    revision: int | None
    """The current plan revision, if there is a plan."""
    demo: bool
    """Whether `planexec demo` started the thread."""
    problem: str | None = None
    """Why the thread's latest checkpoint cannot be read, when it cannot."""

    @property
    def label(self) -> str:
        """The status in words."""
        return LABELS.get(self.status, self.status)


@dataclass(frozen=True)
class ThreadPage:
    """Some threads, newest first, and how many there are in all."""

    threads: list[ThreadSummary]
    total: int


def thread_status(values: Mapping[str, Any], interrupts: Sequence[Any], next_nodes: Any) -> str:
    """A thread's status: how its run ended, or why it has not."""
    if values.get("status"):
        return str(values["status"])
    if interrupts:
        return _paused_status(getattr(interrupts[0], "value", None))
    return "interrupted" if next_nodes else "not_started"


def _paused_status(request: Any) -> str:
    kind = request.get("type") if isinstance(request, dict) else None
    if kind == NEEDS_MODEL:
        return "awaiting_model"
    # Any other interrupt (one a user's own node raises) is listed as waiting for review.
    known = cast("Mapping[str, str]", PAUSED_STATUS).get(kind) if isinstance(kind, str) else None
    return known or "paused_for_review"


def _summary(
    thread: str,
    values: Mapping[str, Any],
    metadata: Mapping[str, Any],
    updated_at: str | None,
    interrupts: Sequence[Any],
) -> ThreadSummary:
    revision = values.get("revision")
    if revision is None:  # a thread from before `revision` was kept, with `revisions` whole
        revisions = values.get("revisions")
        last = revisions[-1] if isinstance(revisions, list) and revisions else None
        revision = last.get("revision") if isinstance(last, dict) else None
    return ThreadSummary(
        thread_id=thread,
        # A summary has a checkpoint but not the graph's next nodes: with no ending and no
        # question, the run stopped (Ctrl-C, a crash, an error).
        status=thread_status(values, interrupts, next_nodes=True),
        goal=str(values.get("goal") or metadata.get(GOAL_KEY) or ""),
        updated_at=updated_at,
        revision=revision if isinstance(revision, int) else None,
        demo=bool(metadata.get(DEMO_KEY)),
    )


def _unreadable(thread: str, metadata: Mapping[str, Any], exc: Exception) -> ThreadSummary:
    return ThreadSummary(
        thread_id=thread,
        status="unreadable",
        goal=str(metadata.get(GOAL_KEY) or ""),
        updated_at=None,
        revision=None,
        demo=bool(metadata.get(DEMO_KEY)),
        problem=str(exc) if isinstance(exc, PlanexecError) else f"{type(exc).__name__}: {exc}",
    )


_Found = dict[str, tuple[tuple[str, bytes], dict[str, Any], list[tuple[str, bytes]]]]
"""Each thread's latest checkpoint `(type, bytes)`, metadata, and interrupt writes."""


def _grouped(rows: Sequence[Sequence[Any]]) -> _Found:
    found: _Found = {}
    for thread, kind, blob, metadata, write_type, write in rows:
        if thread not in found:
            found[thread] = ((kind, blob), metadata_of(metadata), [])
        if write_type is not None:
            found[thread][2].append((write_type, write))
    return found


Loads = Callable[[str, bytes], Any]
"""Reads a stored `(type, bytes)` value."""


def _summaries(
    found: _Found, loads: Loads, fallback: Callable[[], Loads] | None = None
) -> list[ThreadSummary]:
    """A summary of each thread, its values read with `loads(kind, raw)`.

    A thread `loads` cannot read is read again with `fallback()`, the saver's own
    serializer, which reads what `loads` may not and says why a value is unreadable.
    """
    rows: list[ThreadSummary] = []
    for thread, (checkpoint, metadata, writes) in found.items():
        try:
            rows.append(_read_summary(thread, checkpoint, metadata, writes, loads))
            continue
        except Exception as exc:  # one unreadable thread must not hide the others
            problem = exc
        if fallback is not None:
            try:
                rows.append(_read_summary(thread, checkpoint, metadata, writes, fallback()))
                continue
            except Exception as exc:
                problem = exc
        rows.append(_unreadable(thread, metadata, problem))
    return rows


def _read_summary(
    thread: str,
    checkpoint: tuple[str, bytes],
    metadata: dict[str, Any],
    writes: list[tuple[str, bytes]],
    loads: Loads,
) -> ThreadSummary:
    loaded = loads(*checkpoint)
    interrupts = [i for w in writes for i in _interrupts(loads(*w))]
    return _summary(thread, loaded["channel_values"], metadata, loaded.get("ts"), interrupts)


def sqlite_page(path: Path, key: str | None, limit: int | None) -> ThreadPage:
    """The `limit` newest threads in the SQLite file at `path` (all with None).

    Read with `sqlite3` alone; raises `Unsupported` for a file without the saver's tables.
    """
    serde: list[SerializerProtocol] = []

    def saver_loads() -> Loads:
        if not serde:
            from planexec.serde import checkpoint_serde  # here: it imports LangGraph

            serde.append(checkpoint_serde(key))
        return lambda kind, raw: serde[0].loads_typed((kind, raw))

    decoder = Decoder(key)
    with reading(path) as conn:
        rows = conn.execute(_SQLITE_ROWS, (_NO_LIMIT if limit is None else limit, 0)).fetchall()
        threads = _summaries(_grouped(rows), decoder.loads, saver_loads)
        if limit is None or len(threads) < limit:
            return ThreadPage(threads, len(threads))
        (total,) = conn.execute(_COUNT).fetchone()
        return ThreadPage(threads, int(total))


async def _sqlite_page(
    saver: AsyncSqliteSaver, limit: int | None, offset: int
) -> list[ThreadSummary]:
    limit_value = _NO_LIMIT if limit is None else limit
    async with saver.conn.execute(_SQLITE_ROWS, (limit_value, offset)) as cursor:
        found = _grouped(list(await cursor.fetchall()))
    return _summaries(found, lambda kind, raw: saver.serde.loads_typed((kind, raw)))


async def _postgres_page(
    saver: AsyncPostgresSaver, limit: int | None, offset: int
) -> list[ThreadSummary]:
    rows: list[ThreadSummary] = []
    for row in await _postgres_query(saver, _POSTGRES_ROWS, (limit, offset, _CHANNELS)):
        thread = str(row["thread_id"])
        metadata = metadata_of(row["metadata"])
        try:
            checkpoint = row["checkpoint"]
            values = dict(checkpoint.get("channel_values") or {})
            for channel, kind, blob in row["blobs"] or []:
                if bytes(kind) != b"empty":
                    values[bytes(channel).decode()] = saver.serde.loads_typed(
                        (bytes(kind).decode(), bytes(blob))
                    )
            interrupts = [
                i
                for kind, blob in row["interrupts"] or []
                for i in _interrupts(saver.serde.loads_typed((bytes(kind).decode(), bytes(blob))))
            ]
            rows.append(_summary(thread, values, metadata, checkpoint.get("ts"), interrupts))
        except Exception as exc:  # one unreadable thread must not hide the others
            rows.append(_unreadable(thread, metadata, exc))
    return rows


def _interrupts(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


async def _postgres_query(
    saver: AsyncPostgresSaver, query: str, params: Sequence[Any]
) -> list[Mapping[str, Any]]:
    from psycopg_pool import AsyncConnectionPool

    conn = saver.conn
    if isinstance(conn, AsyncConnectionPool):
        async with conn.connection() as connection, connection.cursor() as cursor:
            await cursor.execute(query, params)
            return list(await cursor.fetchall())
    async with conn.cursor() as cursor:
        await cursor.execute(query, params)
        return list(await cursor.fetchall())


async def _scan(saver: BaseCheckpointSaver[Any]) -> list[str]:
    """Thread ids, newest first, from a saver planexec has no query for."""
    latest: dict[str, str] = {}
    async for found in saver.alist(None):
        configurable = found.config["configurable"]
        if configurable.get("checkpoint_ns", ""):
            continue
        thread, checkpoint = str(configurable["thread_id"]), str(configurable["checkpoint_id"])
        latest[thread] = max(latest.get(thread, ""), checkpoint)
    return sorted(latest, key=lambda t: latest[t], reverse=True)


async def thread_ids(saver: BaseCheckpointSaver[Any], limit: int | None = None) -> list[str]:
    """The ids of the threads in `saver`, most recently updated first."""
    AsyncSqliteSaver, AsyncPostgresSaver = _savers()
    if isinstance(saver, AsyncSqliteSaver):
        query = f"{NEWEST_FIRST} LIMIT ?"
        async with saver.conn.execute(query, (_NO_LIMIT if limit is None else limit,)) as cur:
            return [str(row[0]) for row in await cur.fetchall()]
    if isinstance(saver, AsyncPostgresSaver):
        rows = await _postgres_query(saver, f"{NEWEST_FIRST} LIMIT %s", (limit,))
        return [str(row["thread_id"]) for row in rows]
    ordered = await _scan(saver)
    return ordered[:limit] if limit is not None else ordered


_COUNT = "SELECT COUNT(DISTINCT thread_id) FROM checkpoints WHERE checkpoint_ns = ''"


def _savers() -> tuple[type[AsyncSqliteSaver], type[AsyncPostgresSaver]]:
    """LangGraph's SQLite and PostgreSQL savers, imported when a saver is at hand."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    return AsyncSqliteSaver, AsyncPostgresSaver


async def count_threads(saver: BaseCheckpointSaver[Any]) -> int:
    """How many threads `saver` holds."""
    AsyncSqliteSaver, AsyncPostgresSaver = _savers()
    query = _COUNT
    if isinstance(saver, AsyncSqliteSaver):
        async with saver.conn.execute(query) as cursor:
            row = await cursor.fetchone()
            return int(row[0]) if row else 0
    if isinstance(saver, AsyncPostgresSaver):
        rows = await _postgres_query(saver, query, ())
        return int(next(iter(rows[0].values()))) if rows else 0
    return len(await _scan(saver))


async def list_threads(
    saver: BaseCheckpointSaver[Any], limit: int | None = None, offset: int = 0
) -> list[ThreadSummary]:
    """A summary of each thread in `saver` (the `limit` newest after `offset`), newest first."""
    AsyncSqliteSaver, AsyncPostgresSaver = _savers()
    # The channels a summary reads hold plain data, and interrupts are LangGraph's own
    # type, so the saver's serializer reads them without the compiled graph's allowlist:
    # building the graph would import LangGraph's runtime for nothing.
    if isinstance(saver, AsyncSqliteSaver):
        return await _sqlite_page(saver, limit, offset)
    if isinstance(saver, AsyncPostgresSaver):
        return await _postgres_page(saver, limit, offset)
    from planexec.graph import build_graph  # here: any other saver is read through the graph

    graph = build_graph(checkpointer=saver)
    summaries = []
    ordered = await _scan(saver)
    for thread in ordered[offset : None if limit is None else offset + limit]:
        try:
            snapshot = await graph.aget_state({"configurable": {"thread_id": thread}})
        except Exception as exc:  # one unreadable thread must not hide the others
            summaries.append(_unreadable(thread, {}, exc))
            continue
        values = dict(snapshot.values)
        summary = _summary(
            thread, values, snapshot.metadata or {}, snapshot.created_at, snapshot.interrupts
        )
        summaries.append(summary)
    return summaries


async def page_of_threads(saver: BaseCheckpointSaver[Any], limit: int | None) -> ThreadPage:
    """The `limit` newest threads (all with None), and how many there are."""
    threads = await list_threads(saver, limit)
    total = len(threads) if limit is None or len(threads) < limit else await count_threads(saver)
    return ThreadPage(threads, total)


async def resolve_thread(saver: BaseCheckpointSaver[Any], given: str, where: str) -> str:
    """The thread `given` names: its exact id, or the one id it is a unique prefix of.

    Raises `UserError` naming the candidates when the prefix is ambiguous, and when no
    thread matches.
    """
    matches = await _prefixed(saver, given, 11)
    if given in matches or len(matches) == 1:
        return given if given in matches else matches[0]
    if not matches:
        raise UserError(f"unknown thread {given} in {where}")
    shown = ", ".join(sorted(matches)[:10]) + (", ..." if len(matches) > 10 else "")
    raise UserError(f"{given} is the start of several thread ids in {where}: {shown}")


async def _prefixed(saver: BaseCheckpointSaver[Any], prefix: str, limit: int) -> list[str]:
    AsyncSqliteSaver, AsyncPostgresSaver = _savers()
    if isinstance(saver, AsyncSqliteSaver):
        exact = "SELECT thread_id FROM checkpoints WHERE thread_id = ? LIMIT 1"
        async with saver.conn.execute(exact, (prefix,)) as cursor:
            if await cursor.fetchone():
                return [prefix]
        # BINARY collation: every id that starts with `prefix` sorts in this range.
        query = (
            "SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_ns = '' "
            "AND thread_id >= ? AND thread_id < ? LIMIT ?"
        )
        async with saver.conn.execute(query, (prefix, prefix + "\U0010ffff", limit)) as cursor:
            return [str(row[0]) for row in await cursor.fetchall()]
    if isinstance(saver, AsyncPostgresSaver):
        query = (
            "SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_ns = '' "
            "AND starts_with(thread_id, %s) ORDER BY thread_id LIMIT %s"
        )
        rows = await _postgres_query(saver, query, (prefix, limit))
        found = [str(row["thread_id"]) for row in rows]
        return [prefix] if prefix in found else found
    ids = await _scan(saver)
    return [prefix] if prefix in ids else [t for t in ids if t.startswith(prefix)][:limit]


def threads(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec threads`."""
    location = checkpoint_location(args.checkpoint, env)
    where = redact(location)
    limit = None if args.all else (args.limit or DEFAULT_LIMIT)

    page = _read_page(location, env.checkpoint_key, limit) if reading_checkpoint(location) else None
    page = page or ThreadPage([], 0)
    if out.json_mode:
        document = {
            "checkpoint": where,
            "total": page.total,
            "threads": [asdict(s) for s in page.threads],
        }
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return 0
    if not page.threads:
        out.console.print(f"no threads yet in {inert(where)}")
        return 0
    out.console.print(thread_table(page.threads, f"threads in {inert(where)}", out.console.width))
    if page.total > len(page.threads):
        out.console.print(
            f"the {len(page.threads)} most recently updated of {page.total:,} threads; "
            "--limit N or --all for more"
        )
    for s in page.threads:
        if s.problem:
            out.console.print(f"[red]{inert(s.thread_id)} is unreadable:[/] {inert(s.problem)}")
    return 0


def _read_page(location: Path | str, key: str | None, limit: int | None) -> ThreadPage:
    """A page of threads: a SQLite file read directly, anything else through its saver."""
    if isinstance(location, Path):
        try:
            return sqlite_page(location, key, limit)
        except sqlite3.DatabaseError as exc:
            raise sqlite_problem(exc, redact(location), writing=False) from exc
        except Unsupported:
            pass  # no saver tables yet: the saver reads that as it does

    import asyncio

    from planexec.cli.opening import open_saver

    async def read() -> ThreadPage:
        async with open_saver(location, key, read_only=True) as saver:
            return await page_of_threads(saver, limit)

    return asyncio.run(read())


def thread_table(summaries: Sequence[ThreadSummary], title: str, width: int) -> Table:
    """Threads as a table whose ids and statuses always show in full; goals are cut."""
    ids = [visible(s.thread_id) for s in summaries]
    labels = [visible(s.label) for s in summaries]
    id_width = max(6, *map(len, ids))
    status_width = max(6, *map(len, labels))
    # What is left after the id, the status, and the borders and padding of four columns
    # goes to the time and the goal; the time gets shorter, then goes, before the goal does.
    room = width - id_width - status_width - 13
    updated: int | None = _UPDATED if room >= _UPDATED + 16 else 11 if room >= 11 + 12 else None
    goal = max(room - (updated + 3 if updated else -3), 4)
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("thread", no_wrap=True, width=id_width)
    table.add_column("status", no_wrap=True, width=status_width)
    if updated:
        table.add_column("updated", no_wrap=True, width=updated)
    table.add_column("goal", no_wrap=True, overflow="ellipsis", width=goal)
    for s, thread, label in zip(summaries, ids, labels, strict=True):
        style = STATUS_STYLE.get(s.status, "red" if s.problem else "yellow")
        text = ("[dim](demo)[/] " if s.demo else "") + inert(short(s.goal, goal))
        cells = [inert(thread), f"[{style}]{inert(label)}[/]"]
        if updated == _UPDATED:
            cells.append(when(s.updated_at))
        elif updated:
            cells.append(when(s.updated_at)[5:16])  # "MM-DD HH:MM"
        table.add_row(*cells, text)
    return table


_UPDATED = len("2026-11-21 20:01:02 UTC")


__all__ = [
    "LABELS",
    "ThreadPage",
    "ThreadSummary",
    "count_threads",
    "list_threads",
    "page_of_threads",
    "resolve_thread",
    "sqlite_page",
    "thread_ids",
    "thread_status",
]
