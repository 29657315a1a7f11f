"""Opening the checkpoint database for a command, and the metadata planexec keeps there.

Apart from the rest of `planexec.cli.session` so that the commands that only read
(`threads`, the TAB helper) import no graph, model or LangGraph runtime.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from planexec.checkpoints import AsyncCheckpointer, open_checkpointer, redact
from planexec.cli.environment import UserError
from planexec.cli.sqlitefiles import read_only_uri
from planexec.locations import is_postgres
from planexec.serde import checkpoint_serde

CONTEXT_KEY = "planexec_context"
"""Checkpoint metadata key holding the run's `Context` as JSON (LangGraph keeps only
scalar metadata values, so the dict is stored as a string)."""
GOAL_KEY = "planexec_goal"
DEMO_KEY = "planexec_demo"
"""Set on threads started by `planexec demo`: they resume with the scripted models."""
SEAL_KEY = "planexec_seal"
"""With a checkpoint key: a signature of the other `planexec_*` metadata (the metadata
column is not encrypted), checked before `resume` uses them."""


def prepare_checkpoint(path: Path | str, *, create: bool) -> Path | str:
    """`path`, checked: its folder is created if `create`, else the file must exist.

    A PostgreSQL URL is returned as it is: the server is asked when it is opened.
    """
    if isinstance(path, str):
        if is_postgres(path):
            return path
        path = Path(path)
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create {path.parent}: {exc.strerror}") from exc
        if path.is_dir():
            raise UserError(f"the checkpoint {path} is a directory, not a file")
    elif not path.is_file():
        raise UserError(f"no checkpoint file at {path} (use --checkpoint to pick another)")
    return path


@asynccontextmanager
async def open_saver(
    location: Path | str, key: str | None = None, *, read_only: bool = False
) -> AsyncIterator[AsyncCheckpointer]:
    """The checkpointer at `location`: a SQLite file or a PostgreSQL URL.

    See `prepare_checkpoint`. With `read_only`, a SQLite file is opened for reading
    only, so that a read-only file, folder or mount can still be read. Any problem
    with the database (not SQLite, damaged, read-only when it must be written, a
    server that cannot be reached) is a one-line `UserError`, raised on opening or
    from inside the block. With `key`, checkpoints are encrypted and authenticated
    (`planexec.serde`).
    """
    where = redact(location)
    async with AsyncExitStack() as stack:
        try:
            if read_only and isinstance(location, Path):
                saver: AsyncCheckpointer = await stack.enter_async_context(
                    _read_only_sqlite(location, key)
                )
            else:
                if isinstance(location, Path):
                    # Before opening: opening switches the file to WAL mode, a write.
                    await asyncio.to_thread(read_only_uri, location)
                saver = await stack.enter_async_context(
                    open_checkpointer(location, encryption_key=key)
                )
                if isinstance(location, Path):
                    await saver.setup()
        except sqlite3.DatabaseError as exc:
            raise sqlite_problem(exc, where, writing=not read_only) from exc
        except Exception as exc:
            if not _unreachable(exc):
                raise
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise UserError(f"cannot open the checkpoint database {where}: {lines[-1]}") from exc
        try:
            yield saver
        except sqlite3.DatabaseError as exc:
            raise sqlite_problem(exc, where, writing=not read_only) from exc


def sqlite_problem(exc: sqlite3.DatabaseError, where: str, *, writing: bool) -> UserError:
    """What is wrong with the SQLite checkpoint file at `where`, in one line."""
    message = str(exc)
    if "file is not a database" in message:
        return UserError(f"{where} is not a SQLite checkpoint database ({message})")
    if "malformed" in message or "truncated" in message:
        return UserError(f"the checkpoint database {where} is damaged ({message})")
    if "readonly" in message or "read-only" in message or (writing and "unable to open" in message):
        return UserError(
            f"the checkpoint database {where} cannot be written ({message}): run, resume "
            "and demo need to write it (threads, show and audit only read)"
        )
    return UserError(f"cannot use the checkpoint database {where}: {message}")


_EMPTY_TABLES = (
    "CREATE TEMP TABLE checkpoints (thread_id TEXT, checkpoint_ns TEXT, checkpoint_id TEXT, "
    "parent_checkpoint_id TEXT, type TEXT, checkpoint BLOB, metadata BLOB)",
    "CREATE TEMP TABLE writes (thread_id TEXT, checkpoint_ns TEXT, checkpoint_id TEXT, "
    "task_id TEXT, task_path TEXT, idx INTEGER, channel TEXT, type TEXT, value BLOB)",
)
"""The saver's tables, for reading a database that has none yet (it holds no threads)."""


@asynccontextmanager
async def _read_only_sqlite(path: Path, key: str | None) -> AsyncIterator[AsyncSqliteSaver]:
    """An `AsyncSqliteSaver` that reads `path` and never writes to it."""
    uri = await asyncio.to_thread(read_only_uri, path)
    async with aiosqlite.connect(uri, uri=True) as conn:
        saver = AsyncSqliteSaver(conn, serde=checkpoint_serde(key))
        async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
            tables = {row[0] for row in await cur.fetchall()}
        if "checkpoints" not in tables:
            for statement in _EMPTY_TABLES:  # temporary tables: the file is not written
                await conn.execute(statement)
        # The saver's setup writes (it creates tables, switches to WAL): skip it.
        saver.is_setup = True
        yield saver


def _unreachable(exc: Exception) -> bool:
    """Whether `exc` is psycopg's error for a server that cannot be reached or refuses."""
    psycopg = sys.modules.get("psycopg")  # loaded if a PostgreSQL URL was opened
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


__all__ = [
    "CONTEXT_KEY",
    "DEMO_KEY",
    "GOAL_KEY",
    "SEAL_KEY",
    "open_saver",
    "prepare_checkpoint",
    "sqlite_problem",
]
