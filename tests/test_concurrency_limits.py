"""How `max_concurrency` and `max_tool_concurrency` apply, shown without timing.

Direct tool calls here meet at a rendezvous that only opens once every one of them is
running at the same time, so a fan-out that ran in waves fails its steps (the wait
has a timeout) instead of merely taking longer. Bounds are shown by counting the
calls in flight: each call waits for its wave to fill up to the bound, then yields to
the loop a few times, so that a call let in past the bound would be counted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.tools import BaseTool, ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver

from helpers import context, invoke, step
from planexec import ScriptedChatModel, build_graph
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.usefixtures("both_apis")

MEET_TIMEOUT_S = 20.0
"""How long a call waits for the others before its step fails: generous, never reached
when the calls run together, whatever the machine's load."""


class Waves:
    """Counts calls in flight; each call waits until `size` of them are in flight.

    The calls of one wave are let go together. `peak` is the most ever in flight.
    Works for calls from event-loop tasks (`enter`) and from threads (`enter_blocking`).
    """

    def __init__(
        self, size: int, timeout_s: float = MEET_TIMEOUT_S, total: int | None = None
    ) -> None:
        self.size = size
        self.total = total
        """The calls expected in all: once the last has arrived, every waiting call goes,
        since the calls still waiting may be fewer than `size` (slots free one by one)."""
        self.timeout_s = timeout_s
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()
        self._wave = threading.Event()

    def _arrive(self) -> threading.Event:
        with self._lock:
            self.in_flight += 1
            self.calls += 1
            self.peak = max(self.peak, self.in_flight)
            wave = self._wave
            if self.in_flight >= self.size or self.calls == self.total:
                wave.set()
                self._wave = threading.Event()
        return wave

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    async def enter(self) -> None:
        """Wait (on the loop) for this call's wave to fill; raise if it never does."""
        wave = self._arrive()
        try:
            if not await asyncio.to_thread(wave.wait, self.timeout_s):
                raise ToolException(f"only {self.in_flight} of {self.size} calls ran at once")
            for _ in range(5):  # a call let in past the bound gets its chance to be counted
                await asyncio.sleep(0)
        finally:
            self._leave()

    def enter_blocking(self) -> None:
        """`enter` for a call running in a thread of its own."""
        wave = self._arrive()
        try:
            if not wave.wait(self.timeout_s):
                raise ToolException(f"only {self.in_flight} of {self.size} calls ran at once")
        finally:
            self._leave()


def meeting_tools(waves: Waves) -> list[BaseTool]:
    """`meet` (async) and `meet_sync` (a plain `def`, run in a thread): both wait on `waves`."""

    @tool
    async def meet(name: str) -> str:
        """Wait for the other calls, then return `name`."""
        await waves.enter()
        return f"met {name}"

    @tool
    def meet_sync(name: str) -> str:
        """Wait for the other calls, in a thread, then return `name`."""
        waves.enter_blocking()
        return f"met {name}"

    return [meet, meet_sync]


def fan_out(width: int, tool_name: str) -> list[dict[str, Any]]:
    return [step(f"s{i}", tool=tool_name, args={"name": f"s{i}"}) for i in range(1, width + 1)]


async def run_plan(
    steps: list[dict[str, Any]],
    tools: Sequence[BaseTool],
    executor: ScriptedChatModel | None = None,
    **settings: Any,
) -> tuple[dict[str, Any], ScriptedChatModel]:
    executor = executor or ScriptedChatModel([])
    graph = build_graph(
        tools=tools,
        checkpointer=InMemorySaver(),
        planner=ScriptedChatModel([plan_reply(steps)]),
        executor=executor,
        replanner=ScriptedChatModel([replan_reply("finish", answer="done")]),
    )
    cfg = {"configurable": {"thread_id": "limits"}}
    out = await invoke(graph, {"goal": "meet"}, cfg, context=context(**settings))
    return out, executor


def outputs(out: dict[str, Any]) -> dict[str, Any]:
    return {i: (r["status"], r["output"], r["error"]) for i, r in out["results"].items()}


@pytest.mark.parametrize("tool_name", ["meet", "meet_sync"])
async def test_eight_direct_calls_all_run_at_once_with_a_model_limit_of_one(
    tool_name: str,
) -> None:
    waves = Waves(8)
    out, executor = await run_plan(fan_out(8, tool_name), meeting_tools(waves), max_concurrency=1)
    assert outputs(out) == {f"s{i}": ("done", f"met s{i}", None) for i in range(1, 9)}
    assert waves.peak == 8
    assert executor.calls == []  # direct calls: no model involved
    assert out["status"] == "completed"


@pytest.mark.parametrize("tool_name", ["meet", "meet_sync"])
async def test_direct_calls_never_exceed_max_tool_concurrency(tool_name: str) -> None:
    waves = Waves(3, total=9)
    out, _ = await run_plan(
        fan_out(9, tool_name), meeting_tools(waves), max_concurrency=8, max_tool_concurrency=3
    )
    assert outputs(out) == {f"s{i}": ("done", f"met s{i}", None) for i in range(1, 10)}
    assert waves.calls == 9
    assert waves.peak == 3


async def test_a_fan_out_wider_than_max_tool_concurrency_cannot_meet_all_at_once() -> None:
    # The rendezvous needs 4 at once; only 2 may run: the tests above could fail.
    waves = Waves(4, timeout_s=0.5)  # it can never fill: the wait only says how soon to fail
    out, _ = await run_plan(
        fan_out(4, "meet"), meeting_tools(waves), max_tool_concurrency=2, step_attempts=1
    )
    assert waves.peak == 2
    assert {r["status"] for r in out["results"].values()} == {"failed"}


class CountingModel(ScriptedChatModel):
    """A scripted model whose async calls are counted in flight by `waves`."""

    waves: Any = None

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await self.waves.enter()
        return self._generate(messages, stop, None, **kwargs)


async def test_model_calls_never_exceed_max_concurrency_beside_direct_calls() -> None:
    model_waves, tool_waves = Waves(2, total=6), Waves(4)
    executor = CountingModel([f"answer {i}" for i in range(6)], waves=model_waves)
    text_steps = [step(f"t{i}", tool=None) for i in range(1, 7)]
    direct = [step(f"d{i}", tool="meet", args={"name": f"d{i}"}) for i in range(1, 5)]
    out, _ = await run_plan(
        text_steps + direct, meeting_tools(tool_waves), executor=executor, max_concurrency=2
    )
    results = out["results"]
    assert {i: r["status"] for i, r in results.items()} == dict.fromkeys(results, "done")
    assert len(executor.calls) == model_waves.calls == 6
    assert model_waves.peak == 2
    # The four direct calls met while model steps held both model slots or waited.
    assert tool_waves.peak == 4
