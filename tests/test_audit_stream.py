"""The streamed audit reads the same trail as the whole history in memory, linearly.

`audit_trail` reads a thread one checkpoint at a time and rebuilds each checkpoint's
history channels from its parent's; `build_trail` over `get_state_history` (LangGraph
rebuilding every checkpoint from all its ancestors) is the reference it must equal,
record for record, on threads with rejections, revisions, failures, approvals, a fork
and a direct state edit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command, Overwrite

from helpers import REPLANNED_START, config, replanning_script, step
from planexec import Context, ScriptedChatModel, audit, build_graph
from planexec.audit import audit_records, audit_trail, audit_trail_sync, build_trail
from planexec.graph import PlanexecGraph
from planexec.plan import diff_plans
from planexec.scripted import plan_reply
from planexec.state import timestamp
from planexec.tools import calculator

CONTEXT = Context(retry_initial_interval=0.0, max_replans=8)
REJECTIONS = 3
REPLANS = 7


def make_graph(saver: BaseCheckpointSaver[Any]) -> PlanexecGraph:
    """A graph whose plan is rejected `REJECTIONS` times, then revised `REPLANS` times."""
    rejected = [plan_reply([step(f"r{n}", args={"expression": f"{n} + 1"})]) for n in range(3)]
    planner = ScriptedChatModel([*rejected, plan_reply(REPLANNED_START)], name_="planner")
    replanner = ScriptedChatModel(replanning_script(REPLANS), name_="replanner")
    return build_graph(tools=[calculator], checkpointer=saver, planner=planner, replanner=replanner)


async def drive(graph: PlanexecGraph, thread: str = "t1") -> None:
    """Rejections, an approval, then every replan reviewed and approved (some steps fail)."""
    out = await graph.ainvoke({"goal": "count up"}, config(thread), context=CONTEXT)
    for n in range(REJECTIONS):
        assert out["__interrupt__"][0].value["type"] == "plan_review"
        answer = Command(resume={"type": "reject", "message": f"not plan {n}"})
        out = await graph.ainvoke(answer, config(thread), context=CONTEXT)
    while "__interrupt__" in out:
        out = await graph.ainvoke(
            Command(resume={"type": "approve"}), config(thread), context=CONTEXT
        )
    assert out["status"] == "completed"


async def fork_and_edit(graph: PlanexecGraph, thread: str = "t1") -> None:
    """A fork from the first review (a new plan through update_state, run to its end),
    then a direct edit of the reviews with `Overwrite` on the latest state."""
    history = [s async for s in graph.aget_state_history(config(thread))]
    target = next(
        s for s in history if s.next == ("review",) and s.values["revisions"][-1]["revision"] == 2
    )
    plan = {"steps": [step("k1", args={"expression": "5*5"})]}
    revision = {
        "revision": 3,
        "source": "human",
        "reason": "forked",
        "plan": plan,
        "diff": diff_plans(target.values["plan"], plan),
        "at": timestamp(),
    }
    fork = await graph.aupdate_state(
        target.config, {"plan": plan, "revisions": [revision]}, as_node="planner"
    )
    ctx = Context(replan_policy="never")
    paused = await graph.ainvoke(None, fork, context=ctx)
    decision = {"type": "approve", "plan_hash": paused["__interrupt__"][0].value["plan_hash"]}
    out = await graph.ainvoke(Command(resume=decision), config(thread), context=ctx)
    assert out["status"] == "completed"
    latest = await graph.aget_state(config(thread))
    kept = [dict(r) for r in latest.values["reviews"][:1]]
    await graph.aupdate_state(config(thread), {"reviews": Overwrite(kept)}, as_node="review")


async def reference(graph: PlanexecGraph, thread: str = "t1", **kw: Any) -> list[dict[str, Any]]:
    """The trail from LangGraph's own rebuilding of every checkpoint, all in memory."""
    return build_trail([s async for s in graph.aget_state_history(config(thread))], **kw)


@pytest.fixture(params=["sqlite", "memory"])
async def saver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemorySaver()
        return
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "ck.sqlite")) as sqlite:
        yield sqlite


async def test_the_streamed_trail_equals_the_reference(saver: Any) -> None:
    graph = make_graph(saver)
    await drive(graph)
    expected = await reference(graph)
    kinds = [r["type"] for r in expected]
    assert kinds.count("review_decision") == REJECTIONS + 1 + REPLANS
    assert kinds.count("plan_revision") == REJECTIONS + 1 + REPLANS
    assert {r["status"] for r in expected if r["type"] == "step_finished"} == {"done", "failed"}
    assert await audit_trail(graph, "t1") == expected

    await fork_and_edit(graph)
    forked = await reference(graph)
    assert any(not r["current"] for r in forked)
    assert any(r["written_by"] == "update_state" for r in forked)
    assert await audit_trail(graph, "t1") == forked
    assert await audit_trail(graph, "t1", current_only=True) == await reference(
        graph, current_only=True
    )


async def test_the_sync_trail_equals_the_reference(tmp_path: Path) -> None:
    path = str(tmp_path / "ck.sqlite")
    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        graph = make_graph(saver)
        await drive(graph)
        await fork_and_edit(graph)
        expected = await reference(graph)
    with SqliteSaver.from_conn_string(path) as sync_saver:
        assert audit_trail_sync(build_graph(checkpointer=sync_saver), "t1") == expected


async def test_each_checkpoint_is_read_once_and_no_ancestors_are_replayed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = make_graph(InMemorySaver())
    await drive(graph)
    checkpoints = len([s async for s in graph.aget_state_history(config())])
    expected = await reference(graph)
    calls: dict[str, int] = {"tuple": 0, "history": 0}
    used = graph.checkpointer  # compiling copied the saver
    assert isinstance(used, InMemorySaver)
    get_tuple, history = used.aget_tuple, used.aget_delta_channel_history

    async def counted_tuple(cfg: Any) -> Any:
        calls["tuple"] += 1
        return await get_tuple(cfg)

    async def counted_history(**kw: Any) -> Any:
        calls["history"] += 1
        return await history(**kw)

    monkeypatch.setattr(used, "aget_tuple", counted_tuple)
    monkeypatch.setattr(used, "aget_delta_channel_history", counted_history)
    records = audit_records(graph, "t1")
    first = await anext(records)
    # The first record comes once the goal's checkpoint is read (the input's, before
    # it, adds nothing), not after the whole thread.
    assert calls["tuple"] == 2
    rest = [r async for r in records]
    assert [first, *rest] == expected
    assert calls == {"tuple": checkpoints, "history": 0}


async def test_sqlite_is_read_a_page_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "_PAGE", 5)
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "ck.sqlite")) as saver:
        graph = make_graph(saver)
        await drive(graph)
        await fork_and_edit(graph)
        expected = await reference(graph)
        assert len({r["checkpoint_id"] for r in expected}) > 3 * audit._PAGE
        used = graph.checkpointer
        assert isinstance(used, AsyncSqliteSaver)
        queries: list[str] = []
        execute = used.conn.execute

        def counted(sql: str, *args: Any) -> Any:
            queries.append(sql)
            return execute(sql, *args)

        async def no_history(**kw: Any) -> Any:
            raise AssertionError("the audit replayed a checkpoint's ancestors")

        monkeypatch.setattr(used.conn, "execute", counted)
        monkeypatch.setattr(used, "aget_delta_channel_history", no_history)
        records = audit_records(graph, "t1")
        first = await anext(records)
        assert len(queries) == 3  # the ids, then one page: its checkpoints and writes
        rest = [r async for r in records]
    assert [first, *rest] == expected
