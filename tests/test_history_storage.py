"""History channels are stored once, as the updates written, not in every checkpoint.

`revisions`, `reviews` and `results` are `DeltaChannel`s (`planexec.state`): a
checkpoint keeps none of them, each update is stored once (as the write of the step
that made it), and loading a checkpoint replays its ancestors' writes. What callers
see does not change: the final state and every past state hold the whole lists.
"""

from __future__ import annotations

import operator
import sqlite3
from pathlib import Path
from typing import Annotated, Any

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

from helpers import REPLANNED_START, config, context, replanning_script
from planexec import ScriptedChatModel, build_graph
from planexec.audit import audit_trail, build_trail
from planexec.checkpoints import open_checkpointer
from planexec.scripted import plan_reply
from planexec.state import append_all
from test_audit_stream import drive, fork_and_edit, make_graph

HISTORY = ("revisions", "reviews", "results")
REVISIONS = 12


async def replanned(path: Path, revisions: int) -> dict[str, Any]:
    planner = ScriptedChatModel([plan_reply(REPLANNED_START)])
    replanner = ScriptedChatModel(replanning_script(revisions))
    async with open_checkpointer(path) as saver:
        graph = build_graph(checkpointer=saver, planner=planner, replanner=replanner)
        out = await graph.ainvoke(
            {"goal": "count up"}, config(), context=context(max_replans=revisions)
        )
        history = [s async for s in graph.aget_state_history(config())]
    assert out["status"] == "completed"
    return {"out": out, "history": history}


async def test_each_revision_is_stored_once_and_no_checkpoint_copies_the_history(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ck.sqlite"
    run = await replanned(path, REVISIONS)
    # The public output is as before: every revision and every result.
    assert [r["revision"] for r in run["out"]["revisions"]] == list(range(1, REVISIONS + 2))
    assert len(run["out"]["results"]) == REVISIONS + 1
    serde = JsonPlusSerializer()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, checkpoint FROM checkpoints").fetchall()
        writes = dict(
            db.execute("SELECT channel, COUNT(*) FROM writes GROUP BY channel").fetchall()
        )
    assert len(rows) > 3 * REVISIONS
    for kind, blob in rows:
        stored = serde.loads_typed((kind, blob))["channel_values"]
        assert not set(HISTORY) & set(stored), sorted(stored)
    assert writes["revisions"] == REVISIONS + 1


async def test_past_states_hold_the_history_as_it_was(tmp_path: Path) -> None:
    run = await replanned(tmp_path / "ck.sqlite", 6)
    counts = [len(s.values.get("revisions") or []) for s in reversed(run["history"])]
    assert counts == sorted(counts)  # oldest first, never shrinking
    assert counts[-1] == 7
    assert set(counts) == set(range(8))  # every revision count appears on the way


async def test_a_forked_thread_on_encrypted_checkpoints_reads_back(tmp_path: Path) -> None:
    """A fork from an old checkpoint stores the history there in full (LangGraph's
    `_DeltaSnapshot`), through the encrypting serializer; the audit and the state read it."""
    async with open_checkpointer(tmp_path / "ck.sqlite", encryption_key="k" * 32) as saver:
        graph = make_graph(saver)
        await drive(graph)
        await fork_and_edit(graph)
        history = [s async for s in graph.aget_state_history(config())]
        assert await audit_trail(graph, "t1") == build_trail(history)
        latest = await graph.aget_state(config())
    assert latest.values["revisions"][-1]["reason"] == "forked"
    assert len(latest.values["reviews"]) == 1  # the Overwrite of the last edit


class _Old(TypedDict):
    log: Annotated[list[str], operator.add]


class _New(TypedDict):
    log: Annotated[list[str], DeltaChannel(append_all)]


@pytest.mark.parametrize("saver_kind", ["sqlite", "memory"])
async def test_a_thread_written_before_history_was_stored_by_delta_still_loads(
    tmp_path: Path, saver_kind: str
) -> None:
    """A checkpoint from before (the whole list in every checkpoint) is read as it is,
    and the thread goes on from it."""

    def graph(schema: Any, saver: Any) -> Any:
        return (
            StateGraph(schema)
            .add_node("a", lambda s: {"log": ["a"]})
            .add_edge(START, "a")
            .compile(checkpointer=saver)
        )

    async def both(saver: Any) -> tuple[Any, Any]:
        await graph(_Old, saver).ainvoke({"log": ["start"]}, config())
        new = graph(_New, saver)
        before = await new.aget_state(config())
        after = await new.ainvoke({"log": ["again"]}, config())
        return before.values["log"], after["log"]

    if saver_kind == "memory":
        before, after = await both(InMemorySaver())
    else:
        async with open_checkpointer(tmp_path / "ck.sqlite") as saver:
            before, after = await both(saver)
    assert before == ["start", "a"]
    assert after == ["start", "a", "again", "a"]
