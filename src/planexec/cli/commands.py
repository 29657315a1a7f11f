"""The commands that run the graph: run, resume and demo (`show` is in `planexec.cli.show`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import uuid4

from langchain_core.runnables import RunnableConfig
from langgraph.store.base import BaseStore
from langgraph.types import Command, Interrupt

from planexec.checkpoints import AsyncCheckpointer, redact
from planexec.cli import mcp_servers
from planexec.cli.environment import Environment, Output, UserError, checkpoint_location
from planexec.cli.live import ProgressView
from planexec.cli.opening import (
    DEMO_KEY,
    GOAL_KEY,
    Thread,
    existing_checkpoint,
    open_saver,
    prepare_checkpoint,
    stored_settings,
)
from planexec.cli.plans import open_library
from planexec.cli.render import show_outcome
from planexec.cli.review import Reviewer, Scripted, parse_output, read_edit_file
from planexec.cli.session import (
    check_models,
    check_seal,
    drive,
    hold_thread,
    make_context,
    model_factory,
    record_thread,
    seal_config,
    thread_config,
)
from planexec.cli.threads import resolve_thread
from planexec.context import Context
from planexec.demo import Scenario, copy_workspace, load_scenario
from planexec.errors import InvalidGoalError, PlanexecError
from planexec.graph import PlanexecGraph, build_graph
from planexec.inert import inert
from planexec.interrupts import NEEDS_MODEL
from planexec.nodes.planner import validate_goal
from planexec.scripted import ScriptExhaustedError

MODEL_OPTIONS = (
    "planner_model",
    "executor_model",
    "replanner_model",
    "review",
    "max_replans",
    "reuse_plans",
)

DEMO_BANNER = (
    "[bold]planexec demo[/]: the model replies are [bold]scripted[/] (bundled with planexec): "
    "no model is called and nothing leaves this machine.\n"
    "The tools, the LangGraph graph and the SQLite checkpoint are real."
)


PAUSES = {
    "plan_review": ("review", "--approve | --reject MSG | --edit FILE"),
    "step_approval": ("step approval", "--approve | --reject MSG | --edit FILE"),
    "uncertain_step": ("a decision on an uncertain step", "--rerun | --mark-done OUTPUT | --skip"),
    NEEDS_MODEL: ("a real model", "with OPENAI_API_KEY or OPENAI_BASE_URL set"),
}
"""What each interrupt waits for, and the `resume` options that answer it."""


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = {
        name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name) is not None
    }
    if getattr(args, "workspace", None) is not None:
        settings["workspace"] = str(_directory(args.workspace))
    return settings


def _directory(path: str) -> Path:
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"the workspace {path} is not a directory")
    return folder


def _checkpoint(args: argparse.Namespace, env: Environment) -> Path | str:
    return checkpoint_location(args.checkpoint, env)


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


async def _refuse_existing(graph: PlanexecGraph, thread: Thread) -> None:
    if (await graph.aget_state(_config(thread.id))).created_at is not None:
        raise UserError(
            f"thread {thread.id} already exists in {thread.where}; "
            f"continue it with: {thread.command('resume')}"
        )


def run(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec run GOAL`."""
    goal = " ".join(args.goal).strip()
    context = make_context({"workspace": str(Path.cwd()), **_settings(args)})
    try:
        # Refused here, a goal leaves no thread behind to resume into the same error.
        goal = validate_goal(goal, context)
    except InvalidGoalError as exc:
        raise UserError(
            'the goal is empty: planexec run "<what to achieve>"' if not goal else str(exc)
        ) from exc
    factory = model_factory(env)
    check_models(context, factory)
    path = prepare_checkpoint(_checkpoint(args, env), create=True)
    thread = Thread(args.thread or str(uuid4()), path, env.default_checkpoint)
    reviewer = _reviewer(args, env, out)
    mcp = mcp_servers.from_args(args)
    config = _run_config(thread, context, goal, env, mcp=mcp)

    async def go() -> int:
        async with (
            open_saver(thread.checkpoint, env.checkpoint_key) as saver,
            hold_thread(saver, thread.id, "run"),
            mcp_servers.graph_tools(mcp) as tools,
            open_library(thread.checkpoint, env) as store,
        ):
            graph = build_graph(tools=tools, checkpointer=saver, store=store, model_factory=factory)
            await _refuse_existing(graph, thread)
            await record_thread(graph, config, context, goal)
            out.console.print(f"[bold]thread[/] {inert(thread.id)}")
            return await _execute(graph, config, context, None, reviewer, out, thread)

    return asyncio.run(go())


def resume(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec resume THREAD`: answer a pending decision, or continue an interrupted run."""
    scripted = _scripted(args)
    overrides = _settings(args)
    path = _existing_checkpoint(args, env)
    reviewer = _reviewer(args, env, out, scripted=scripted)

    async def go() -> int:
        async with open_saver(path, env.checkpoint_key) as saver:
            found = await resolve_thread(saver, args.thread, redact(path))
            thread = Thread(found, path, env.default_checkpoint)
            async with (
                hold_thread(saver, thread.id, "resume"),
                open_library(thread.checkpoint, env) as store,
            ):
                return await _resume(
                    args, env, out, saver, store, thread, scripted, reviewer, overrides
                )

    return asyncio.run(go())


async def _resume(
    args: argparse.Namespace,
    env: Environment,
    out: Output,
    saver: AsyncCheckpointer,
    store: BaseStore,
    thread: Thread,
    scripted: Scripted | None,
    reviewer: Reviewer,
    overrides: dict[str, Any],
) -> int:
    factory = model_factory(env)
    graph = build_graph(checkpointer=saver, store=store, model_factory=factory)
    snapshot = await graph.aget_state(_config(thread.id))
    if snapshot.created_at is None:
        raise UserError(f"unknown thread {thread.id} in {thread.where}")
    metadata = snapshot.metadata or {}
    check_seal(metadata, env.checkpoint_key)
    demo = bool(metadata.get(DEMO_KEY))
    context = make_context({**stored_settings(metadata), **overrides})
    goal = str(metadata.get(GOAL_KEY) or snapshot.values.get("goal", ""))
    values = dict(snapshot.values)
    if values.get("status") and not snapshot.next:
        if scripted is not None:
            raise UserError(
                f"thread {thread.id} has finished ({values['status']}): nothing to decide"
            )
        out.console.print(f"thread {inert(thread.id)} has already finished")
        return _finish(values, None, out, thread)
    start: Any = _current_question(snapshot.interrupts[0]) if snapshot.interrupts else None
    if isinstance(start, Interrupt) and _waits_for_a_model(start):
        # A demo choice past its script: the real models the environment names go on.
        demo = False
        start = Command(resume={start.id: {"type": "continue"}})
    elif scripted is not None and start is None:
        raise UserError(f"thread {thread.id} is not paused for a decision")
    out.console.print(f"[bold]resuming thread[/] {inert(thread.id)}")
    mcp = None if demo else mcp_servers.for_resume(args, metadata)
    config = _run_config(thread, context, goal, env, mcp=mcp, demo=demo)
    async with mcp_servers.graph_tools(mcp) as tools:
        # The graph that read the thread runs it, unless it needs other models or tools.
        if demo:
            graph = _demo_graph(saver, load_scenario())
        else:
            check_models(context, factory)
            if tools is not None:
                graph = build_graph(
                    tools=tools, checkpointer=saver, store=store, model_factory=factory
                )
        return await _execute(graph, config, context, start, reviewer, out, thread, seed=values)


def _waits_for_a_model(pending: Interrupt) -> bool:
    return isinstance(pending.value, dict) and pending.value.get("type") == NEEDS_MODEL


def _current_question(pending: Interrupt) -> Interrupt:
    """The pending interrupt without the errors of a decision made earlier, elsewhere.

    They answered another decision (a refused `--edit`, say): shown again now, they would
    read as the verdict on this one.
    """
    if isinstance(pending.value, dict) and "errors" in pending.value:
        value = {k: v for k, v in pending.value.items() if k != "errors"}
        return Interrupt(value=value, id=pending.id)
    return pending


def _existing_checkpoint(args: argparse.Namespace, env: Environment) -> Path | str:
    return existing_checkpoint(args.checkpoint, args.thread, env)


def demo(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec demo`: the bundled scenario, offline, through the real graph."""
    out.console.print(DEMO_BANNER)
    scenario = load_scenario()
    path = prepare_checkpoint(_checkpoint(args, env), create=True)
    thread = Thread(args.thread or str(uuid4()), path, env.default_checkpoint)
    made = args.workspace is None
    if args.workspace:
        workspace = Path(args.workspace).expanduser().resolve()
    else:
        workspace = Path(tempfile.mkdtemp(prefix="planexec-demo-"))
    started = False

    async def go() -> int:
        nonlocal started
        async with (
            open_saver(thread.checkpoint, env.checkpoint_key) as saver,
            hold_thread(saver, thread.id, "demo"),
        ):
            graph = _demo_graph(saver, scenario)
            await _refuse_existing(graph, thread)
            try:
                files = copy_workspace(workspace)
            except OSError as exc:
                raise UserError(f"cannot copy the demo workspace to {workspace}: {exc}") from exc
            settings: dict[str, Any] = {**scenario.context, "workspace": str(workspace)}
            if args.review:
                settings["review"] = args.review
            context = make_context(settings)
            out.console.print(f"workspace:  {inert(workspace)} ({', '.join(files)})")
            out.console.print(f"checkpoint: {inert(thread.where)}")
            out.console.print(f"[bold]thread[/]     {inert(thread.id)}")
            out.console.print(f"\n[bold]goal:[/] {inert(scenario.goal)}")
            if not auto and scenario.hint:
                out.console.print(f"[dim]{inert(scenario.hint)}[/]")
            config = _run_config(thread, context, scenario.goal, env, demo=True)
            started = True
            await record_thread(graph, config, context, scenario.goal)
            return await _execute(graph, config, context, None, reviewer, out, thread)

    auto = args.yes or not env.interactive
    note = "--yes" if args.yes else "automatically: stdin is not a terminal"
    reviewer = _reviewer(args, env, out, auto=auto, auto_note=note)
    try:
        code = asyncio.run(go())
    except ScriptExhaustedError as exc:
        out.console.print(f"[red]{inert(exc)}[/]")
        return 1
    finally:
        if made and not started:  # refused before the run began: leave nothing behind
            shutil.rmtree(workspace, ignore_errors=True)
    report = workspace / "report.md"
    if code == 0 and report.is_file():
        out.console.print(f"\n[bold]{inert(str(report))}[/]:")
        out.console.print(inert(report.read_text(encoding="utf-8")))
    return code


def _run_config(
    thread: Thread,
    context: Context,
    goal: str,
    env: Environment,
    *,
    mcp: mcp_servers.MCPSettings | None = None,
    demo: bool = False,
) -> RunnableConfig:
    """The thread's run config: settings in its metadata, signed last, so that all are."""
    config = thread_config(thread.id, context, goal, demo=demo)
    return seal_config(mcp_servers.with_metadata(config, mcp), env.checkpoint_key)


def _demo_graph(saver: AsyncCheckpointer, scenario: Scenario) -> PlanexecGraph:
    models = scenario.models()
    return build_graph(
        checkpointer=saver,
        planner=models["planner"],
        executor=models["executor"],
        replanner=models["replanner"],
    )


def _scripted(args: argparse.Namespace) -> Scripted | None:
    if args.approve:
        return Scripted("approve")
    if args.reject is not None:
        if not args.reject.strip():
            raise UserError("--reject needs a message saying what to change")
        return Scripted("reject", message=args.reject.strip())
    if args.edit is not None:
        return Scripted("edit", edited=read_edit_file(args.edit))
    if args.message is not None and not (args.cancel or args.skip):
        raise UserError("--message goes with --skip or --cancel")
    if args.cancel:
        return Scripted("cancel", message=(args.message or "").strip() or None)
    if getattr(args, "rerun", False):
        return Scripted("rerun")
    if getattr(args, "mark_done", None) is not None:
        return Scripted("done", edited=parse_output(args.mark_done))
    if getattr(args, "skip", False):
        return Scripted("skip", message=(args.message or "").strip() or None)
    return None


def _reviewer(
    args: argparse.Namespace,
    env: Environment,
    out: Output,
    *,
    scripted: Scripted | None = None,
    auto: bool | None = None,
    auto_note: str = "--yes",
) -> Reviewer:
    return Reviewer(
        out.console,
        auto=args.yes if auto is None else auto,
        interactive=env.interactive,
        editor=env.editor,
        scripted=scripted,
        auto_note=auto_note,
    )


async def _execute(
    graph: PlanexecGraph,
    config: RunnableConfig,
    context: Context,
    start: Any,
    reviewer: Reviewer,
    out: Output,
    thread: Thread,
    *,
    seed: Mapping[str, Any] | None = None,
) -> int:
    """Drive the run to its end or a pause; `seed` is the state of a thread resumed."""
    view = ProgressView(out.console, show_plans=context.review == "never")
    if seed:
        view.seed(seed)
    try:
        with view:
            decide = view.decide(reviewer)
            outcome = await drive(graph, config, context, start, decide, view.handle, view.update)
    except (KeyboardInterrupt, asyncio.CancelledError):
        out.console.print(
            f"\ninterrupted: the thread is saved. Continue it with: "
            f"[bold]{inert(thread.command('resume'))}[/]"
        )
        raise
    except (PlanexecError, ScriptExhaustedError, sqlite3.DatabaseError):
        raise
    except Exception as exc:
        # A bug or an outage: keep the traceback, but say that nothing finished is lost.
        out.console.print(
            f"\n[red]the run stopped on an unexpected error[/] ({inert(type(exc).__name__)}); "
            f"finished steps are saved. Continue with: {inert(thread.command('resume'))}"
        )
        raise
    return _finish(outcome.values, outcome.paused, out, thread)


def _finish(
    values: dict[str, Any], paused: dict[str, Any] | None, out: Output, thread: Thread
) -> int:
    if paused is not None:
        what, options = PAUSES.get(str(paused.get("type")), PAUSES["step_approval"])
        out.console.print(
            f"\npaused for {what}; resume with: [bold]{inert(thread.command('resume'))}[/] "
            f"\\[{options}]"
        )
    else:
        show_outcome(out.console, values, thread.command("show"))
    if out.json_mode:
        document = {
            "thread_id": thread.id,
            "checkpoint": thread.where,
            "status": values.get("status"),
            "answer": values.get("answer"),
            "reason": values.get("reason"),
            "paused": paused.get("type") if paused else None,
            "interrupt": paused,
            "usage": values.get("usage") or {},
            "results": values.get("results") or {},
        }
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    if paused is not None:
        return 0
    return 0 if values.get("status") == "completed" else 1
