"""100 runs at once in one process, on one SQLite saver and on a PostgreSQL pool.

Every run has its own thread and a goal with its own number; the model answers from
what it is sent, so a run that saw another run's goal or results would end with the
wrong plan or answer. The model is async (no thread per call), like the OpenAI client.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from helpers import step
from planexec import Context, build_graph, run_config
from planexec.checkpoints import open_checkpointer
from planexec.lease import thread_lease

RUNS = 100
GOAL = re.compile(r"\[run (\d+)\]")
S2_RESULT = re.compile(r'<result step="s2" status="done">\n(.+?)\n</result>')


class Responder(BaseChatModel):
    """Plans `n * 7` then `+ 1` for the goal "[run n]"; finishes with s2's result."""

    delay: float = 0.05
    _in_flight: int = PrivateAttr(default=0)
    _peak: int = PrivateAttr(default=0)
    _calls: dict[str, int] = PrivateAttr(default_factory=lambda: {"Plan": 0, "Replan": 0})

    @property
    def _llm_type(self) -> str:
        return "responder"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        specs = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise AssertionError("the graph calls models asynchronously")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = "\n".join(message.text for message in messages)
        found = GOAL.search(prompt)
        assert found, prompt[-300:]
        n = int(found.group(1))
        tool = kwargs["tools"][0]["function"]["name"]
        self._calls[tool] += 1
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self._in_flight -= 1
        if tool == "Plan":
            args: dict[str, Any] = {
                "steps": [
                    _step("s1", f"{n} * 7", []),
                    _step("s2", "{{s1}} + 1", ["s1"]),
                ]
            }
        else:
            result = S2_RESULT.search(prompt)
            assert result, prompt[-500:]
            args = {
                "action": "finish",
                "answer": f"run {n}: {result.group(1)}",
                "steps": None,
                "reason": "done",
            }
        call = {"name": tool, "args": args, "id": f"call-{tool}-{n}"}
        return ChatResult(generations=[ChatGeneration(message=AIMessage("", tool_calls=[call]))])


def _step(id: str, expression: str, depends_on: list[str]) -> dict[str, Any]:
    return step(
        id,
        args={"expression": expression},
        depends_on=depends_on,
        description=f"compute {expression}",
    )


async def _run_all(saver: Any, *, leased: bool = False) -> tuple[Responder, list[dict[str, Any]]]:
    model = Responder()
    graph = build_graph(checkpointer=saver, planner=model, executor=model, replanner=model)
    context = Context(review="never")

    async def one(n: int) -> dict[str, Any]:
        config = run_config(f"thread-{n}", context)
        if not leased:
            result: dict[str, Any] = await graph.ainvoke(
                {"goal": f"Compute [run {n}] times 7, plus 1"}, config, context=context
            )
            return result
        async with thread_lease(saver, f"thread-{n}", owner=f"task {n}"):
            result = await graph.ainvoke(
                {"goal": f"Compute [run {n}] times 7, plus 1"}, config, context=context
            )
            return result

    results = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(RUNS))), 60)
    # Each thread's saved state is its own run's, too.
    for n in (0, RUNS // 2, RUNS - 1):
        saved = await graph.aget_state(run_config(f"thread-{n}", context))
        assert saved.values["answer"] == f"run {n}: {n * 7 + 1}"
    return model, list(results)


def _check(model: Responder, results: list[dict[str, Any]]) -> None:
    assert [r["status"] for r in results] == ["completed"] * RUNS
    assert [r["answer"] for r in results] == [f"run {n}: {n * 7 + 1}" for n in range(RUNS)]
    assert [
        {step: (r["status"], r["output"]) for step, r in result["results"].items()}
        for result in results
    ] == [{"s1": ("done", n * 7), "s2": ("done", n * 7 + 1)} for n in range(RUNS)]
    assert [r["usage"]["planner"]["calls"] for r in results] == [1] * RUNS
    assert model._calls == {"Plan": RUNS, "Replan": RUNS}
    # The runs overlapped: several model calls were waiting at the same moment (about
    # 20 on an idle machine; a run's saver writes take turns, model calls do not).
    assert model._peak > 4


async def test_100_concurrent_runs_on_one_sqlite_saver(tmp_path: Any) -> None:
    async with open_checkpointer(tmp_path / "checkpoints.sqlite") as saver:
        model, results = await _run_all(saver)
    _check(model, results)


@pytest.mark.integration
async def test_100_concurrent_runs_on_a_postgres_pool(pg_url: str) -> None:
    async with open_checkpointer(pg_url) as saver:
        model, results = await _run_all(saver)
    _check(model, results)


@pytest.mark.integration
async def test_100_concurrent_leased_runs_on_postgres_do_not_block_each_other(
    pg_url: str,
) -> None:
    async with open_checkpointer(pg_url) as saver:
        model, results = await _run_all(saver, leased=True)
    _check(model, results)
