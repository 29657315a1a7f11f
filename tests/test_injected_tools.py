"""Tools written for LangGraph's ToolNode: injected state, store, runtime and call id.

Each kind runs three ways: with the plan's arguments (no model call), with the executor
model choosing the arguments, and inside a sub-agent (where the agent's own ToolNode
fills them).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Annotated, Any

import pytest
from langchain_core.tools import BaseTool, InjectedToolArg, InjectedToolCallId, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import InjectedState, InjectedStore, ToolRuntime
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.warnings import LangGraphDeprecatedSinceV10

from helpers import config, get_state, invoke, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.graph import PlanexecGraph
from planexec.injection import injected_params
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.subagents import subagent
from planexec.tools import calculator

pytestmark = pytest.mark.usefixtures("both_apis")

NEVER = Context(review="never", retry_initial_interval=0.0)


class Kit:
    """One tool of each injected kind, recording what it was given."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

        @tool
        def count_results(label: str, state: Annotated[dict[str, Any], InjectedState]) -> str:
            """Say how many steps have results so far."""
            self.seen["state"] = state
            state["goal"] = "changed by the tool"  # a copy: the run must not see this
            return f"{label}: {len(state.get('results') or {})} results for {state['goal']!r}"

        @tool
        def goal_of(prefix: str, goal: Annotated[str | None, InjectedState("goal")] = None) -> str:
            """Repeat the goal."""
            self.seen["goal"] = goal
            return f"{prefix} {goal}"

        @tool
        def remember(note: str, store: Annotated[BaseStore, InjectedStore()]) -> str:
            """Keep a note in the store."""
            store.put(("notes",), note, {"note": note})
            self.seen["store"] = store
            return f"kept {note}"

        @tool
        def thread_of(label: str, runtime: ToolRuntime[Any, Any]) -> str:
            """Say which run this is."""
            self.seen["runtime"] = runtime
            return f"{label} in {runtime.context.workspace if runtime.context else None}"

        @tool
        def call_id(label: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
            """Echo the call's id."""
            self.seen["tool_call_id"] = tool_call_id
            return f"{label} {tool_call_id}"

        self.tools: list[BaseTool] = [count_results, goal_of, remember, thread_of, call_id]


ARG = {
    "count_results": {"label": "n"},
    "goal_of": {"prefix": "goal:"},
    "remember": {"note": "milk"},
    "thread_of": {"label": "run"},
    "call_id": {"label": "id"},
}


def _graph(
    kit: Kit, planner: ScriptedChatModel, executor: ScriptedChatModel, store: Any
) -> PlanexecGraph:
    return build_graph(
        tools=kit.tools,
        checkpointer=InMemorySaver(),
        store=store,
        planner=planner,
        executor=executor,
        replanner=ScriptedChatModel([replan_reply("finish", answer="done")]),
    )


def _check_outputs(kit: Kit, done: dict[str, Any], store: InMemoryStore, prefix: str) -> None:
    assert done["status"] == "completed", done.get("reason")
    out = {key: r["output"] for key, r in done["results"].items()}
    # The state as the executor pass began: "first" finished in this same pass.
    assert out[f"{prefix}count_results"] == "n: 0 results for 'changed by the tool'"
    assert out[f"{prefix}goal_of"] == "goal: note it"
    assert out[f"{prefix}remember"] == "kept milk"
    assert out[f"{prefix}thread_of"] == f"run in {NEVER.workspace}"
    assert out[f"{prefix}call_id"] == f"id t1:r1:{prefix}call_id"
    assert kit.seen["state"]["plan"]["steps"][0]["id"] == f"{prefix}first"
    assert store.get(("notes",), "milk") is not None
    assert kit.seen["store"] is store


def _plan(prefix: str, args: bool) -> list[dict[str, Any]]:
    first = step(f"{prefix}first", tool=None, description="Say one")
    return [first] + [
        step(
            f"{prefix}{name}", tool=name, args=ARG[name] if args else None, depends_on=[first["id"]]
        )
        for name in ARG
    ]


async def test_each_injected_kind_with_the_plans_arguments() -> None:
    kit, store = Kit(), InMemoryStore()
    planner = ScriptedChatModel([plan_reply(_plan("", args=True))])
    executor = ScriptedChatModel(["one"])
    graph = _graph(kit, planner, executor, store)
    done = await invoke(graph, {"goal": "note it"}, config(), context=NEVER)
    _check_outputs(kit, done, store, "")
    # Only the text step asked the executor model: the tool steps ran directly.
    assert len(executor.calls) == 1
    # The tool changed its copy of the state, not the run's.
    snapshot = await get_state(graph, config())
    assert snapshot.values["goal"] == "note it"
    assert kit.seen["goal"] == "note it"


async def test_each_injected_kind_with_the_executor_choosing_the_arguments() -> None:
    kit, store = Kit(), InMemoryStore()
    planner = ScriptedChatModel([plan_reply(_plan("", args=False))])
    replies: list[Any] = ["one"]
    replies += [
        tool_call_reply(name, args, match=f'step id="{name}"') for name, args in ARG.items()
    ]
    executor = ScriptedChatModel(replies)
    graph = _graph(kit, planner, executor, store)
    done = await invoke(graph, {"goal": "note it"}, config(), context=NEVER)
    _check_outputs(kit, done, store, "")
    # The model was offered each step's tool without its injected parameters.
    planner_prompt = planner.calls[0].prompt
    for hidden in ("InjectedState", '"state"', '"store"', '"runtime"', "tool_call_id"):
        assert hidden not in planner_prompt
    assert sorted(call.tools[0] for call in executor.calls if call.tools) == sorted(ARG)


async def test_injected_state_holds_the_results_of_earlier_passes() -> None:
    kit = Kit()
    later = step("s2", tool="count_results", args={"label": "n"}, depends_on=["s1"])
    graph = build_graph(
        tools=[*kit.tools[:2], calculator],
        checkpointer=InMemorySaver(),
        planner=ScriptedChatModel([plan_reply([step("s1", args={"expression": "2*3"})])]),
        replanner=ScriptedChatModel(
            [replan_reply("replan", steps=[later]), replan_reply("finish", answer="ok")]
        ),
    )
    done = await invoke(graph, {"goal": "count"}, config(), context=NEVER)
    assert done["results"]["s2"]["output"] == "n: 1 results for 'changed by the tool'"
    assert kit.seen["state"]["results"]["s1"]["output"] == 6
    assert [s["id"] for s in kit.seen["state"]["plan"]["steps"]] == ["s1", "s2"]


def react_agent(model: ScriptedChatModel, tools: Sequence[BaseTool]) -> Any:
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangGraphDeprecatedSinceV10)
        return create_react_agent(model, list(tools))


async def test_each_injected_kind_inside_a_sub_agent() -> None:
    """The sub-agent's ToolNode fills them: its own state, the run's store and context."""
    kit, store = Kit(), InMemoryStore()
    inner = ScriptedChatModel(
        [
            {
                "tool_calls": [
                    {"name": name, "args": args, "id": f"c{i}"}
                    for i, (name, args) in enumerate(ARG.items())
                ]
            },
            "all done",
        ]
    )
    agent = subagent("helper", react_agent(inner, kit.tools), description="Uses the tools.")
    plan = [step("s1", tool="helper", args={"request": "use every tool"})]
    graph = build_graph(
        tools=[agent],
        checkpointer=InMemorySaver(),
        store=store,
        planner=ScriptedChatModel([plan_reply(plan)]),
        replanner=ScriptedChatModel([replan_reply("finish", answer="done")]),
    )
    done = await invoke(graph, {"goal": "note it"}, config(), context=NEVER)
    assert done["status"] == "completed", done.get("reason")
    assert done["results"]["s1"]["output"] == "all done"
    # The agent's own state: its messages, the step's request first.
    assert "use every tool" in kit.seen["state"]["messages"][0].content
    assert kit.seen["goal"] is None  # the agent's state has no goal
    assert store.get(("notes",), "milk") is not None
    assert kit.seen["tool_call_id"] == "c4"
    assert kit.seen["runtime"].store is store


# --- refused when the graph is built -------------------------------------------------------


class InjectedSecret(InjectedToolArg):
    """Something only the app could fill."""


@tool
def uses_secret(query: str, secret: Annotated[str, InjectedSecret()]) -> str:
    """Needs a secret."""
    return query + secret


@tool
def uses_plain_injected(query: str, token: Annotated[str, InjectedToolArg]) -> str:
    """Needs a token."""
    return query + token


@pytest.mark.parametrize(
    ("bad", "param", "marker"),
    [(uses_secret, "secret", "InjectedSecret"), (uses_plain_injected, "token", "InjectedToolArg")],
)
def test_a_parameter_planexec_cannot_fill_is_refused_at_build(
    bad: BaseTool, param: str, marker: str
) -> None:
    with pytest.raises(ValueError, match="fills only") as caught:
        build_graph(tools=[bad])
    assert f"tool {bad.name!r}" in str(caught.value)
    assert f"parameter {param!r}" in str(caught.value)
    assert marker in str(caught.value)


def test_a_store_tool_without_a_store_is_refused_at_build() -> None:
    kit = Kit()
    with pytest.raises(ValueError, match=r"tool 'remember': parameter 'store'.*build_graph\(store"):
        build_graph(tools=kit.tools)
    build_graph(tools=kit.tools, store=InMemoryStore())


def test_injected_parameters_are_found_for_each_kind() -> None:
    kinds = {t.name: {k: v.kind for k, v in injected_params(t).items()} for t in Kit().tools}
    assert kinds == {
        "count_results": {"state": "state"},
        "goal_of": {"goal": "state"},
        "remember": {"store": "store"},
        "thread_of": {"runtime": "runtime"},
        "call_id": {"tool_call_id": "tool_call_id"},
    }
    assert injected_params(Kit().tools[1])["goal"].field == "goal"
