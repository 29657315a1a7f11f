"""The bundled offline demo: a goal, scripted model replies per role, a small workspace.

`scenario.json` holds the goal and, for each role (planner, executor, replanner), the
replies a `ScriptedChatModel` gives, in its dict form. A reply's `"match"` picks the
request it answers (the executor's steps run in parallel, so order alone would not
do), and `"times": n` repeats a reply n times. A demo thread resumed in another
process gets fresh scripted models, so no reply may rely on an earlier one being used
up: replies are listed most specific first (the replanner's "finish" replies come before
its "replan after s7 failed", since the failure is still in the results at the end).
`workspace/` is copied to a fresh directory for every run, so the real file tools have
something to read and write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from langgraph.types import interrupt

from planexec.interrupts import NEEDS_MODEL
from planexec.scripted import ScriptedChatModel, ScriptExhaustedError, expand_replies
from planexec.state import ROLES


@dataclass(frozen=True)
class Scenario:
    """A scripted run: what to do, and what each role's model replies."""

    title: str
    goal: str
    hint: str
    context: dict[str, Any]
    """Context settings the scenario runs with (on top of the defaults)."""
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Scripted replies per role, with `times` already expanded."""

    def models(self) -> dict[str, ScriptedChatModel]:
        """A fresh scripted model per role, named `scripted-<role>`."""
        return {
            role: _DemoModel(self.replies.get(role, []), name_=f"scripted-{role}") for role in ROLES
        }


class _DemoModel(ScriptedChatModel):
    """A scripted model that pauses the run when a choice goes past its script.

    The run stops at a `needs_model` interrupt, saved; `planexec resume` continues it
    with the real models the environment names (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
    """

    def __init__(self, replies: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(replies, **kwargs)

    def _take(self, prompt: str) -> Any:
        try:
            return super()._take(prompt)
        except ScriptExhaustedError:
            interrupt(
                {
                    "type": NEEDS_MODEL,
                    "role": self.name_.removeprefix("scripted-"),
                    "message": "the demo's scripted replies do not cover this choice: a real "
                    "model has to answer it",
                }
            )
            raise  # not reached: interrupt() pauses the run


def _bundled() -> Traversable:
    return files("planexec").joinpath("demo")


def load_scenario() -> Scenario:
    """The bundled scenario."""
    data = json.loads(_bundled().joinpath("scenario.json").read_text(encoding="utf-8"))
    return Scenario(
        title=data["title"],
        goal=data["goal"],
        hint=data.get("hint", ""),
        context=dict(data.get("context") or {}),
        replies={role: expand_replies(data.get(role) or []) for role in ROLES},
    )


def copy_workspace(destination: Path) -> list[str]:
    """Copy the bundled workspace into `destination` (created if missing).

    Returns the copied files' paths, relative to `destination`.
    """
    destination.mkdir(parents=True, exist_ok=True)
    copied: list[str] = []
    _copy(_bundled().joinpath("workspace"), destination, "", copied)
    return sorted(copied)


def _copy(source: Traversable, target: Path, prefix: str, copied: list[str]) -> None:
    for entry in source.iterdir():
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            (target / entry.name).mkdir(exist_ok=True)
            _copy(entry, target / entry.name, f"{prefix}{entry.name}/", copied)
        else:
            (target / entry.name).write_bytes(entry.read_bytes())
            copied.append(prefix + entry.name)
