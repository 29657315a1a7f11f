"""Issue 18, item 3: a lease holder that stalls past its lease does nothing more.

A holder stopped by SIGSTOP, or stuck in CPU-bound work, cannot renew its lease, and
another client takes the thread over. When the holder runs again it must not start the
next step, call a tool, or write a checkpoint row of the thread: the lease is checked by
its age on the holder's own clock before each of those, not after a database round
trip. Both kinds of stall are tried: the whole process stopped by a signal, and an
event loop blocked by a tool that computes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool, tool

from helpers import config, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.errors import LeaseLostError
from planexec.lease import check_lease, counted_for, thread_lease
from planexec.scripted import plan_reply, replan_reply

TTL = 1.0
HEARTBEAT = 0.2
"""So the holder counts on its lease for 0.9 s after each renewal (`counted_for`)."""


def rows(path: Path, thread: str) -> tuple[int, int]:
    """The thread's checkpoint rows and write rows in the SQLite file."""
    with closing(sqlite3.connect(path, timeout=10)) as db:
        checkpoints = db.execute(
            "SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (thread,)
        ).fetchone()[0]
        writes = db.execute(
            "SELECT COUNT(*) FROM writes WHERE thread_id = ?", (thread,)
        ).fetchone()[0]
    return int(checkpoints), int(writes)


def recording(name: str, write: Any, passed: list[str]) -> Any:
    async def record(cfg: Any, *args: Any) -> Any:
        result = await write(cfg, *args)
        passed.append(name)  # the write was let through
        return result

    return record


def take_over(path: Path, thread: str, taken: threading.Event, done: threading.Event) -> None:
    """Another client: waits for the lease to lapse, takes it, and holds it until `done`."""

    async def hold() -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with thread_lease(path, thread, owner="the other client", ttl=60):
                    taken.set()
                    await asyncio.to_thread(done.wait)
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    asyncio.run(hold())


async def test_a_holder_whose_loop_stalled_past_its_lease_does_nothing_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ck.sqlite"
    taken, done = threading.Event(), threading.Event()
    effects: list[str] = []
    passed: list[str] = []
    stall: dict[str, Any] = {}

    @tool
    async def crunch(n: int) -> int:
        """A CPU-bound computation: it holds the event loop while it runs."""
        stall["writes"], stall["rows"] = len(passed), rows(path, "t1")
        threading.Thread(target=take_over, args=(path, "t1", taken, done), daemon=True).start()
        assert taken.wait(20)  # the loop is blocked: nothing renews the lease meanwhile
        return n

    @tool
    def launch(target: str) -> str:
        """Launch a rocket. Irreversible."""
        effects.append(target)
        return "launched"

    tools: list[BaseTool] = [crunch, launch]
    plan = [
        step("s1", tool="crunch", args={"n": 1}),
        step("s2", tool="launch", args={"target": "moon"}, depends_on=["s1"]),
    ]
    model = ScriptedChatModel([plan_reply(plan), replan_reply("finish", answer="x")])
    try:
        async with open_checkpointer(path) as saver:
            graph = build_graph(tools=tools, checkpointer=saver, planner=model)
            # On the saver the graph writes with (LangGraph's copy of `saver`), around the
            # lease's fence: they see the writes it lets through.
            writer = graph.checkpointer
            for name in ("aput", "aput_writes"):
                setattr(writer, name, recording(name, getattr(writer, name), passed))
            with pytest.raises(LeaseLostError):
                async with thread_lease(saver, "t1", ttl=TTL, heartbeat=HEARTBEAT):
                    await graph.ainvoke(
                        {"goal": "launch"}, config(), context=Context(review="never")
                    )
            after = rows(path, "t1")
    finally:
        done.set()
    assert taken.is_set()
    assert stall["writes"] > 0  # writes passed before the stall: the recorder sees them
    assert effects == []  # s2's irreversible effect never ran
    assert passed[stall["writes"] :] == []  # nor was anything written after the stall
    assert after == stall["rows"]


WORKER = """
import asyncio, json, sys, time
from pathlib import Path
from langchain_core.tools import tool
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.lease import thread_lease
from planexec.scripted import plan_reply, replan_reply

db, folder = sys.argv[1], Path(sys.argv[2])

@tool
async def wait_a_little(label: str) -> str:
    '''Announce the step, then wait a little.'''
    (folder / "started").write_text(label)
    await asyncio.sleep(0.5)
    return label

@tool
def launch(target: str) -> str:
    '''Launch a rocket. Irreversible.'''
    with open(folder / "effects", "a") as out:
        out.write(target + "\\n")
    return "launched"

plan = [{"id": "s1", "description": "wait", "tool": "wait_a_little", "args": {"label": "a"},
         "depends_on": []},
        {"id": "s2", "description": "launch", "tool": "launch", "args": {"target": "moon"},
         "depends_on": ["s1"]}]
model = ScriptedChatModel([plan_reply(plan), replan_reply("finish", answer="x")])

async def main():
    async with open_checkpointer(db) as saver:
        graph = build_graph(tools=[wait_a_little, launch], checkpointer=saver, planner=model)
        try:
            async with thread_lease(saver, "t", ttl=float(sys.argv[3]), heartbeat=0.2):
                await graph.ainvoke({"goal": "launch"}, {"configurable": {"thread_id": "t"}},
                                    context=Context(review="never"))
        except Exception as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
            return
        print(json.dumps({"error": None}))

asyncio.run(main())
"""


def test_a_holder_stopped_by_sigstop_past_its_lease_writes_and_runs_nothing_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ck.sqlite"
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    ttl = 1.5
    worker = subprocess.Popen(
        [sys.executable, str(script), str(path), str(tmp_path), str(ttl)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    taken, done = threading.Event(), threading.Event()
    try:
        for _ in range(600):
            if (tmp_path / "started").exists():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the worker never started its first step")
        os.kill(worker.pid, signal.SIGSTOP)
        other = threading.Thread(target=take_over, args=(path, "t", taken, done), daemon=True)
        other.start()
        assert taken.wait(30)  # the stopped holder's lease lapsed; another client has it
        before = rows(path, "t")
        os.kill(worker.pid, signal.SIGCONT)
        out, err = worker.communicate(timeout=60)
        after = rows(path, "t")
    finally:
        done.set()
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
            worker.kill()
            worker.wait()
    assert json.loads(out.splitlines()[-1])["error"] == "LeaseLostError", err
    assert not (tmp_path / "effects").exists()  # s2 never ran
    assert after == before  # nothing written into the history the other client owns


async def test_a_saver_given_to_the_lease_refuses_writes_of_its_thread_once_stale(
    tmp_path: Path,
) -> None:
    async with (
        open_checkpointer(tmp_path / "ck.sqlite") as saver,
        thread_lease(saver, "held", ttl=30) as lease,
    ):
        cfg = {"configurable": {"thread_id": "held", "checkpoint_ns": "", "checkpoint_id": "1"}}
        other = {"configurable": {"thread_id": "other", "checkpoint_ns": "", "checkpoint_id": "1"}}
        await saver.aput_writes(cfg, [("x", 1)], "task-1")  # fresh: written
        lease.renewed_at -= 26  # as after a stall of 26 s: 25 s is all it is counted on for
        with pytest.raises(LeaseLostError, match="stopped before writing a checkpoint"):
            await saver.aput_writes(cfg, [("x", 2)], "task-2")
        await saver.aput_writes(other, [("x", 3)], "task-3")  # another thread: not fenced
        with pytest.raises(LeaseLostError, match="stopped before starting step s9"):
            check_lease("held", "starting step s9")
    check_lease("held", "anything")  # no lease held any more: nothing to check


@pytest.mark.parametrize(
    ("ttl", "heartbeat", "expected"),
    [(30.0, 10.0, 25.0), (30.0, 25.0, 27.5), (1.0, 0.2, 0.9), (10.0, 5.0, 7.5)],
)
def test_a_lease_renewed_on_time_is_always_counted_on(
    ttl: float, heartbeat: float, expected: float
) -> None:
    counted = counted_for(ttl, heartbeat)
    assert counted == pytest.approx(expected)
    assert heartbeat < counted < ttl  # on time, never refused; never past the expiry
