"""`planexec show`: a thread's story from its latest checkpoint.

A SQLite file is read directly (`planexec.cli.latest`), without building the graph or
importing LangGraph; a PostgreSQL database, and a state that reader does not read
exactly, are read through the graph's `get_state`. Both give the same output
(`tests/test_cli_show.py`).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from planexec.cli.environment import Environment, Output, UserError
from planexec.cli.latest import Decoder, Unsupported, read_latest, reading, resolve
from planexec.cli.opening import DEMO_KEY, Thread, existing_checkpoint, stored_settings
from planexec.cli.render import (
    STATUS_STYLE,
    changes_text,
    plan_table,
    plural,
    result_text,
    usage_table,
    when,
)
from planexec.cli.threads import LABELS, thread_status
from planexec.inert import inert, inert_data
from planexec.inflight import in_flight_results
from planexec.locations import redact
from planexec.pictures import plan_tree

if TYPE_CHECKING:
    from rich.console import Console

SHOWN_FIELDS = (
    "goal",
    "answer",
    "reason",
    "plan",
    "results",
    "revisions",
    "reviews",
    "approvals",
    "usage",
)
"""The state `show --json` prints, besides the thread's status and pending question."""


@dataclass(frozen=True)
class ThreadView:
    """What `show` prints of a thread: its latest state, as `get_state` reports it."""

    thread_id: str
    values: dict[str, Any]
    metadata: Mapping[str, Any]
    created_at: str | None
    next: tuple[str, ...]
    interrupts: Sequence[Any]
    """Pending interrupts: each has a `value` and an `id`."""
    unsaved: dict[str, Any] = field(default_factory=dict)
    """Results of steps that finished in an executor pass that was stopped."""


def read_directly(path: Path, given: str, key: str | None) -> ThreadView | None:
    """The thread `given` names in the SQLite file at `path`, read without LangGraph.

    None when the reader does not read this file or state exactly (`planexec.cli.latest`),
    or the file has a problem: then `read_through_graph` reads it, and words the problem.
    """
    try:
        with reading(path) as conn:
            found = resolve(conn, given, redact(path))
            latest = read_latest(conn, found, Decoder(key))
    except (Unsupported, sqlite3.DatabaseError):
        return None
    if latest is None:
        return None
    unsaved = in_flight_results(latest.pending_writes) if "executor" in latest.next else {}
    return ThreadView(
        latest.thread_id,
        latest.values,
        latest.metadata,
        latest.created_at,
        latest.next,
        latest.interrupts,
        dict(unsaved),
    )


def read_through_graph(location: Path | str, given: str, key: str | None) -> ThreadView:
    """The thread `given` names at `location`, read with the compiled graph's `get_state`."""
    import asyncio

    from langgraph.checkpoint.base import BaseCheckpointSaver

    from planexec.cli.opening import open_saver
    from planexec.cli.threads import resolve_thread
    from planexec.graph import build_graph

    async def read() -> ThreadView:
        async with open_saver(location, key, read_only=True) as saver:
            found = await resolve_thread(saver, given, redact(location))
            graph = build_graph(checkpointer=saver)
            config: Any = {"configurable": {"thread_id": found}}
            snapshot = await graph.aget_state(config)
            unsaved: dict[str, Any] = {}
            if "executor" in snapshot.next and isinstance(graph.checkpointer, BaseCheckpointSaver):
                saved = await graph.checkpointer.aget_tuple(config)
                unsaved = dict(in_flight_results(saved.pending_writes or ())) if saved else {}
            return ThreadView(
                found,
                dict(snapshot.values),
                snapshot.metadata or {},
                snapshot.created_at,
                tuple(snapshot.next),
                snapshot.interrupts,
                unsaved,
            )

    return asyncio.run(read())


def show(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec show THREAD`."""
    path = existing_checkpoint(args.checkpoint, args.thread, env)
    view = read_directly(path, args.thread, env.checkpoint_key) if isinstance(path, Path) else None
    if view is None:
        view = read_through_graph(path, args.thread, env.checkpoint_key)
    return print_view(view, Thread(view.thread_id, path, env.default_checkpoint), out)


def print_view(view: ThreadView, thread: Thread, out: Output) -> int:
    """Print `view` as `planexec show` does, for people or (`--json`) as one document."""
    if view.created_at is None:
        raise UserError(f"unknown thread {thread.id} in {thread.where}")
    values = dict(view.values)
    # Steps that finished in a pass that was stopped: saved, and not run again on resume.
    values["results"] = {**view.unsaved, **(values.get("results") or {})}
    status = thread_status(values, view.interrupts, view.next)
    pending = view.interrupts[0].value if view.interrupts else None
    if out.json_mode:
        document = {
            "thread_id": thread.id,
            "checkpoint": thread.where,
            "status": status,
            "updated_at": view.created_at,
            "paused": pending.get("type") if isinstance(pending, dict) else None,
            "interrupt": pending,
            **{name: values.get(name) for name in SHOWN_FIELDS},
        }
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        return 0
    metadata = view.metadata
    state = where_it_stands(values, view.interrupts, view.next)
    show_thread(
        out.console,
        thread.id,
        values,
        stored_settings(metadata),
        state,
        demo=bool(metadata.get(DEMO_KEY)),
    )
    if view.unsaved:
        out.console.print(
            f"{plural(len(view.unsaved), 'step')} finished before the run stopped "
            f"({inert(', '.join(view.unsaved))}): saved, and not run again on resume"
        )
    if not values.get("status"):
        out.console.print(f"continue it with: [bold]{inert(thread.command('resume'))}[/]")
    return 0


_PAUSED = {
    "awaiting_approval": "paused for step approval",
    "uncertain_step": "paused for a decision on an uncertain step",
    "awaiting_model": "paused where the demo's script ends: resume it with a real model",
}


def where_it_stands(values: Mapping[str, Any], interrupts: Sequence[Any], next_nodes: Any) -> str:
    """The thread's status in words: how it ended, or why it is not finished."""
    status = thread_status(values, interrupts, next_nodes)
    if status == "paused_for_review":
        request = interrupts[0].value
        revision = request.get("revision") if isinstance(request, dict) else "?"
        return f"paused for plan review (revision {revision})"
    if status == "interrupted":
        return f"interrupted before {', '.join(next_nodes)} (resume to continue)"
    return _PAUSED.get(status) or LABELS.get(status, status)


def show_thread(
    console: Console,
    thread_id: str,
    values: Mapping[str, Any],
    settings: Mapping[str, Any],
    state: str,
    *,
    demo: bool,
) -> None:
    """Goal, status, plan with results, revision history, reviews and model use."""
    style = STATUS_STYLE.get(str(values.get("status")), "bold")
    console.print(f"[bold]thread[/] {inert(thread_id)}")
    console.print(f"[bold]goal:[/] {inert(str(values.get('goal', '')))}")
    console.print(f"[bold]status:[/] [{style}]{inert(state)}[/]")
    if demo:
        console.print("[bold]models:[/] scripted replies (planexec demo)")
    elif settings:
        replanner = settings.get("replanner_model") or settings.get("planner_model")
        console.print(
            f"[bold]models:[/] planner {inert(str(settings.get('planner_model')))}, "
            f"executor {inert(str(settings.get('executor_model')))}, "
            f"replanner {inert(str(replanner))}"
        )
    if settings:
        console.print(
            f"[bold]review:[/] {inert(str(settings.get('review')))}   "
            f"[bold]workspace:[/] {inert(str(settings.get('workspace')))}"
        )
    results: Mapping[str, Any] = values.get("results") or {}
    plan = values.get("plan")
    if plan:
        revisions = values.get("revisions") or []
        number = revisions[-1]["revision"] if revisions else "?"
        console.print()
        console.print(plan_table(plan, results=results, title=f"plan (revision {number})"))
        waiting = values.get("awaiting_approval") or ()
        # The tree prints the plan's text as it is: give it the text made visible.
        tree = plan_tree(
            inert_data(plan), inert_data(results), active=inert_data(waiting), title="dependencies"
        )
        console.print(tree)
        _earlier_steps(console, plan, results)
    _revisions(console, values.get("revisions") or [])
    _reviews(console, values.get("reviews") or [])
    console.print()
    if values.get("answer"):
        console.print("[bold]answer:[/]")
        console.print(inert(str(values["answer"])))
    if values.get("reason"):
        console.print(f"[bold]reason:[/] {inert(str(values['reason']))}")
    if values.get("usage"):
        console.print(usage_table(values["usage"]))


def _earlier_steps(console: Console, plan: Mapping[str, Any], results: Mapping[str, Any]) -> None:
    current = {step["id"] for step in plan.get("steps", [])}
    earlier = [(step_id, r) for step_id, r in results.items() if step_id not in current]
    if not earlier:
        return
    table = Table(title="steps of earlier revisions", title_justify="left")
    for name in ("id", "tool", "revision", "status", "result or error"):
        table.add_column(name)
    for step_id, result in earlier:
        table.add_row(
            inert(step_id),
            inert(str(result.get("tool") or "(model)")),
            str(result.get("revision", "")),
            inert(str(result["status"])),
            inert(result_text(result)),
        )
    console.print(table)


def _revisions(console: Console, revisions: Sequence[Mapping[str, Any]]) -> None:
    if not revisions:
        return
    table = Table(title="plan revisions", title_justify="left")
    for name in ("revision", "source", "reason", "changes", "at"):
        table.add_column(name)
    for revision in revisions:
        diff = revision.get("diff")
        changes = "first plan" if revision["revision"] == 1 else changes_text(diff)
        table.add_row(
            str(revision["revision"]),
            inert(str(revision["source"])),
            inert(str(revision.get("reason") or "")),
            inert(changes),
            when(revision.get("at")),
        )
    console.print(table)


def _reviews(console: Console, reviews: Sequence[Mapping[str, Any]]) -> None:
    if not reviews:
        return
    table = Table(title="review decisions", title_justify="left")
    for name in ("revision", "decision", "message", "at"):
        table.add_column(name)
    for review in reviews:
        table.add_row(
            str(review["revision"]),
            inert(str(review["decision"])),
            inert(str(review.get("message") or "")),
            when(review.get("at")),
        )
    console.print(table)
