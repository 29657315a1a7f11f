"""How the command line shows plans, progress, results and threads (with rich).

Everything shown that did not come from planexec itself goes through
`planexec.inert` first.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from planexec.inert import inert
from planexec.pictures import short

SYMBOLS = {"done": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]○[/]"}
STATUS_STYLE = {
    "completed": "bold green",
    "failed": "bold red",
    "cancelled": "bold yellow",
    "budget_exhausted": "bold red",
}


def result_text(result: Mapping[str, Any], limit: int = 100) -> str:
    """A step result in one line: its output if it is done, else its error."""
    body = result.get("output") if result.get("status") == "done" else result.get("error")
    return short(body, limit)


def plural(count: object, noun: str) -> str:
    """`count` and `noun`, plural unless the count is one: 1 step, 2 steps."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _args_text(step: Mapping[str, Any], limit: int) -> str:
    if step["tool"] is None:
        return "—"
    if step["args"] is None:
        return "(the executor chooses)"
    return short(json.dumps(step["args"], ensure_ascii=False), limit)


def plan_table(
    plan: Mapping[str, Any],
    *,
    finished: Collection[str] = (),
    results: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> Table:
    """The plan as a table: id, description, tool, args, depends on (and status/result)."""
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    table.add_column("id", style="bold", no_wrap=True)
    table.add_column("description", ratio=3)
    table.add_column("tool", no_wrap=True)
    table.add_column("args", ratio=2)
    table.add_column("depends on")
    if results is not None:
        table.add_column("status", no_wrap=True)
        table.add_column("result", ratio=2)
    compact = results is not None
    for step in plan.get("steps", []):
        row = [
            inert(step["id"]),
            inert(short(step["description"], 90) if compact else step["description"]),
            inert(step["tool"] or "(model)"),
            inert(_args_text(step, 60 if compact else 120)),
            inert(", ".join(map(str, step["depends_on"])) or "—"),
        ]
        if results is not None:
            row.extend(_status_cells(results.get(step["id"])))
        elif step["id"] in finished:
            row[0] += " [green]✓[/]"
        table.add_row(*row)
    return table


def _status_cells(result: Mapping[str, Any] | None) -> list[str]:
    if result is None:
        return ["[dim]pending[/]", ""]
    status = str(result["status"])
    return [f"{SYMBOLS.get(status, '')} {inert(status)}", inert(result_text(result))]


def changes_text(diff: Mapping[str, list[str]] | None) -> str:
    """A plan diff in words: "added s10, s11; removed s7"."""
    if not diff:
        return ""
    parts = [
        f"{kind} {', '.join(map(str, diff[kind]))}"
        for kind in ("added", "removed", "changed")
        if diff.get(kind)
    ]
    return "; ".join(parts) or "no change"


def show_review(console: Console, request: Mapping[str, Any]) -> None:
    """A plan-review interrupt: the plan, its revision, what changed, any errors."""
    revision = request.get("revision")
    source = request.get("source") or "planner"
    console.print()
    console.print(
        f"[bold]Plan revision {revision}[/] from the {inert(str(source))}"
        + (f": {inert(str(request['reason']))}" if request.get("reason") else "")
    )
    if isinstance(request.get("library"), Mapping):
        from planexec.library import describe_source  # here: `threads` draws no reviews

        console.print(inert(describe_source(request["library"])))
    console.print(plan_table(request["plan"], finished=request.get("finished") or ()))
    if request.get("changes"):
        console.print(f"changes: {inert(changes_text(request['changes']))}")
    if request.get("finished"):
        done = ", ".join(map(str, request["finished"]))
        console.print(f"already done (kept as they ran): {inert(done)}")
    show_errors(console, request.get("errors"))


def show_errors(console: Console, errors: Any) -> None:
    """Errors the graph gave back for the last decision, one per line."""
    if errors:
        console.print("[bold red]The decision was not accepted:[/]")
        for error in errors:
            console.print(f"  [red]•[/] {inert(error)}")


def show_approval(console: Console, request: Mapping[str, Any]) -> None:
    """A step-approval interrupt: the tool calls that wait for a person."""
    console.print()
    console.print("[bold]Steps waiting for your approval[/] before they call their tool:")
    table = Table(show_lines=False)
    table.add_column("#", no_wrap=True)
    table.add_column("step", style="bold", no_wrap=True)
    table.add_column("tool", no_wrap=True)
    table.add_column("args", ratio=2)
    table.add_column("description", ratio=2)
    steps = request.get("steps") or []
    for index, action in enumerate(request.get("action_requests") or []):
        table.add_row(
            str(index + 1),
            inert(steps[index] if index < len(steps) else "?"),
            inert(str(action.get("name"))),
            inert(short(json.dumps(action.get("args"), ensure_ascii=False), 200)),
            inert(str(action.get("description", ""))),
        )
    console.print(table)
    show_errors(console, request.get("errors"))


def show_step(console: Console, step: Mapping[str, Any], result: Mapping[str, Any] | None) -> None:
    """One step in full, nothing cut: what `[v]iew` shows at a review or approval."""
    console.print(f"[bold]step {inert(step.get('id'))}[/]")
    console.print(f"  description: {inert(step.get('description'), multiline=True)}")
    console.print(f"  tool: {inert(step.get('tool') or '(the executor model answers in text)')}")
    depends = ", ".join(map(str, step.get("depends_on") or ())) or "nothing"
    console.print(f"  depends on: {inert(depends)}")
    show_arguments(console, step.get("args"), label="args")
    if result is not None:
        console.print(f"  result ({inert(result.get('status'))}): {inert(result_text(result))}")


def show_arguments(console: Console, args: Any, *, label: str) -> None:
    """Arguments in full, as indented JSON; a string's lines are shown as lines."""
    if args is None:
        console.print(f"  {label}: (the executor model chooses them)")
        return
    console.print(f"  {label}:")
    items = args.items() if isinstance(args, Mapping) else [("", args)]
    for name, value in items:
        if isinstance(value, str) and "\n" in value:
            lines = value.split("\n")
            console.print(f"    {inert(name)}: (text, {plural(len(lines), 'line')})")
            for line in lines:
                console.print(f"      │ {inert(line)}", soft_wrap=True)
        else:
            text = json.dumps(value, ensure_ascii=False, indent=2)
            console.print(f"    {inert(name)}: {inert(text, multiline=True)}", soft_wrap=True)


def when(at: Any) -> str:
    """A recorded UTC timestamp, to the second."""
    text = str(at or "")
    return inert(f"{text[:19].replace('T', ' ')} UTC" if len(text) >= 19 else text)


class EventView:
    """Prints the graph's progress events as steps start and finish.

    With `show_plans` (when plans are not reviewed), each new plan is printed whole.
    """

    def __init__(self, console: Console, *, show_plans: bool = False) -> None:
        self.console = console
        self.show_plans = show_plans
        self.tools: dict[str, str] = {}

    def update(self, node: str, update: Mapping[str, Any]) -> None:
        """A node's state update: prints the plan it made, if plans are shown."""
        if self.show_plans and node in ("planner", "replanner") and update.get("plan"):
            self.console.print(plan_table(update["plan"]))

    def handle(self, event: Mapping[str, Any]) -> None:
        """Print one event from the custom stream."""
        kind = event.get("event")
        if kind == "step_started":
            tool = str(event.get("tool") or "(model)")
            self.tools[str(event.get("step"))] = tool
            self.console.print(
                f"  [cyan]▶[/] {inert(str(event.get('step'))):<5} {inert(tool):<12} started"
            )
        elif kind == "step_finished":
            self._finished(event)
        elif kind == "budget_warning" or self.show_plans:
            # A reviewed plan is announced by its review, with its reason.
            for line in announcement(event):
                self.console.print(line)

    def _finished(self, event: Mapping[str, Any]) -> None:
        step = str(event.get("step"))
        status = str(event.get("status"))
        tool = self.tools.get(step, "")
        line = f"  {SYMBOLS.get(status, '?')} {inert(step):<5} {inert(tool):<12} {inert(status):<8}"
        if event.get("duration_s") is not None and status != "skipped":
            line += f" {float(event['duration_s']):.2f}s"
        if (event.get("attempts") or 0) > 1:
            line += f" ({inert(event['attempts'])} attempts)"
        if event.get("tokens"):
            line += f" · {inert(plural(event['tokens'], 'token'))}"
        if event.get("error"):
            line += f"  [red]{inert(short(event['error'], 160))}[/]"
        self.console.print(line)


def announcement(event: Mapping[str, Any]) -> list[str]:
    """Lines (rich markup) that tell a person about a plan, a replan or a budget warning."""
    kind = event.get("event")
    if kind == "plan_ready":
        return [
            f"[bold]●[/] plan revision {inert(event.get('revision'))} from the "
            f"{inert(event.get('source'))}: {inert(plural(event.get('steps'), 'step'))}"
        ]
    if kind == "replan":
        lines = [
            f"[bold]↻[/] the replanner revised the plan → revision "
            f"{inert(event.get('revision'))}: {inert(event.get('reason'))}"
        ]
        changes = changes_text(event.get("diff"))
        return [*lines, f"  changes: {inert(changes)}"] if changes else lines
    if kind == "budget_warning":
        return [
            f"[yellow]⚠ budget {inert(str(event.get('budget')))} at "
            f"{float(event.get('fraction') or 0):.0%}: {event.get('used'):,.4g} of "
            f"{event.get('limit'):,.4g}[/]"
        ]
    return []


def usage_table(usage: Mapping[str, Mapping[str, Any]]) -> Table:
    """Model calls, tokens and cost per role."""
    table = Table(title="model use", title_justify="left")
    for name in ("role", "calls", "input tokens", "output tokens", "cost (USD)"):
        table.add_column(name, justify="left" if name == "role" else "right")
    for role in ("planner", "executor", "replanner"):
        if role in usage:
            u = usage[role]
            table.add_row(
                role,
                _number(u.get("calls"), "{:,}"),
                _number(u.get("input_tokens"), "{:,}"),
                _number(u.get("output_tokens"), "{:,}"),
                _number(u.get("cost_usd"), "{:.4f}"),
            )
    return table


def _number(value: Any, form: str) -> str:
    """A number from a checkpoint, formatted; anything else shown as it is, inert."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return form.format(value)
    return inert(value)


def direct_answer(values: Mapping[str, Any]) -> bool:
    """Whether the planner answered at once: a completed run whose plan has no steps."""
    plan = values.get("plan") or {}
    return values.get("status") == "completed" and not plan.get("steps")


def show_outcome(console: Console, values: Mapping[str, Any], show_hint: str) -> None:
    """The end of a run: status, answer or reason, model use, and where to look further."""
    status = values.get("status") or "unknown"
    console.print()
    console.print(f"status: [{STATUS_STYLE.get(status, 'bold')}]{inert(status)}[/]")
    if direct_answer(values):
        console.print(
            "[yellow]answered directly by the planner: no plan, so nobody reviewed this "
            "answer and no step ran[/] (--review does not apply; Context.direct_answers=False "
            "makes every goal a reviewed plan)"
        )
    if values.get("answer"):
        console.print("[bold]answer:[/]")
        console.print(inert(values["answer"], multiline=True))
    if values.get("reason") and (status != "completed" or not values.get("answer")):
        console.print(f"reason: {inert(values['reason'])}")
    if values.get("usage"):
        console.print(usage_table(values["usage"]))
    console.print(f"details: [bold]{inert(show_hint)}[/]")
