"""Answering the graph's interrupts: plan reviews and step approvals.

A decision comes from one of three places, in this order: a scripted answer given on
the command line (`resume --approve | --reject MSG | --edit FILE | --cancel`, used for
the first interrupt only), `--yes` (approve everything), or a person at the terminal.
With none of them the run stays paused in its checkpoint.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import shlex
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from planexec.cli.environment import UserError
from planexec.cli.render import show_approval, show_arguments, show_review, show_step
from planexec.inert import inert, visible
from planexec.interrupts import (
    NEEDS_MODEL,
    UNCERTAIN_DECISIONS,
    ReviewDecisionType,
    UncertainDecisionType,
)

ScriptedKind = ReviewDecisionType | UncertainDecisionType
UNCERTAIN_KINDS = UNCERTAIN_DECISIONS
"""The scripted decisions that answer an uncertain step, and nothing else."""


@dataclass(frozen=True)
class Scripted:
    """A decision given on the command line."""

    kind: ScriptedKind
    message: str | None = None
    edited: Any = None
    """The parsed JSON of `--edit FILE`, or the output given with `--mark-done`."""


def parse_output(text: str) -> Any:
    """The output given with `--mark-done`: JSON if it parses as JSON, else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_edit_file(path: str) -> Any:
    """The JSON in an `--edit` file, or a one-line `UserError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: line {exc.lineno}: {exc.msg}") from exc


class Reviewer:
    """Decides on interrupts; returns None to leave the run paused."""

    def __init__(
        self,
        console: Console,
        *,
        auto: bool,
        interactive: bool,
        editor: str,
        scripted: Scripted | None = None,
        auto_note: str = "--yes",
    ) -> None:
        self.console = console
        self.auto = auto
        self.auto_note = auto_note
        self.interactive = interactive
        self.editor = editor
        self.scripted = scripted
        self._scripted_used = False
        self._answered_by_script = False
        self._input = console.input
        self._drafts: dict[str, str] = {}
        """Text to reopen the editor with, by what is edited: an edit that was refused."""
        self._sent_edit: tuple[Any, str] | None = None
        """The plan hash and text of the last plan edit sent, until the graph answers."""

    def __call__(self, request: dict[str, Any]) -> Any:
        """The resume value for the interrupt `request`, or None to pause."""
        kind = request.get("type")
        if kind == "plan_review":
            show_review(self.console, request)
        elif kind == "step_approval":
            show_approval(self.console, request)
        elif kind == "uncertain_step":
            show_uncertain(self.console, request)
        elif kind == NEEDS_MODEL:
            # Nothing to decide: the run waits for a real model (`resume` brings one).
            self.console.print(f"[yellow]{inert(request.get('message', ''))}[/]")
            return None
        else:
            raise UserError(f"the run is paused at an interrupt planexec does not know: {kind!r}")
        answered_by_script, self._answered_by_script = self._answered_by_script, False
        if request.get("errors") and answered_by_script:
            raise UserError(
                "the graph refused the decision given on the command line: "
                + "; ".join(str(e) for e in request["errors"])
            )
        if self.scripted is not None and not self._scripted_used:
            self._scripted_used = self._answered_by_script = True
            return _decision(request, self.scripted)
        if self.auto and kind != "uncertain_step":
            self.console.print(f"[green]approved[/] ({inert(self.auto_note)})")
            return _decision(request, _APPROVE)
        if not self.interactive:
            return None
        self._keep_refused_edit(request)
        try:
            if kind == "plan_review":
                return self._ask_review(request)
            if kind == "uncertain_step":
                return self._ask_uncertain(request)
            return self._ask_approval(request)
        except EOFError:
            self.console.print()
            return None

    def _keep_refused_edit(self, request: dict[str, Any]) -> None:
        """After the graph refused a plan edit, the editor reopens with that edit."""
        sent, self._sent_edit = self._sent_edit, None
        self._drafts.pop("plan", None)
        if sent is None or not request.get("errors") or request.get("type") != "plan_review":
            return
        if sent[0] == request.get("plan_hash"):
            self._drafts["plan"] = sent[1]
            self.console.print(
                "[yellow]Your edit was not run.[/] Choose [bold]e[/] to fix it (the editor "
                "opens with your version), [bold]a[/] to approve the plan shown instead, "
                "[bold]r[/] to reject it, or [bold]c[/] to cancel."
            )

    def _read_line(self, prompt: str) -> str:
        """A line typed at the terminal; Ctrl-C leaves at once (`KeyboardInterrupt`).

        The event loop's own handler would only cancel the run once the line was typed.
        """
        with _ctrl_c(signal.default_int_handler):
            return self._input(prompt)

    def _ask_review(self, request: dict[str, Any]) -> dict[str, Any]:
        while True:
            choice = self._choose("[a]pprove / [v]iew / [e]dit / [r]eject / [c]ancel", "averc")
            if choice == "a":
                return _review_decision(request, _APPROVE)
            if choice == "v":
                self._view_steps(request["plan"])
            elif choice == "c":
                reason = self._read_line("reason (optional): ").strip()
                return _review_decision(request, Scripted("cancel", message=reason or None))
            elif choice == "r":
                message = self._ask_text("what should change in the plan? ")
                return _review_decision(request, Scripted("reject", message=message))
            else:
                edited = self._edit_confirmed(request["plan"], "plan", _as_plan)
                if edited is not None:
                    self._sent_edit = (request.get("plan_hash"), _json_text(edited))
                    return _review_decision(request, Scripted("edit", edited=edited))

    def _view_steps(self, plan: dict[str, Any]) -> None:
        steps = plan.get("steps") or []
        wanted = self._read_line("which step? (its id; Enter for every step): ").strip()
        chosen = [s for s in steps if not wanted or s.get("id") == wanted]
        if not chosen:
            ids = ", ".join(str(s.get("id")) for s in steps)
            self.console.print(f"no step {inert(wanted)} in this plan (its steps: {inert(ids)})")
        for step in chosen:
            show_step(self.console, step, None)

    def _edit_confirmed(
        self, value: Any, what: str, normal: Callable[[Any], Any] = lambda v: v
    ) -> Any:
        """`value` edited, once the person has seen the change and confirmed it.

        None (after saying why) when the editor changed nothing, failed, or the person
        did not confirm: the caller asks again.
        """
        while True:
            edited = self._edit_json(value, what)
            if edited is None:
                return None
            if normal(edited) == normal(value):
                self.console.print(f"no change: the {inert(what)} is as it was")
                return None
            self.console.print(f"[bold]your change to the {inert(what)}:[/]")
            show_diff(self.console, _json_text(normal(value)), _json_text(normal(edited)))
            choice = self._choose(
                "run it with this change? [y]es / [e]dit again / [n]o, back to the question",
                "yen",
            )
            if choice == "y":
                self._drafts.pop(what, None)
                return edited
            if choice == "n":
                self._drafts.pop(what, None)
                return None
            self._drafts[what] = _json_text(edited)

    def _ask_approval(self, request: dict[str, Any]) -> dict[str, Any]:
        decisions: list[dict[str, Any]] = []
        steps = request.get("steps") or []
        for index, action in enumerate(request.get("action_requests") or []):
            label = steps[index] if index < len(steps) else f"#{index + 1}"
            while True:
                name = visible(action.get("name"))
                prompt = f"step {visible(label)} ({name}): [a]pprove / [v]iew / [e]dit / [r]eject"
                choice = self._choose(prompt, "aver")
                if choice == "v":
                    self.console.print(f"[bold]step {inert(label)}[/] calls {inert(name)} with:")
                    show_arguments(self.console, action.get("args"), label="args")
                    continue
                if choice == "a":
                    decisions.append({"type": "approve"})
                elif choice == "r":
                    reason = self._read_line("reason (optional): ").strip()
                    decisions.append({"type": "reject", "message": reason or None})
                else:
                    args = self._edit_confirmed(action.get("args") or {}, f"{label} arguments")
                    if not isinstance(args, dict):
                        if args is not None:
                            self.console.print("[red]the arguments must be a JSON object[/]")
                        continue
                    edited = {"name": action["name"], "args": args}
                    decisions.append({"type": "edit", "edited_action": edited})
                break
        return {"decisions": decisions, "request_hash": request.get("request_hash")}

    def _ask_uncertain(self, request: dict[str, Any]) -> dict[str, Any]:
        while True:
            choice = self._choose("[r]e-run / [d]one (give its output) / [s]kip", "rds")
            if choice == "r":
                return _uncertain_decision(request, Scripted("rerun"))
            if choice == "s":
                reason = self._read_line("reason (optional): ").strip()
                return _uncertain_decision(request, Scripted("skip", message=reason or None))
            text = self._read_line("the call's output (JSON, or text): ").strip()
            if text:
                return _uncertain_decision(request, Scripted("done", edited=parse_output(text)))

    def _choose(self, prompt: str, letters: str) -> str:
        while True:
            answer = self._read_line(f"{inert(prompt)} ? ").strip().lower()
            if answer and answer[0] in letters:
                return answer[0]
            self.console.print(f"please answer one of: {', '.join(letters)}")

    def _ask_text(self, prompt: str) -> str:
        while True:
            text = self._read_line(prompt).strip()
            if text:
                return text
            self.console.print("please write a few words (Ctrl-D to leave the run paused)")

    def _edit_json(self, value: Any, what: str) -> Any:
        """`value` as edited in the editor, or None (after saying why) to ask again.

        Text that is not valid JSON is kept: the next edit of `what` starts from it.
        """
        with tempfile.TemporaryDirectory(prefix="planexec-") as folder:
            path = Path(folder) / "edit.json"
            path.write_text(self._drafts.get(what) or _json_text(value), "utf-8")
            try:
                # Ctrl-C belongs to the editor while it runs.
                with _ctrl_c(signal.SIG_IGN):
                    done = subprocess.run([*shlex.split(self.editor), str(path)], check=False)
            except OSError as exc:
                self.console.print(
                    f"[red]cannot start the editor {inert(self.editor)!r}: {exc.strerror}; "
                    "set $EDITOR[/]"
                )
                return None
            if done.returncode != 0:
                self.console.print(f"[red]the editor exited with code {done.returncode}[/]")
                return None
            text = path.read_text(encoding="utf-8")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            self._drafts[what] = text
            self.console.print(
                f"[red]the edited {inert(what)} is not valid JSON: line {exc.lineno}, "
                f"column {exc.colno}: {inert(exc.msg)}[/]"
            )
            lines = text.splitlines()
            if 0 < exc.lineno <= len(lines):
                shown = lines[exc.lineno - 1].expandtabs(1)
                self.console.print(f"  {inert(shown)}", soft_wrap=True)
                self.console.print("  " + " " * (exc.colno - 1) + "[red]^[/]")
            self.console.print("[dim]the next edit starts from your text[/]")
            return None
        self._drafts.pop(what, None)
        return parsed


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _as_plan(value: Any) -> Any:
    """An edited plan as the decision sends it: a bare list of steps is `{"steps": [...]}`."""
    return {"steps": value} if isinstance(value, list) else value


def show_diff(console: Console, before: str, after: str) -> None:
    """The lines that differ between two texts, as a unified diff, each line inert."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), "proposed", "edited", lineterm="", n=2
    )
    for line in lines:
        style = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "")
        text = inert(line)
        console.print(f"[{style}]{text}[/]" if style else text, soft_wrap=True)


@contextlib.contextmanager
def _ctrl_c(handler: Any) -> Iterator[None]:
    """SIGINT handled by `handler` for the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


_APPROVE = Scripted("approve")
_FLAGS = {"rerun": "rerun", "done": "mark-done", "skip": "skip"}


def _decision(request: dict[str, Any], scripted: Scripted) -> dict[str, Any]:
    """The resume value that gives `scripted`'s decision on the interrupt `request`."""
    if request["type"] == "uncertain_step":
        return _uncertain_decision(request, scripted)
    if scripted.kind in UNCERTAIN_KINDS:
        raise UserError(
            f"--{_FLAGS[scripted.kind]} answers an uncertain step, but this thread waits "
            "for " + ("plan review" if request["type"] == "plan_review" else "step approval")
        )
    if request["type"] == "plan_review":
        return _review_decision(request, scripted)
    return _approval_decision(request, scripted)


def _review_decision(request: dict[str, Any], scripted: Scripted) -> dict[str, Any]:
    digest = request.get("plan_hash")
    if scripted.kind == "approve":
        return {"type": "approve", "plan_hash": digest}
    if scripted.kind == "reject":
        return {"type": "reject", "message": scripted.message, "plan_hash": digest}
    if scripted.kind == "cancel":
        return {"type": "cancel", "message": scripted.message}
    edited = scripted.edited
    plan = {"steps": edited} if isinstance(edited, list) else edited
    return {"type": "edit", "plan": plan, "plan_hash": digest}


def _approval_decision(request: dict[str, Any], scripted: Scripted) -> dict[str, Any]:
    actions = request.get("action_requests") or []
    if scripted.kind == "approve":
        decisions: list[dict[str, Any]] = [{"type": "approve"}] * len(actions)
    elif scripted.kind == "reject":
        decisions = [{"type": "reject", "message": scripted.message}] * len(actions)
    elif scripted.kind == "edit":
        edited = scripted.edited
        args_list = edited if isinstance(edited, list) else [edited]
        if len(args_list) != len(actions) or not all(isinstance(a, dict) for a in args_list):
            raise UserError(
                f"for a step approval, --edit FILE holds the new arguments: a JSON object, "
                f"or a list of {len(actions)} objects (one per step waiting for approval)"
            )
        decisions = [
            {"type": "edit", "edited_action": {"name": action["name"], "args": args}}
            for action, args in zip(actions, args_list, strict=True)
        ]
    else:
        raise UserError(
            "--cancel answers a plan review, but this thread waits for step approval: "
            "use --reject MSG to skip the steps"
        )
    return {"decisions": decisions, "request_hash": request.get("request_hash")}


def _uncertain_decision(request: dict[str, Any], scripted: Scripted) -> dict[str, Any]:
    key = request.get("key")
    if scripted.kind == "rerun":
        return {"type": "rerun", "key": key}
    if scripted.kind == "done":
        return {"type": "done", "output": scripted.edited, "key": key}
    if scripted.kind == "skip":
        return {"type": "skip", "message": scripted.message, "key": key}
    raise UserError(
        f"step {request.get('step')} may or may not have run {request.get('tool')}: "
        "answer with --rerun, --mark-done OUTPUT or --skip [MSG]"
    )


def show_uncertain(console: Console, request: dict[str, Any]) -> None:
    """Show an uncertain step: the call that may have happened, and why it is uncertain."""
    console.print(
        f"\n[bold yellow]uncertain step[/] {inert(str(request.get('step')))} "
        f"(plan revision {request.get('revision')}): {inert(str(request.get('description')))}"
    )
    call = json.dumps(request.get("args"), ensure_ascii=False)
    console.print(f"  call: {inert(str(request.get('tool')))}({inert(call)})")
    console.print(f"  idempotency key: {inert(str(request.get('key')))}")
    console.print(f"  {inert(str(request.get('message')))}")
    for error in request.get("errors") or []:
        console.print(f"  [red]{inert(str(error))}[/]")
