"""Issue 18, item 1: a plain `def` tool that outlives its timeout.

Python cannot stop a thread, so the work does not stop. What planexec promises instead:
the step is not settled while its call may still be running (no retry, no "failed"
record, no uncertain-step question), the run ends saying so, the call has its effect
at most once, and the process can exit while the call still hangs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from langchain_core.tools import BaseTool, tool

from helpers import Harness, config, context, step
from planexec.scripted import plan_reply, replan_reply
from planexec.threads import still_running


class Blocker:
    """A plain tool that blocks until released, recording each call and each effect."""

    def __init__(self, idempotent: bool = True) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []
        self.effects: list[str] = []
        self.threads: list[threading.Thread] = []
        self.idempotent = idempotent

    def tools(self) -> list[BaseTool]:
        @tool(extras={"idempotent": self.idempotent})
        def pay(invoice: str) -> str:
            """Pay an invoice. Blocks for as long as the payment provider takes."""
            self.calls.append(invoice)
            self.threads.append(threading.current_thread())
            self.release.wait(30)
            self.effects.append(invoice)
            return f"paid {invoice}"

        @tool
        async def note(text: str) -> str:
            """Write a note."""
            return f"noted {text}"

        return [pay, note]

    async def finish(self, key: str = "t1:r1:s1") -> None:
        """Let the hung call return, and wait until it has."""
        self.release.set()
        for _ in range(500):
            if len(self.effects) == len(self.calls) and not still_running(key):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the tool's call never returned")


PLAN = [
    step("s1", tool="pay", args={"invoice": "inv-1"}),
    step("s2", tool="note", args={"text": "independent"}),
    step("s3", tool="note", args={"text": "after the payment"}, depends_on=["s1"]),
]


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "non-idempotent"])
async def test_a_timed_out_plain_tool_leaves_its_step_unsettled_and_the_run_failed(
    idempotent: bool,
) -> None:
    blocker = Blocker(idempotent)
    h = Harness(
        planner=[plan_reply(PLAN)],
        replanner=[replan_reply("finish", answer="never asked")],
        tools=blocker.tools(),
    )
    out = await h.run({"goal": "pay"}, context(step_timeout=0.2, step_attempts=3))
    try:
        assert "__interrupt__" not in out  # no uncertain-step question while it runs
        assert out["status"] == "failed"
        assert out["reason"] == (
            "step s1 timed out after 0.2s while its tool pay was still running: a plain "
            "function cannot be stopped, so the step is not retried or recorded while its "
            "call may still have its effect; every finished step's result is kept"
        )
        assert "s1" not in out["results"]  # neither failed nor done
        assert "s3" not in out["results"]
        assert out["results"]["s2"]["status"] == "done"
        assert blocker.calls == ["inv-1"]  # not retried
        assert still_running("t1:r1:s1")
        assert h.replanner.calls == []
    finally:
        await blocker.finish()
    assert blocker.effects == ["inv-1"]
    assert not still_running("t1:r1:s1")
    # Nothing ran it again once it returned.
    await asyncio.sleep(0.1)
    assert blocker.calls == ["inv-1"]


async def test_the_time_budget_ends_the_run_and_says_a_call_is_still_running() -> None:
    blocker = Blocker()
    h = Harness(
        planner=[plan_reply(PLAN[:2])],
        replanner=[replan_reply("finish", answer="never asked")],
        tools=blocker.tools(),
    )
    out = await h.run({"goal": "pay"}, context(step_timeout=60, time_budget_s=0.3))
    try:
        assert out["status"] == "budget_exhausted"
        assert "time_budget_s" in out["reason"]
        assert out["reason"].endswith(
            "; step s1 its call was still running when the run stopped, and may still "
            "have its effect"
        )
        assert "s1" not in out["results"]
        assert blocker.calls == ["inv-1"]
    finally:
        await blocker.finish()
    assert blocker.effects == ["inv-1"]


async def test_a_plain_tool_runs_in_a_daemon_thread_of_planexecs_own() -> None:
    blocker = Blocker()
    blocker.release.set()
    h = Harness(
        planner=[plan_reply(PLAN)],
        replanner=[replan_reply("finish", answer="paid")],
        tools=blocker.tools(),
    )
    out = await h.run({"goal": "pay"}, context())
    assert out["status"] == "completed"
    assert out["results"]["s1"]["output"] == "paid inv-1"
    [worker] = blocker.threads
    assert worker.daemon
    assert worker.name.startswith("planexec-tool-")


async def test_a_step_run_again_while_its_call_still_runs_waits_for_that_call() -> None:
    blocker = Blocker()
    h = Harness(
        planner=[plan_reply(PLAN[:1])],
        replanner=[replan_reply("finish", answer="paid")],
        tools=blocker.tools(),
    )
    out = await h.run({"goal": "pay"}, context(step_timeout=0.2))
    assert out["status"] == "failed"
    # Time travel, in the same process, to the checkpoint before the executor ran.
    history = [s async for s in h.graph.aget_state_history(config())]
    [before] = [s for s in history if s.next == ("executor",)]
    rerun = asyncio.ensure_future(
        h.graph.ainvoke(None, before.config, context=context(step_timeout=30))
    )
    await asyncio.sleep(0.3)
    assert blocker.calls == ["inv-1"]  # no second call beside the first
    await blocker.finish()
    again = await rerun
    assert again["status"] == "completed"
    assert again["results"]["s1"]["output"] == "paid inv-1"
    assert blocker.calls == blocker.effects == ["inv-1"]


SCRIPT = """
import asyncio, threading, time
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from planexec import Context, ScriptedChatModel, build_graph
from planexec.scripted import plan_reply, replan_reply

@tool
def hang(seconds: float) -> str:
    '''Hang.'''
    time.sleep(seconds)
    return "done"

plan = [{"id": "s1", "description": "hang", "tool": "hang", "args": {"seconds": 600},
         "depends_on": []}]
model = ScriptedChatModel([plan_reply(plan), replan_reply("finish", answer="x")])
graph = build_graph(tools=[hang], checkpointer=InMemorySaver(), planner=model)
out = asyncio.run(graph.ainvoke({"goal": "hang"}, {"configurable": {"thread_id": "t"}},
                                context=Context(review="never", step_timeout=0.5)))
print(out["status"], threading.active_count() > 1, flush=True)
"""


def test_the_process_exits_while_a_plain_tool_still_hangs(tmp_path: Path) -> None:
    script = tmp_path / "hang.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # The run ended while the call's thread was still alive, and the process exited.
    assert done.stdout.split() == ["failed", "True"]
