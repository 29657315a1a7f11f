"""Opening the checkpoint database for a command, and the metadata planexec keeps there.

Apart from the rest of `planexec.cli.session` so that the commands that only read
(`threads`, `show`, the TAB helper) import no graph or model: LangGraph's savers and the
database drivers are imported when a saver is opened.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planexec.cli.environment import Environment, UserError, checkpoint_location
from planexec.cli.sqlitefiles import read_only_uri, sqlite_problem
from planexec.locations import is_postgres, redact

if TYPE_CHECKING:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from planexec.checkpoints import AsyncCheckpointer

CONTEXT_KEY = "planexec_context"
"""Checkpoint metadata key holding the run's `Context` as JSON (LangGraph keeps only
scalar metadata values, so the dict is stored as a string)."""
GOAL_KEY = "planexec_goal"
DEMO_KEY = "planexec_demo"
"""Set on threads started by `planexec demo`: they resume with the scripted models."""
SEAL_KEY = "planexec_seal"
"""With a checkpoint key: a signature of the other `planexec_*` metadata (the metadata
column is not encrypted), checked before `resume` uses them."""


def stored_settings(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The context settings a thread was run with, from its checkpoint metadata."""
    text = (metadata or {}).get(CONTEXT_KEY)
    if not isinstance(text, str):
        return {}
    data = json.loads(text)
    return dict(data) if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Thread:
    """A thread in a checkpoint file, and the commands that continue or show it."""

    id: str
    checkpoint: Path | str
    """A SQLite file, or a PostgreSQL URL."""
    default_checkpoint: Path

    @property
    def where(self) -> str:
        """The checkpoint location for display, a URL's password hidden."""
        return redact(self.checkpoint)

    def command(self, name: str) -> str:
        """`planexec <name> <thread>`, with `--checkpoint` when it is not the default."""
        text = f"planexec {name} {shlex.quote(self.id)}"
        if (
            isinstance(self.checkpoint, str)
            or self.checkpoint.resolve() != self.default_checkpoint.resolve()
        ):
            text += f" --checkpoint {shlex.quote(self.where)}"
        return text


def existing_checkpoint(given: str | None, thread: str, env: Environment) -> Path | str:
    """The checkpoint `--checkpoint` names (`given`), which must exist to hold `thread`."""
    location = checkpoint_location(given, env)
    if isinstance(location, Path) and not location.exists():
        raise UserError(
            f"unknown thread {thread}: no checkpoint file at {location} yet "
            "(use --checkpoint to pick another)"
        )
    return prepare_checkpoint(location, create=False)


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
    import asyncio

    from planexec.checkpoints import open_checkpointer  # here: it imports LangGraph's savers

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
    import asyncio

    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from planexec.serde import checkpoint_serde

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
    "Thread",
    "existing_checkpoint",
    "open_saver",
    "prepare_checkpoint",
    "sqlite_problem",
    "stored_settings",
]
