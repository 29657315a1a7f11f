"""A checkpoint file holding one thread in each state `planexec show` and `threads` tell apart.

Each thread is made through the real graph, with scripted models and the command line's
own run config (so its settings are in the checkpoint metadata): finished, failed,
paused at a plan review, paused for a step approval, stopped by the recursion limit,
recorded but never started, replanned after a rejection, stopped in the middle of an
executor pass with one step finished, and a `planexec demo` thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from langchain_core.tools import tool
from langgraph.errors import GraphRecursionError
from langgraph.types import Command

from helpers import ARITHMETIC, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.cli import main
from planexec.cli.session import record_thread, thread_config
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import calculator

THREADS = (
    "done",
    "review",
    "approval",
    "broken",
    "stopped",
    "recorded",
    "revised",
    "inflight",
)
"""The threads `make_states` writes, oldest first."""


@tool
async def hang(seconds: float) -> str:
    """Wait `seconds`, then say so."""
    await asyncio.sleep(seconds)
    return "waited"


async def _until_written(path: Path, saver: Any, thread: str) -> None:
    """Wait until the thread's latest checkpoint has a finished step's pending write."""
    for _ in range(500):
        saved = await saver.aget_tuple({"configurable": {"thread_id": thread}})
        if saved and any(channel == "__return__" for _, channel, _ in saved.pending_writes or ()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no step of {thread} finished in {path}")


async def make_states(path: Path, key: str | None = None) -> list[str]:
    """Write `THREADS` into the SQLite file at `path` (encrypted with `key` if given)."""
    async with open_checkpointer(path, encryption_key=key) as saver:

        async def graph(**models: Any) -> Any:
            return build_graph(tools=[calculator, hang], checkpointer=saver, **models)

        def configured(thread: str, context: Context, **extra: Any) -> Any:
            config: Any = thread_config(thread, context, f"goal of {thread}")
            config.update(extra)
            return config

        async def run(thread: str, context: Context, **models: Any) -> None:
            config = configured(thread, context)
            if thread == "stopped":
                config["recursion_limit"] = 1
            with contextlib.suppress(GraphRecursionError):
                await (await graph(**models)).ainvoke(
                    {"goal": f"goal of {thread}"}, config, context=context
                )

        never = Context(review="never")
        await run(
            "done",
            never,
            planner=ScriptedChatModel(
                [plan_reply(ARITHMETIC), replan_reply("finish", answer="43")]
            ),
        )
        await run("review", Context(), planner=ScriptedChatModel([plan_reply(ARITHMETIC)]))
        await run(
            "approval",
            Context(review="never", approval_tools=["calculator"]),
            planner=ScriptedChatModel([plan_reply(ARITHMETIC)]),
        )
        await run("broken", Context(), planner=ScriptedChatModel([RuntimeError("down")]))
        await run("stopped", Context(), planner=ScriptedChatModel([plan_reply(ARITHMETIC)]))

        recorded = await graph(planner=ScriptedChatModel([]))
        await record_thread(recorded, configured("recorded", never), never, "goal of recorded")

        # Rejected once, replanned, approved, then replanned again before it finishes.
        context = Context()
        config = configured("revised", context)
        shorter = [step("s1", args={"expression": "6*7"})]
        revised = await graph(
            planner=ScriptedChatModel(
                [
                    plan_reply(ARITHMETIC),
                    plan_reply(shorter),
                    replan_reply(
                        "revise", steps=[*shorter, step("s3", args={"expression": "1+1"})]
                    ),
                    replan_reply("finish", answer="42 and 2"),
                ]
            )
        )
        await revised.ainvoke({"goal": "goal of revised"}, config, context=context)
        for answer in ({"type": "reject", "message": "one step"}, {"type": "approve"}) * 2:
            if not (await revised.aget_state(config)).interrupts:
                break
            await revised.ainvoke(Command(resume=answer), config, context=context)

        # Stopped while s2 runs: s1's result is a pending write of the unfinished pass.
        slow = [step("s1", args={"expression": "6*7"}), step("s2", "hang", {"seconds": 60})]
        config = configured("inflight", never)
        running = asyncio.create_task(
            (await graph(planner=ScriptedChatModel([plan_reply(slow)]))).ainvoke(
                {"goal": "goal of inflight"}, config, context=never
            )
        )
        await _until_written(path, saver, "inflight")
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    return list(THREADS)


def make_demo(path: Path, workspace: Path) -> str:
    """A finished `planexec demo` thread in the file at `path`."""
    code = main(
        [
            "demo",
            "--checkpoint",
            str(path),
            "--workspace",
            str(workspace),
            "--thread",
            "demo",
            "--yes",
        ]
    )
    assert code == 0
    return "demo"
