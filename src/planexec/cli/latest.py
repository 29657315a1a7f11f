"""A thread's latest checkpoint, read from a SQLite file with `sqlite3` and `ormsgpack` alone.

`planexec show` and `planexec threads` only read, and what they read is plain data, so
they need neither the compiled graph nor LangGraph's savers, whose imports take most of a
second. This module reads the saver's tables directly and tells, from the checkpoint's
channel versions, which node runs next and which interrupt the thread waits on, as
`graph.get_state` does for planexec's graph.

It reads only what it can read exactly. Anything else raises `Unsupported`, and the
caller reads the thread through the graph instead: a value of a type other than plain
data and LangGraph's `Interrupt`, an encrypted value that does not decrypt (the graph's
serializer then gives the error), a pending write of a node's own task other than the
interrupt of the node that runs next, an answered interrupt, a write made outside a
task, a `Send`, a checkpoint format other than LangGraph's version 4, or a channel the
graph does not have.
`tests/test_cli_show.py` checks it against `get_state` for each state a thread can be in,
and `tests/test_internals.py` the LangGraph names it relies on.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ormsgpack

from planexec.cipher import CIPHER, AesGcm, Decrypted
from planexec.cli.environment import UserError
from planexec.cli.sqlitefiles import read_only_uri

STATE_CHANNELS = (
    "goal",
    "status",
    "answer",
    "reason",
    "plan",
    "results",
    "revisions",
    "reviews",
    "usage",
    "messages",
    "goal_index",
    "earlier_goals",
    "revision",
    "draft_errors",
    "draft",
    "draft_attempts",
    "approvals",
    "awaiting_approval",
    "active_s",
    "heard",
    "goal_message",
    "answer_id",
    "chat_answer",
)
"""The graph's state channels, in the order `get_state` lists them."""

UNREAD = frozenset({"messages"})
"""Channels this module does not report: the conversation holds LangChain messages,
which `show` and `threads` do not print; `Latest.values` leaves them out."""

STORED_BY_DELTA = frozenset({"results", "revisions", "reviews", "earlier_goals"})
"""History channels LangGraph stores by delta (`planexec.state`): once written, a
checkpoint does not hold them, and this module refuses to read it."""

DEFAULTS: Mapping[str, Any] = {
    "results": {},
    "revisions": [],
    "reviews": [],
    "earlier_goals": [],
    "usage": {},
    "messages": [],
    "approvals": {},
    "active_s": 0.0,
}
"""What `get_state` reports for a reducer channel that was never written."""

NODES = ("__start__", "intake", "planner", "review", "executor", "approval", "replanner")
"""The graph's nodes, in the order `get_state` lists the next ones."""

START = "__start__"
BRANCH = "branch:to:"
"""The channel that triggers a node is `branch:to:<node>` (`__start__` for the input)."""
INTERRUPT = "__interrupt__"
RETURN = "__return__"
RESUME = "__resume__"
NULL_TASK = "00000000-0000-0000-0000-000000000000"
"""The task id of writes made outside any task (`update_state`, `Command(update=...)`)."""
PULL = "~__pregel_pull, "
"""How a node's own task is named in the `task_path` of its writes."""
_INTERRUPT_CLASS = ("langgraph.types", "Interrupt")
_INTERRUPT_FIELDS = {"value", "id", "response_schema"}
_EXT_KW_ARGS = 2
"""LangGraph's msgpack extension code for a type built from keyword arguments."""
CHECKPOINT_FORMAT = 4
"""The `v` of the checkpoints this module reads."""


class Unsupported(Exception):
    """Something this module does not read exactly: read the thread through the graph."""


@dataclass(frozen=True)
class Pending:
    """An interrupt a thread waits on, as LangGraph's `Interrupt`."""

    value: Any
    id: str
    response_schema: Any = None
    """The JSON Schema a resume value must match, if the interrupt asked for one."""


class Decoder:
    """Reads the `(type, bytes)` values planexec's serializer writes (`planexec.serde`).

    Plain data, and LangGraph's `Interrupt`; with `key`, values encrypted under it.
    Raises `Unsupported` for anything else, and for anything that does not decode.
    """

    def __init__(self, key: str | None) -> None:
        self._cipher = AesGcm(key) if key is not None else None

    def loads(self, kind: str, raw: bytes | None) -> Any:
        """The value of a stored `(kind, raw)` pair."""
        if raw is None:
            raise Unsupported("no value")
        if self._cipher is not None:
            kind, _, cipher = kind.partition("+")
            if cipher != CIPHER:
                raise Unsupported("not encrypted with planexec's cipher")
            try:
                plain = self._cipher.decrypt(cipher, raw)
            except Exception as exc:
                raise Unsupported("does not decrypt") from exc
            written, _, raw = bytes(plain).partition(b"\0")
            if not isinstance(plain, Decrypted) or written != kind.encode():
                raise Unsupported("its type is not the one encrypted with it")
        if kind == "null":
            return None
        if kind != "msgpack":
            raise Unsupported(f"a value of type {kind}")
        try:
            return ormsgpack.unpackb(raw, ext_hook=_ext, option=ormsgpack.OPT_NON_STR_KEYS)
        except Unsupported:
            raise
        except Exception as exc:
            raise Unsupported("does not decode") from exc


@dataclass(frozen=True)
class Opaque:
    """A value of a type this module does not build (a LangChain message, say).

    A channel in `UNREAD` may hold it; `latest_state` refuses one anywhere else.
    """

    code: int


def _ext(code: int, data: bytes) -> Pending | Opaque:
    if code == _EXT_KW_ARGS:
        found = ormsgpack.unpackb(data, ext_hook=_ext, option=ormsgpack.OPT_NON_STR_KEYS)
        fields = found[2] if tuple(found[:2]) == _INTERRUPT_CLASS else {}
        if isinstance(fields, dict) and {"value", "id"} <= set(fields) <= _INTERRUPT_FIELDS:
            return Pending(**fields)
    return Opaque(code)


def _holds_opaque(value: Any) -> bool:
    """Whether `value` is or contains an `Opaque`."""
    if isinstance(value, Opaque):
        return True
    if isinstance(value, dict):
        return any(_holds_opaque(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_opaque(v) for v in value)
    return False


@dataclass(frozen=True)
class Latest:
    """A thread's latest checkpoint, as `graph.get_state` reports it."""

    thread_id: str
    values: dict[str, Any]
    metadata: dict[str, Any]
    created_at: str
    next: tuple[str, ...]
    interrupts: tuple[Pending, ...]
    pending_writes: list[tuple[str, str, Any]] = field(default_factory=list)
    """The checkpoint's pending writes `(task id, channel, value)`, in the saver's order."""


def metadata_of(raw: Any) -> dict[str, Any]:
    """A checkpoint's metadata column as a dict (empty when it is not a JSON object)."""
    try:
        data = json.loads(raw) if isinstance(raw, bytes | str) else raw
    except ValueError:
        return {}
    return dict(data) if isinstance(data, dict) else {}


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the SQLite checkpoint file at `path`.

    Raises `Unsupported` when the file has none of the saver's tables yet, sqlite3's
    error for a file that is damaged or no database (`sqlite_problem` words it), and a
    `UserError` for a SQLite database that holds other things than checkpoints.
    """
    conn = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if not {"checkpoints", "writes"} <= tables:
            raise Unsupported("no checkpoint tables")
        yield conn
    finally:
        conn.close()


def resolve(conn: sqlite3.Connection, given: str, where: str) -> str:
    """The thread `given` names: its id, or the one id it is a unique prefix of.

    The same answers and errors as `planexec.cli.threads.resolve_thread`.
    """
    exact = "SELECT thread_id FROM checkpoints WHERE thread_id = ? LIMIT 1"
    if conn.execute(exact, (given,)).fetchone():
        return given
    # BINARY collation: every id that starts with `given` sorts in this range.
    query = (
        "SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_ns = '' "
        "AND thread_id >= ? AND thread_id < ? LIMIT 11"
    )
    matches = [str(row[0]) for row in conn.execute(query, (given, given + "\U0010ffff"))]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"unknown thread {given} in {where}")
    shown = ", ".join(sorted(matches)[:10]) + (", ..." if len(matches) > 10 else "")
    raise UserError(f"{given} is the start of several thread ids in {where}: {shown}")


_LATEST = (
    "SELECT checkpoint_id, type, checkpoint, metadata FROM checkpoints "
    "WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1"
)
_WRITES = (
    "SELECT task_id, channel, type, value, task_path, idx FROM writes "
    "WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ?"
)


def read_latest(conn: sqlite3.Connection, thread: str, decoder: Decoder) -> Latest | None:
    """The latest checkpoint of `thread` (None when it has none), or `Unsupported`."""
    row = conn.execute(_LATEST, (thread,)).fetchone()
    if row is None:
        return None
    checkpoint_id, kind, blob, metadata = row
    checkpoint = decoder.loads(kind, blob)
    writes = sorted(
        conn.execute(_WRITES, (thread, checkpoint_id)), key=lambda w: (w[4], w[0], w[5])
    )
    decoded = [(str(w[0]), str(w[1]), decoder.loads(w[2], w[3]), str(w[4])) for w in writes]
    return latest_state(thread, checkpoint, metadata_of(metadata), decoded)


def _next_nodes(checkpoint: dict[str, Any]) -> list[str]:
    """The nodes whose trigger channel changed since they last ran (LangGraph's rule)."""
    channels: dict[str, Any] = checkpoint["channel_values"]
    versions: dict[str, Any] = checkpoint["channel_versions"]
    seen: dict[str, dict[str, Any]] = checkpoint["versions_seen"]
    triggered = []
    for name in channels:
        node = START if name == START else name.removeprefix(BRANCH)
        if node == name and name != START:
            if name not in STATE_CHANNELS:
                raise Unsupported(f"a channel the graph does not have: {name}")
            continue
        if node not in NODES:
            raise Unsupported(f"a node the graph does not have: {node}")
        null = type(versions[name])()
        if versions[name] > seen.get(node, {}).get(name, null):
            triggered.append(node)
    if len(triggered) > 1:
        raise Unsupported("more than one node runs next")
    return triggered


def _values(channels: Mapping[str, Any], versions: Mapping[str, Any]) -> dict[str, Any]:
    """The state's values, as `get_state` reports them, from a checkpoint's channels."""
    values = {}
    for name in STATE_CHANNELS:
        if name in UNREAD:
            continue
        if name in channels:
            if _holds_opaque(channels[name]):
                raise Unsupported(f"a value in {name} of a type this reader does not build")
            values[name] = channels[name]
        elif name in versions:
            # Written, yet not in the checkpoint: kept elsewhere (stored by delta).
            raise Unsupported(f"{name} is not stored in the checkpoint")
        elif name in DEFAULTS:
            values[name] = DEFAULTS[name]
    return values


def latest_state(
    thread: str,
    checkpoint: Any,
    metadata: dict[str, Any],
    writes: Sequence[tuple[str, str, Any, str]],
) -> Latest:
    """What `get_state` reports for `checkpoint` and its `(task, channel, value, path)` writes."""
    if not isinstance(checkpoint, dict) or checkpoint.get("v") != CHECKPOINT_FORMAT:
        raise Unsupported("another checkpoint format")
    channels: dict[str, Any] = checkpoint["channel_values"]
    triggered = _next_nodes(checkpoint)
    interrupts: list[Pending] = []
    for task, channel, value, path in writes:
        if task == NULL_TASK or channel == RESUME:
            raise Unsupported(f"a pending {channel} write of {path or task}")
        if triggered and path == PULL + triggered[0] and channel == INTERRUPT:
            found = list(value) if isinstance(value, list | tuple) else [value]
            if not all(isinstance(i, Pending) for i in found):
                raise Unsupported("an interrupt that is not LangGraph's")
            interrupts.extend(found)
        elif path.startswith(PULL):
            # A node's own writes would change what `get_state` reports; a step task's
            # writes inside a node (`~__pregel_push, ...`) do not.
            raise Unsupported(f"a pending {channel} write of {path}")
    values = _values(channels, checkpoint.get("channel_versions") or {})
    return Latest(
        thread_id=thread,
        values=values,
        metadata=metadata,
        created_at=str(checkpoint["ts"]),
        next=tuple(triggered),
        interrupts=tuple(interrupts),
        pending_writes=[(task, channel, value) for task, channel, value, _ in writes],
    )


__all__ = [
    "DEFAULTS",
    "NODES",
    "STATE_CHANNELS",
    "STORED_BY_DELTA",
    "UNREAD",
    "Decoder",
    "Latest",
    "Opaque",
    "Pending",
    "Unsupported",
    "latest_state",
    "metadata_of",
    "read_latest",
    "reading",
    "resolve",
]
