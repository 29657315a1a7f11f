r"""Recorded model replies: run a suite offline, with no model server.

A replies source is a directory with one `<task id>.json` per task (and, to give one
configuration different replies, `<config name>/<task id>.json`), or a single JSON file
`{"<task id>": {...}}`. A task's replies are a `ScriptedChatModel` script per role::

    {"planner": [{"tool_calls": [{"name": "Plan", "args": {"steps": [...]}}]}],
     "executor": [{"match": "<step id=\"s2\">", "tool_calls": [...]}],
     "replanner": [{"tool_calls": [{"name": "Replan", "args": {"action": "finish", ...}}]}]}

`"times": n` repeats a reply. The scripted models take the names of the configuration's
models, so their (estimated) tokens are priced like the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from planexec.evals.config import EvalConfig
from planexec.scripted import ScriptedChatModel, expand_replies
from planexec.state import ROLES

Script = dict[str, list[dict[str, Any]]]


class RepliesError(ValueError):
    """A replies source that cannot be read."""


def _script(data: Any, where: str) -> Script:
    if not isinstance(data, dict):
        raise RepliesError(f"{where}: expected an object with planner/executor/replanner lists")
    unknown = sorted(set(data) - {*ROLES, "notes"})
    if unknown:
        raise RepliesError(f"{where}: unknown role(s) {', '.join(unknown)}")
    return {role: expand_replies(list(data.get(role) or [])) for role in ROLES}


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RepliesError(f"cannot read replies from {path}: {exc}") from exc


class Replies:
    """Recorded replies by task, optionally by configuration and task.

    Args:
        scripts: Replies per task id: `{"planner": [...], "executor": [...], ...}`.
        by_config: Replies per configuration name, then task id, used first.
    """

    def __init__(
        self,
        scripts: Mapping[str, Any],
        by_config: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.scripts = {task: _script(data, task) for task, data in scripts.items()}
        self.by_config = {
            config: {task: _script(data, f"{config}/{task}") for task, data in tasks.items()}
            for config, tasks in (by_config or {}).items()
        }

    @classmethod
    def load(cls, path: str | Path) -> Replies:
        """The replies in a directory or a JSON file (see the module docstring)."""
        source = Path(path)
        if source.is_file():
            data = _read(source)
            if not isinstance(data, dict):
                raise RepliesError(f"{source}: expected an object of task id -> replies")
            return cls(data)
        if not source.is_dir():
            raise RepliesError(f"no replies at {source}")
        return cls(
            {p.stem: _read(p) for p in sorted(source.glob("*.json"))},
            {
                folder.name: {p.stem: _read(p) for p in sorted(folder.glob("*.json"))}
                for folder in sorted(source.iterdir())
                if folder.is_dir()
            },
        )

    def script(self, config: str, task: str) -> Script | None:
        """The replies for `task` under configuration `config`, if recorded."""
        return self.by_config.get(config, {}).get(task) or self.scripts.get(task)

    def models(self, config: EvalConfig, task: str) -> dict[str, ScriptedChatModel]:
        """Fresh scripted models for one run of `task`, named after the config's models.

        Raises:
            RepliesError: no replies were recorded for the task.
        """
        script = self.script(config.name, task)
        if script is None:
            raise RepliesError(f"no recorded replies for task {task!r}")
        names = {
            "planner": config.planner_model,
            "executor": config.executor_model,
            "replanner": config.replanner_model or config.planner_model,
        }
        return {
            role: ScriptedChatModel(script[role], name_=names[role].partition(":")[2] or role)
            for role in ROLES
        }
