"""A per-thread lease in the checkpoint database: one client runs a thread at a time.

Two clients that run or resume the same thread at once both load its latest
checkpoint and each write their own next ones: the thread's history forks, a
decision is applied twice, and one client's work is missing from the state the
other leaves. LangGraph's savers do not prevent it; this lease does, for every
client that takes it::

    async with open_checkpointer(location) as saver:
        graph = build_graph(checkpointer=saver)
        async with thread_lease(saver, "thread-1", owner="worker-3"):
            await graph.ainvoke(Command(resume={"type": "approve"}), config, context=context)

A second client asking for the lease of a thread that is held gets `ThreadBusyError`
at once, naming the holder. The lease is a row of the table `planexec_leases`
(`thread_id`, `owner`, `token`, `acquired_at`, `expires_at`) in the checkpoint
database itself, SQLite or PostgreSQL, taken by one atomic upsert that succeeds only
if the row is absent or expired. While the block runs, a background task renews it
every `heartbeat` seconds; the block's end deletes it. A holder that dies stops
renewing, and its lease can be taken over once `ttl` seconds have passed, or at once
by a client on the same host when the holder is a process (`default_owner()`) that no
longer exists there (a `kill -9`, say). Times are the database's clock, so clients on
different machines agree on them.

If renewing fails until the lease could lapse (the database was unreachable, or
another client took the lease over), the block is cancelled and `LeaseLostError`
raised: the run stops instead of writing into a history that another client now owns.

A holder that stalls (stopped by a signal, or stuck in CPU-bound work) cannot renew,
and cannot notice either until it runs again. So the lease also fences the run by its
age on this process's clock, with no database round trip: once the last renewal is
older than `ttl` less a margin (`counted_for`), the executor refuses to start a step or call a
tool (`check_lease`), and a saver given as `target` refuses to write a checkpoint of
the thread, each raising `LeaseLostError`. The one gap left is a stall between that
check and the effect itself (inside a tool, say), which no check can close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import aiosqlite
import psycopg
from langgraph.checkpoint.base import BaseCheckpointSaver

from planexec.database import Database, DatabaseTarget, Row, create_table, database
from planexec.errors import LeaseLostError, ThreadBusyError

__all__ = [
    "DEFAULT_TTL_S",
    "LEASE_TABLE",
    "Lease",
    "LeaseTarget",
    "check_lease",
    "counted_for",
    "default_owner",
    "ensure_lease_table",
    "fence_writes",
    "thread_lease",
]

LEASE_TABLE = "planexec_leases"
DEFAULT_TTL_S = 30.0
"""Seconds a lease lasts without renewal: how long a dead holder blocks its thread."""

LeaseTarget = DatabaseTarget
"""Where the lease table lives: a SQLite path or PostgreSQL URL (a connection is opened
for the lease), a saver (its connection is shared), or a connection or pool."""

_log = logging.getLogger(__name__)


@dataclass
class Lease:
    """A thread's lease, held by this client."""

    thread_id: str
    owner: str
    """Who holds it, as other clients are told."""
    token: str
    """Unique to this acquisition: only its holder can renew or release it."""
    acquired_at: datetime
    expires_at: datetime
    """Pushed forward by every renewal."""
    lost: bool = field(default=False)
    """Whether renewing failed, so another client may hold the thread now."""
    renewed_at: float = field(default_factory=time.monotonic)
    """When (this process's monotonic clock) the last acquisition or renewal was sent."""
    good_for: float = DEFAULT_TTL_S - DEFAULT_TTL_S / 6
    """Seconds after `renewed_at` that this client counts on the lease (`counted_for`)."""

    def check(self, before: str) -> None:
        """Raise `LeaseLostError` unless the lease is surely still this client's.

        Judged by its age on this process's clock, with no database round trip, so that
        a client that stalled (stopped, or stuck in CPU-bound work) past the lease's
        expiry learns it before it does `before`, not after.
        """
        age = time.monotonic() - self.renewed_at
        if not self.lost and age < self.good_for:
            return
        self.lost = True
        raise LeaseLostError(
            f"the lease of thread {self.thread_id} was last renewed {age:.1f}s ago, longer "
            f"than it can be counted on ({self.good_for:g}s): another client may be "
            f"running the thread, so this one stopped before {before}"
        )


def counted_for(ttl: float, interval: float) -> float:
    """How long after sending a renewal a holder counts on its lease: `ttl` less a margin.

    The database keeps the lease `ttl` seconds from the renewal's statement, which
    comes after it was sent. The margin, half the smaller of the heartbeat and of the
    time left after it (5 s with the defaults), is for the clocks' rates and the time
    between a check and what it allows; it stays short of a heartbeat, so that a lease
    renewed on time is always counted on.
    """
    return ttl - min(interval, ttl - interval) / 2


_held: dict[str, list[Lease]] = {}
"""The leases this process holds, by thread: what `check_lease` and the fence consult."""


def check_lease(thread_id: str, before: str) -> None:
    """Raise `LeaseLostError` if this process holds `thread_id`'s lease and may have lost it.

    The executor calls it before each step and each tool call, and a saver given to
    `thread_lease` before each write of the thread's checkpoints. A thread whose lease
    this process does not hold is not checked.
    """
    for lease in list(_held.get(thread_id, ())):
        lease.check(before)


_FENCED: dict[type[Any], type[Any]] = {}


def fence_writes(saver: BaseCheckpointSaver[Any]) -> None:
    """Make `saver` check its thread's lease (`check_lease`) before every checkpoint write.

    `build_graph` does it to the saver it is given, and `thread_lease` to a saver given as
    its target. A write for a thread whose lease this process does not hold is not
    checked. The saver's class becomes a subclass of its own whose writes check first,
    so that the copies LangGraph makes of it (a shallow copy, at compile) check too.
    """
    cls = type(saver)
    if getattr(cls, "_planexec_fenced", False):
        return
    fenced = _FENCED.get(cls)
    if fenced is None:
        fenced = _FENCED[cls] = _fenced_class(cls)
    saver.__class__ = fenced


def _thread_of(config: Any) -> str:
    return str(((config or {}).get("configurable") or {}).get("thread_id") or "")


def _fenced_class(cls: type[Any]) -> type[Any]:
    def aput(self: Any, config: Any, *args: Any, **kwargs: Any) -> Any:
        check_lease(_thread_of(config), "writing a checkpoint")
        return super(fenced, self).aput(config, *args, **kwargs)

    def aput_writes(self: Any, config: Any, writes: Any, task_id: str, task_path: str = "") -> Any:
        check_lease(_thread_of(config), "writing a checkpoint")
        return super(fenced, self).aput_writes(config, writes, task_id, task_path)

    def put(self: Any, config: Any, *args: Any, **kwargs: Any) -> Any:
        check_lease(_thread_of(config), "writing a checkpoint")
        return super(fenced, self).put(config, *args, **kwargs)

    def put_writes(self: Any, config: Any, writes: Any, task_id: str, task_path: str = "") -> Any:
        check_lease(_thread_of(config), "writing a checkpoint")
        return super(fenced, self).put_writes(config, writes, task_id, task_path)

    namespace = {
        "_planexec_fenced": True,
        "aput": aput,
        "aput_writes": aput_writes,
        "put": put,
        "put_writes": put_writes,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    fenced: type[Any] = type(cls.__name__, (cls,), namespace)
    return fenced


def default_owner() -> str:
    """This process, as other clients are shown it: `pid 4242 on host`."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


@dataclass(frozen=True)
class _Sql:
    create: str
    acquire: str
    holder: str
    steal: str
    renew: str
    release: str


def _sql(param: str, now: str) -> _Sql:
    p = param
    return _Sql(
        create=(
            f"CREATE TABLE IF NOT EXISTS {LEASE_TABLE} ("
            "thread_id TEXT PRIMARY KEY, owner TEXT NOT NULL, token TEXT NOT NULL, "
            "acquired_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL)"
        ),
        # One statement: insert, or take over a row whose lease has expired. A row
        # comes back only when this client now holds the lease.
        acquire=(
            f"INSERT INTO {LEASE_TABLE} (thread_id, owner, token, acquired_at, expires_at) "
            f"VALUES ({p}, {p}, {p}, {now}, {now} + {p}) "
            "ON CONFLICT (thread_id) DO UPDATE SET owner = excluded.owner, "
            "token = excluded.token, acquired_at = excluded.acquired_at, "
            f"expires_at = excluded.expires_at WHERE {LEASE_TABLE}.expires_at <= {now} "
            "RETURNING acquired_at, expires_at"
        ),
        holder=(
            f"SELECT owner, acquired_at, expires_at, token FROM {LEASE_TABLE} WHERE thread_id = {p}"
        ),
        # Take over the lease of a holder known to be dead, unless it changed hands since.
        steal=(
            f"UPDATE {LEASE_TABLE} SET owner = {p}, token = {p}, acquired_at = {now}, "
            f"expires_at = {now} + {p} WHERE thread_id = {p} AND token = {p} "
            "RETURNING acquired_at, expires_at"
        ),
        renew=(
            f"UPDATE {LEASE_TABLE} SET expires_at = {now} + {p} "
            f"WHERE thread_id = {p} AND token = {p} RETURNING expires_at"
        ),
        release=f"DELETE FROM {LEASE_TABLE} WHERE thread_id = {p} AND token = {p}",
    )


_SQLITE = _sql("?", "((julianday('now') - 2440587.5) * 86400.0)")
_POSTGRES = _sql("%s", "extract(epoch from clock_timestamp())::float8")


class _Store:
    """The lease table's statements, run in the checkpoint database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sql = _SQLITE if db.dialect == "sqlite" else _POSTGRES

    async def run(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        """Execute one statement in its own transaction; its first row, if any."""
        return await self.db.run(statement, params)

    async def create(self) -> None:
        """Create the lease table if it does not exist."""
        await create_table(self.db, self.sql.create)


@asynccontextmanager
async def _store(target: LeaseTarget) -> AsyncIterator[_Store]:
    async with database(target) as db:
        yield _Store(db)


async def ensure_lease_table(target: LeaseTarget) -> None:
    """Create the lease table in `target`'s database if it does not exist."""
    async with _store(target) as store:
        await store.create()


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


@asynccontextmanager
async def thread_lease(
    target: LeaseTarget,
    thread_id: str,
    *,
    owner: str | None = None,
    ttl: float = DEFAULT_TTL_S,
    heartbeat: float | None = None,
) -> AsyncIterator[Lease]:
    """Hold `thread_id`'s lease for the duration of the `async with` block.

    Args:
        target: The checkpoint database: the saver the graph uses (sharing its
            connection, and fencing its writes of the thread), its connection or pool,
            or its location.
        thread_id: The thread to run.
        owner: How other clients are told who holds it; `default_owner()` if None.
        ttl: Seconds the lease lasts unless renewed.
        heartbeat: Seconds between renewals; a third of `ttl` if None.

    Raises:
        ThreadBusyError: Another client holds the lease (on entering the block).
        LeaseLostError: The lease could not be renewed before it lapsed; the block was
            cancelled.
    """
    interval = ttl / 3 if heartbeat is None else heartbeat
    if not 0 < interval < ttl:
        raise ValueError(f"the heartbeat ({interval}s) must be positive and below ttl ({ttl}s)")
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - an async context manager runs in a task
        raise RuntimeError("thread_lease needs a running asyncio task")
    if isinstance(target, BaseCheckpointSaver):
        fence_writes(target)
    async with _store(target) as store:
        await store.create()
        lease = await _acquire(store, thread_id, owner or default_owner(), ttl)
        lease.good_for = counted_for(ttl, interval)
        keeper = asyncio.create_task(
            _keep(store, lease, ttl, interval, task), name=f"lease-{thread_id}"
        )
        _held.setdefault(thread_id, []).append(lease)
        try:
            yield lease
        except asyncio.CancelledError as exc:
            if lease.lost and task.uncancel() == 0:
                raise LeaseLostError(
                    f"the lease of thread {thread_id} lapsed before it could be renewed, "
                    "so the run was stopped; another client may be running the thread"
                ) from exc
            raise
        finally:
            held = _held.get(thread_id, [])
            if lease in held:
                held.remove(lease)
            if not held:
                _held.pop(thread_id, None)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            if not lease.lost:
                await _release(store, lease)


async def _acquire(store: _Store, thread_id: str, owner: str, ttl: float) -> Lease:
    token = uuid4().hex
    for _ in range(3):
        sent = time.monotonic()
        taken = await store.run(store.sql.acquire, (thread_id, owner, token, ttl))
        if taken is not None:
            return Lease(thread_id, owner, token, _when(taken[0]), _when(taken[1]), renewed_at=sent)
        holder = await store.run(store.sql.holder, (thread_id,))
        if holder is not None and _dead_here(str(holder[0])):
            sent = time.monotonic()
            stolen = await store.run(store.sql.steal, (owner, token, ttl, thread_id, holder[3]))
            if stolen is not None:
                _log.info("took over the lease of thread %s from %s", thread_id, holder[0])
                return Lease(
                    thread_id, owner, token, _when(stolen[0]), _when(stolen[1]), renewed_at=sent
                )
            continue
        if holder is not None:
            raise ThreadBusyError(thread_id, str(holder[0]), _when(holder[1]), _when(holder[2]))
        # Released between the two statements: try again.
    now = datetime.now(UTC)
    raise ThreadBusyError(thread_id, "other clients", now, now)


_OWNER = re.compile(r"\bpid (\d+) on ([^\s()]+)")


def _dead_here(owner: str) -> bool:
    """Whether `owner` names a process of this host (`pid N on HOST`) that is gone."""
    match = _OWNER.search(owner)
    if match is None or match.group(2) != socket.gethostname():
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    return False


async def _keep(
    store: _Store, lease: Lease, ttl: float, interval: float, holder: asyncio.Task[Any]
) -> None:
    """Renew `lease` every `interval` seconds; cancel `holder` if it cannot be renewed."""
    while True:
        await asyncio.sleep(interval)
        sent = time.monotonic()
        try:
            row = await store.run(store.sql.renew, (ttl, lease.thread_id, lease.token))
        except Exception as exc:
            # Whatever the failure, the lease must not lapse while the run goes on:
            # retry until it could have lapsed, then stop the run.
            _log.warning("could not renew the lease of thread %s: %s", lease.thread_id, exc)
            if time.monotonic() - lease.renewed_at < lease.good_for:
                continue
            row = None
        if row is None:
            lease.lost = True
            holder.cancel()
            return
        lease.renewed_at = sent
        lease.expires_at = _when(row[0])


async def _release(store: _Store, lease: Lease) -> None:
    try:
        await store.run(store.sql.release, (lease.thread_id, lease.token))
    except (OSError, psycopg.Error, aiosqlite.Error) as exc:
        # Nothing is lost: the lease lapses by itself after `ttl` seconds.
        _log.warning("could not release the lease of thread %s: %s", lease.thread_id, exc)
