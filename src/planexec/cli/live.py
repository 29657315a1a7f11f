"""Progress of `run` and `resume`, from the graph's stream.

On a terminal, the plan's steps are a table redrawn in place (rich `Live`): each
step's status (pending, running with its elapsed time, done, failed, skipped, waiting
for approval), its duration, attempts, and its result or error. Elsewhere (a pipe, a
file, CI), `EventView` prints one line per event, as before.

The live table stops whenever the run asks a person something, so that the question
reads normally, and starts again when steps run; it is left on screen when it stops.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from planexec.cli.render import EventView, announcement, result_text
from planexec.cli.session import Decide
from planexec.inert import inert, visible
from planexec.pictures import short


@dataclass
class _Row:
    """What the table shows about one step."""

    tool: str
    status: str = "pending"
    started: float | None = None
    duration_s: float | None = None
    attempts: int | None = None
    detail: str = ""
    """The result of a done step, or why a step failed or was skipped."""


class ProgressView:
    """Shows a run's progress: a live table on a terminal, event lines elsewhere.

    `handle` takes the custom stream's events and `update` the nodes' state updates,
    as `session.drive` gives them; `decide` wraps the reviewer so that the table stops
    before a question; `stop` ends the display.
    """

    def __init__(
        self, console: Console, *, show_plans: bool = False, live: bool | None = None
    ) -> None:
        self.console = console
        self.lines = EventView(console, show_plans=show_plans)
        self.live = console.is_terminal if live is None else live
        self.show_plans = show_plans
        self.revision: int | None = None
        self.order: list[str] = []
        self.rows: dict[str, _Row] = {}
        self._display: Live | None = None

    def seed(self, values: Mapping[str, Any]) -> None:
        """Start from a thread's state: its plan and the results it already has."""
        plan = values.get("plan")
        if plan:
            self._set_plan(plan, values.get("results") or {})
        revisions = values.get("revisions") or []
        if revisions:
            self.revision = revisions[-1]["revision"]

    def update(self, node: str, update: Mapping[str, Any]) -> None:
        """A node's state update: a new plan, or the results of finished steps."""
        if not self.live or self._display is None:
            # Plans are printed whole when nobody reviews them (the table shows no args).
            self.lines.update(node, update)
        if not self.live:
            return
        if update.get("plan"):
            self._set_plan(update["plan"], {})
        for step_id, result in (update.get("results") or {}).items():
            row = self.rows.get(step_id)
            if row is not None:
                row.detail = result_text(result)

    def handle(self, event: Mapping[str, Any]) -> None:
        """One progress event from the custom stream."""
        if not self.live:
            self.lines.handle(event)
            return
        kind = event.get("event")
        if kind in ("plan_ready", "replan", "budget_warning"):
            if kind == "replan":
                self.stop()
            if kind != "budget_warning":
                self.revision = event.get("revision")
            if kind == "budget_warning" or self.show_plans:
                # A reviewed plan is announced by its review, with its reason.
                for line in announcement(event):
                    self.console.print(line)
        elif kind == "step_started":
            row = self._row(str(event.get("step")), event.get("tool"))
            row.status, row.started = "running", time.monotonic()
            self._show()
        elif kind == "step_finished":
            row = self._row(str(event.get("step")), None)
            row.status = str(event.get("status"))
            row.duration_s = event.get("duration_s")
            row.attempts = event.get("attempts")
            if event.get("error"):
                row.detail = short(event["error"], 100)
            self._show()
        elif kind == "approval_requested":
            for step_id in event.get("steps") or []:
                self._row(str(step_id), None).status = "approval"
            self._show()

    def decide(self, reviewer: Decide) -> Decide:
        """`reviewer`, called with the live table stopped."""

        def ask(request: dict[str, Any]) -> Any:
            self.stop()
            return reviewer(request)

        return ask

    def __enter__(self) -> ProgressView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop redrawing; the table stays on screen as it last was."""
        if self._display is not None:
            self._display.stop()
            self._display = None

    def _set_plan(self, plan: Mapping[str, Any], results: Mapping[str, Any]) -> None:
        self.order = [step["id"] for step in plan.get("steps", [])]
        old, self.rows = self.rows, {}
        for step in plan.get("steps", []):
            row = old.get(step["id"]) or _Row(tool=step["tool"] or "(model)")
            result = results.get(step["id"])
            if result is not None:
                row.status = result["status"]
                row.duration_s = result.get("duration_s")
                row.attempts = result.get("attempts")
                row.detail = result_text(result)
            self.rows[step["id"]] = row

    def _row(self, step_id: str, tool: Any) -> _Row:
        if step_id not in self.rows:
            self.rows[step_id] = _Row(tool=str(tool or "(model)"))
            self.order.append(step_id)
        return self.rows[step_id]

    def _show(self) -> None:
        if self._display is None:
            self._display = Live(
                console=self.console,
                get_renderable=self._render,
                refresh_per_second=8,
                transient=False,
            )
            self._display.start()
        self._display.refresh()

    def _render(self) -> RenderableType:
        done = sum(1 for row in self.rows.values() if row.status == "done")
        title = f"plan revision {self.revision}" if self.revision is not None else "plan"
        table = Table(
            title=f"{title} · {done}/{len(self.rows)} done", title_justify="left", expand=False
        )
        rows = [(visible(step_id), self.rows[step_id]) for step_id in self.order]
        statuses = [_status(row) for _, row in rows]
        times = [_time(row) for _, row in rows]
        widths = _widths(
            self.console.width,
            step=max((len(i) for i, _ in rows), default=4),
            tool=max((len(visible(row.tool)) for _, row in rows), default=4),
            status=max((w for _, w in statuses), default=6),
            time=max(map(len, times), default=4),
        )
        for name, width in zip(("step", "tool", "status", "time", "result"), widths, strict=True):
            table.add_column(
                name,
                width=width,
                no_wrap=True,
                overflow="ellipsis",
                justify="right" if name == "time" else "left",
                style="bold" if name == "step" else None,
            )
        for (step_id, row), (status, _), at in zip(rows, statuses, times, strict=True):
            table.add_row(inert(step_id), inert(row.tool), status, at, inert(row.detail))
        return Group(table)


_MARKS = {"done": ("✓", "green"), "failed": ("✗", "red"), "skipped": ("○", "yellow")}


def _status(row: _Row) -> tuple[RenderableType, int]:
    """The status cell, and how many columns it takes."""
    if row.status == "running":
        return Spinner("dots", text=Text("running", style="cyan"), style="cyan"), 9
    if row.status == "approval":
        text = Text("⏸ awaiting approval", style="yellow")
    elif row.status == "pending":
        text = Text("· pending", style="dim")
    else:
        mark, style = _MARKS.get(row.status, ("?", "bold"))
        text = Text.assemble((mark, style), " ", visible(row.status))
        if (row.attempts or 0) > 1:
            text.append(f" ({visible(row.attempts)} attempts)")
    return text, text.cell_len


_BORDERS = 16
"""Columns a five-column table spends on its borders and cell padding."""


def _widths(total: int, *, step: int, tool: int, status: int, time: int) -> list[int]:
    """Column widths that fit `total`: step, status and time in full.

    The result gives way first, then the tool.
    """
    step, status, time = max(step, 4), max(status, 6), max(time, 4)
    tool = min(max(tool, 4), 24)
    room = total - _BORDERS - step - status - time
    result = min(room - tool, 100)
    if result < 12:  # too narrow: the tool column shrinks before the result vanishes
        tool = max(4, min(tool, room - 12))
        result = max(room - tool, 1)
    return [step, tool, status, time, result]


def _time(row: _Row) -> str:
    if row.status == "running" and row.started is not None:
        return f"{time.monotonic() - row.started:.1f}s"
    if row.duration_s is not None and row.status != "skipped":
        return f"{float(row.duration_s):.2f}s"
    return ""
