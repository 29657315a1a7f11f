"""Helpers shared by the tests: plan steps as JSON and a graph with scripted models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver

from planexec import Context, ScriptedChatModel, build_graph
from planexec.graph import PlanexecGraph


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
