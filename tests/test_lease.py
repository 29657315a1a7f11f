"""The per-thread lease: one client runs a thread at a time, on SQLite and PostgreSQL.

Without it, two clients resuming the same paused thread both run it and fork its
history (shown first, so that the checks below are known to catch a fork). With it,
the second client is refused with a clear error and the history stays one line.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg
import pytest
from langchain_core.tools import BaseTool, tool
from langgraph.types import Command

from helpers import ARITHMETIC, CLI_MODELS, cli, scripted_models, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import is_postgres, open_checkpointer
from planexec.errors import LeaseLostError, ThreadBusyError
from planexec.lease import LEASE_TABLE, Lease, ensure_lease_table, thread_lease
from planexec.scripted import plan_reply, replan_reply
from test_persistence import Launched, interrupt_of, run_worker

THREAD = "t-shared"
CONTEXT = Context(retry_initial_interval=0.0)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The checkpoint database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "checkpoints.sqlite")
    url: str = request.getfixturevalue("pg_url")
    return url


def execute(location: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the database directly, as another program would."""
    if is_postgres(location):
        with psycopg.connect(location, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return list(cursor.fetchall()) if cursor.description else []
    with closing(sqlite3.connect(location, timeout=10)) as db, db:
        return list(db.execute(sql, params).fetchall())


def leases(location: str) -> list[tuple[Any, ...]]:
    return execute(location, f"SELECT thread_id, owner FROM {LEASE_TABLE} ORDER BY thread_id")


# --- the lease itself ------------------------------------------------------------------


async def test_a_second_client_is_refused_while_the_first_holds_the_lease(
    location: str,
) -> None:
    async with open_checkpointer(location) as first, open_checkpointer(location) as second:
        async with thread_lease(first, THREAD, owner="client A") as held:
            assert held.owner == "client A"
            assert leases(location) == [(THREAD, "client A")]
            with pytest.raises(ThreadBusyError) as refused:
                async with thread_lease(second, THREAD, owner="client B"):
                    pytest.fail("two clients held the same thread")
            # Other threads are free.
            async with thread_lease(second, "another thread", owner="client B"):
                assert leases(location) == [("another thread", "client B"), (THREAD, "client A")]
        assert leases(location) == []
        async with thread_lease(second, THREAD, owner="client B") as again:
            assert again.owner == "client B"
    busy = refused.value
    assert (busy.thread_id, busy.owner, busy.since) == (THREAD, "client A", held.acquired_at)
    assert str(busy).startswith(f"thread {THREAD} is being run by client A since 20")
    assert "try again when it finishes" in str(busy)


async def test_the_lease_table_can_be_reached_from_a_location_or_a_connection(
    location: str,
) -> None:
    await ensure_lease_table(location)
    async with (
        thread_lease(location, THREAD, owner="by location"),
        open_checkpointer(location) as saver,
    ):
        with pytest.raises(ThreadBusyError, match="by location"):
            async with thread_lease(saver.conn, THREAD):
                pytest.fail("entered")


async def test_an_expired_lease_is_taken_over_and_a_live_one_is_not(location: str) -> None:
    await ensure_lease_table(location)
    insert = f"INSERT INTO {LEASE_TABLE} VALUES (?, ?, ?, ?, ?)"
    execute(location, insert, ("dead", "crashed client", "x", 1.0, 2.0))
    execute(location, insert, ("alive", "busy client", "y", time.time(), time.time() + 300))
    async with thread_lease(location, "dead", owner="new client") as taken:
        assert leases(location) == [("alive", "busy client"), ("dead", "new client")]
    assert taken.acquired_at.year >= 2026
    with pytest.raises(ThreadBusyError, match="being run by busy client"):
        async with thread_lease(location, "alive"):
            pytest.fail("took over a live lease")


def exited_pid() -> int:
    """The pid of a process of this host that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


async def test_a_lease_held_by_a_dead_process_of_this_host_is_taken_over_at_once(
    location: str,
) -> None:
    await ensure_lease_table(location)
    insert = f"INSERT INTO {LEASE_TABLE} VALUES (?, ?, ?, ?, ?)"
    later = time.time() + 300
    host = socket.gethostname()
    execute(location, insert, ("killed", f"pid {exited_pid()} on {host}", "x", time.time(), later))
    execute(location, insert, ("running", f"pid {os.getppid()} on {host}", "y", time.time(), later))
    execute(
        location, insert, ("remote", f"pid {exited_pid()} on elsewhere", "z", time.time(), later)
    )
    async with thread_lease(location, "killed", owner="new client"):
        assert ("killed", "new client") in leases(location)
    # A live process of this host, and any process of another host, keep theirs.
    for thread in ("running", "remote"):
        with pytest.raises(ThreadBusyError):
            async with thread_lease(location, thread):
                pytest.fail(f"took over the live lease of {thread}")


async def test_the_heartbeat_keeps_the_lease_past_its_ttl(location: str) -> None:
    async with thread_lease(location, THREAD, ttl=1.0, heartbeat=0.1) as lease:
        first_expiry = lease.expires_at
        await asyncio.sleep(2.0)  # twice the ttl
        with pytest.raises(ThreadBusyError):
            async with thread_lease(location, THREAD):
                pytest.fail("the lease lapsed while its holder was alive")
        assert lease.expires_at > first_expiry
    assert not lease.lost


async def test_a_lease_taken_away_stops_the_block(location: str) -> None:
    held: list[Lease] = []

    async def hold() -> None:
        async with thread_lease(location, THREAD, ttl=0.6, heartbeat=0.1) as lease:
            held.append(lease)
            # As if this process had stalled past the ttl and another had taken over.
            execute(location, f"UPDATE {LEASE_TABLE} SET token = 'other', owner = 'other'")
            await asyncio.sleep(30)

    started = time.monotonic()
    with pytest.raises(LeaseLostError, match=f"the lease of thread {THREAD} lapsed"):
        await hold()
    assert held[0].lost
    assert time.monotonic() - started < 10
    # The new holder's lease is left alone.
    assert leases(location) == [(THREAD, "other")]


async def test_a_lease_that_cannot_be_renewed_stops_the_block_before_it_lapses(
    tmp_path: Path,
) -> None:
    conn = await aiosqlite.connect(tmp_path / "c.sqlite")
    held: list[Lease] = []

    async def hold() -> None:
        async with thread_lease(conn, THREAD, ttl=0.6, heartbeat=0.1) as lease:
            held.append(lease)
            await conn.close()  # the database is out of reach from now on
            await asyncio.sleep(30)

    started = time.monotonic()
    with pytest.raises(LeaseLostError):
        await hold()
    assert held[0].lost
    assert time.monotonic() - started < 10


async def test_heartbeat_must_be_shorter_than_the_ttl(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="below ttl"):
        async with thread_lease(tmp_path / "c.sqlite", THREAD, ttl=1.0, heartbeat=1.0):
            pytest.fail("entered")


# --- two clients resuming one paused thread --------------------------------------------


class Gate:
    """A tool that waits, once `parties` calls have arrived, until it is opened."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.calls: list[str] = []
        self.arrived = asyncio.Event()
        self.opened = asyncio.Event()

    def tool(self) -> BaseTool:
        @tool
        async def gate(name: str) -> str:
            """Pass the gate."""
            self.calls.append(name)
            if len(self.calls) >= self.parties:
                self.arrived.set()
            await self.opened.wait()
            return f"{name} passed"

        return gate


def _graph(saver: Any, gate: Gate, planner: list[Any] = ()) -> Any:  # type: ignore[assignment]
    return build_graph(
        tools=[gate.tool()],
        checkpointer=saver,
        planner=ScriptedChatModel(planner),
        executor=ScriptedChatModel([]),
        replanner=ScriptedChatModel([replan_reply("finish", answer="through the gate")]),
    )


async def _pause_at_review(location: str, gate: Gate) -> None:
    plan = [step("s1", tool="gate", args={"name": "s1"})]
    async with open_checkpointer(location) as saver:
        graph = _graph(saver, gate, [plan_reply(plan)])
        paused = await graph.ainvoke({"goal": "pass the gate"}, _config(), context=CONTEXT)
    assert paused["__interrupt__"][0].value["type"] == "plan_review"


def _config() -> Any:
    return {"configurable": {"thread_id": THREAD}}


async def _resume(location: str, gate: Gate, *, lease_owner: str | None) -> dict[str, Any]:
    """Approve the paused plan, on this client's own connection."""
    async with open_checkpointer(location) as saver:
        graph = _graph(saver, gate)
        approve = Command(resume={"type": "approve"})
        if lease_owner is None:
            result: dict[str, Any] = await graph.ainvoke(approve, _config(), context=CONTEXT)
            return result
        async with thread_lease(saver, THREAD, owner=lease_owner):
            result = await graph.ainvoke(approve, _config(), context=CONTEXT)
            return result


async def _history(location: str) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Each checkpoint's parent, and the thread's latest state values."""
    parents: dict[str, str | None] = {}
    async with open_checkpointer(location) as saver:
        async for found in saver.alist(_config()):
            if found.config["configurable"].get("checkpoint_ns", ""):
                continue
            parent = found.parent_config and found.parent_config["configurable"]["checkpoint_id"]
            parents[found.config["configurable"]["checkpoint_id"]] = parent
        state = await _graph(saver, Gate(1)).aget_state(_config())
    return parents, dict(state.values)


def _forks(parents: dict[str, str | None]) -> list[str]:
    """Checkpoints with more than one child: where the history split."""
    children = Counter(parent for parent in parents.values() if parent is not None)
    return [parent for parent, count in children.items() if count > 1]


def _lineage(parents: dict[str, str | None]) -> list[str]:
    """The checkpoints from the newest back to the first, following parents."""
    heads = set(parents) - set(parents.values())
    assert len(heads) == 1, f"{len(heads)} latest checkpoints"
    line = [heads.pop()]
    while (parent := parents[line[-1]]) is not None:
        line.append(parent)
    return line


async def test_without_the_lease_two_resumes_fork_the_thread(location: str) -> None:
    gate = Gate(parties=2)
    await _pause_at_review(location, gate)
    first = asyncio.create_task(_resume(location, gate, lease_owner=None))
    second = asyncio.create_task(_resume(location, gate, lease_owner=None))
    await asyncio.wait_for(gate.arrived.wait(), 20)
    gate.opened.set()
    results = await asyncio.wait_for(asyncio.gather(first, second), 20)

    assert [r["status"] for r in results] == ["completed", "completed"]
    assert gate.calls == ["s1", "s1"]  # the step's side effect happened twice
    parents, _ = await _history(location)
    assert len(_forks(parents)) == 1


async def test_with_the_lease_a_second_resume_is_refused_and_history_stays_linear(
    location: str,
) -> None:
    gate = Gate(parties=1)
    await _pause_at_review(location, gate)
    first = asyncio.create_task(_resume(location, gate, lease_owner="client A"))
    await asyncio.wait_for(gate.arrived.wait(), 20)  # A is running the approved plan

    with pytest.raises(ThreadBusyError, match=f"thread {THREAD} is being run by client A"):
        await _resume(location, gate, lease_owner="client B")
    gate.opened.set()
    done = await asyncio.wait_for(first, 20)

    assert done["status"] == "completed"
    assert done["answer"] == "through the gate"
    assert gate.calls == ["s1"]
    parents, values = await _history(location)
    assert _forks(parents) == []
    assert sorted(_lineage(parents)) == sorted(parents)  # one line through every checkpoint
    assert [(r["revision"], r["decision"]) for r in values["reviews"]] == [(1, "approve")]
    assert values["results"]["s1"]["output"] == "s1 passed"
    assert leases(location) == []


# --- a holder that dies --------------------------------------------------------------


def test_the_lease_of_a_killed_holder_is_taken_over_once_it_lapses(
    location: str, tmp_path: Path
) -> None:
    db = ("--db", location)
    holder = Launched.start(
        "review", "start", tmp_path, THREAD, *db, "--lease", "--lease-ttl", "3", "--linger"
    )
    holder.wait_until(lambda: holder.report() is not None, "the run paused at review")
    report = holder.report()
    assert report is not None
    paused = interrupt_of(report)
    holder.kill()  # it dies holding the lease, which nobody releases

    async def try_lease() -> str | None:
        try:
            async with thread_lease(location, THREAD):
                return None
        except ThreadBusyError as exc:
            return str(exc)

    refused = asyncio.run(try_lease())
    assert refused is not None
    assert f"being run by worker {holder.process.pid}" in refused
    deadline = time.monotonic() + 20
    while asyncio.run(try_lease()) is not None:
        assert time.monotonic() < deadline, "the dead holder's lease never lapsed"
        time.sleep(0.2)

    later = run_worker("review", "approve", tmp_path, THREAD, *db, "--lease")
    assert [i["value"] for i in later["before"]["interrupts"]] == [paused]
    assert later["output"]["status"] == "completed"
    assert [r["decision"] for r in later["output"]["reviews"]] == ["approve"]
    assert leases(location) == []


# --- the command line ------------------------------------------------------------------


@pytest.mark.usefixtures("cli_home")
def test_the_cli_refuses_a_thread_another_client_is_running(
    location: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    ck = ("--checkpoint", location)
    assert cli(capsys, "run", "g", *CLI_MODELS, *ck, "--thread", "p")[0] == 0
    assert leases(location) == []  # the run released its lease when it paused
    execute(
        location,
        f"INSERT INTO {LEASE_TABLE} VALUES (?, ?, ?, ?, ?)",
        ("p", "a notebook", "x", time.time(), time.time() + 300),
    )

    code, out, err = cli(capsys, "resume", "p", *ck, "--approve")

    assert code == 3
    assert err.startswith("planexec: error: thread p is being run by a notebook since ")
    assert "try again when it finishes" in err
    assert "resuming" not in out
    execute(location, f"DELETE FROM {LEASE_TABLE}")
    code, out, _ = cli(capsys, "resume", "p", *ck, "--approve")
    assert code == 0
    assert "status: completed" in out
