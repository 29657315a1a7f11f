"""`planexec show`: a thread's story from its latest checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from planexec.cli.render import (
    STATUS_STYLE,
    changes_text,
    plan_table,
    result_text,
    usage_table,
    when,
)
from planexec.cli.threads import LABELS, thread_status
from planexec.inert import inert, inert_data
from planexec.pictures import plan_tree

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
