"""The evaluation report: `results.json` for machines, `report.html` for people.

The JSON holds the run's settings, every task score, a summary per configuration
(overall and per category) and, with two or more configurations, the comparison of
the first two (see `planexec.evals.scoring`). The HTML shows the same with charts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from planexec.evals.config import EvalConfig
from planexec.evals.html import render_html
from planexec.evals.scoring import TaskScore, compare, summaries
from planexec.state import timestamp

REPORT_FORMAT = 1
RESULTS_FILE = "results.json"
HTML_FILE = "report.html"


class ReportError(ValueError):
    """A results file that cannot be read or compared."""


def build_report(
    run: Mapping[str, Any],
    configs: Sequence[EvalConfig],
    tasks: Sequence[str],
    scores: Sequence[TaskScore],
) -> dict[str, Any]:
    """The report of a run: its settings (`run`), configurations and scores."""
    position = {task: i for i, task in enumerate(tasks)}
    rank = {config.name: i for i, config in enumerate(configs)}
    ordered = sorted(
        scores, key=lambda s: (rank.get(s["config"], 99), position.get(s["task"], 10**6))
    )
    by_config: dict[str, list[TaskScore]] = {c.name: [] for c in configs}
    for score in ordered:
        by_config.setdefault(score["config"], []).append(score)
    comparison = None
    if len(configs) >= 2:
        a, b = configs[0].name, configs[1].name
        comparison = compare(by_config[a], by_config[b], a, b)
    return {
        "planexec_eval": REPORT_FORMAT,
        "run": {**run, "reported_at": timestamp()},
        "configs": [{**c.model_dump(), "label": c.label} for c in configs],
        "complete": len(ordered) == len(configs) * len(tasks),
        "summary": summaries(ordered),
        "comparison": comparison,
        "tasks": ordered,
    }


def write_report(run_dir: Path, report: Mapping[str, Any]) -> None:
    """Write `results.json` and `report.html` into `run_dir`."""
    text = json.dumps(report, indent=1, ensure_ascii=False, default=str)
    (run_dir / RESULTS_FILE).write_text(text + "\n", encoding="utf-8")
    (run_dir / HTML_FILE).write_text(render_html(report), encoding="utf-8")


def load_report(path: str | Path) -> dict[str, Any]:
    """A report from a `results.json` file or a run directory holding one."""
    source = Path(path)
    if source.is_dir():
        source = source / RESULTS_FILE
    try:
        report = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read the results in {source}: {exc}") from exc
    if not isinstance(report, dict) or report.get("planexec_eval") != REPORT_FORMAT:
        raise ReportError(f"{source} is not a planexec evaluation's results.json")
    return report


def _side(
    report: Mapping[str, Any], config: str | None, where: str
) -> tuple[EvalConfig, list[Any]]:
    configs = [EvalConfig.model_validate(_plain(c)) for c in report["configs"]]
    names = [c.name for c in configs]
    if config is None:
        if len(configs) != 1:
            raise ReportError(f"{where} has configurations {', '.join(names)}: pick one as @NAME")
        chosen = configs[0]
    elif config in names:
        chosen = configs[names.index(config)]
    else:
        raise ReportError(f"{where} has no configuration {config!r} ({', '.join(names)})")
    return chosen, [s for s in report["tasks"] if s["config"] == chosen.name]


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "label"}


def compare_reports(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    *,
    a_config: str | None = None,
    b_config: str | None = None,
) -> dict[str, Any]:
    """One report comparing a configuration of report `a` with one of report `b`.

    Configurations that share a name are renamed "A-<name>" and "B-<name>".
    """
    first, first_scores = _side(a, a_config, "A")
    second, second_scores = _side(b, b_config, "B")
    if first.name == second.name:
        first = first.model_copy(update={"name": f"A-{first.name}"})
        second = second.model_copy(update={"name": f"B-{second.name}"})
    scores = [{**s, "config": first.name} for s in first_scores]
    scores += [{**s, "config": second.name} for s in second_scores]
    tasks = list(dict.fromkeys(s["task"] for s in scores))
    run = {"compared": [a.get("run", {}), b.get("run", {})], "suite": a.get("run", {}).get("suite")}
    return build_report(run, [first, second], tasks, cast(list[TaskScore], scores))
