"""Opening a LangGraph checkpointer from a location: a SQLite file or a PostgreSQL URL.

    async with open_checkpointer("checkpoints.sqlite") as saver: ...
    async with open_checkpointer("postgresql://planexec@db.internal/planexec") as saver: ...
    graph = build_graph(checkpointer=saver)

A path gives an `AsyncSqliteSaver` on a connection in write-ahead-logging mode with a
30-second busy timeout (`planexec.database`), so that processes sharing the file wait
for each other rather than fail with "database is locked". Its commits do not wait for
the disk unless `fsync_commits=True`: a checkpoint committed survives the process being
killed, but a power loss may undo the last ones (`planexec.database.prepare_sqlite`).
A `postgresql://` (or `postgres://`) URL gives an `AsyncPostgresSaver` on a connection
pool whose connections use autocommit (without it the saver writes nothing that
lasts), with the saver's tables created or migrated (`setup()`) and the lease table of
`planexec.lease` created too. Passwords are best kept out of the URL: libpq reads
`PGPASSWORD` and `~/.pgpass`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from planexec.database import connect_sqlite, is_postgres
from planexec.locations import redact
from planexec.serde import checkpoint_serde

__all__ = [
    "POSTGRES_CONNECTION_KWARGS",
    "AsyncCheckpointer",
    "is_postgres",
    "open_checkpointer",
    "postgres_pool",
    "redact",
]

AsyncCheckpointer = AsyncSqliteSaver | AsyncPostgresSaver

POSTGRES_CONNECTION_KWARGS: dict[str, Any] = {
    "autocommit": True,
    "prepare_threshold": 0,
    "row_factory": dict_row,
}
"""What every connection given to `AsyncPostgresSaver` needs: autocommit (else nothing
the saver writes is committed), no server-side prepared statements (safe behind
PgBouncer-style poolers), and rows as dicts (what the saver reads)."""

_SETUP_LOCK = 0x706C616E65786563
"""Advisory lock key held while the tables are created, so that processes starting
together on a new database do not race to create the same table."""


@asynccontextmanager
async def open_checkpointer(
    location: str | os.PathLike[str],
    *,
    max_connections: int = 8,
    connect_timeout: float = 10.0,
    encryption_key: str | bytes | None = None,
    fsync_commits: bool = False,
) -> AsyncIterator[AsyncCheckpointer]:
    """The checkpointer at `location`, open for the duration of the `async with`.

    Every value it reads is checked (`planexec.serde`): one that is corrupt raises
    `planexec.errors.CheckpointError` rather than loading.

    Args:
        location: A SQLite file path, or a `postgresql://` URL.
        max_connections: The PostgreSQL pool's size. One saver runs one query at a
            time, so more helps only what shares the pool (leases, other savers).
        connect_timeout: Seconds to wait for the first PostgreSQL connection.
        encryption_key: A secret that encrypts and authenticates every checkpoint value
            (LangGraph's `EncryptedSerializer`, AES-256-GCM). A value that was changed,
            written without the key, or with another key raises `CheckpointError`.
        fsync_commits: SQLite only: make every commit wait for the disk, so that a power
            loss or an operating-system crash loses no committed checkpoint either. Each
            commit then costs a disk flush (about 4 ms on the benchmark's machine, against
            0.2 ms), which bounds a process's runs per second. Off, a commit survives the
            process being killed, which is what resuming after a crash needs.

    Raises:
        psycopg.OperationalError: The PostgreSQL server cannot be reached, or refuses
            the connection.
    """
    serde = checkpoint_serde(encryption_key)
    if not is_postgres(location):
        async with connect_sqlite(location, fsync_commits=fsync_commits) as conn:
            yield AsyncSqliteSaver(conn, serde=serde)
        return
    async with postgres_pool(
        str(location),
        setup=_setup_postgres,
        lock=_SETUP_LOCK,
        max_connections=max_connections,
        connect_timeout=connect_timeout,
    ) as pool:
        yield AsyncPostgresSaver(pool, serde=serde)


@asynccontextmanager
async def postgres_pool(
    url: str,
    *,
    setup: Callable[[AsyncConnection[DictRow]], Awaitable[None]],
    lock: int,
    max_connections: int,
    connect_timeout: float,
) -> AsyncIterator[AsyncConnectionPool[AsyncConnection[DictRow]]]:
    """A pool on `url`, open for the `async with`, after `setup` ran on a connection of its own.

    `setup` (creating or migrating tables) holds the advisory lock `lock`, so that
    processes starting together on a new database do not race to create the same table.
    It runs on a direct connection because, unlike a pool, one reports why it failed (bad
    password, no such database, nothing listening).
    """
    conn = await AsyncConnection.connect(
        url, connect_timeout=max(1, round(connect_timeout)), **POSTGRES_CONNECTION_KWARGS
    )
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
        try:
            await setup(cast("AsyncConnection[DictRow]", conn))
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_connections,
        kwargs=dict(POSTGRES_CONNECTION_KWARGS),
        open=False,
        timeout=connect_timeout,
    )
    await pool.open(wait=True, timeout=connect_timeout)
    try:
        yield cast("AsyncConnectionPool[AsyncConnection[DictRow]]", pool)
    finally:
        await pool.close()


async def _setup_postgres(conn: AsyncConnection[DictRow]) -> None:
    """Create or migrate the saver's tables and the lease table."""
    # planexec.lease imports this module: import it when it is needed instead.
    from planexec.lease import ensure_lease_table

    await AsyncPostgresSaver(conn).setup()
    await ensure_lease_table(conn)
