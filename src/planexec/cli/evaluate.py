"""`planexec eval`: run the evaluation suite against models, resume it, compare runs.

    planexec eval [--suite FILE] [--tasks ID,ID] [--category CAT] [--config NAME=P[,E[,R]]]...
    planexec eval --resume RUN_DIR
    planexec eval --compare A B          (results.json files or run directories, PATH@CONFIG)
    planexec eval --list

Models come from each configuration (or --planner-model / --executor-model /
--replanner-model) and the usual OPENAI_API_KEY / OPENAI_BASE_URL; `--replies DIR`
replays recorded replies instead, offline. Exit codes: 0 when every task was evaluated,
whatever its score; 1 when a task could not be run at all (an error in its score); 2 a
usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planexec.cli.environment import Environment, Output, UserError
from planexec.cli.parser import BUDGET_FLAGS
from planexec.cli.session import check_models, model_factory
from planexec.context import DEFAULT_PRICES, Context
from planexec.evals.config import ConfigError, EvalConfig, parse_config
from planexec.evals.html import percent, usd
from planexec.evals.replay import Replies, RepliesError
from planexec.evals.report import (
    HTML_FILE,
    RESULTS_FILE,
    ReportError,
    compare_reports,
    load_report,
    write_report,
)
from planexec.evals.runner import Evaluation, RunError
from planexec.evals.scoring import TaskScore
from planexec.evals.suite import SuiteError, load_suite
from planexec.inert import inert
from planexec.models import ModelFactory

_RUN_ONLY = ("suite", "tasks", "category", "config", "planner_model", "executor_model",
             "replanner_model", "out", "price")  # fmt: skip


def evaluate(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec eval`."""
    try:
        if args.compare:
            return _compare(args, env, out)
        if args.list:
            return _list(args, out)
        return _run(args, env, out)
    except (SuiteError, ConfigError, RepliesError, RunError, ReportError) as exc:
        raise UserError(str(exc)) from exc


def _list(args: argparse.Namespace, out: Output) -> int:
    suite = load_suite(args.suite)
    tasks = suite.select(_items(args.tasks), _items(args.category))
    if out.json_mode:
        rows = [{"id": t.id, "category": t.category, "goal": t.goal} for t in tasks]
        sys.stdout.write(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
        return 0
    table = Table(title=f"{suite.name}: {len(tasks)} task(s)", title_justify="left")
    for column in ("id", "category", "goal"):
        table.add_column(column)
    for task in tasks:
        table.add_row(inert(task.id), inert(task.category), inert(task.goal))
    out.console.print(table)
    return 0


def _items(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _configs(args: argparse.Namespace) -> list[EvalConfig]:
    given = [args.planner_model, args.executor_model, args.replanner_model]
    if args.config:
        if any(given):
            raise UserError("give models either with --config or with --planner-model etc.")
        configs = [parse_config(text) for text in args.config]
    else:
        defaults = Context()
        configs = [
            EvalConfig(
                name="default",
                planner_model=args.planner_model or defaults.planner_model,
                executor_model=args.executor_model or defaults.executor_model,
                replanner_model=args.replanner_model,
            )
        ]
    prices = _prices(args.price or [])
    if prices:
        configs = [
            c.model_copy(update={"context": {**c.context, "prices": prices}}) for c in configs
        ]
    return configs


def _prices(items: list[str]) -> dict[str, tuple[float, float]]:
    if not items:
        return {}
    prices = dict(DEFAULT_PRICES)
    for item in items:
        name, _, pair = item.partition("=")
        parts = pair.split(",")
        try:
            price_in, price_out = (float(p) for p in parts)
        except ValueError as exc:
            raise UserError(f"--price {item!r} is not MODEL=IN,OUT (USD per million)") from exc
        model = name.strip().removeprefix("openai:")
        if not model:
            raise UserError(f"--price {item!r} names no model")
        prices[model] = (price_in, price_out)
    return prices


def _run(args: argparse.Namespace, env: Environment, out: Output) -> int:
    replies = Replies.load(args.replies) if args.replies else None
    options: dict[str, Any] = {"replies": replies}
    if args.resume:
        clashing = [name for name in _RUN_ONLY if getattr(args, name, None)]
        clashing += [name for name in BUDGET_FLAGS if hasattr(args, name)]
        if clashing:
            flags = ", ".join(BUDGET_FLAGS.get(n, "--" + n.replace("_", "-")) for n in clashing)
            raise UserError(f"--resume continues a run with its own settings; drop {flags}")
        evaluation = _open(Path(args.resume).expanduser(), env, options)
        if args.concurrency:
            evaluation.settings.concurrency = args.concurrency
    else:
        suite = load_suite(args.suite)
        tasks = suite.select(_items(args.tasks), _items(args.category))
        configs = _configs(args)
        if replies is None:
            options["model_factory"] = _checked_factory(configs, env)
        run_dir = Path(args.out).expanduser() if args.out else _default_dir(env, "run")
        budgets = {name: getattr(args, name) for name in BUDGET_FLAGS if hasattr(args, name)}
        evaluation = Evaluation.create(
            run_dir,
            suite,
            configs,
            tasks=tasks,
            suite_source=str(Path(args.suite).resolve()) if args.suite else "bundled",
            budgets=budgets,
            concurrency=args.concurrency or 4,
            replies_path=str(Path(args.replies).resolve()) if args.replies else None,
            reuse=args.reuse,
            **options,
        )
    return _execute(evaluation, out)


def _open(run_dir: Path, env: Environment, options: dict[str, Any]) -> Evaluation:
    evaluation = Evaluation.open(run_dir, **options)
    if evaluation.replies is None:
        evaluation.model_factory = _checked_factory(evaluation.settings.configs, env)
    return evaluation


def _checked_factory(configs: list[EvalConfig], env: Environment) -> ModelFactory:
    """The environment's model factory, once it has made every configuration's models."""
    factory = model_factory(env)
    for config in configs:
        check_models(
            Context(
                planner_model=config.planner_model,
                executor_model=config.executor_model,
                replanner_model=config.replanner_model,
            ),
            factory,
        )
    return factory


def _default_dir(env: Environment, kind: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return env.home / "evals" / f"{kind}-{stamp}-{uuid4().hex[:4]}"


def _execute(evaluation: Evaluation, out: Output) -> int:
    pending = evaluation.pending()
    run_dir = evaluation.run_dir
    out.console.print(f"[bold]evaluation[/] {inert(str(run_dir))}")
    if len(pending) < len(evaluation.settings.configs) * len(evaluation.settings.tasks):
        done = len(evaluation.settings.configs) * len(evaluation.settings.tasks) - len(pending)
        out.console.print(f"resuming: {done} task run(s) already scored, {len(pending)} to go")
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[tally]}"),
        console=out.console,
    )
    bar = progress.add_task("tasks", total=len(pending), tally="")
    tally = {"passed": 0, "failed": 0}

    def finished(score: TaskScore) -> None:
        tally["passed" if score["success"] else "failed"] += 1
        mark = "[green]✓[/]" if score["success"] else "[red]✗[/]"
        note = "" if score["success"] else f" [dim]{inert(_why(score))}[/]"
        progress.console.print(
            f"{mark} {inert(score['config'])}:{inert(score['task'])} "
            f"{score['model_calls']} calls, {usd(score['cost_usd'])}, {score['wall_s']:.1f}s{note}"
        )
        progress.update(bar, advance=1, tally=f"{tally['passed']} passed, {tally['failed']} failed")

    evaluation.on_finish = finished
    try:
        with progress:
            report = asyncio.run(evaluation.run())
    except KeyboardInterrupt:
        out.console.print(
            f"\ninterrupted; finished tasks are saved. Resume with: "
            f"[bold]planexec eval --resume {inert(str(run_dir))}[/]"
        )
        raise
    return _show(report, run_dir, out)


def _why(score: TaskScore) -> str:
    failed = [f"{c['type']}: {c['detail']}" for c in score["checks"] if not c["passed"]]
    return "; ".join(failed) or score["error"] or str(score["status"])


def _show(report: Mapping[str, Any], run_dir: Path, out: Output) -> int:
    table = Table(title="results", title_justify="left")
    for column in ("config", "category", "solved", "success", "cost", "cost/task", "calls",
                   "replans", "plan edits", "blocked", "budget stops", "errors"):  # fmt: skip
        table.add_column(column)
    for config, summary in report["summary"].items():
        rows = [*summary["categories"].items(), ("all", summary["overall"])]
        for category, item in rows:
            table.add_row(
                inert(config),
                inert(category),
                f"{item['solved']}/{item['tasks']}",
                percent(item["success_rate"]),
                usd(item["cost_usd"]),
                usd(item["mean_cost_usd"]),
                str(item["model_calls"]),
                str(item["replans"]),
                str(item["plan_edits"]),
                str(item["refused_calls"]),
                str(item["budget_stops"]),
                str(item["errors"]),
                end_section=category == "all",
            )
    out.console.print(table)
    comparison = report.get("comparison")
    if comparison is not None:
        overall = comparison["overall"]
        ratio = overall["cost_ratio"]
        said = "n/a" if ratio is None else f"{ratio:.3f}"
        out.console.print(
            f"[bold]{inert(comparison['b'])} / {inert(comparison['a'])} cost ratio at equal "
            f"success: {said}[/] over {overall['both_solved']} task(s) both solved; success "
            f"{percent(overall['success_rate_a'])} against {percent(overall['success_rate_b'])}"
        )
    out.console.print(f"results: {inert(str(run_dir / RESULTS_FILE))}")
    out.console.print(f"report:  {inert(str(run_dir / HTML_FILE))}")
    if out.json_mode:
        sys.stdout.write(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    errors = sum(1 for s in report["tasks"] if s["error"])
    return 1 if errors else 0


def _side(text: str) -> tuple[Path, str | None]:
    path, sep, config = text.rpartition("@")
    if sep and config and not Path(text).exists():
        return Path(path).expanduser(), config
    return Path(text).expanduser(), None


def _compare(args: argparse.Namespace, env: Environment, out: Output) -> int:
    (a_path, a_config), (b_path, b_config) = _side(args.compare[0]), _side(args.compare[1])
    report = compare_reports(
        load_report(a_path), load_report(b_path), a_config=a_config, b_config=b_config
    )
    run_dir = Path(args.out).expanduser() if args.out else _default_dir(env, "compare")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_report(run_dir, report)
    return _show(report, run_dir, out)
