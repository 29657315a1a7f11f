"""The evaluation report as one self-contained HTML page with inline SVG charts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from planexec.evals.svg import Point, Series, bar_chart, scatter

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td .text { display: block; text-align: left; }
.pass { color: #2a7d2a; } .fail { color: #b22222; }
.headline { font-size: 1.2rem; background: #f3f6fb; padding: 0.8rem 1rem; border-radius: 6px; }
.charts svg { margin: 0.5rem 1rem 0.5rem 0; border: 1px solid #eee; }
"""


def percent(value: float) -> str:
    """0.875 -> "87.5%"."""
    return f"{100 * value:.1f}".rstrip("0").rstrip(".") + "%"


def usd(value: float) -> str:
    """A cost in dollars, with the precision small costs need."""
    return f"${value:.4f}" if value < 10 else f"${value:,.2f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _roles(counts: Mapping[str, float], fmt: Callable[[float], str] = lambda v: f"{v:g}") -> str:
    return escape(" / ".join(fmt(counts.get(r, 0)) for r in ("planner", "executor", "replanner")))


def _summary_rows(summary: Mapping[str, Any], label: str) -> list[str]:
    return [
        escape(label),
        f"{summary['solved']}/{summary['tasks']}",
        percent(summary["success_rate"]),
        usd(summary["cost_usd"]),
        usd(summary["mean_cost_usd"]),
        _roles(summary["calls_by_role"]),
        _roles(summary["tokens_by_role"], lambda v: f"{v:,}"),
        str(summary["replans"]),
        str(summary["plan_edits"]),
        str(summary["refused_calls"]),
        str(summary["budget_stops"]),
        str(summary["errors"]),
        f"{summary['mean_wall_s']:.2f}s",
    ]


SUMMARY_HEADER = (
    "",
    "solved",
    "success",
    "cost",
    "cost/task",
    "calls P/E/R",
    "tokens P/E/R",
    "replans",
    "plan edits",
    "blocked calls",
    "budget stops",
    "errors",
    "wall/task",
)


def _charts(report: Mapping[str, Any]) -> str:
    summary: Mapping[str, Any] = report["summary"]
    names = list(summary)
    categories = list(dict.fromkeys(c for s in summary.values() for c in s["categories"]))

    def per_category(key: str) -> list[Series]:
        return [
            Series(name, [summary[name]["categories"].get(c, {}).get(key, 0.0) for c in categories])
            for name in names
        ]

    points = []
    for index, name in enumerate(names):
        overall = summary[name]["overall"]
        points.append(Point(overall["mean_cost_usd"], overall["success_rate"], name, index))
        for category, item in summary[name]["categories"].items():
            points.append(
                Point(
                    item["mean_cost_usd"], item["success_rate"], f"{name} {category}", index, False
                )
            )
    return "".join(
        [
            bar_chart(
                "Success rate per category",
                categories,
                per_category("success_rate"),
                fmt=percent,
                axis_label="tasks solved",
                top=1.0,
            ),
            bar_chart(
                "Cost per task, by category",
                categories,
                per_category("mean_cost_usd"),
                fmt=usd,
                axis_label="mean cost per task (USD)",
            ),
            scatter(
                "Cost against success, per configuration",
                points,
                names,
                x_label="mean cost per task (USD); small points: categories",
                y_label="success rate",
                x_fmt=usd,
                y_fmt=percent,
                y_top=1.0,
            ),
        ]
    )


def _comparison(comparison: Mapping[str, Any] | None) -> str:
    if comparison is None:
        return ""
    a, b = escape(comparison["a"]), escape(comparison["b"])
    overall = comparison["overall"]
    ratio = overall["cost_ratio"]
    headline = (
        f"<b>{b}</b> costs <b>{_ratio(ratio)}&#215;</b> what <b>{a}</b> costs at equal success"
        if ratio is not None
        else f"no cost ratio: {a} and {b} solved no task with a cost in common"
    )
    rows = [
        [
            escape(name),
            str(item["tasks"]),
            percent(item["success_rate_a"]),
            percent(item["success_rate_b"]),
            str(item["both_solved"]),
            usd(item["cost_a"]),
            usd(item["cost_b"]),
            _ratio(item["cost_ratio"]),
            _ratio(item["tokens_ratio"]),
            _ratio(item["calls_ratio"]),
        ]
        for name, item in [("all tasks", overall), *comparison["categories"].items()]
    ]
    header = ["", "tasks", f"success {a}", f"success {b}", "both solved", f"cost {a}",
              f"cost {b}", "cost ratio", "tokens ratio", "calls ratio"]  # fmt: skip
    differ = (
        f"<p>Solved only by {a}: {escape(', '.join(comparison['only_a']) or 'none')}. "
        f"Solved only by {b}: {escape(', '.join(comparison['only_b']) or 'none')}.</p>"
    )
    return (
        f"<h2>{a} against {b}</h2><p class='headline'>{headline} "
        f"(over {overall['both_solved']} tasks both solved; success "
        f"{percent(overall['success_rate_a'])} against {percent(overall['success_rate_b'])}).</p>"
        f"<p>{escape(comparison['definition'])}.</p>{_table(header, rows)}{differ}"
    )


def _task_rows(tasks: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for score in tasks:
        failed = [c for c in score["checks"] if not c["passed"]]
        notes = "; ".join(f"{c['type']}: {c['detail']}" for c in failed) or (score["error"] or "")
        mark = "<span class='pass'>✓</span>" if score["success"] else "<span class='fail'>✗</span>"
        calls = {role: use["calls"] for role, use in score["usage"].items()}
        rows.append(
            [
                escape(score["task"]),
                escape(score["category"]),
                escape(score["config"]),
                mark,
                escape(str(score["status"])),
                _roles(calls),
                f"{score['tokens']:,}",
                usd(score["cost_usd"]),
                str(score["replans"]),
                str(score["plan_edits"]),
                str(score["refused_calls"]),
                f"{score['wall_s']:.2f}s",
                f"<span class='text'>{escape(notes)}</span>",
            ]
        )
    return rows


def render_html(report: Mapping[str, Any]) -> str:
    """The report as an HTML page."""
    run = report.get("run", {})
    configs = ", ".join(
        f"<b>{escape(c['name'])}</b> ({escape(c['label'])})" for c in report["configs"]
    )
    overall = [_summary_rows(s["overall"], name) for name, s in report["summary"].items()]
    per_category = [
        _summary_rows(item, f"{name} · {category}")
        for name, s in report["summary"].items()
        for category, item in s["categories"].items()
    ]
    task_header = ["task", "category", "config", "ok", "status", "calls P/E/R", "tokens",
                   "cost", "replans", "edits", "blocked", "wall", "failed checks"]  # fmt: skip
    incomplete = (
        ""
        if report.get("complete", True)
        else "<p><b>Incomplete:</b> some tasks have no score yet.</p>"
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>planexec evaluation: {escape(str(run.get('suite', '')))}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>planexec evaluation: {escape(str(run.get('suite', '')))}</h1>",
            f"<p>Configurations: {configs}. "
            f"Reported {escape(str(run.get('reported_at', '')))}.</p>",
            incomplete,
            _comparison(report.get("comparison")),
            f"<div class='charts'>{_charts(report)}</div>",
            "<h2>Summary</h2>",
            _table(SUMMARY_HEADER, overall),
            "<h2>Per category</h2>",
            _table(SUMMARY_HEADER, per_category),
            "<h2>Tasks</h2>",
            _table(task_header, _task_rows(report["tasks"])),
            "</body></html>",
        ]
    )
