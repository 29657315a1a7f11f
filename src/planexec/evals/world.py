"""The world one task's tools share: records, documents, sent mail, and every call made.

A `World` lives in the task's directory: `workspace/` for the file tools and
`state.json` for everything else. The state is written after every tool call, so a
task resumed in another process finds the world as its tools left it, and the checkers
read the same file when the task ends.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

STATE_FILE = "state.json"
WORKSPACE = "workspace"


class ToolCall(TypedDict):
    """A tool call that reached a tool: it ran, whether or not it then failed."""

    tool: str
    args: dict[str, Any]


class World:
    """The mutable state behind one task run's tools; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspace = root / WORKSPACE
        self._path = root / STATE_FILE
        self._lock = threading.RLock()
        self.workspace.mkdir(parents=True, exist_ok=True)
        if self._path.is_file():
            self._data: dict[str, Any] = json.loads(self._path.read_text(encoding="utf-8"))
        else:
            self._data = {"calls": []}

    @classmethod
    def fresh(cls, root: Path) -> World:
        """An empty world in `root`, discarding whatever an earlier attempt left there."""
        if root.exists():
            shutil.rmtree(root)
        return cls(root)

    def section(self, name: str, initial: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The state of one kind of tool, created with `initial()` the first time.

        A resumed world keeps its section: `initial` is only called for a new one.
        """
        with self._lock:
            if name not in self._data:
                self._data[name] = initial()
                self._save()
            section: dict[str, Any] = self._data[name]
            return section

    @contextmanager
    def change(self) -> Iterator[dict[str, Any]]:
        """Hold the world for a change to its state, saved when the block ends."""
        with self._lock:
            try:
                yield self._data
            finally:
                self._save()

    def log(self, tool: str, args: dict[str, Any]) -> None:
        """Record that `tool` was called with `args`."""
        with self.change() as data:
            data["calls"].append({"tool": tool, "args": copy.deepcopy(args)})

    @property
    def calls(self) -> list[ToolCall]:
        """Every tool call, in the order the tools received them."""
        with self._lock:
            calls: list[ToolCall] = copy.deepcopy(self._data["calls"])
            return calls

    def snapshot(self) -> dict[str, Any]:
        """A copy of the whole state, for the checkers."""
        with self._lock:
            return copy.deepcopy(self._data)

    def _save(self) -> None:
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps(self._data, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
        )
        os.replace(temporary, self._path)
