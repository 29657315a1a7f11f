"""Helpers shared by the tests: plan steps as JSON, a graph with scripted models, the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver

from planexec import Context, ScriptedChatModel, build_graph
from planexec.cli import commands, main
from planexec.graph import PlanexecGraph

if TYPE_CHECKING:  # worker processes and the benchmark import this module without pytest
    import pytest


def step(
    id: str,
    tool: str | None = "calculator",
    args: dict[str, Any] | None = None,
    depends_on: Sequence[str] = (),
    description: str | None = None,
) -> dict[str, Any]:
    """A plan step as JSON, with a default description."""
    return {
        "id": id,
        "description": description or f"do {id}",
        "tool": tool,
        "args": args,
        "depends_on": list(depends_on),
    }


def config(thread: str = "t1") -> dict[str, Any]:
    """A run config for a thread."""
    return {"configurable": {"thread_id": thread}}


def context(**overrides: Any) -> Context:
    """A context that skips plan review and retries at once, with `overrides` applied."""
    return Context(**{"review": "never", "retry_initial_interval": 0.0, **overrides})


def interrupt_of(out: dict[str, Any]) -> dict[str, Any]:
    """The value of the one interrupt a paused run returned."""
    [pending] = out["__interrupt__"]
    value: dict[str, Any] = pending.value
    return value


class Harness:
    """A compiled graph with scripted models per role and an in-memory saver."""

    def __init__(
        self,
        *,
        planner: Sequence[Any] = (),
        executor: Sequence[Any] = (),
        replanner: Sequence[Any] = (),
        tools: Sequence[BaseTool] | None = None,
    ) -> None:
        self.planner = ScriptedChatModel(planner, name_="planner-model")
        self.executor = ScriptedChatModel(executor, name_="executor-model")
        self.replanner = ScriptedChatModel(replanner, name_="replanner-model")
        self.saver = InMemorySaver()
        self.graph: PlanexecGraph = build_graph(
            tools=tools,
            checkpointer=self.saver,
            planner=self.planner,
            executor=self.executor,
            replanner=self.replanner,
        )

    async def run(
        self, value: Any, context: Context | None = None, thread: str = "t1"
    ) -> dict[str, Any]:
        """Invoke (or resume with a `Command`) and return the v1 output dict."""
        result: dict[str, Any] = await self.graph.ainvoke(
            value, config(thread), context=context or Context()
        )
        return result

    async def state(self, thread: str = "t1") -> dict[str, Any]:
        """The thread's full state values."""
        snapshot = await self.graph.aget_state(config(thread))
        return dict(snapshot.values)


# --- the command line, in this process --------------------------------------------------

CLI_MODELS = [
    "--planner-model",
    "openai:planner",
    "--executor-model",
    "openai:executor",
    "--replanner-model",
    "openai:replanner",
]
"""Model options naming the roles, for `scripted_models` to stand in for."""

ARITHMETIC = [
    step("s1", args={"expression": "6*7"}),
    step("s2", args={"expression": "{{s1}} + 1"}, depends_on=["s1"]),
]
"""A two-step plan that needs no executor model: 42, then 43."""


def scripted_models(
    monkeypatch: pytest.MonkeyPatch,
    *,
    planner: Sequence[Any] = (),
    executor: Sequence[Any] = (),
    replanner: Sequence[Any] = (),
) -> dict[str, ScriptedChatModel]:
    """Scripted models behind the model strings in CLI_MODELS, in place of ChatOpenAI."""
    models = {
        "planner": ScriptedChatModel(planner, name_="planner"),
        "executor": ScriptedChatModel(executor, name_="executor"),
        "replanner": ScriptedChatModel(replanner, name_="replanner"),
    }
    monkeypatch.setattr(
        commands, "model_factory", lambda env: lambda spec, ctx: models[spec.split(":")[1]]
    )
    return models


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`planexec ARGV...` in this process (faster than a new one): exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
