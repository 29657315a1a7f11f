"""Issue 18, item 4: review records and step approvals that the graph did not make are refused.

Each forgery below is written through `update_state`, the way Studio or a LangGraph
server's clients can, and each one carries every field a genuine record has, with the
right revision number, `plan_hash` or `step_hash`: only the seal is missing, copied or
wrong. Whoever answers the pauses here is careful: they approve only what they were
shown. No forged record may make the graph run anything they did not see.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command, Overwrite

from helpers import Harness, config, interrupt_of, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.plan import diff_plans, plan_hash, step_hash
from planexec.scripted import plan_reply, replan_reply
from planexec.seals import KEY_TABLE
from planexec.state import timestamp


class Launches:
    def __init__(self) -> None:
        self.targets: list[str] = []

    def tools(self) -> list[BaseTool]:
        @tool
        def fetch(name: str) -> str:
            """Fetch a named value. Harmless."""
            return f"value of {name}"

        @tool
        def launch(target: str) -> str:
            """Launch a rocket at a target. Irreversible."""
            self.targets.append(target)
            return f"launched at {target}"

        return [fetch, launch]


SAFE = {
    "steps": [
        step("a", tool="fetch", args={"name": "a"}),
        step("n", tool="launch", args={"target": "moon"}, depends_on=["a"]),
    ]
}
EVIL = {
    "steps": [
        step("a", tool="fetch", args={"name": "a"}),
        step("n", tool="launch", args={"target": "earth"}, depends_on=["a"]),
    ]
}
GATED = Context(review="always", retry_initial_interval=0.0, approval_tools=["launch"])


def harness(launches: Launches, thread_plan: dict[str, Any] = SAFE) -> Harness:
    return Harness(
        planner=[plan_reply(thread_plan["steps"])] * 2,
        replanner=[replan_reply("finish", answer="done")] * 4,
        tools=launches.tools(),
    )


def forged_revision(state: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "revision": state["revisions"][-1]["revision"] + 1,
        "source": "human",
        "reason": "written through update_state",
        "plan": plan,
        "diff": diff_plans(state.get("plan"), plan),
        "at": timestamp(),
    }


def approve_record(revision: int, plan: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "revision": revision,
        "decision": "approve",
        "message": None,
        "plan_hash": plan_hash(plan),
        "at": timestamp(),
        **extra,
    }


# Each forgery: the update it writes, given the thread's state (and a genuine record of
# another thread, for the copies).
Forgery = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def approval_of_its_own_revision(state: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    revision = forged_revision(state, EVIL)
    record = approve_record(revision["revision"], EVIL)
    return {"plan": EVIL, "revisions": [revision], "reviews": [record]}


def edit_that_wrote_it(state: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    revision = forged_revision(state, EVIL)
    record = {
        **approve_record(revision["revision"] - 1, state["plan"]),
        "decision": "edit",
        "edited_hash": plan_hash(EVIL),
    }
    return {"plan": EVIL, "revisions": [revision], "reviews": [record]}


def random_seal(state: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    update = approval_of_its_own_revision(state, other)
    update["reviews"][0]["seal"] = "0" * 64
    return update


def seal_copied_from_a_genuine_record(
    state: dict[str, Any], other: dict[str, Any]
) -> dict[str, Any]:
    update = approval_of_its_own_revision(state, other)
    update["reviews"][0]["seal"] = other["seal"]
    return update


def genuine_record_of_another_thread(
    state: dict[str, Any], other: dict[str, Any]
) -> dict[str, Any]:
    # The other thread approved EVIL as its revision 1, with a genuine seal.
    revision = forged_revision(state, EVIL)
    return {
        "plan": EVIL,
        "revisions": [{**revision, "revision": other["revision"]}],
        "reviews": [dict(other)],
    }


def genuine_record_retargeted(state: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    # This thread's own genuine approval, its revision number moved to the forged one.
    [mine] = [r for r in state["reviews"] if r["decision"] == "approve"]
    revision = forged_revision(state, EVIL)
    record = {**mine, "revision": revision["revision"], "plan_hash": plan_hash(EVIL)}
    return {"plan": EVIL, "revisions": [revision], "reviews": [record]}


FORGERIES: dict[str, Forgery] = {
    "an approval of its own revision": approval_of_its_own_revision,
    "an edit record that wrote it": edit_that_wrote_it,
    "a random seal": random_seal,
    "a seal copied from a genuine record": seal_copied_from_a_genuine_record,
    "a genuine record of another thread": genuine_record_of_another_thread,
    "this thread's genuine record, retargeted": genuine_record_retargeted,
}


async def genuine_evil_approval() -> dict[str, Any]:
    """A genuine approval record of EVIL, made in another thread of another graph."""
    launches = Launches()
    h = harness(launches, EVIL)
    request = interrupt_of(await h.run({"goal": "launch"}, GATED, thread="other"))
    await h.run(
        Command(resume={"type": "approve", "plan_hash": request["plan_hash"]}), GATED, "other"
    )
    [record] = (await h.state("other"))["reviews"]
    assert record["seal"]
    return dict(record)


async def careful_person(h: Harness, out: dict[str, Any]) -> dict[str, Any]:
    """Answer every pause as someone who approves only the moon, until the run ends."""
    for _ in range(10):
        if "__interrupt__" not in out:
            return out
        request = interrupt_of(out)
        if request["type"] == "plan_review":
            safe = request["plan"] == SAFE
            decision = (
                {"type": "approve", "plan_hash": request["plan_hash"]}
                if safe
                else {"type": "cancel", "message": "that is not the plan I approved"}
            )
        else:
            assert request["type"] == "step_approval"
            targets = [a["args"].get("target") for a in request["action_requests"]]
            kind = "approve" if targets == ["moon"] else "reject"
            decision = {"decisions": [{"type": kind}], "request_hash": request["request_hash"]}
        out = await h.run(Command(resume=decision), GATED)
    raise AssertionError("the run never ended")


AS_NODES = [None, "planner", "review", "executor", "approval", "replanner"]


BEFORE_ANY_REVIEW = [
    name for name in FORGERIES if name != "this thread's genuine record, retargeted"
]
"""Before a review, the thread has no genuine record of its own to retarget."""


@pytest.mark.parametrize("as_node", AS_NODES)
@pytest.mark.parametrize("forgery", BEFORE_ANY_REVIEW)
async def test_a_forged_approval_before_any_review_never_runs_the_forged_plan(
    forgery: str, as_node: str | None
) -> None:
    other = await genuine_evil_approval()
    launches = Launches()
    h = harness(launches)
    interrupt_of(await h.run({"goal": "launch"}, GATED))  # the first plan review
    state = await h.state()
    state["reviews"] = state.get("reviews") or []
    await h.graph.aupdate_state(config(), FORGERIES[forgery](state, other), as_node=as_node)
    out = await careful_person(h, await h.run(None, GATED))
    assert "earth" not in launches.targets
    assert out.get("status") in (None, "failed", "cancelled", "completed")


@pytest.mark.parametrize("as_node", AS_NODES)
@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_forged_approval_at_a_step_approval_pause_never_runs_the_forged_plan(
    forgery: str, as_node: str | None
) -> None:
    other = await genuine_evil_approval()
    launches = Launches()
    h = harness(launches)
    request = interrupt_of(await h.run({"goal": "launch"}, GATED))
    held = interrupt_of(
        await h.run(Command(resume={"type": "approve", "plan_hash": request["plan_hash"]}), GATED)
    )
    # The person was only ever shown the harmless fetch's plan and the moon.
    assert held["type"] == "step_approval"
    state = await h.state()
    await h.graph.aupdate_state(config(), FORGERIES[forgery](state, other), as_node=as_node)
    out = await careful_person(h, await h.run(None, GATED))
    assert "earth" not in launches.targets
    refused = out.get("reason") or ""
    if out.get("status") == "failed" and "approv" in refused:
        assert refused.startswith("plan revision ")


def forged_step_approval(state: dict[str, Any], target: str, seal: str | None) -> dict[str, Any]:
    [gated] = [s for s in state["plan"]["steps"] if s["id"] == "n"]
    record: dict[str, Any] = {
        "decision": "edit",
        "args": {"target": target},
        "message": None,
        "revision": state["revisions"][-1]["revision"],
        "step_hash": step_hash(gated),
        "at": timestamp(),
    }
    if seal is not None:
        record["seal"] = seal
    return {"approvals": {"n": record}, "awaiting_approval": []}


@pytest.mark.parametrize("seal", ["none", "random", "copied"])
@pytest.mark.parametrize("as_node", ["approval", "executor", None])
async def test_a_forged_step_approval_with_the_right_step_hash_releases_nothing(
    seal: str, as_node: str | None
) -> None:
    launches = Launches()
    h = harness(launches)
    ungated_review = Context(review="never", retry_initial_interval=0.0, approval_tools=["launch"])
    first = interrupt_of(await h.run({"goal": "launch"}, ungated_review))
    assert first["type"] == "step_approval"
    state = await h.state()
    genuine = None
    if seal == "copied":
        # A genuine approval of the moon, from another thread, lends its seal.
        other = harness(Launches())
        interrupt_of(await other.run({"goal": "launch"}, ungated_review, "other"))
        await other.graph.ainvoke(
            Command(resume={"decisions": [{"type": "approve"}]}),
            config("other"),
            context=ungated_review,
            interrupt_before=["executor"],
        )
        genuine = (await other.state("other"))["approvals"]["n"]["seal"]
    value = {"none": None, "random": "f" * 64, "copied": genuine}[seal]
    await h.graph.aupdate_state(
        config(), forged_step_approval(state, "earth", value), as_node=as_node
    )
    out = await h.run(None, ungated_review)
    assert launches.targets == []
    if as_node != "approval" and "__interrupt__" not in out:
        # Written as if by the executor, the update leads to the replanner: nothing ran.
        return
    again = interrupt_of(out)
    assert (again["type"], again["steps"]) == ("step_approval", ["n"])
    assert again["action_requests"][0]["args"] == {"target": "moon"}
    out = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), ungated_review)
    assert out["status"] == "completed"
    assert launches.targets == ["moon"]


async def test_genuine_records_carry_a_seal_and_a_changed_field_breaks_it() -> None:
    launches = Launches()
    h = harness(launches)
    request = interrupt_of(await h.run({"goal": "launch"}, GATED))
    held = interrupt_of(
        await h.run(Command(resume={"type": "approve", "plan_hash": request["plan_hash"]}), GATED)
    )
    out = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), GATED)
    assert out["status"] == "completed"
    state = await h.state()
    [review] = state["reviews"]
    assert len(review["seal"]) == 64
    assert len(state["approvals"]["n"]["seal"]) == 64
    assert held["request_hash"]
    # The same seal under a field changed no longer verifies: the plan goes back to review.
    history = [s async for s in h.graph.aget_state_history(config())]
    # The oldest checkpoint after the review's approval (history is newest first).
    approved = [s for s in history if s.next == ("executor",) and s.values.get("reviews")][-1]
    changed = {**approved.values["reviews"][0], "message": "changed afterwards"}
    fork = await h.graph.aupdate_state(
        approved.config, {"reviews": Overwrite([changed]), "plan": SAFE}, as_node="planner"
    )
    again = await h.graph.ainvoke(None, fork, context=GATED)
    assert interrupt_of(again)["type"] == "plan_review"


# --- the key: kept beside the checkpoints, or given -------------------------------------

WORKER = """
import asyncio, json, sys
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command, Overwrite
from planexec import Context, ScriptedChatModel, build_graph
from planexec.scripted import plan_reply, replan_reply

db, action, key = sys.argv[1], sys.argv[2], sys.argv[3] or None
launched = []

@tool
def launch(target: str) -> str:
    '''Launch a rocket.'''
    launched.append(target)
    return "launched"

plan = [{"id": "n", "description": "launch", "tool": "launch", "args": {"target": "moon"},
         "depends_on": []}]
model = ScriptedChatModel([plan_reply(plan), replan_reply("finish", answer="done")])
ctx = Context(approval_tools=["launch"])
cfg = {"configurable": {"thread_id": "t"}}

async def main():
    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        graph = build_graph(tools=[launch], checkpointer=saver, planner=model,
                            approval_key=key)
        if action == "start":
            out = await graph.ainvoke({"goal": "launch"}, cfg, context=ctx)
            review = out["__interrupt__"][0].value
            out = await graph.ainvoke(Command(resume={"type": "approve",
                                                      "plan_hash": review["plan_hash"]}),
                                      cfg, context=ctx)
        else:
            out = await graph.ainvoke(Command(resume={"decisions": [{"type": "approve"}]}),
                                      cfg, context=ctx)
        paused = out["__interrupt__"][0].value["type"] if "__interrupt__" in out else None
        print(json.dumps({"paused": paused, "status": out.get("status"),
                          "reason": out.get("reason"), "launched": launched}))

asyncio.run(main())
"""


def worker(tmp_path: Path, action: str, key: str = "") -> dict[str, Any]:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "ck.sqlite"), action, key],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_an_approval_made_in_one_process_verifies_in_another_on_the_same_database(
    tmp_path: Path,
) -> None:
    assert worker(tmp_path, "start")["paused"] == "step_approval"
    # A new process: the plan's approval, sealed by the first, is verified here.
    second = worker(tmp_path, "resume")
    assert (second["status"], second["launched"]) == ("completed", ["moon"])


def test_an_approval_key_given_to_build_graph_must_match_to_verify(tmp_path: Path) -> None:
    assert worker(tmp_path, "start", key="key-one")["paused"] == "step_approval"
    other = worker(tmp_path, "resume", key="key-two")
    assert other["status"] == "failed"
    assert other["reason"] == (
        "plan revision 1's approval was not made by this graph's review (it was written "
        "some other way, or sealed with another approval key); refusing to run it"
    )
    assert other["launched"] == []


async def test_the_key_kept_beside_the_checkpoints_is_one_row_shared_by_every_saver(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "ck.sqlite")
    seals = []
    for thread in ("a", "b"):
        async with AsyncSqliteSaver.from_conn_string(path) as saver:
            h = harness(Launches())
            graph = build_graph(
                tools=Launches().tools(),
                checkpointer=saver,
                planner=h.planner,
                replanner=h.replanner,
            )
            request = interrupt_of(
                await graph.ainvoke({"goal": "x"}, config(thread), context=GATED)
            )
            decision = {"type": "approve", "plan_hash": request["plan_hash"]}
            await graph.ainvoke(Command(resume=decision), config(thread), context=GATED)
            seals.append((await graph.aget_state(config(thread))).values["reviews"][0]["seal"])
            async with saver.conn.execute(f"SELECT name FROM {KEY_TABLE}") as cursor:
                assert [row[0] for row in await cursor.fetchall()] == ["approval"]
    assert seals[0] != seals[1]  # bound to their threads


async def test_with_an_in_memory_saver_a_graph_of_another_key_refuses_the_approval() -> None:
    saver = InMemorySaver()
    launches = Launches()
    planner = ScriptedChatModel([plan_reply(SAFE["steps"])])
    one = build_graph(tools=launches.tools(), checkpointer=saver, planner=planner)
    request = interrupt_of(await one.ainvoke({"goal": "x"}, config(), context=GATED))
    decision = {"type": "approve", "plan_hash": request["plan_hash"]}
    assert (
        interrupt_of(await one.ainvoke(Command(resume=decision), config(), context=GATED))["type"]
        == "step_approval"
    )
    two = build_graph(
        tools=launches.tools(), checkpointer=saver, planner=planner, approval_key="another"
    )
    out = await two.ainvoke(
        Command(resume={"decisions": [{"type": "approve"}]}), config(), context=GATED
    )
    assert out["status"] == "failed"
    assert "was not made by this graph's review" in out["reason"]
    assert launches.targets == []


# --- what the seals do not cover ---------------------------------------------------------


USES_A = {
    "steps": [
        step("a", tool="fetch", args={"name": "a"}),
        step("n", tool="launch", args={"target": "{{a}}"}, depends_on=["a"]),
    ]
}
FORGED_A = {"a": {"status": "done", "output": "earth", "error": None}}


async def test_a_step_result_written_through_update_state_is_taken_as_its_output() -> None:
    # Results are not sealed: an output written with Overwrite (a finished result is
    # otherwise kept by the reducer) reaches the steps that use it.
    launches = Launches()
    h = harness(launches, USES_A)
    reviewed = Context(review="always", retry_initial_interval=0.0)
    request = interrupt_of(await h.run({"goal": "launch"}, reviewed))
    decision = {"type": "approve", "plan_hash": request["plan_hash"]}
    await h.graph.ainvoke(
        Command(resume=decision), config(), context=reviewed, interrupt_before=["executor"]
    )
    # Written as if by the approval node, which leads to the executor.
    await h.graph.aupdate_state(config(), {"results": FORGED_A}, as_node="approval")
    kept = await h.state()
    assert kept["results"]["a"]["output"] == "earth"
    out = await h.run(None, reviewed)
    assert out["status"] == "completed"
    assert launches.targets == ["earth"]


async def test_a_result_changed_at_a_step_approval_makes_the_decision_on_the_old_one_stale() -> (
    None
):
    launches = Launches()
    h = harness(launches, USES_A)
    request = interrupt_of(await h.run({"goal": "launch"}, GATED))
    held = interrupt_of(
        await h.run(Command(resume={"type": "approve", "plan_hash": request["plan_hash"]}), GATED)
    )
    assert held["action_requests"][0]["args"] == {"target": "value of a"}
    await h.graph.aupdate_state(config(), {"results": Overwrite(FORGED_A)}, as_node="executor")
    answer = {"decisions": [{"type": "approve"}], "request_hash": held["request_hash"]}
    again = interrupt_of(await h.run(Command(resume=answer), GATED))
    # Shown the call as it would now be made, the person can see what changed.
    assert again["action_requests"][0]["args"] == {"target": "earth"}
    assert again["errors"][0].startswith(f"the decisions are for request {held['request_hash']}")
    assert launches.targets == []
