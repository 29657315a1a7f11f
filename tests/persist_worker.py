"""One process's part of a persistence test: start or resume a run on a SQLite file.

The tests launch this with `sys.executable` so that each part of a run happens in its
own process, sharing nothing but the SQLite file (and an effects file); `--db` may
also be a `postgresql://` URL (opened with `planexec.checkpoints`). Usage:

    persist_worker.py SCENARIO ACTION --db FILE --thread ID [--effects FILE] [options]

SCENARIO picks the plan and the scripted models (see `SCENARIOS`); ACTION is
`start` (a new run from the goal), `approve` (resume with an approve decision) or
`continue` (resume with no input, as after a crash). The process prints one JSON line:
the thread's state before the action, the invoke output, and how many requests each
scripted model received. With `--linger` it then sleeps until it is killed, with the
saver still open, like a server holding a paused run. With `--lease` the action (and
the lingering) happens while holding the thread's lease (`planexec.lease`); if another
client holds it, the process prints `{"busy": "<message>"}` and exits with code 3.
With `--api invoke` the process uses LangGraph's sync API with a sync saver
(`SqliteSaver`, or `PostgresSaver` for a URL), from a plain `main` with no event loop
of its own, as a sync script would (no lease then).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from helpers import step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import is_postgres, open_checkpointer
from planexec.errors import ThreadBusyError
from planexec.lease import thread_lease
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import calculator

GOAL = "Exercise persistence"
SLOW_S = 60.0
"""The slow step's work: far longer than a test waits, so the kill lands inside it."""


def _effect_step(id: str, seconds: float, depends_on: list[str]) -> dict[str, Any]:
    after = "".join(f"{{{{{dep}}}}}," for dep in depends_on)
    return step(id, "effect", {"name": id, "seconds": seconds, "after": after}, depends_on)


SCENARIOS: dict[str, list[dict[str, Any]]] = {
    # Reviewed before it runs: two calculator steps and one the executor model answers.
    "review": [
        step("s1", "calculator", {"expression": "12*4"}, []),
        step("s2", "calculator", {"expression": "{{s1}} + 5"}, ["s1"]),
        step("s3", None, None, ["s2"]),
    ],
    # s1 -> s2 -> s3 -> s4, with s3 slow.
    "chain": [
        _effect_step("s1", 0.05, []),
        _effect_step("s2", 0.05, ["s1"]),
        _effect_step("s3", SLOW_S, ["s2"]),
        _effect_step("s4", 0.05, ["s3"]),
    ],
    # s1..s4 independent (s2 and s4 slow), then s5 after all of them. The steps that
    # finish first are not the first launched, so nothing can depend on finishing order.
    "wave": [
        _effect_step("s1", 0.2, []),
        _effect_step("s2", SLOW_S, []),
        _effect_step("s3", 0.05, []),
        _effect_step("s4", SLOW_S, []),
        _effect_step("s5", 0.05, ["s1", "s2", "s3", "s4"]),
    ],
}

EXPLANATION = "The result is 53."
ANSWER = "all steps done"


def effect_tool(effects: Path, fast: bool) -> BaseTool:
    """A tool whose side effect is a line in `effects`, written before it works.

    Each call appends `begin <name> <pid> <idempotency key>`, sleeps, then appends
    `end <name> <pid>`. With `fast`, it does not sleep (a resumed run need not wait).
    """

    @tool
    async def effect(
        name: str,
        seconds: float,
        tool_call_id: Annotated[str, InjectedToolCallId],
        after: str = "",
    ) -> str:
        """Record a side effect named `name`, then work for `seconds`."""
        _append(effects, f"begin {name} {os.getpid()} {tool_call_id}")
        await asyncio.sleep(0 if fast else seconds)
        _append(effects, f"end {name} {os.getpid()}")
        return f"{after}{name}"

    return effect


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


def _models(scenario: str, action: str) -> dict[str, ScriptedChatModel]:
    """Scripts per role: a start may plan; nothing else may (its script is empty)."""
    planner = [plan_reply(SCENARIOS[scenario])] if action == "start" else []
    executor = [EXPLANATION] if scenario == "review" else []
    replanner = [replan_reply("finish", answer=ANSWER)]
    return {
        "planner": ScriptedChatModel(planner, name_="planner-model"),
        "executor": ScriptedChatModel(executor, name_="executor-model"),
        "replanner": ScriptedChatModel(replanner, name_="replanner-model"),
    }


def _snapshot(snapshot: Any) -> dict[str, Any]:
    return {
        "next": list(snapshot.next),
        "interrupts": [{"id": i.id, "value": i.value} for i in snapshot.interrupts],
        "values": snapshot.values,
    }


def _output(result: dict[str, Any]) -> dict[str, Any]:
    output = {k: v for k, v in result.items() if k != "__interrupt__"}
    output["__interrupt__"] = [
        {"id": i.id, "value": i.value} for i in result.get("__interrupt__", [])
    ]
    return output


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("action", choices=["start", "approve", "continue"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--thread", required=True)
    parser.add_argument("--effects", type=Path)
    parser.add_argument("--durability", choices=["sync", "async", "exit"], default="async")
    parser.add_argument("--fast", action="store_true", help="effect tools do not sleep")
    parser.add_argument("--linger", action="store_true", help="sleep until killed at the end")
    parser.add_argument("--lease", action="store_true", help="hold the thread's lease")
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--api", choices=["ainvoke", "invoke"], default="ainvoke")
    return parser.parse_args(argv)


def setup(args: argparse.Namespace) -> tuple[list[BaseTool], Context, Any, Any]:
    """The tools, context, config and input of the run `args` describe."""
    tools: list[BaseTool] = [calculator]
    if args.effects is not None:
        tools.append(effect_tool(args.effects, args.fast))
    context = Context(
        review="always" if args.scenario == "review" else "never", retry_initial_interval=0.0
    )
    config: Any = {"configurable": {"thread_id": args.thread}}
    run_input: Any = {
        "start": {"goal": GOAL},
        "approve": Command(resume={"type": "approve"}),
        "continue": None,
    }[args.action]
    return tools, context, config, run_input


async def main(args: argparse.Namespace) -> None:
    tools, context, config, run_input = setup(args)
    models = _models(args.scenario, args.action)
    async with open_checkpointer(args.db) as saver:
        lease: AbstractAsyncContextManager[Any] = (
            thread_lease(saver, args.thread, owner=f"worker {os.getpid()}", ttl=args.lease_ttl)
            if args.lease
            else nullcontext()
        )
        try:
            async with lease:
                await _act(args, saver, tools, models, config, context, run_input)
        except ThreadBusyError as exc:
            sys.stdout.write(json.dumps({"pid": os.getpid(), "busy": str(exc)}) + "\n")
            sys.exit(3)


async def _act(
    args: argparse.Namespace,
    saver: Any,
    tools: list[BaseTool],
    models: dict[str, ScriptedChatModel],
    config: Any,
    context: Context,
    run_input: Any,
) -> None:
    graph = _graph(tools, saver, models)
    before = _snapshot(await graph.aget_state(config))
    result = await graph.ainvoke(run_input, config, context=context, durability=args.durability)
    _report(before, result, models)
    if args.linger:
        await asyncio.sleep(3600)


def main_sync(args: argparse.Namespace) -> None:
    """The same with `graph.invoke` and a sync saver, and no event loop in this thread."""
    if args.lease:
        raise SystemExit("--lease needs the async API")
    tools, context, config, run_input = setup(args)
    models = _models(args.scenario, args.action)
    with _sync_saver(args.db) as saver:
        graph = _graph(tools, saver, models)
        before = _snapshot(graph.get_state(config))
        result = graph.invoke(run_input, config, context=context, durability=args.durability)
        _report(before, result, models)
        if args.linger:
            time.sleep(3600)


@contextmanager
def _sync_saver(location: str) -> Iterator[Any]:
    if is_postgres(location):
        with PostgresSaver.from_conn_string(location) as saver:
            saver.setup()
            yield saver
        return
    conn = sqlite3.connect(location, check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


def _graph(tools: list[BaseTool], saver: Any, models: dict[str, ScriptedChatModel]) -> Any:
    return build_graph(
        tools=tools,
        checkpointer=saver,
        planner=models["planner"],
        executor=models["executor"],
        replanner=models["replanner"],
    )


def _report(before: dict[str, Any], result: dict[str, Any], models: dict[str, Any]) -> None:
    report = {
        "pid": os.getpid(),
        "before": before,
        "output": _output(result),
        "calls": {role: len(model.calls) for role, model in models.items()},
        "prompts": {role: [c.prompt for c in model.calls] for role, model in models.items()},
    }
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.api == "invoke":
        main_sync(arguments)
    else:
        asyncio.run(main(arguments))
