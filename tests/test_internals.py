"""Contract tests for the library internals planexec relies on (`planexec.internals`).

Each test pins one private name or behaviour of LangGraph or langchain-openai, so that
an upgrade that moves it fails here, by name, rather than somewhere downstream.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.runnables import ensure_config
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_config
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

from helpers import config, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.internals import (
    CHECKPOINTER_KEY,
    DURABILITY_KEY,
    MISSING,
    astate_snapshot,
    has_streaming_listener,
    lend_saver,
    saver_of,
    state_snapshot,
)
from planexec.models import for_running_loop
from planexec.scripted import plan_reply, replan_reply


def probe_graph(saver: Any, seen: list[dict[str, Any]]) -> Any:
    @tool
    def probe() -> str:
        """Record the run's configurable."""
        seen.append(dict(get_config()["configurable"]))
        return "ok"

    return build_graph(
        tools=[probe],
        checkpointer=saver,
        planner=ScriptedChatModel([plan_reply([step("s1", tool="probe", args={})])] * 2),
        replanner=ScriptedChatModel([replan_reply("finish", answer="done")] * 2),
    )


async def test_a_saver_lent_through_the_config_is_the_one_a_run_uses() -> None:
    own, lent = InMemorySaver(), InMemorySaver()
    seen: list[dict[str, Any]] = []
    graph = probe_graph(own, seen)
    cfg = lend_saver(config(), lent)
    assert saver_of(graph, cfg) is lent
    assert saver_of(graph, config()) is graph.checkpointer
    out = await graph.ainvoke({"goal": "probe"}, cfg, context=Context(review="never"))
    assert out["status"] == "completed"
    assert list(lent.list(config())) != []
    assert list(own.list(config())) == []
    # The run hands the saver to its tasks under the same key (a copy with LangGraph's
    # strict serializer allowlist, sharing the lent saver's storage).
    assert seen[0][CHECKPOINTER_KEY].storage is lent.storage


async def test_the_durability_default_is_read_from_this_key() -> None:
    seen: list[dict[str, Any]] = []
    graph = probe_graph(InMemorySaver(), seen)
    await graph.ainvoke({"goal": "probe"}, config(), context=Context(review="never"))
    assert seen[0][DURABILITY_KEY] == "sync"
    await graph.ainvoke(
        {"goal": "probe"}, config("t2"), context=Context(review="never"), durability="exit"
    )
    assert seen[1][DURABILITY_KEY] == "exit"


async def test_chat_openai_shares_its_async_client_and_a_loop_copy_has_its_own() -> None:
    first = ChatOpenAI(model="gpt-4.1", base_url="http://127.0.0.1:9/v1", api_key="x")
    second = ChatOpenAI(model="gpt-4.1", base_url="http://127.0.0.1:9/v1", api_key="x")
    # What makes a second event loop fail: one HTTP client for every instance.
    assert first.root_async_client._client is second.root_async_client._client  # type: ignore[union-attr]
    copy = for_running_loop(first)
    assert copy is not first
    assert copy is for_running_loop(first)  # one copy per loop
    assert copy.root_async_client._client is not first.root_async_client._client  # type: ignore[attr-defined, union-attr]
    assert copy.async_client is copy.root_async_client.chat.completions  # type: ignore[attr-defined]
    assert copy.root_async_client.base_url == first.root_async_client.base_url  # type: ignore[attr-defined, union-attr]
    assert copy.root_async_client.api_key == "x"  # type: ignore[attr-defined]

    async def other_loop_copy() -> Any:
        return for_running_loop(first)

    elsewhere = await asyncio.to_thread(asyncio.run, other_loop_copy())
    assert elsewhere is not copy
    # Outside any loop, and for a model with its own client, nothing is copied.
    assert await asyncio.to_thread(for_running_loop, first) is first
    own_client = ChatOpenAI(
        model="gpt-4.1",
        api_key="x",
        http_async_client=first.root_async_client._client,  # type: ignore[union-attr]
    )
    assert for_running_loop(own_client) is own_client


async def test_messages_mode_and_astream_events_attach_a_streaming_listener() -> None:
    class S(TypedDict):
        n: int

    seen: list[bool] = []

    async def node(state: S) -> S:
        seen.append(has_streaming_listener(ensure_config().get("callbacks")))
        return {"n": state["n"] + 1}

    g = StateGraph(S).add_node("node", node).add_edge(START, "node").compile()
    for mode in ("updates", "messages", "custom"):
        async for _ in g.astream({"n": 0}, stream_mode=mode):
            pass
    async for _ in g.astream_events({"n": 0}, version="v2"):
        pass
    await g.ainvoke({"n": 0})
    assert seen == [False, True, False, True, False]
    assert not has_streaming_listener(None)


def test_the_direct_checkpoint_readers_langgraph_names() -> None:
    """`planexec.cli.latest` reads the saver's tables without LangGraph: its names must hold."""
    from langgraph._internal import _constants
    from langgraph.checkpoint.serde import jsonplus
    from langgraph.graph import state as graph_state
    from langgraph.pregel import _algo, _checkpoint

    from planexec.cli import latest

    assert latest.INTERRUPT == _constants.INTERRUPT
    assert latest.RETURN == _constants.RETURN
    assert latest.RESUME == _constants.RESUME
    assert latest.NULL_TASK == _constants.NULL_TASK_ID
    assert _algo.task_path_str((_constants.PULL, "")) == latest.PULL
    assert graph_state._CHANNEL_BRANCH_TO.format("") == latest.BRANCH
    assert latest.START == graph_state.START
    assert latest.CHECKPOINT_FORMAT == _checkpoint.LATEST_VERSION
    assert latest._EXT_KW_ARGS == jsonplus.EXT_CONSTRUCTOR_KW_ARGS


class _NoHistory(InMemorySaver):
    """A saver that must not be asked for any checkpoint's history."""

    def get_delta_channel_history(self, *, config: Any, channels: Any) -> Any:
        return {ch: {"seed": MISSING, "writes": []} for ch in channels}


async def test_a_snapshot_is_built_from_a_tuple_asking_the_given_saver_for_history() -> None:
    saver = InMemorySaver()
    graph = probe_graph(saver, [])
    await graph.ainvoke({"goal": "probe"}, config(), context=Context(review="never"))
    saved = await saver.aget_tuple(config())
    assert saved is not None
    assert "revisions" not in saved.checkpoint["channel_values"]  # stored by delta
    expected = await graph.aget_state(saved.config)
    built = await astate_snapshot(graph, saved, saver)
    assert (built.values, built.next) == (expected.values, expected.next)
    assert state_snapshot(graph, saved, saver).values == expected.values
    assert [r["revision"] for r in built.values["revisions"]] == [1]
    # The history comes from the saver given, not the graph's: here, none at all.
    assert (await astate_snapshot(graph, saved, _NoHistory())).values["revisions"] == []
