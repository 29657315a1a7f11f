"""Scores: one per task run, summaries per category, and the comparison of two configurations.

The comparison's headline is the **cost ratio at equal success**: over the tasks that
*both* configurations solved, the total cost of B divided by the total cost of A. A
value of 0.25 means B solved those tasks for a quarter of A's cost. It is undefined
(null) when no task was solved by both or A's cost on them is zero. Success rates are
reported beside it, over the tasks both configurations ran, since a cheap
configuration that solves fewer tasks is not the same deal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

from planexec.evals.checks import CheckResult
from planexec.state import Usage, add_usage

COST_RATIO_DEFINITION = (
    "cost ratio at equal success = total cost of B / total cost of A, over the tasks both "
    "configurations solved"
)
_BUDGET = re.compile(r"budget (\w+) exhausted")


class TaskScore(TypedDict):
    """What one task run under one configuration achieved and spent."""

    task: str
    category: str
    config: str
    success: bool
    status: str | None
    """The run's status, or "error" when the evaluation itself failed for this task."""
    reason: str | None
    answer: str | None
    checks: list[CheckResult]
    usage: dict[str, Usage]
    """Model calls, tokens and cost per role (planner, executor, replanner)."""
    model_calls: int
    tokens: int
    cost_usd: float
    replans: int
    plan_edits: int
    """Plan reviews the reviewer answered with an edit or a rejection."""
    refused_calls: int
    """Tool calls the executor model asked for that the plan did not allow (none ran)."""
    steps_run: int
    failed_steps: int
    wall_s: float
    """Seconds the evaluation spent on the task in the session that finished it."""
    active_s: float
    """Seconds the run spent working, across every session (from its checkpoint)."""
    budget: str | None
    """The budget that stopped the run, if one did."""
    error: str | None
    resumed: bool


def stopping_budget(status: str | None, reason: str | None) -> str | None:
    """Which budget ended a "budget_exhausted" run: a Context budget or `max_replans`."""
    if status != "budget_exhausted":
        return None
    found = _BUDGET.search(reason or "")
    if found:
        return found.group(1)
    return "max_replans" if "max_replans" in (reason or "") else "budget"


def score_run(
    *,
    task: str,
    category: str,
    config: str,
    values: Mapping[str, Any],
    checks: list[CheckResult],
    wall_s: float,
    resumed: bool,
) -> TaskScore:
    """The score of a finished run from its final state values and check verdicts."""
    usage: dict[str, Usage] = dict(values.get("usage") or {})
    results = list((values.get("results") or {}).values())
    reviews = values.get("reviews") or []
    status = values.get("status")
    reason = values.get("reason")
    return {
        "task": task,
        "category": category,
        "config": config,
        "success": bool(checks) and all(c["passed"] for c in checks),
        "status": status,
        "reason": reason,
        "answer": values.get("answer"),
        "checks": checks,
        "usage": usage,
        "model_calls": sum(u["calls"] for u in usage.values()),
        "tokens": sum(u["input_tokens"] + u["output_tokens"] for u in usage.values()),
        "cost_usd": round(sum(u["cost_usd"] for u in usage.values()), 8),
        "replans": sum(1 for r in values.get("revisions") or [] if r["source"] == "replanner"),
        "plan_edits": sum(1 for r in reviews if r["decision"] in ("edit", "reject")),
        "refused_calls": sum(len(r.get("refused_calls") or []) for r in results),
        "steps_run": sum(1 for r in results if r["status"] != "skipped"),
        "failed_steps": sum(1 for r in results if r["status"] == "failed"),
        "wall_s": round(wall_s, 4),
        "active_s": round(float(values.get("active_s") or 0.0), 4),
        "budget": stopping_budget(status, reason),
        "error": None,
        "resumed": resumed,
    }


def error_score(
    task: str, category: str, config: str, error: str, wall_s: float, resumed: bool
) -> TaskScore:
    """The score of a task the evaluation could not run to its end."""
    return {
        "task": task,
        "category": category,
        "config": config,
        "success": False,
        "status": "error",
        "reason": error,
        "answer": None,
        "checks": [],
        "usage": {},
        "model_calls": 0,
        "tokens": 0,
        "cost_usd": 0.0,
        "replans": 0,
        "plan_edits": 0,
        "refused_calls": 0,
        "steps_run": 0,
        "failed_steps": 0,
        "wall_s": round(wall_s, 4),
        "active_s": 0.0,
        "budget": None,
        "error": error,
        "resumed": resumed,
    }


class Summary(TypedDict):
    """Totals and rates over a set of task scores."""

    tasks: int
    solved: int
    success_rate: float
    cost_usd: float
    mean_cost_usd: float
    model_calls: int
    tokens: int
    calls_by_role: dict[str, int]
    tokens_by_role: dict[str, int]
    cost_by_role: dict[str, float]
    replans: int
    plan_edits: int
    refused_calls: int
    budget_stops: int
    errors: int
    mean_wall_s: float


def summarize(scores: Sequence[TaskScore]) -> Summary:
    """Totals and rates over `scores`."""
    count = len(scores)
    solved = sum(1 for s in scores if s["success"])
    cost = sum(s["cost_usd"] for s in scores)
    by_role: dict[str, Usage] = {}
    for score in scores:
        by_role = add_usage(by_role, score["usage"])
    return {
        "tasks": count,
        "solved": solved,
        "success_rate": solved / count if count else 0.0,
        "cost_usd": round(cost, 8),
        "mean_cost_usd": cost / count if count else 0.0,
        "model_calls": sum(s["model_calls"] for s in scores),
        "tokens": sum(s["tokens"] for s in scores),
        "calls_by_role": {role: u["calls"] for role, u in by_role.items()},
        "tokens_by_role": {
            role: u["input_tokens"] + u["output_tokens"] for role, u in by_role.items()
        },
        "cost_by_role": {role: u["cost_usd"] for role, u in by_role.items()},
        "replans": sum(s["replans"] for s in scores),
        "plan_edits": sum(s["plan_edits"] for s in scores),
        "refused_calls": sum(s["refused_calls"] for s in scores),
        "budget_stops": sum(1 for s in scores if s["budget"]),
        "errors": sum(1 for s in scores if s["error"]),
        "mean_wall_s": sum(s["wall_s"] for s in scores) / count if count else 0.0,
    }


class ConfigSummary(TypedDict):
    """One configuration's summary, overall and per category."""

    overall: Summary
    categories: dict[str, Summary]


def summaries(scores: Iterable[TaskScore]) -> dict[str, ConfigSummary]:
    """Summaries per configuration, overall and per category (in order of appearance)."""
    by_config: dict[str, list[TaskScore]] = {}
    for score in scores:
        by_config.setdefault(score["config"], []).append(score)
    out: dict[str, ConfigSummary] = {}
    for config, items in by_config.items():
        categories: dict[str, list[TaskScore]] = {}
        for score in items:
            categories.setdefault(score["category"], []).append(score)
        out[config] = {
            "overall": summarize(items),
            "categories": {name: summarize(group) for name, group in categories.items()},
        }
    return out


class SideBySide(TypedDict):
    """Configuration A against B over the tasks both ran."""

    tasks: int
    solved_a: int
    solved_b: int
    success_rate_a: float
    success_rate_b: float
    both_solved: int
    cost_a: float
    """A's total cost over the tasks both solved."""
    cost_b: float
    cost_ratio: float | None
    """cost_b / cost_a: the cost ratio at equal success."""
    tokens_ratio: float | None
    calls_ratio: float | None


class Comparison(TypedDict):
    """Two configurations side by side, overall and per category."""

    a: str
    b: str
    definition: str
    overall: SideBySide
    categories: dict[str, SideBySide]
    only_a: list[str]
    """Tasks only A solved."""
    only_b: list[str]
    missing: list[str]
    """Tasks only one of the two ran (left out of every figure)."""


def _ratio(b: float, a: float) -> float | None:
    return b / a if a > 0 else None


def side_by_side(a: Sequence[TaskScore], b: Sequence[TaskScore]) -> SideBySide:
    """A against B over the task ids both ran (each side holds one configuration)."""
    by_a = {s["task"]: s for s in a}
    by_b = {s["task"]: s for s in b}
    common = [t for t in by_a if t in by_b]
    both = [t for t in common if by_a[t]["success"] and by_b[t]["success"]]
    solved_a = sum(1 for t in common if by_a[t]["success"])
    solved_b = sum(1 for t in common if by_b[t]["success"])
    cost_a = sum(by_a[t]["cost_usd"] for t in both)
    cost_b = sum(by_b[t]["cost_usd"] for t in both)
    return {
        "tasks": len(common),
        "solved_a": solved_a,
        "solved_b": solved_b,
        "success_rate_a": solved_a / len(common) if common else 0.0,
        "success_rate_b": solved_b / len(common) if common else 0.0,
        "both_solved": len(both),
        "cost_a": round(cost_a, 8),
        "cost_b": round(cost_b, 8),
        "cost_ratio": _ratio(cost_b, cost_a),
        "tokens_ratio": _ratio(
            sum(by_b[t]["tokens"] for t in both), sum(by_a[t]["tokens"] for t in both)
        ),
        "calls_ratio": _ratio(
            sum(by_b[t]["model_calls"] for t in both), sum(by_a[t]["model_calls"] for t in both)
        ),
    }


def compare(a: Sequence[TaskScore], b: Sequence[TaskScore], a_name: str, b_name: str) -> Comparison:
    """Configuration `a` against `b`: overall, per category, and which tasks differ."""
    by_a = {s["task"]: s for s in a}
    by_b = {s["task"]: s for s in b}
    common = [t for t in by_a if t in by_b]
    categories: dict[str, tuple[list[TaskScore], list[TaskScore]]] = {}
    for task in common:
        group = categories.setdefault(by_a[task]["category"], ([], []))
        group[0].append(by_a[task])
        group[1].append(by_b[task])
    return {
        "a": a_name,
        "b": b_name,
        "definition": COST_RATIO_DEFINITION,
        "overall": side_by_side(a, b),
        "categories": {name: side_by_side(*pair) for name, pair in categories.items()},
        "only_a": [t for t in common if by_a[t]["success"] and not by_b[t]["success"]],
        "only_b": [t for t in common if by_b[t]["success"] and not by_a[t]["success"]],
        "missing": sorted(set(by_a) ^ set(by_b)),
    }
