"""planexec's own tables in the checkpoint database, SQLite or PostgreSQL.

The thread leases (`planexec.lease`) and the key that seals approvals
(`planexec.seals`) live beside LangGraph's tables, so every client of a checkpoint
database shares them. A `Database` runs one statement at a time, each in its own
transaction, on a saver's connection (taking the saver's lock, so the two never
interleave), on a connection or pool, or on a connection it opens to a location.

Every SQLite connection planexec opens (here and in `planexec.checkpoints`) uses
write-ahead logging and waits up to `SQLITE_BUSY_TIMEOUT_S` for another writer: a
second process on the same file waits its turn instead of failing with "database is
locked".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol

import aiosqlite
import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg import AsyncConnection, Connection
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from planexec.locations import is_postgres

__all__ = [
    "SQLITE_BUSY_TIMEOUT_S",
    "Database",
    "DatabaseTarget",
    "Dialect",
    "connect_sqlite",
    "create_table",
    "database",
    "has_database",
    "is_postgres",
    "prepare_sqlite",
]

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite connection planexec opens waits for another writer to finish."""

Dialect = Literal["sqlite", "postgres"]
Row = tuple[Any, ...]

DatabaseTarget = (
    str
    | os.PathLike[str]
    | AsyncSqliteSaver
    | AsyncPostgresSaver
    | SqliteSaver
    | PostgresSaver
    | aiosqlite.Connection
    | AsyncConnection[Any]
    | AsyncConnectionPool[Any]
)
"""Where planexec's tables live: a SQLite path or PostgreSQL URL (a connection is
opened), a saver (its connection is shared), or a connection or pool."""


async def prepare_sqlite(conn: aiosqlite.Connection, *, fsync_commits: bool = False) -> None:
    """Give `conn` a busy timeout and put its database in write-ahead-logging mode.

    With `fsync_commits` every commit waits for the disk (SQLite's `synchronous=FULL`);
    without it (`synchronous=NORMAL`) a commit is in the log when it returns and is
    flushed to disk at the log's checkpoints. Either way a committed transaction
    survives the process being killed and the file is never corrupted; only a power
    loss or an operating-system crash can undo the commits made since the last flush.
    """
    await conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    async with conn.execute("PRAGMA journal_mode = WAL") as cursor:
        await cursor.fetchall()
    await conn.execute(f"PRAGMA synchronous = {'FULL' if fsync_commits else 'NORMAL'}")


@asynccontextmanager
async def connect_sqlite(
    path: str | os.PathLike[str], *, fsync_commits: bool = False
) -> AsyncIterator[aiosqlite.Connection]:
    """A SQLite connection to `path` with WAL and a busy timeout, for the `async with`.

    `fsync_commits`: see `prepare_sqlite`.
    """
    async with aiosqlite.connect(os.fspath(path), timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
        await prepare_sqlite(conn, fsync_commits=fsync_commits)
        yield conn


class Database(Protocol):
    """Runs statements in the database of planexec's tables."""

    dialect: Dialect

    async def run(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        """Execute one statement in its own transaction; its first row, if any."""
        ...


class _Sqlite:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock | None) -> None:
        self.conn = conn
        self.lock = lock

    async def run(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        async with self.lock or contextlib.nullcontext():
            async with self.conn.execute(statement, tuple(params)) as cursor:
                rows = list(await cursor.fetchall())  # runs a RETURNING statement to its end
            await self.conn.commit()
        return tuple(rows[0]) if rows else None


class _SyncSqlite:
    """A sync saver's connection, used from a worker thread under the saver's lock."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self.conn = conn
        self.lock = lock

    def _run(self, statement: str, params: Sequence[Any]) -> Row | None:
        with self.lock:
            rows = self.conn.execute(statement, tuple(params)).fetchall()
            self.conn.commit()
        return tuple(rows[0]) if rows else None

    async def run(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        return await asyncio.to_thread(self._run, statement, params)


class _Postgres:
    dialect: Dialect = "postgres"

    def __init__(
        self,
        conn: AsyncConnection[Any] | AsyncConnectionPool[Any],
        lock: asyncio.Lock | None,
    ) -> None:
        self.conn = conn
        self.lock = lock

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        if isinstance(self.conn, AsyncConnectionPool):
            async with self.conn.connection() as conn:
                yield conn
        else:
            yield self.conn

    async def run(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        async with (
            self.lock or contextlib.nullcontext(),
            self._connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row) as cursor,
        ):
            await cursor.execute(statement, tuple(params))
            row = await cursor.fetchone() if cursor.description else None
        return tuple(row) if row is not None else None


class _SyncPostgres:
    """A sync saver's connection or pool, used from a worker thread."""

    dialect: Dialect = "postgres"

    def __init__(
        self, conn: Connection[Any] | ConnectionPool[Any], lock: threading.Lock | None
    ) -> None:
        self.conn = conn
        self.lock = lock

    def _run(self, statement: str, params: Sequence[Any]) -> Row | None:
        with contextlib.ExitStack() as stack:
            if self.lock is not None:
                stack.enter_context(self.lock)
            if isinstance(self.conn, ConnectionPool):
                conn = stack.enter_context(self.conn.connection())
            else:
                conn = self.conn
            stack.enter_context(conn.transaction())
            cursor = stack.enter_context(conn.cursor(row_factory=tuple_row))
            cursor.execute(statement, tuple(params))
            row = cursor.fetchone() if cursor.description else None
        return tuple(row) if row is not None else None

    async def run(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        return await asyncio.to_thread(self._run, statement, params)


_SAVERS = (AsyncSqliteSaver, AsyncPostgresSaver, SqliteSaver, PostgresSaver)


def has_database(saver: object) -> bool:
    """Whether `saver` is a checkpointer on a database `database` can reach."""
    return isinstance(saver, _SAVERS)


@asynccontextmanager
async def database(target: DatabaseTarget) -> AsyncIterator[Database]:
    """The database of `target`, for the duration of the `async with`.

    Raises:
        TypeError: `target` is no SQLite or PostgreSQL database planexec can reach.
    """
    if isinstance(target, AsyncSqliteSaver):
        yield _Sqlite(target.conn, target.lock)
    elif isinstance(target, AsyncPostgresSaver):
        shared = target.lock if isinstance(target.conn, AsyncConnection) else None
        yield _Postgres(target.conn, shared)
    elif isinstance(target, SqliteSaver):
        yield _SyncSqlite(target.conn, target.lock)
    elif isinstance(target, PostgresSaver):
        shared_lock = target.lock if isinstance(target.conn, Connection) else None
        yield _SyncPostgres(target.conn, shared_lock)
    elif isinstance(target, aiosqlite.Connection):
        yield _Sqlite(target, None)
    elif isinstance(target, AsyncConnection | AsyncConnectionPool):
        yield _Postgres(target, None)
    elif isinstance(target, str) and is_postgres(target):
        async with await AsyncConnection.connect(target, autocommit=True) as conn:
            yield _Postgres(conn, None)
    elif isinstance(target, str | os.PathLike):
        async with connect_sqlite(target) as conn:
            yield _Sqlite(conn, None)
    else:
        raise TypeError(f"planexec's tables cannot live in a {type(target).__name__}")


async def create_table(db: Database, statement: str) -> None:
    """Run a `CREATE TABLE IF NOT EXISTS` statement.

    Two PostgreSQL clients creating the table at the same moment: one fails, harmlessly.
    """
    with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
        await db.run(statement)
