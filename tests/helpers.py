"""Helpers shared by the tests: plan steps as JSON, a graph with scripted models, the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import StateSnapshot

from planexec import Context, ScriptedChatModel, build_graph
from planexec.cli import commands, main
from planexec.graph import PlanexecGraph
from planexec.scripted import replan_reply

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


API: Literal["ainvoke", "invoke"] = "ainvoke"
"""Which of LangGraph's APIs `Harness` and the functions below drive graphs with: the
`both_apis` fixture (conftest.py) runs a test once with each."""


async def invoke(
    graph: PlanexecGraph, value: Any, cfg: Any = None, **kwargs: Any
) -> dict[str, Any]:
    """`graph.ainvoke(...)`, or `graph.invoke(...)` when the test runs on the sync API.

    The sync call blocks the test's event loop while the graph runs on planexec's own,
    as `graph.invoke` in a Jupyter cell does.
    """
    if API == "invoke":
        result: dict[str, Any] = graph.invoke(value, cfg, **kwargs)
    else:
        result = await graph.ainvoke(value, cfg, **kwargs)
    return result


async def stream(
    graph: PlanexecGraph, value: Any, cfg: Any = None, **kwargs: Any
) -> AsyncIterator[Any]:
    """`graph.astream(...)`, or `graph.stream(...)` on the sync API (each part blocks)."""
    if API == "invoke":
        for part in graph.stream(value, cfg, **kwargs):
            yield part
    else:
        async for part in graph.astream(value, cfg, **kwargs):
            yield part


def start(graph: PlanexecGraph, value: Any, cfg: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """A run started in the background: a task, or on the sync API a thread, the test
    loop staying free meanwhile."""
    if API == "invoke":
        return asyncio.ensure_future(asyncio.to_thread(graph.invoke, value, cfg, **kwargs))
    return asyncio.ensure_future(graph.ainvoke(value, cfg, **kwargs))


async def get_state(graph: PlanexecGraph, cfg: Any, **kwargs: Any) -> StateSnapshot:
    """`graph.aget_state(...)`, or `graph.get_state(...)` on the sync API."""
    if API == "invoke":
        return graph.get_state(cfg, **kwargs)
    return await graph.aget_state(cfg, **kwargs)


async def update_state(graph: PlanexecGraph, cfg: Any, values: Any, **kwargs: Any) -> Any:
    """`graph.aupdate_state(...)`, or `graph.update_state(...)` on the sync API."""
    if API == "invoke":
        return graph.update_state(cfg, values, **kwargs)
    return await graph.aupdate_state(cfg, values, **kwargs)


async def state_history(graph: PlanexecGraph, cfg: Any, **kwargs: Any) -> list[StateSnapshot]:
    """The thread's checkpoints, newest first, through the test's API."""
    if API == "invoke":
        return list(graph.get_state_history(cfg, **kwargs))
    return [snapshot async for snapshot in graph.aget_state_history(cfg, **kwargs)]


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
        return await invoke(self.graph, value, config(thread), context=context or Context())

    async def state(self, thread: str = "t1") -> dict[str, Any]:
        """The thread's full state values."""
        snapshot = await get_state(self.graph, config(thread))
        return dict(snapshot.values)


def replanning_script(revisions: int) -> list[dict[str, Any]]:
    """Replanner replies that revise the plan `revisions` times, then finish.

    With `REPLANNED_START` as the plan, each revision adds one calculator step: every
    fifth a step `f<n>` that fails, the others `s<n>`, adding one to the latest `s`
    step. The last revision's step `z` depends on `s0` instead, so the run needs a
    result from its first revision at its last.
    """
    replies, latest = [], "s0"
    for n in range(1, revisions + 1):
        if n == revisions:
            new = step("z", args={"expression": "{{s0}} + 1"}, depends_on=["s0"])
        elif n % 5 == 0:
            new = step(f"f{n}", args={"expression": "1/0"}, depends_on=[latest])
        else:
            new = step(f"s{n}", args={"expression": f"{{{{{latest}}}}} + 1"}, depends_on=[latest])
            latest = f"s{n}"
        replies.append(replan_reply("replan", steps=[new], reason=f"revision {n + 1} adds a step"))
    replies.append(replan_reply("finish", answer="done"))
    return replies


REPLANNED_START = [step("s0", args={"expression": "123456789 * 1000"})]
"""The first plan of `replanning_script`'s runs: one step whose result is 123456789000."""


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


README = Path(__file__).resolve().parent.parent / "README.md"


def run_readme_snippet(name: str, folder: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the README's python snippet between `<!-- name:start -->` and `<!-- name:end -->`.

    Runs in a new interpreter, with warnings as errors and without the OpenAI and LangSmith
    environment; returns what it did and the text block the README shows after it.
    """
    text = README.read_text()
    block = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert block, f"README has no {name} section"
    code = re.search(r"```python\n(.*?)```", block.group(1), re.S)
    assert code, f"README's {name} section has no python snippet"
    shown = re.search(rf"<!-- {name}:end -->\n\n```text\n(.*?)```", text, re.S)
    assert shown, "the snippet's output follows it in a text block"
    script = folder / "snippet.py"
    script.write_text(code.group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LANGSMITH_"))}
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done, shown.group(1)
