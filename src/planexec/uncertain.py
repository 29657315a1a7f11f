"""Tools that must not run twice: a saved mark before each call, a person after a crash.

LangGraph runs a step again when the process died before the step's result was saved,
and the executor retries an attempt that timed out. Most tools are fine with that: each
call gets the step's idempotency key (`ToolRuntime.tool_call_id`, or a parameter
annotated `InjectedToolCallId`: `"<thread>:r<revision>:<step>"`, the same for every
attempt and every resume of one step of one plan revision) to deduplicate with. A tool
that cannot deduplicate (it sends an email, charges a card) is marked not idempotent:
`metadata={"idempotent": False}` on the tool, or its name in
`Context.non_idempotent_tools`.

Such a step keeps a journal in LangGraph tasks of its own (`journal-<step id>`): a
`begin` entry before each call, saved before the call starts, a `finish` entry when it
returns or raises, and every answer a person gave. A step that runs again (a resumed
run, or a retry) first reads its journal back. A `begin` with no `finish` that an
earlier process left, or that an attempt of its own left when it was cancelled in the
middle of the call (a timeout), means nobody knows whether the call had its effect. The
step does not call the tool: it pauses the run with::

    {"type": "uncertain_step", "step": "s2", "revision": 1, "tool": "send_email",
     "args": {...}, "key": "<idempotency key>", "description": "...", "message": "...",
     "allowed_decisions": ["rerun", "done", "skip"]}

Resume with `{"type": "rerun"}` to call the tool again (with the arguments shown and
the same key), `{"type": "done", "output": <JSON>}` when the effect happened (the step
is done with that output), or `{"type": "skip", "message": "..."}` to skip the step (the
steps that depend on it are skipped, and the replanner is told). A decision may carry
the interrupt's `key`; if it does, it must match. A malformed decision pauses again with
`errors`. A step that raised an error of its own (the tool refused, say) is retried as
usual: an exception means the call finished. A call whose `finish` was saved before a
crash is not made again: the step ends with the output it returned.

The journal is read back by position: LangGraph identifies a task's nested tasks and
its interrupts by the order they are called in, restarting the count on every run. So
reading starts with fresh `probe` entries until one comes back as written (the end of
the journal), and a step that asks a person calls `interrupt` once for every answer
the journal already holds (those return the saved answers) before it asks anew.

The guarantee needs a checkpointer and `durability="sync"` (what the command line
uses) or `"async"`: with `"exit"` nothing is saved until the run ends, so a crash loses
the whole run and the mark with it.
"""

from __future__ import annotations

import asyncio
import reprlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict
from uuid import uuid4

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_config
from langgraph.func import task
from langgraph.types import interrupt

from planexec.context import Context
from planexec.errors import PlanexecError
from planexec.internals import CHECKPOINTER_KEY, DURABILITY_KEY
from planexec.interrupts import UNCERTAIN_DECISIONS, UncertainStepRequest
from planexec.plan import StepDict

__all__ = [
    "UNCERTAIN_DECISIONS",
    "Journal",
    "StepSettled",
    "UncertainStepError",
    "call_once",
    "is_idempotent",
    "parse_uncertain_decision",
    "uncertain_request",
]


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80

SAVE_WAIT_S = 30.0
"""How long a step waits for a journal entry to be saved before it gives up (without calling)."""


class Begin(TypedDict):
    """Saved before a call of a tool that must not run twice."""

    kind: Literal["begin"]
    call: str
    """Unique to the call; starts with the nonce of the process's journal."""
    key: str
    tool: str
    args: dict[str, Any]


class Finish(TypedDict):
    """Saved when the call of a `Begin` returned (`ok`) or raised."""

    kind: Literal["finish"]
    call: str
    ok: bool
    output: Any


class Answer(TypedDict):
    """A person's answer at an uncertain-step pause, as given (it may be malformed)."""

    kind: Literal["answer"]
    value: Any


class Probe(TypedDict):
    """Written while reading the journal back: a probe that comes back as written is the end."""

    kind: Literal["probe"]
    id: str


Entry = Begin | Finish | Answer | Probe


@dataclass
class Journal:
    """One step's journal as this process knows it, across the step's attempts."""

    nonce: str = field(default_factory=lambda: uuid4().hex)
    """Begins whose call id starts with it were written by this process."""
    entries: list[Entry] = field(default_factory=list)
    in_flight: bool = False
    """Whether this process's last call was started and neither returned nor raised."""
    calls: int = 0


class StepSettled(Exception):
    """A person settled an uncertain step: it ends with this outcome, its tool not called."""

    def __init__(self, status: Literal["done", "skipped"], output: Any, error: str | None):
        self.status = status
        self.output = output
        self.error = error
        super().__init__(status)

    @property
    def resolution(self) -> str:
        """How the step was settled, as recorded in its result."""
        return "marked done by a person" if self.status == "done" else "skipped by a person"


class UncertainStepError(PlanexecError):
    """A journal entry of a non-idempotent call could not be confirmed saved; nothing was called."""


def is_idempotent(tool: BaseTool, context: Context) -> bool:
    """Whether a step may call `tool` again after a crash or a timeout, with the same key."""
    if tool.name in context.non_idempotent_tools:
        return False
    return (tool.metadata or {}).get("idempotent") is not False


def uncertain_request(
    step: StepDict, begin: Begin, revision: int, errors: list[str], *, cancelled: bool
) -> UncertainStepRequest:
    """The interrupt value that asks a person to settle an uncertain step."""
    why = (
        "an attempt of this step timed out in the middle of the call"
        if cancelled
        else "the run stopped (a crash, or a kill) while this step was calling it"
    )
    value: UncertainStepRequest = {
        "type": "uncertain_step",
        "step": step["id"],
        "revision": revision,
        "tool": begin["tool"],
        "args": begin["args"],
        "key": begin["key"],
        "description": step["description"],
        "message": (
            f"{begin['tool']} must not run twice, and {why}: its effect may or may not "
            "have happened. Check, then re-run it, mark it done with its output, or skip it."
        ),
        "allowed_decisions": list(UNCERTAIN_DECISIONS),
    }
    if errors:
        value["errors"] = errors
    return value


def parse_uncertain_decision(value: object, key: str) -> tuple[dict[str, Any] | None, list[str]]:
    """A decision on an uncertain step from a resume value, or the reasons it is not one."""
    if not isinstance(value, dict):
        return None, [
            f'a decision must be an object such as {{"type": "rerun"}}, not {_SHOWN.repr(value)}'
        ]
    kind = value.get("type")
    if kind not in UNCERTAIN_DECISIONS:
        return None, [
            f"unknown decision type {_SHOWN.repr(kind)}: use one of "
            f"{', '.join(UNCERTAIN_DECISIONS)}"
        ]
    if value.get("key") not in (None, key):
        return None, [
            f"the decision is for the call {_SHOWN.repr(value['key'])}, but the uncertain call "
            f"is {key}"
        ]
    if kind == "done" and "output" not in value:
        return None, ['a "done" decision needs the call\'s "output"']
    message = value.get("message")
    if message is not None and not isinstance(message, str):
        return None, ['"message" must be text']
    return dict(value), []


@dataclass
class _Replay:
    """Where a step's journal leaves its call."""

    open: Begin | None = None
    """A call that began and has no finish (nor a person's answer since)."""
    rerun: Begin | None = None
    """A call a person asked to make again, not yet begun."""
    returned: Finish | None = None
    settled: dict[str, Any] | None = None
    """A person's "done" or "skip" decision."""
    answers: int = 0


def _replay(entries: list[Entry], key: str) -> _Replay:
    state = _Replay()
    for entry in entries:
        if entry["kind"] == "begin":
            state.open, state.rerun = entry, None
        elif entry["kind"] == "finish":
            if state.open is not None and entry["call"] == state.open["call"]:
                state.open = None
                state.returned = entry if entry["ok"] else None
        elif entry["kind"] == "answer":
            state.answers += 1
            decision, _errors = parse_uncertain_decision(entry["value"], key)
            if decision is None or state.open is None:
                continue
            if decision["type"] == "rerun":
                state.open, state.rerun = None, state.open
            else:
                state.open, state.settled = None, decision
    return state


def _settle(decision: dict[str, Any]) -> StepSettled:
    if decision["type"] == "done":
        return StepSettled("done", decision["output"], None)
    note = decision.get("message")
    error = "skipped by a person after an uncertain call" + (f": {note}" if note else "")
    return StepSettled("skipped", None, error)


Call = Callable[[dict[str, Any]], Awaitable[Any]]
"""Calls the tool with the given arguments; returns its output as JSON data."""


async def _record(value: Any) -> Any:
    return value


async def call_once(
    step: StepDict,
    tool: str,
    args: dict[str, Any],
    *,
    key: str,
    revision: int,
    journal: Journal,
    call: Call,
) -> Any:
    """Call the step's tool through `call` at most once, unless a person says otherwise.

    Must run inside the step's LangGraph task, with the same `journal` for every attempt
    of the step in this process. Returns the call's output: this call's, or that of a
    call an earlier process made and saved. Raises `StepSettled` when a person settles
    the step without a call; pauses the run (LangGraph's interrupt) while the call is
    uncertain.
    """
    as_task: Any = task(name=f"journal-{step['id']}")
    record: Callable[[Entry], Awaitable[Any]] = as_task(_record)
    while True:
        probe: Probe = {"kind": "probe", "id": uuid4().hex}
        entry = await record(probe)
        if entry == probe:
            break
        journal.entries.append(entry)
    state = _replay(journal.entries, key)
    if state.returned is not None:
        return state.returned["output"]
    if state.settled is not None:
        raise _settle(state.settled)
    mine = state.open is not None and state.open["call"].startswith(journal.nonce)
    if state.open is not None and (journal.in_flight or not mine):
        decision = await _ask(step, state.open, revision, key, journal, record, state.answers)
        if decision["type"] != "rerun":
            raise _settle(decision)
        state.rerun = state.open
    if state.rerun is not None:
        args = state.rerun["args"]
    journal.calls += 1
    begin: Begin = {
        "kind": "begin",
        "call": f"{journal.nonce}-{journal.calls}",
        "key": key,
        "tool": tool,
        "args": args,
    }
    await _write(record, begin, journal)
    journal.in_flight = True
    try:
        output = await call(args)
    except asyncio.CancelledError:
        raise  # cancelled mid-call: the effect may have happened, so in_flight stays set
    except BaseException:
        # The call raised, so it is over: record that, and let the step retry as usual.
        await _write(
            record, {"kind": "finish", "call": begin["call"], "ok": False, "output": None}, journal
        )
        journal.in_flight = False
        raise
    await _write(
        record, {"kind": "finish", "call": begin["call"], "ok": True, "output": output}, journal
    )
    journal.in_flight = False
    return output


async def _ask(
    step: StepDict,
    begin: Begin,
    revision: int,
    key: str,
    journal: Journal,
    record: Callable[[Entry], Awaitable[Any]],
    answered: int,
) -> dict[str, Any]:
    """A person's valid decision on the uncertain call `begin`, every answer journaled."""
    cancelled = begin["call"].startswith(journal.nonce)
    errors: list[str] = []
    # The answers the journal holds were given at earlier pauses of this step: the
    # interrupts they answered come first, and return them again.
    for _ in range(answered):
        interrupt(uncertain_request(step, begin, revision, errors, cancelled=cancelled))
    while True:
        value = interrupt(uncertain_request(step, begin, revision, errors, cancelled=cancelled))
        await _write(record, {"kind": "answer", "value": value}, journal)
        decision, errors = parse_uncertain_decision(value, key)
        if decision is not None:
            return decision


async def _write(record: Callable[[Entry], Awaitable[Any]], entry: Entry, journal: Journal) -> None:
    """Add `entry` to the journal and wait until the checkpointer has it."""
    await record(entry)
    journal.entries.append(entry)
    await _saved(entry)


async def _saved(entry: Entry) -> None:
    """Wait until the checkpointer has `entry`: LangGraph saves task results in the background."""
    config = get_config()
    configurable = config.get("configurable") or {}
    saver = configurable.get(CHECKPOINTER_KEY)
    if not isinstance(saver, BaseCheckpointSaver) or configurable.get(DURABILITY_KEY) == "exit":
        return
    target = _loop_checkpoint(configurable)
    deadline = time.monotonic() + SAVE_WAIT_S
    pause = 0.002
    while True:
        saved = await saver.aget_tuple(target)
        writes = (saved.pending_writes or []) if saved is not None else []
        if any(written == entry for _task, _channel, written in writes):
            return
        if time.monotonic() > deadline:
            raise UncertainStepError(
                f"could not confirm within {SAVE_WAIT_S:g}s that the checkpointer saved the "
                f"{entry['kind']} entry of a call that must not run twice"
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)


def _loop_checkpoint(configurable: dict[str, Any]) -> RunnableConfig:
    """The checkpoint that a step task's own tasks write to: its graph's current one.

    A step task's namespace is the graph's, then `executor:<id>|step-<step>:<id>`.
    """
    namespace = "|".join(str(configurable.get("checkpoint_ns", "")).split("|")[:-2])
    target: dict[str, Any] = {
        "thread_id": configurable.get("thread_id"),
        "checkpoint_ns": namespace,
    }
    checkpoint_id = (configurable.get("checkpoint_map") or {}).get(namespace)
    if checkpoint_id:
        target["checkpoint_id"] = checkpoint_id
    return {"configurable": target}
