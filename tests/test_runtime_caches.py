"""What a run caches to cost less, and that nothing cached goes stale.

Each cache here has a key that changes when what it caches would: a tool's injected
parameters by its function and input schema, the plan schemas by their class, the
approval key by its saver. SQLite commits wait for the disk only when asked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import StructuredTool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command

from helpers import context, step
from planexec import ScriptedChatModel, build_graph, run_config
from planexec import seals as seals_module
from planexec.checkpoints import open_checkpointer
from planexec.injection import injected_params
from planexec.models import schema_tool
from planexec.plan import Plan
from planexec.scripted import plan_reply, replan_reply
from planexec.wire import strict_schema


def test_a_tool_given_another_function_gets_its_own_injected_parameters() -> None:
    def plain(text: str) -> str:
        """Echo."""
        return text

    def with_runtime(text: str, runtime: ToolRuntime[Any, Any]) -> str:
        """Echo, with the run's runtime."""
        return text

    echo = StructuredTool.from_function(plain, name="echo")
    assert injected_params(echo) == {}
    assert injected_params(echo) == {}  # read again, from the cache
    same_name = StructuredTool.from_function(with_runtime, name="echo")
    assert set(injected_params(same_name)) == {"runtime"}
    echo.func = with_runtime  # the same tool object, changed
    assert set(injected_params(echo)) == {"runtime"}


@pytest.mark.parametrize("make", [schema_tool, strict_schema])
def test_schema_definitions_are_fresh_copies(make: Any) -> None:
    first = make(Plan)
    first.clear()
    second = make(Plan)
    assert second
    assert second == make(Plan)
    assert second is not make(Plan)


async def test_runs_starting_together_read_the_approval_key_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[object] = []
    stored = seals_module._stored_key

    async def counted(saver: Any) -> bytes:
        reads.append(saver)
        await asyncio.sleep(0.05)  # the other runs arrive while the first read is running
        return await stored(saver)

    monkeypatch.setattr(seals_module, "_stored_key", counted)
    steps = [step("s1", args={"expression": "6*7"})]
    async with open_checkpointer(tmp_path / "c.sqlite") as saver:
        graph = build_graph(
            checkpointer=saver,
            planner=ScriptedChatModel([plan_reply(steps) for _ in range(5)]),
            executor=ScriptedChatModel([]),
            replanner=ScriptedChatModel([replan_reply("finish", answer="42")] * 5),
        )
        settings = context(review="always")
        outs = await asyncio.gather(
            *(
                graph.ainvoke({"goal": "6*7"}, run_config(f"t{n}", settings), context=settings)
                for n in range(5)
            )
        )
        assert [len(out["__interrupt__"]) for out in outs] == [1] * 5
        assert len(reads) == 1
        # The key read once seals approvals that the executor then accepts.
        done = await graph.ainvoke(
            Command(resume={"type": "approve"}), run_config("t3", settings), context=settings
        )
    assert done["status"] == "completed"
    assert done["results"]["s1"]["output"] == 42


@pytest.mark.parametrize(("fsync", "level"), [(False, 1), (True, 2)])
async def test_sqlite_commits_wait_for_the_disk_only_when_asked(
    tmp_path: Path, fsync: bool, level: int
) -> None:
    async with open_checkpointer(tmp_path / "c.sqlite", fsync_commits=fsync) as saver:
        async with saver.conn.execute("PRAGMA synchronous") as cursor:
            row = await cursor.fetchone()
        async with saver.conn.execute("PRAGMA journal_mode") as cursor:
            mode = await cursor.fetchone()
    assert row is not None
    assert row[0] == level
    assert mode is not None
    assert mode[0] == "wal"
