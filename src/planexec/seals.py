"""Approvals that only the review and approval nodes can make.

Every review decision (`ReviewRecord`) and step approval (`StepApproval`) the graph
records carries a `seal`: an HMAC-SHA256 of the record and of the thread it was made
in, under the graph's approval key. The key is never in the state, so a record written
some other way (through `update_state`, by Studio or a LangGraph server's clients, or
copied from another thread) has no valid seal: the executor refuses a plan whose
approval is not genuine, the review asks a person again, and a gated step waits for
its approval again.

The approval key is, in order:

1. the `approval_key` given to `build_graph`;
2. for a checkpointer on a SQLite or PostgreSQL database (`AsyncSqliteSaver`,
   `AsyncPostgresSaver`, `SqliteSaver`, `PostgresSaver`), a random key kept in that
   database's `planexec_keys` table, made on first use: every process that opens the
   database verifies the approvals made by every other;
3. otherwise (`InMemorySaver`, a LangGraph server's own checkpointer), a random key
   made when this module is imported: approvals verify only in this process. Give
   `approval_key` to resume such threads in another process.

The seal protects against writes through LangGraph's API. Whoever can write the
checkpoint database directly can also read the key kept there; against that, encrypt
the checkpoints (`open_checkpointer(..., encryption_key=...)`), whose values then cannot
be written without their key, or give an `approval_key` kept elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_config
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.runtime import Runtime

from planexec.database import create_table, database, has_database

__all__ = ["KEY_TABLE", "Sealer", "sealer"]

KEY_TABLE = "planexec_keys"
"""The table of keys planexec keeps in a checkpoint database (one row: `approval`)."""

_PROCESS_KEY = secrets.token_bytes(32)
_keys: weakref.WeakKeyDictionary[BaseCheckpointSaver[Any], bytes] = weakref.WeakKeyDictionary()
_reading: weakref.WeakKeyDictionary[BaseCheckpointSaver[Any], asyncio.Task[bytes]] = (
    weakref.WeakKeyDictionary()
)

RecordT = TypeVar("RecordT", bound=Mapping[str, Any])


@dataclass(frozen=True)
class Sealer:
    """Seals and checks the approval records of one thread."""

    key: bytes
    thread_id: str

    def _mac(self, kind: str, record: Mapping[str, Any]) -> str:
        body = {key: value for key, value in record.items() if key != "seal"}
        message = json.dumps(
            {"kind": kind, "thread": self.thread_id, "record": body},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        return hmac.new(self.key, message.encode(), hashlib.sha256).hexdigest()

    def seal(self, kind: str, record: RecordT) -> RecordT:
        """`record` with its seal, as a `kind` ("review" or "step") record."""
        sealed: Any = {**record, "seal": self._mac(kind, record)}
        return sealed  # type: ignore[no-any-return]

    def genuine(self, kind: str, record: Mapping[str, Any]) -> bool:
        """Whether `record` was sealed as a `kind` record of this thread with this key."""
        seal = record.get("seal")
        return isinstance(seal, str) and hmac.compare_digest(seal, self._mac(kind, record))

    def review(self, record: Mapping[str, Any]) -> bool:
        """Whether a review record is genuine."""
        return self.genuine("review", record)

    def step(self, record: Mapping[str, Any]) -> bool:
        """Whether a step approval is genuine."""
        return self.genuine("step", record)


def _secret(key: str | bytes) -> bytes:
    secret = key.encode() if isinstance(key, str) else bytes(key)
    if not secret:
        raise ValueError("the approval key is empty")
    return hashlib.sha256(b"planexec approvals\0" + secret).digest()


async def sealer(runtime: Runtime[Any], approval_key: str | bytes | None = None) -> Sealer:
    """The sealer for the thread a node runs in (call it from inside a node)."""
    info = runtime.execution_info
    thread_id = str(info.thread_id or "") if info else ""
    if approval_key is not None:
        return Sealer(_secret(approval_key), thread_id)
    saver = (get_config().get("configurable") or {}).get(CONFIG_KEY_CHECKPOINTER)
    if not isinstance(saver, BaseCheckpointSaver):
        return Sealer(_PROCESS_KEY, thread_id)
    key = _keys.get(saver)
    if key is None:
        key = await _first_key(saver)
    return Sealer(key, thread_id)


async def _first_key(saver: BaseCheckpointSaver[Any]) -> bytes:
    """The saver's key, read once however many runs start on it at the same moment.

    Runs that start together on a saver whose key is not known yet wait for one read
    (on the same event loop) instead of each creating the table and reading the key.
    """
    loop = asyncio.get_running_loop()
    pending = _reading.get(saver)
    if pending is None or pending.get_loop() is not loop:
        pending = loop.create_task(_stored_key(saver))
        _reading[saver] = pending
    try:
        key = await asyncio.shield(pending)
    finally:
        if pending.done() and _reading.get(saver) is pending:
            del _reading[saver]
    _keys[saver] = key
    return key


async def _stored_key(saver: BaseCheckpointSaver[Any]) -> bytes:
    """The key kept in the saver's database, made there if it has none; else this process's."""
    if not has_database(saver):
        return _PROCESS_KEY
    async with database(saver) as db:  # type: ignore[arg-type]  # has_database says it is one
        param = "?" if db.dialect == "sqlite" else "%s"
        await create_table(
            db,
            f"CREATE TABLE IF NOT EXISTS {KEY_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        )
        await db.run(
            f"INSERT INTO {KEY_TABLE} (name, value) VALUES ({param}, {param}) "
            "ON CONFLICT (name) DO NOTHING",
            ("approval", secrets.token_hex(32)),
        )
        row = await db.run(f"SELECT value FROM {KEY_TABLE} WHERE name = {param}", ("approval",))
    if row is None:  # pragma: no cover - the row was just written
        raise RuntimeError(f"the approval key could not be kept in {KEY_TABLE}")
    return _secret(bytes.fromhex(str(row[0])))
