"""What the commands share.

The environment, the checkpoint file, the run's settings kept with the thread, the
models, and the loop that streams a run and answers its interrupts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command, Interrupt
from pydantic import TypeAdapter, ValidationError

from planexec.checkpoints import AsyncCheckpointer, is_postgres, open_checkpointer, redact
from planexec.context import Context
from planexec.errors import CheckpointError, PlanexecError
from planexec.events import is_event
from planexec.graph import PlanexecGraph, run_config
from planexec.lease import Lease, default_owner, thread_lease
from planexec.models import ModelFactory, chat_model
from planexec.serde import checkpoint_serde, metadata_seal

CONTEXT_KEY = "planexec_context"
"""Checkpoint metadata key holding the run's `Context` as JSON (LangGraph keeps only
scalar metadata values, so the dict is stored as a string)."""
GOAL_KEY = "planexec_goal"
DEMO_KEY = "planexec_demo"
"""Set on threads started by `planexec demo`: they resume with the scripted models."""
SEAL_KEY = "planexec_seal"
"""With a checkpoint key: a signature of the other `planexec_*` metadata (the metadata
column is not encrypted), checked before `resume` uses them."""
CHECKPOINT_KEY_VARIABLE = "PLANEXEC_CHECKPOINT_KEY"

_CONTEXT = TypeAdapter(Context)


class UserError(PlanexecError):
    """A mistake in how planexec was called; shown as one line, exit code 2."""


@dataclass(frozen=True)
class Environment:
    """Everything planexec reads from the environment, read once at start-up."""

    api_key: str | None
    base_url: str | None
    home: Path
    """Where planexec keeps its data: the default checkpoint file lives here."""
    editor: str
    interactive: bool
    """Whether stdin is a terminal, so a person can answer questions."""
    checkpoint_key: str | None = field(default=None, repr=False)
    """`PLANEXEC_CHECKPOINT_KEY`: encrypts and authenticates checkpoints (`planexec.serde`)."""
    embeddings: str | None = None
    """`PLANEXEC_EMBEDDINGS`: the model that finds saved plans by meaning (`planexec.stores`)."""

    @classmethod
    def read(cls, environ: Mapping[str, str], *, interactive: bool) -> Environment:
        """The environment from `environ` (normally `os.environ`)."""
        return cls(
            api_key=environ.get("OPENAI_API_KEY") or None,
            base_url=environ.get("OPENAI_BASE_URL") or None,
            home=default_home(environ),
            editor=environ.get("VISUAL") or environ.get("EDITOR") or "vi",
            interactive=interactive,
            checkpoint_key=environ.get(CHECKPOINT_KEY_VARIABLE) or None,
            embeddings=environ.get("PLANEXEC_EMBEDDINGS") or None,
        )

    @property
    def default_checkpoint(self) -> Path:
        """`$PLANEXEC_HOME/checkpoints.sqlite`."""
        return self.home / "checkpoints.sqlite"


def default_home(environ: Mapping[str, str]) -> Path:
    """`$PLANEXEC_HOME`, else `${XDG_DATA_HOME:-~/.local/share}/planexec`."""
    if environ.get("PLANEXEC_HOME"):
        return Path(environ["PLANEXEC_HOME"]).expanduser()
    data = environ.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return Path(data).expanduser() / "planexec"


def make_context(settings: Mapping[str, Any]) -> Context:
    """A `Context` from settings, or a one-line `UserError` naming the bad setting."""
    try:
        return Context(**settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise UserError(f"invalid setting {where}: {first['msg']}") from exc
    except TypeError as exc:
        raise UserError(f"invalid settings: {exc}") from exc


def context_json(context: Context) -> str:
    """The context as JSON, for the thread's checkpoint metadata."""
    return json.dumps(_CONTEXT.dump_python(context, mode="json"), sort_keys=True)


def stored_settings(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The context settings a thread was run with, from its checkpoint metadata."""
    text = (metadata or {}).get(CONTEXT_KEY)
    if not isinstance(text, str):
        return {}
    data = json.loads(text)
    return dict(data) if isinstance(data, dict) else {}


def thread_config(
    thread_id: str, context: Context, goal: str, *, demo: bool = False
) -> RunnableConfig:
    """The run config, with the context and goal in the metadata of every checkpoint."""
    metadata = {CONTEXT_KEY: context_json(context), GOAL_KEY: goal}
    if demo:
        metadata[DEMO_KEY] = "1"
    return run_config(thread_id, context, metadata=metadata)


def seal_config(config: RunnableConfig, key: str | None) -> RunnableConfig:
    """`config` with its metadata signed under `key`; as it is without a key.

    The goal is left out of signed metadata: the encrypted state holds it.
    """
    if key is None:
        return config
    metadata = {k: v for k, v in (config.get("metadata") or {}).items() if k != GOAL_KEY}
    metadata[SEAL_KEY] = _seal(metadata, key)
    return {**config, "metadata": metadata}


def check_seal(metadata: Mapping[str, Any] | None, key: str | None) -> None:
    """Raise `CheckpointError` unless `metadata` carries a valid signature under `key`."""
    if key is None:
        return
    found = (metadata or {}).get(SEAL_KEY)
    if not isinstance(found, str) or not hmac.compare_digest(found, _seal(metadata or {}, key)):
        raise CheckpointError(
            "the run settings kept with this thread are not signed with the checkpoint key, "
            "or were changed since: refusing to resume it"
        )


def _seal(metadata: Mapping[str, Any], key: str) -> str:
    kept = sorted(
        (k, str(v)) for k, v in metadata.items() if k.startswith("planexec_") and k != SEAL_KEY
    )
    return metadata_seal(key, *(f"{k}={v}" for k, v in kept))


def positive_int(text: str) -> int:
    """An argparse `type`: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def model_factory(env: Environment) -> ModelFactory:
    """Makes chat models with the credentials read from the environment."""

    def make(spec: str, context: Context) -> BaseChatModel:
        return chat_model(
            spec,
            timeout=context.model_timeout,
            max_retries=context.model_max_retries,
            api_key=env.api_key,
            base_url=env.base_url,
        )

    return make


def check_models(context: Context, factory: ModelFactory) -> None:
    """Fail now, with a one-line reason, if a role's model cannot be made."""
    for spec in dict.fromkeys((context.planner_model, context.executor_model, context.replanner)):
        try:
            factory(spec, context)
        except PlanexecError as exc:
            raise UserError(str(exc)) from exc


def checkpoint_location(value: str | None, env: Environment) -> Path | str:
    """What `--checkpoint` names: a PostgreSQL URL, or a SQLite file.

    The default file when `value` is None.
    """
    if value and is_postgres(value):
        return value
    return Path(value).expanduser() if value else env.default_checkpoint


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


def reading_checkpoint(location: Path | str) -> bool:
    """Whether a command that only reads has a database to read at `location`.

    A SQLite file that does not exist yet holds no threads: that is not an error.
    """
    if isinstance(location, Path):
        try:
            if location.is_dir():
                raise UserError(f"the checkpoint {location} is a directory, not a file")
            return location.is_file()
        except OSError as exc:
            raise UserError(f"cannot read the checkpoint {location}: {exc.strerror}") from exc
    return True


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
                    await asyncio.to_thread(_probe, location)
                saver = await stack.enter_async_context(
                    open_checkpointer(location, encryption_key=key)
                )
                if isinstance(location, Path):
                    await saver.setup()
        except psycopg.OperationalError as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise UserError(f"cannot open the checkpoint database {where}: {lines[-1]}") from exc
        except sqlite3.DatabaseError as exc:
            raise sqlite_problem(exc, where, writing=not read_only) from exc
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


def _probe(path: Path) -> str:
    """The URI that reads `path` read-only, once its header and schema have been read.

    Raises sqlite3's error for a file that is no database or is cut short (both told
    from the header, before SQLite opens it), and a `UserError` for a SQLite database
    that holds other things than checkpoints.
    """
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if not path.is_file() or not path.stat().st_size:
        return uri
    _check_header(path)
    try:
        conn = sqlite3.connect(uri, uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        if not _unopenable(exc):
            raise
        # A database in WAL mode on read-only media: SQLite cannot make its
        # shared-memory file there, but can read the file as it stands.
        uri += "&immutable=1"
        conn = sqlite3.connect(uri, uri=True)
    with contextlib.closing(conn):
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    if tables and "checkpoints" not in tables:
        raise UserError(
            f"{path} is a SQLite database, but not a planexec checkpoint file "
            f"(it has {', '.join(sorted(tables)[:5])}); refusing to use it"
        )
    return uri


_MAGIC = b"SQLite format 3\0"


def _check_header(path: Path) -> None:
    """sqlite3's error for a file that is not SQLite, or is shorter than its header says."""
    with path.open("rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise sqlite3.DatabaseError("file is not a database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is only valid when the change counter matches "version-valid-for".
    valid = header[24:28] == header[92:96]
    size = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    if valid and pages * page_size > size and not (wal.is_file() and wal.stat().st_size):
        raise sqlite3.DatabaseError(f"truncated: {size:,} bytes of {pages * page_size:,}")


def _unopenable(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite could not open a WAL database read-only (no shared-memory file)."""
    return "unable to open" in str(exc) or "readonly" in str(exc)


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
    uri = await asyncio.to_thread(_probe, path)
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


def hold_thread(
    saver: AsyncCheckpointer, thread_id: str, command: str
) -> AbstractAsyncContextManager[Lease]:
    """The thread's lease (`planexec.lease`): no other client may run it meanwhile.

    Raises `ThreadBusyError` on entry if another client holds it.
    """
    return thread_lease(saver, thread_id, owner=f"planexec {command} ({default_owner()})")


async def record_thread(
    graph: PlanexecGraph, config: RunnableConfig, context: Context, goal: str
) -> None:
    """Save a new run's input as its thread's first checkpoints, before any node runs.

    A process that dies before the planner's first checkpoint leaves its thread listed
    (`planexec threads`: interrupted), and `planexec resume` starts it from the goal.
    """
    async for _ in graph.astream(
        {"goal": goal},
        config,
        context=context,
        durability="sync",
        interrupt_before=["planner"],
    ):
        pass


Decide = Callable[[dict[str, Any]], Any]
"""Answers an interrupt's value with a resume value, or None to leave the run paused."""


@dataclass
class Outcome:
    """Where a run stopped: its state values, and the interrupt if it is paused."""

    values: dict[str, Any]
    paused: dict[str, Any] | None = None


async def drive(
    graph: PlanexecGraph,
    config: RunnableConfig,
    context: Context,
    start: Any,
    decide: Decide,
    on_event: Callable[[dict[str, Any]], None],
    on_update: Callable[[str, dict[str, Any]], None] | None = None,
) -> Outcome:
    """Stream the run from `start` until it ends or `decide` leaves it paused.

    `start` is the input, None (to continue an interrupted run), or a pending
    `Interrupt` to answer first. Every interrupt is answered with `decide`; progress
    events go to `on_event`, and nodes' state updates to `on_update`.
    """
    pending: Interrupt | None = start if isinstance(start, Interrupt) else None
    value: Any = None if pending is not None else start
    while True:
        if pending is None:
            pending = await _stream(graph, config, context, value, on_event, on_update)
        if pending is None:
            snapshot = await graph.aget_state(config)
            return Outcome(dict(snapshot.values))
        request = pending.value
        if not isinstance(request, dict):
            raise UserError(
                f"the run is paused at an interrupt planexec does not know: {request!r}"
            )
        answer = decide(request)
        if answer is None:
            snapshot = await graph.aget_state(config)
            return Outcome(dict(snapshot.values), paused=request)
        value = Command(resume={pending.id: answer})
        pending = None


async def _stream(
    graph: PlanexecGraph,
    config: RunnableConfig,
    context: Context,
    value: Any,
    on_event: Callable[[dict[str, Any]], None],
    on_update: Callable[[str, dict[str, Any]], None] | None,
) -> Interrupt | None:
    """Run until the graph ends or interrupts; the interrupt, if any."""
    pending: Interrupt | None = None
    async for mode, chunk in graph.astream(
        value, config, context=context, stream_mode=["updates", "custom"], durability="sync"
    ):
        if not isinstance(chunk, dict):
            continue
        if mode == "custom" and is_event(chunk):
            on_event(chunk)
        elif mode == "updates" and "__interrupt__" in chunk:
            pending = chunk["__interrupt__"][0]
        elif mode == "updates" and on_update is not None:
            for node, update in chunk.items():
                if isinstance(update, dict):
                    on_update(node, update)
    return pending
