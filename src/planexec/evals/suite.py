"""The task format and the bundled suite.

A suite is a JSON file; copy the bundled one (`planexec/evals/suite.json`) to start
your own::

    {"name": "my-suite",
     "datasets": {"warehouse": {"records": {"W-7": {"qty": 40, "unit_price": 12.0}}}},
     "budgets": {"max_model_calls": 30},
     "tasks": [{
       "id": "stock-value", "category": "sequential",
       "goal": "What is the stock value of widget W-7?",
       "tools": [{"use": "inventory", "dataset": "warehouse", "only": ["get_field"]},
                 {"use": "calculator"}],
       "checks": [{"type": "number", "expected": 480}]
     }]}

- `tools`: specs for the factories of `planexec.evals.tools`; `dataset` merges the
  named dataset's settings under the spec's own.
- `checks`: see `planexec.evals.checks`; `reviewer`: see `planexec.evals.reviewer`.
- `budgets` (suite or task): `max_model_calls`, `max_tokens`, `time_budget_s`,
  `max_cost_usd`, over `DEFAULT_BUDGETS`; null means unlimited.
- `context`: other `Context` settings for the task (`max_replans`, `approval_tools`...).
- `library`: the name of a plan library the task shares with the suite's other tasks of
  that name. They run one after another in suite order, each configuration with its
  own library, so later tasks can reuse the plans earlier ones saved (`reuse_plans` in
  `context`; `planexec eval --reuse` overrides it). A task without one has no library.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from planexec.context import Context
from planexec.evals.checks import Check
from planexec.evals.reviewer import ReviewerPolicy
from planexec.evals.toolkit import ToolFactory, ToolSetupError
from planexec.evals.tools import build_tools
from planexec.evals.world import World

BUNDLED = "suite.json"
CATEGORIES = (
    "sequential",
    "aggregate",
    "replan",
    "surprise",
    "injection",
    "review",
    "repeated",
)
"""The bundled suite's categories; a suite of your own may use any names."""

DEFAULT_BUDGETS: dict[str, float | int | None] = {
    "max_model_calls": 40,
    "max_tokens": 250_000,
    "time_budget_s": 300.0,
    "max_cost_usd": 1.0,
}
"""Each task's budgets unless the suite, the task or the command line says otherwise."""

RESERVED_CONTEXT = frozenset(
    {"planner_model", "executor_model", "replanner_model", "review", "workspace"}
    | set(DEFAULT_BUDGETS)
)
"""Context settings a task may not set: the configuration, the reviewer and the
budgets decide them."""

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SuiteError(ValueError):
    """A suite file that cannot be used, with the task and field at fault."""


class Budgets(BaseModel):
    """Per-task budgets; only the fields given override."""

    model_config = ConfigDict(extra="forbid")

    max_model_calls: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    time_budget_s: float | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)

    def given(self) -> dict[str, float | int | None]:
        """The fields that were set, null included."""
        return self.model_dump(exclude_unset=True)


class ToolSpec(BaseModel):
    """A tool factory to use and its settings."""

    model_config = ConfigDict(extra="allow")

    use: str
    dataset: str | None = None


class Task(BaseModel):
    """One evaluation task: a goal, its tools, and how to tell that it was achieved."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID)
    category: str = Field(pattern=_ID)
    goal: str = Field(min_length=1)
    tools: list[ToolSpec] = Field(min_length=1)
    checks: list[Check] = Field(min_length=1)
    reviewer: ReviewerPolicy | None = None
    budgets: Budgets = Field(default_factory=Budgets)
    context: dict[str, Any] = Field(default_factory=dict)
    library: str | None = Field(default=None, pattern=_ID)
    """The plan library the task shares with the suite's other tasks that name it."""
    notes: str | None = None
    """What the task tests, for people reading the suite."""


class Suite(BaseModel):
    """A named list of tasks, with datasets and budgets they share."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    datasets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    budgets: Budgets = Field(default_factory=Budgets)
    tasks: list[Task] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Suite:
        ids = [task.id for task in self.tasks]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"task ids repeat: {', '.join(repeated)}")
        for task in self.tasks:
            for spec in task.tools:
                if spec.dataset is not None and spec.dataset not in self.datasets:
                    raise ValueError(f"task {task.id}: unknown dataset {spec.dataset!r}")
            reserved = sorted(RESERVED_CONTEXT & set(task.context))
            if reserved:
                raise ValueError(f"task {task.id}: context may not set {', '.join(reserved)}")
        return self

    def task(self, task_id: str) -> Task:
        """The task with this id."""
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise SuiteError(f"no task {task_id!r} in suite {self.name!r}")

    def tool_specs(self, task: Task) -> list[dict[str, Any]]:
        """The task's tool specs with their datasets merged in."""
        merged = []
        for spec in task.tools:
            own = spec.model_dump(exclude_none=True)
            base = self.datasets.get(spec.dataset, {}) if spec.dataset else {}
            merged.append({**base, **own})
        return merged

    def budgets_for(
        self, task: Task, overrides: Mapping[str, float | int | None] | None = None
    ) -> dict[str, float | int | None]:
        """The task's budgets: defaults, then the suite's, the task's, and `overrides`."""
        return {
            **DEFAULT_BUDGETS,
            **self.budgets.given(),
            **task.budgets.given(),
            **(overrides or {}),
        }

    def select(self, ids: Sequence[str] = (), categories: Sequence[str] = ()) -> list[Task]:
        """The tasks with these ids and in these categories (all when none are given)."""
        known = {task.id for task in self.tasks}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise SuiteError(f"unknown task(s): {', '.join(unknown)}")
        present = {task.category for task in self.tasks}
        missing = [c for c in categories if c not in present]
        if missing:
            raise SuiteError(
                f"unknown category(ies): {', '.join(missing)}; the suite has "
                f"{', '.join(sorted(present))}"
            )
        return [
            task
            for task in self.tasks
            if (not ids or task.id in ids) and (not categories or task.category in categories)
        ]


def parse_suite(data: Any, factories: Mapping[str, ToolFactory] | None = None) -> Suite:
    """A suite from JSON data, checked down to every task's tool settings and context.

    Raises:
        SuiteError: what is wrong and where, naming the task.
    """
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(_describe(exc, data)) from exc
    with tempfile.TemporaryDirectory(prefix="planexec-suite-") as scratch:
        for task in suite.tasks:
            try:
                world = World(Path(scratch) / task.id)
                tools = build_tools(suite.tool_specs(task), world, factories)
                Context(**task.context)
            except (ToolSetupError, ValidationError, TypeError) as exc:
                raise SuiteError(f"task {task.id}: {exc}") from exc
            if not tools:
                raise SuiteError(f"task {task.id}: its tool specs leave it no tool")
    return suite


def _describe(exc: ValidationError, data: Any) -> str:
    error = exc.errors()[0]
    loc = list(error["loc"])
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        tasks = data.get("tasks") if isinstance(data, dict) else None
        task = tasks[loc[1]] if isinstance(tasks, list) and loc[1] < len(tasks) else None
        name = task.get("id") if isinstance(task, dict) else None
        loc[:2] = [f"task {name or '#' + str(loc[1] + 1)}"]
    where = ".".join(str(part) for part in loc)
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def load_suite(
    path: str | Path | None = None, factories: Mapping[str, ToolFactory] | None = None
) -> Suite:
    """The suite in the JSON file at `path`, or the bundled suite."""
    if path is None:
        text = files("planexec.evals").joinpath(BUNDLED).read_text(encoding="utf-8")
        where = f"the bundled {BUNDLED}"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SuiteError(f"cannot read {path}: {exc.strerror}") from exc
        where = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{where} is not valid JSON: line {exc.lineno}: {exc.msg}") from exc
    return parse_suite(data, factories)
