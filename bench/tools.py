"""The benchmark's tools: simulated latency, planned failures, and a ledger of effects.

Every tool call is identified by the idempotency key planexec hands it through
`ToolRuntime.tool_call_id` ("<thread>:r<revision>:<step>"). The tools take their latency
and their planned failures from the step id in that key, so a plan's arguments stay
plain data, and they record each effect under the key once it has happened: a step
whose effect is recorded twice ran its tool twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import ToolRuntime

from planexec import TransientError
from planexec.tools import calculator as builtin_calculator
from planexec.tools import file_tools
from planexec.tools.calculator import evaluate


def step_of(key: str) -> str:
    """The step id at the end of an idempotency key."""
    return key.rsplit(":", 1)[-1]


def thread_of(key: str) -> str:
    """The thread id at the start of an idempotency key."""
    return key.rsplit(":", 2)[0]


@dataclass
class Ledger:
    """What the tools of one workload do: how long each step's tool takes, which steps
    fail on their first attempt, and every effect, by idempotency key.
    """

    latency: dict[str, float] = field(default_factory=dict)
    """Seconds each step's tool call takes, by step id (0 when absent)."""
    flaky: frozenset[str] = frozenset()
    """Steps whose first attempt fails with `TransientError` after its latency."""
    effects: list[tuple[str, str]] = field(default_factory=list)
    """(tool, idempotency key) of every call that completed, in order."""
    attempts: Counter[str] = field(default_factory=Counter)
    """Attempts per idempotency key, failed ones included."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def perform(self, key: str) -> None:
        """Spend the step's latency; fail if this is a flaky step's first attempt."""
        step = step_of(key)
        with self._lock:
            self.attempts[key] += 1
            first = self.attempts[key] == 1
        seconds = self.latency.get(step, 0.0)
        if seconds > 0:
            await asyncio.sleep(seconds)
        if first and step in self.flaky:
            raise TransientError(f"lookup for {step} timed out (planned failure)")

    def record(self, tool: str, key: str) -> None:
        """Record one completed effect."""
        with self._lock:
            self.effects.append((tool, key))

    def effects_of(self, thread: str) -> Counter[str]:
        """Completed effects per step id, for one thread."""
        with self._lock:
            return Counter(step_of(key) for _, key in self.effects if thread_of(key) == thread)

    def attempts_of(self, thread: str) -> Counter[str]:
        """Attempts per step id, for one thread."""
        with self._lock:
            counts: Counter[str] = Counter()
            for key, n in self.attempts.items():
                if thread_of(key) == thread:
                    counts[step_of(key)] += n
            return counts


def lookup_value(key: str) -> int:
    """The number a lookup returns for `key`: stable, between 1 and 100."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 + 1


def bench_tools(ledger: Ledger, workspace: Path) -> list[BaseTool]:
    """`lookup`, `calculator` and `write_file`, each recording its effects in `ledger`.

    `calculator` and `write_file` do what the built-in tools do (the built-in
    `write_file` is called, confined to `workspace`); they only add the ledger.
    """
    builtin_write = next(t for t in file_tools(workspace) if t.name == "write_file")

    @tool
    async def lookup(key: str, runtime: ToolRuntime[Any, Any]) -> int:
        """Look up the number stored under `key` in a slow remote service."""
        call = str(runtime.tool_call_id)
        await ledger.perform(call)
        ledger.record("lookup", call)
        return lookup_value(key)

    @tool(description=builtin_calculator.description)
    async def calculator(expression: str, runtime: ToolRuntime[Any, Any]) -> int | float:
        call = str(runtime.tool_call_id)
        await ledger.perform(call)
        value = evaluate(expression)
        ledger.record("calculator", call)
        return value

    @tool(description=builtin_write.description)
    async def write_file(path: str, content: str, runtime: ToolRuntime[Any, Any]) -> str:
        call = str(runtime.tool_call_id)
        await ledger.perform(call)
        written = await builtin_write.ainvoke(
            {"path": path, "content": content, "runtime": runtime}
        )
        ledger.record("write_file", call)
        return str(written)

    return [lookup, calculator, write_file]
