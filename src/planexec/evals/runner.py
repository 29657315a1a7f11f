"""Running a suite: every task under every configuration, checkpointed and resumable.

    RUN_DIR/
      run.json              what to run: the suite itself, configurations, tasks, budgets
      checkpoints.sqlite    one LangGraph thread per task and configuration, "<config>:<task>"
      checkpoints.plans.sqlite  the plan libraries of tasks that name one (`Task.library`)
      results.jsonl         one score per line, appended as each task finishes
      work/<config>/<task>/ the task's world: workspace/ and state.json
      results.json, report.html   written once every task has a score

`Evaluation.open(run_dir).run()` resumes an interrupted evaluation: tasks with a score
are skipped; the others continue from their checkpoints (a paused review is answered,
an interrupted step runs again, finished steps do not) or start afresh. A task that
could not run at all (its score is an error) runs again too.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.store.base import BaseStore
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planexec.checkpoints import AsyncCheckpointer, open_checkpointer
from planexec.context import Context
from planexec.errors import PlanexecError
from planexec.evals.checks import Outcome, run_checks
from planexec.evals.config import EvalConfig
from planexec.evals.replay import Replies
from planexec.evals.report import build_report, write_report
from planexec.evals.reviewer import ReviewerPolicy, answer
from planexec.evals.scoring import TaskScore, error_score, score_run
from planexec.evals.suite import Suite, Task, parse_suite
from planexec.evals.toolkit import ToolFactory
from planexec.evals.tools import build_tools
from planexec.evals.world import World
from planexec.graph import PlanexecGraph, build_graph, run_config
from planexec.models import ModelFactory, default_model_factory
from planexec.state import timestamp
from planexec.stores import open_store

RUN_FILE = "run.json"
RESULTS_LOG = "results.jsonl"
CHECKPOINT = "checkpoints.sqlite"
MAX_INTERRUPTS = 50
"""Interrupts the scripted reviewer answers in one task before the task counts as an error."""

_MODELS = {"planner_model", "executor_model", "replanner_model"}

OnStart = Callable[[EvalConfig, Task], None]
OnFinish = Callable[[TaskScore], None]


class RunError(PlanexecError):
    """An evaluation run directory that cannot be created or resumed."""


class RunSettings(BaseModel):
    """What an evaluation runs; kept in `run.json` so that it can be resumed."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    suite: dict[str, Any]
    """The suite itself, so that a resumed run does not depend on the file."""
    suite_source: str
    configs: list[EvalConfig] = Field(min_length=1)
    tasks: list[str] = Field(min_length=1)
    budgets: dict[str, float | int | None] = Field(default_factory=dict)
    """Budgets given on the command line, over the suite's and the tasks'."""
    concurrency: int = Field(default=4, ge=1)
    replies: str | None = None
    """Recorded replies replayed instead of calling models, if any."""
    reuse: Literal["off", "suggest", "replay"] | None = None
    """`reuse_plans` for every task that has a plan library, over the tasks' own."""
    created_at: str = Field(default_factory=timestamp)


def thread_id(config: EvalConfig, task: Task) -> str:
    """The checkpoint thread of `task` under `config`."""
    return f"{config.name}:{task.id}"


class Evaluation:
    """One evaluation run in a directory; see the module docstring."""

    def __init__(
        self,
        run_dir: Path,
        settings: RunSettings,
        *,
        model_factory: ModelFactory | None = None,
        replies: Replies | None = None,
        factories: Mapping[str, ToolFactory] | None = None,
        on_start: OnStart | None = None,
        on_finish: OnFinish | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.settings = settings
        self.suite: Suite = parse_suite(settings.suite, factories)
        self.factories = factories
        self.model_factory = model_factory or default_model_factory
        if replies is None and settings.replies:
            replies = Replies.load(settings.replies)
        self.replies = replies
        self.on_start = on_start
        self.on_finish = on_finish

    @classmethod
    def create(
        cls,
        run_dir: Path,
        suite: Suite,
        configs: Sequence[EvalConfig],
        *,
        tasks: Sequence[Task] | None = None,
        suite_source: str = "bundled",
        budgets: Mapping[str, float | int | None] | None = None,
        concurrency: int = 4,
        replies_path: str | None = None,
        reuse: Literal["off", "suggest", "replay"] | None = None,
        **options: Any,
    ) -> Evaluation:
        """A new evaluation in `run_dir` (created if missing; it must not hold one already)."""
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise RunError(f"configuration names repeat: {', '.join(names)}")
        if (run_dir / RUN_FILE).exists():
            raise RunError(f"{run_dir} already holds an evaluation; resume it with --resume")
        for config in configs:
            try:
                Context(**{**config.context, **config.model_dump(include=_MODELS)})
            except (ValidationError, TypeError) as exc:
                raise RunError(f"configuration {config.name}: {exc}") from exc
        chosen = list(tasks) if tasks is not None else suite.tasks
        try:
            settings = RunSettings(
                suite=suite.model_dump(mode="json", exclude_unset=True),
                suite_source=suite_source,
                configs=list(configs),
                tasks=[t.id for t in chosen],
                budgets=dict(budgets or {}),
                concurrency=concurrency,
                replies=replies_path,
                reuse=reuse,
            )
        except ValidationError as exc:
            raise RunError(f"invalid evaluation settings: {exc.errors()[0]['msg']}") from exc
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_FILE).write_text(settings.model_dump_json(indent=1), encoding="utf-8")
        return cls(run_dir, settings, **options)

    @classmethod
    def open(cls, run_dir: Path, **options: Any) -> Evaluation:
        """The evaluation in `run_dir`, to resume it."""
        path = run_dir / RUN_FILE
        try:
            settings = RunSettings.model_validate_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RunError(f"no evaluation in {run_dir}: cannot read {path}") from exc
        except ValidationError as exc:
            raise RunError(f"{path} is not an evaluation's settings: {exc}") from exc
        return cls(run_dir, settings, **options)

    def scores(self) -> list[TaskScore]:
        """The scores recorded so far (a line cut short by a crash is ignored)."""
        path = self.run_dir / RESULTS_LOG
        if not path.is_file():
            return []
        scores: dict[tuple[str, str], TaskScore] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                score = json.loads(line)
            except json.JSONDecodeError:
                continue
            scores[(score["config"], score["task"])] = score
        return list(scores.values())

    def pending(self) -> list[tuple[EvalConfig, Task]]:
        """Every (configuration, task) still to run, in run order.

        That is those without a score, and those that could not run at all (their score
        is an error: a server down, replies missing), which get another try.
        """
        done = {(s["config"], s["task"]) for s in self.scores() if s["status"] != "error"}
        return [
            (config, self.suite.task(task_id))
            for config in self.settings.configs
            for task_id in self.settings.tasks
            if (config.name, task_id) not in done
        ]

    async def run(self) -> dict[str, Any]:
        """Run every pending task, then write and return the report.

        Tasks that share a plan library run one after another, in suite order.
        """
        gate = asyncio.Semaphore(self.settings.concurrency)
        location = self.run_dir / CHECKPOINT
        async with open_checkpointer(location) as saver, open_store(location) as store:

            async def one(config: EvalConfig, task: Task) -> None:
                async with gate:
                    if self.on_start is not None:
                        self.on_start(config, task)
                    score = await self._run_task(saver, config, task, store)
                self._record(score)

            async def in_order(tasks: Sequence[tuple[EvalConfig, Task]]) -> None:
                for config, task in tasks:
                    await one(config, task)

            chains: dict[tuple[str, str], list[tuple[EvalConfig, Task]]] = {}
            alone = []
            for config, task in self.pending():
                if task.library is None:
                    alone.append(one(config, task))
                else:
                    chains.setdefault((config.name, task.library), []).append((config, task))
            await asyncio.gather(*alone, *(in_order(chain) for chain in chains.values()))
        report = self.report()
        write_report(self.run_dir, report)
        return report

    def report(self) -> dict[str, Any]:
        """The report of the scores recorded so far."""
        settings = self.settings
        run = {
            "suite": self.suite.name,
            "suite_source": settings.suite_source,
            "run_dir": str(self.run_dir),
            "created_at": settings.created_at,
            "budgets": settings.budgets,
            "concurrency": settings.concurrency,
            "replies": settings.replies,
        }
        return build_report(run, settings.configs, settings.tasks, self.scores())

    def _record(self, score: TaskScore) -> None:
        path = self.run_dir / RESULTS_LOG
        # After a crash mid-line, start a new line rather than spoil the next score.
        torn = _ends_mid_line(path)
        with path.open("a", encoding="utf-8") as log:
            log.write(("\n" if torn else "") + json.dumps(score, ensure_ascii=False, default=str))
            log.write("\n")
        if self.on_finish is not None:
            self.on_finish(score)

    def context(self, config: EvalConfig, task: Task, world: World) -> Context:
        """The run settings of `task` under `config`."""
        budgets = self.suite.budgets_for(task, self.settings.budgets)
        reuse = {"reuse_plans": self.settings.reuse} if task.library and self.settings.reuse else {}
        return Context(
            **{
                **config.context,
                **task.context,
                **reuse,
                **budgets,
                "planner_model": config.planner_model,
                "executor_model": config.executor_model,
                "replanner_model": config.replanner_model,
                "review": "always" if task.reviewer is not None else "never",
                "workspace": str(world.workspace),
            }
        )

    async def _run_task(
        self, saver: AsyncCheckpointer, config: EvalConfig, task: Task, store: BaseStore
    ) -> TaskScore:
        started = time.monotonic()
        thread = thread_id(config, task)
        work = self.run_dir / "work" / config.name / task.id
        resumed = False
        # One task's failure (a model server down, a script run dry, an unreadable
        # checkpoint, a bug) is that task's score, not the end of the evaluation.
        try:
            resumed = await saver.aget_tuple({"configurable": {"thread_id": thread}}) is not None
            world = World(work) if resumed else World.fresh(work)
            tools = build_tools(self.suite.tool_specs(task), world, self.factories)
            models = self.replies.models(config, task.id) if self.replies else {}
            graph = build_graph(
                tools=tools,
                checkpointer=saver,
                store=store if task.library else None,
                library_namespace=("planexec", "evals", config.name, task.library or "none"),
                model_factory=self.model_factory,
                planner=models.get("planner"),
                executor=models.get("executor"),
                replanner=models.get("replanner"),
            )
            context = self.context(config, task, world)
            limit = context.time_budget_s
            async with asyncio.timeout(None if limit is None else 2 * limit + 60):
                values = await _drive(
                    graph, run_config(thread, context), context, task, resumed=resumed
                )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return error_score(
                task.id, task.category, config.name, error, time.monotonic() - started, resumed
            )
        outcome = Outcome(
            values.get("status"), values.get("answer"), world.snapshot(), world.workspace
        )
        return score_run(
            task=task.id,
            category=task.category,
            config=config.name,
            values=values,
            checks=run_checks(task.checks, outcome),
            wall_s=time.monotonic() - started,
            resumed=resumed,
        )


def _ends_mid_line(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with path.open("rb") as log:
        log.seek(-1, os.SEEK_END)
        return log.read(1) != b"\n"


async def _drive(
    graph: PlanexecGraph, config: RunnableConfig, context: Context, task: Task, *, resumed: bool
) -> dict[str, Any]:
    """Run (or continue) the task's thread to its end, the scripted reviewer answering."""
    value: Any = {"goal": task.goal}
    if resumed:
        snapshot = await graph.aget_state(config)
        if snapshot.interrupts:
            value = _resume(task.reviewer, snapshot.interrupts[0], snapshot.values)
        elif snapshot.next:
            value = None
        else:
            return dict(snapshot.values)
    for _ in range(MAX_INTERRUPTS):
        out = await graph.ainvoke(value, config, context=context, durability="sync")
        pending = out.get("__interrupt__")
        snapshot = await graph.aget_state(config)
        if not pending:
            return dict(snapshot.values)
        value = _resume(task.reviewer, pending[0], snapshot.values)
    raise RuntimeError(f"the reviewer answered {MAX_INTERRUPTS} interrupts and the run goes on")


def _resume(
    policy: ReviewerPolicy | None, interrupt: Any, values: Mapping[str, Any]
) -> Command[Any]:
    reviewed = len(values.get("reviews") or [])
    request = interrupt.value if isinstance(interrupt.value, dict) else {}
    return Command(resume={interrupt.id: answer(policy, request, reviewed)})
