"""The audit trail: every revision, decision and step, once each, from the checkpoints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from helpers import config, step
from planexec import Context, ScriptedChatModel, TransientError, build_graph
from planexec.audit import audit_trail, audit_trail_sync
from planexec.cli import main
from planexec.graph import PlanexecGraph
from planexec.plan import diff_plans, plan_hash
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.state import timestamp
from planexec.tools import calculator

CONTEXT = Context(retry_initial_interval=0.0)
GOAL = "Double three, add one, publish it"

FIRST = [step("s1", args={"expression": "2*3"})]
SECOND = [
    step("s1", args={"expression": "2*3"}),
    step("s2", args={"expression": "sum({{s1}})"}, depends_on=["s1"]),
    step("s3", tool=None, depends_on=["s2"], description="Explain the total"),
]
EDITED = {"steps": [{**SECOND[0], "args": {"expression": "2*4"}}, *SECOND[1:]]}
REPLAN = [
    step("s4", args=None, depends_on=["s1"], description="Add one to {{s1}}"),
    step("s5", tool="publish", args={"text": "Result: {{s4}}"}, depends_on=["s4"]),
]


def make_tools(published: list[str]) -> list[BaseTool]:
    @tool
    def publish(text: str) -> str:
        """Publish a text."""
        published.append(text)
        if len(published) == 1:
            raise TransientError("the publishing service is busy")
        return f"published {text!r}"

    publish.metadata = {"requires_approval": True}
    return [calculator, publish]


def make_graph(saver: Any, published: list[str]) -> PlanexecGraph:
    planner = ScriptedChatModel([plan_reply(FIRST), plan_reply(SECOND)], name_="big-model")
    executor = ScriptedChatModel(
        [tool_call_reply("calculator", {"expression": "8 + 1"})], name_="small-model"
    )
    replanner = ScriptedChatModel(
        [
            replan_reply("replan", steps=REPLAN, reason="sum() is not available"),
            replan_reply("finish", answer="9, published", reason="all done"),
        ],
        name_="big-model",
    )
    return build_graph(
        tools=make_tools(published),
        checkpointer=saver,
        planner=planner,
        executor=executor,
        replanner=replanner,
    )


async def drive(graph: PlanexecGraph, thread: str = "t1") -> dict[str, Any]:
    """A rejection, an edit, a failure with a skipped dependent, a replan, a step approval."""
    answers: list[Any] = [
        {"type": "reject", "message": "also add one"},
        {"type": "edit", "plan": EDITED, "message": "double four instead"},
        {"type": "approve"},
        {"decisions": [{"type": "approve"}]},
    ]
    out = await graph.ainvoke({"goal": GOAL}, config(thread), context=CONTEXT)
    for answer in answers:
        assert "__interrupt__" in out
        out = await graph.ainvoke(Command(resume=answer), config(thread), context=CONTEXT)
    assert out["status"] == "completed"
    return out


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ck.sqlite"


@dataclass
class Finished:
    """A thread that ran the whole story, on one kind of saver."""

    graph: PlanexecGraph
    published: list[str]
    sync_saver: Callable[[], AbstractContextManager[BaseCheckpointSaver[Any]]]
    """Opens a synchronous saver on the same checkpoints."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def finished(request: pytest.FixtureRequest, db: Path) -> AsyncIterator[Finished]:
    published: list[str] = []
    if request.param == "sqlite":
        async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
            graph = make_graph(saver, published)
            await drive(graph)
            yield Finished(graph, published, lambda: SqliteSaver.from_conn_string(str(db)))
        return
    url = request.getfixturevalue("pg_url")
    async with AsyncPostgresSaver.from_conn_string(url) as pg_saver:
        await pg_saver.setup()
        graph = make_graph(pg_saver, published)
        await drive(graph)
        yield Finished(graph, published, lambda: PostgresSaver.from_conn_string(url))


def summary(record: dict[str, Any]) -> tuple[Any, ...]:
    kind = record["type"]
    if kind == "plan_revision":
        return (kind, record["revision"], record["source"])
    if kind == "review_decision":
        return (kind, record["revision"], record["decision"])
    if kind in ("step_started", "step_approval"):
        return (kind, record["step"])
    if kind == "step_finished":
        return (kind, record["step"], record["status"])
    if kind == "run_finished":
        return (kind, record["status"])
    return (kind,)


EXPECTED = [
    ("run_started",),
    ("plan_revision", 1, "planner"),
    ("review_decision", 1, "reject"),
    ("plan_revision", 2, "planner"),
    ("review_decision", 2, "edit"),
    ("plan_revision", 3, "human"),
    ("step_started", "s1"),
    ("step_finished", "s1", "done"),
    ("step_started", "s2"),
    ("step_finished", "s2", "failed"),
    ("step_finished", "s3", "skipped"),
    ("plan_revision", 4, "replanner"),
    ("review_decision", 4, "approve"),
    ("step_started", "s4"),
    ("step_finished", "s4", "done"),
    ("step_approval", "s5"),
    ("step_started", "s5"),
    ("step_finished", "s5", "done"),
    ("run_finished", "completed"),
]


def by(records: list[dict[str, Any]], kind: str, **match: Any) -> dict[str, Any]:
    found = [r for r in records if r["type"] == kind and match.items() <= r.items()]
    assert len(found) == 1, (kind, match, found)
    return found[0]


async def test_the_trail_has_each_event_once_in_order(
    finished: Finished,
) -> None:
    graph, published = finished.graph, finished.published
    history = [s async for s in graph.aget_state_history(config())]
    records = await audit_trail(graph, "t1")

    assert len(history) > len(records) / 2  # many checkpoints, each event reported once
    assert [summary(r) for r in records] == EXPECTED
    assert [r["at"] for r in records] == sorted(r["at"] for r in records)
    assert all(r["current"] for r in records)
    checkpoint_ids = {s.config["configurable"]["checkpoint_id"] for s in history}
    assert {r["checkpoint_id"] for r in records} <= checkpoint_ids
    assert published == ["Result: 9", "Result: 9"]


async def test_records_carry_what_an_auditor_needs(
    finished: Finished,
) -> None:
    graph = finished.graph
    records = await audit_trail(graph, "t1")

    assert by(records, "run_started")["goal"] == GOAL
    assert by(records, "review_decision", revision=1)["message"] == "also add one"
    edit = by(records, "review_decision", revision=2)
    assert edit["plan_hash"] == plan_hash({"steps": SECOND})
    human = by(records, "plan_revision", revision=3)
    assert human["plan"] == EDITED
    assert human["plan_hash"] == plan_hash(EDITED)
    assert human["reason"] == "double four instead"
    assert human["diff"] == {
        "added": [],
        "removed": [],
        "changed": ["s1"],
        "unchanged": ["s2", "s3"],
    }
    assert human["written_by"] == "review"
    replan = by(records, "plan_revision", revision=4)
    assert replan["reason"] == "sum() is not available"
    assert replan["diff"]["added"] == ["s4", "s5"]
    assert replan["diff"]["removed"] == ["s2", "s3"]

    s1 = by(records, "step_finished", step="s1")
    assert (s1["output"], s1["attempts"], s1["tokens"], s1["model"]) == (8, 1, 0, None)
    assert by(records, "step_started", step="s1")["args"] == {"expression": "2*4"}
    s2 = by(records, "step_finished", step="s2")
    assert s2["output"] is None
    assert "sum" in s2["error"]
    assert by(records, "step_started", step="s2")["args"] == {"expression": "sum(8)"}
    s3 = by(records, "step_finished", step="s3")
    assert s3["error"] == "not run: step s2 failed"
    assert s3["attempts"] == 0

    # The executor model chose s4's arguments: its tokens and name are on the record.
    s4 = by(records, "step_finished", step="s4")
    assert (s4["output"], s4["model"], s4["revision"]) == (9, "small-model", 4)
    assert s4["tokens"] == s4["usage"]["input_tokens"] + s4["usage"]["output_tokens"] > 0
    assert by(records, "step_started", step="s4")["args"] == {"expression": "8 + 1"}
    assert by(records, "step_started", step="s4")["description"] == "Add one to {{s1}}"

    approval = by(records, "step_approval", step="s5")
    assert (approval["decision"], approval["args"]) == ("approve", {"text": "Result: 9"})
    assert approval["written_by"] == "approval"
    s5 = by(records, "step_finished", step="s5")
    assert (s5["attempts"], s5["output"]) == (2, "published 'Result: 9'")
    assert s5["duration_s"] >= 0
    end = by(records, "run_finished")
    assert (end["answer"], end["reason"]) == ("9, published", "all done")
    json.dumps(records)  # plain JSON data


async def test_sync_variant_reads_the_same_trail(finished: Finished) -> None:
    records = await audit_trail(finished.graph, "t1")
    with finished.sync_saver() as saver:
        assert audit_trail_sync(build_graph(checkpointer=saver), "t1") == records


async def test_a_fork_keeps_the_original_branch_and_marks_it(
    finished: Finished,
) -> None:
    graph = finished.graph
    before = await audit_trail(graph, "t1")
    history = [s async for s in graph.aget_state_history(config())]
    target = next(
        s for s in history if s.next == ("review",) and s.values["revisions"][-1]["revision"] == 1
    )
    plan = {"steps": [step("s1", args={"expression": "5*5"})]}
    revision = {
        "revision": 2,
        "source": "human",
        "reason": "forked",
        "plan": plan,
        "diff": diff_plans(target.values["plan"], plan),
        "at": timestamp(),
    }
    # A plan written through update_state runs only once a person approves it: a review
    # record written alongside it would not be genuine (tests/test_forged_approvals.py).
    fork = await graph.aupdate_state(
        target.config, {"plan": plan, "revisions": [revision]}, as_node="planner"
    )
    ctx = Context(replan_policy="never")
    paused = await graph.ainvoke(None, fork, context=ctx)
    review = paused["__interrupt__"][0].value
    assert (review["revision"], review["plan"]) == (2, plan)
    decision = {"type": "approve", "plan_hash": review["plan_hash"]}
    out = await graph.ainvoke(Command(resume=decision), config(), context=ctx)
    assert (out["status"], out["answer"]) == ("completed", "25")

    records = await audit_trail(graph, "t1")
    # The original branch is all there, after the fork point marked as left behind.
    shared = before[:2]
    assert [summary(r) for r in shared] == [("run_started",), ("plan_revision", 1, "planner")]
    assert records[: len(before)] == shared + [{**r, "current": False} for r in before[2:]]
    current = await audit_trail(graph, "t1", current_only=True)
    assert [summary(r) for r in current] == [
        ("run_started",),
        ("plan_revision", 1, "planner"),
        ("plan_revision", 2, "human"),
        ("review_decision", 2, "approve"),
        ("step_started", "s1"),
        ("step_finished", "s1", "done"),
        ("run_finished", "completed"),
    ]
    assert by(current, "plan_revision", revision=2)["written_by"] == "update_state"


def test_cli_writes_json_lines(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANEXEC_HOME", str(tmp_path / "home"))

    async def run() -> list[dict[str, Any]]:
        async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
            graph = make_graph(saver, [])
            await drive(graph, "cli-thread")
            return await audit_trail(graph, "cli-thread")

    expected = asyncio.run(run())
    assert [summary(r) for r in expected] == EXPECTED  # the whole story, not an empty trail
    assert main(["audit", "cli-thread", "--checkpoint", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == expected

    target = tmp_path / "audit.jsonl"
    assert main(["audit", "cli-thread", "--checkpoint", str(db), "--output", str(target)]) == 0
    assert f"wrote {len(expected)} records to {target}" in capsys.readouterr().out
    assert [json.loads(line) for line in target.read_text().splitlines()] == expected

    assert main(["audit", "nope", "--checkpoint", str(db)]) == 2
    assert "unknown thread nope" in capsys.readouterr().err
    assert main(["audit", "cli-thread", "--checkpoint", str(tmp_path / "missing.sqlite")]) == 2
