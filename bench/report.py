"""The results as Markdown tables and as JSON."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from bench.runner import MAX_CONCURRENCY, RunStats
from bench.suite import (
    FLAT_FACTOR,
    INVOKE_FACTOR,
    Options,
    Row,
    bytes_per_step,
    overhead_ms,
    prompt_per_step,
)
from bench.workloads import MODEL_LATENCY_S, PER_TOKEN_S, RETRY_INTERVAL_S


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    versions: dict[str, str | None] = {}
    for package in (
        "langgraph",
        "langchain-core",
        "langchain-openai",
        "langgraph-checkpoint-sqlite",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": versions,
    }


def command(argv: list[str]) -> str:
    """The command that produced the results."""
    if not argv:
        return "make bench  (= .venv/bin/python -m bench)"
    return " ".join([".venv/bin/python -m bench", *argv])


def _calls(run: RunStats) -> str:
    return f"{run.calls['planner']}/{run.calls['executor']}/{run.calls['replanner']}"


def _tokens(run: RunStats) -> str:
    return f"{run.input_tokens:,}/{run.output_tokens:,}"


def _verdict(row: Row) -> str:
    failed = [what for what, ok in row.checks if not ok]
    return "PASS" if not failed else "FAIL: " + "; ".join(failed)


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out.extend("| " + " | ".join(cells) + " |" for cells in lines)
    return out


def latency_table(rows: list[Row]) -> list[str]:
    """Workloads a-c: calls, tokens, wall-clock against the bound, and the sequential run."""
    lines = []
    for row in rows:
        par = row.results["parallel"].median
        seq = row.results["sequential"].median
        ratio = f"{par.wall_s / par.bound_s:.3f}" if par.bound_s > 0 else "-"
        lines.append(
            [
                row.workload.name,
                str(par.steps),
                _calls(par),
                _tokens(par),
                f"{par.wall_s:.3f}",
                f"{par.bound_s:.3f}",
                f"{1000 * (par.wall_s - par.bound_s):.0f}",
                ratio,
                str(par.duplicates),
                _calls(seq),
                _tokens(seq),
                f"{seq.wall_s:.3f}",
                f"{seq.wall_s / par.wall_s:.1f}x",
                _invoke_wall(row),
                _verdict(row),
            ]
        )
    header = [
        "workload",
        "steps",
        "calls P/E/R",
        "tokens in/out",
        "wall s",
        "bound s",
        "wall - bound ms",
        "wall/bound",
        "dup. effects",
        "seq. calls P/E/R",
        "seq. tokens in/out",
        "seq. wall s",
        "seq./par.",
        "invoke wall s",
        "targets",
    ]
    return _table(header, lines)


def _invoke_wall(row: Row) -> str:
    """The sync API's wall-clock for the row, and its ratio to the async API's."""
    if "invoke" not in row.results:
        return "-"
    synced = row.results["invoke"].median.wall_s
    return f"{synced:.3f} ({synced / row.results['parallel'].median.wall_s:.3f}x)"


def overhead_table(rows: list[Row]) -> list[str]:
    """Workload d: executor time per step with SQLite and in memory, and sequentially."""
    configs = (
        ("parallel", "SQLite, sync", None),
        ("parallel-memory", "in memory", "(reference)"),
        ("sequential", "SQLite, sync, sequential", "(comparison)"),
        ("parallel-invoke", "SqliteSaver, sync, invoke", None),
    )
    lines = []
    for row in rows:
        for name, label, note in configs:
            if name not in row.results:
                continue
            run = row.results[name].median
            lines.append(
                [
                    row.workload.name,
                    label,
                    _calls(run),
                    _tokens(run),
                    f"{1000 * run.executor_s:.1f}",
                    f"{overhead_ms(run):.2f}",
                    f"{run.wall_s:.3f}",
                    str(run.duplicates),
                    note or _verdict(row),
                ]
            )
    header = [
        "workload",
        "checkpointer",
        "calls P/E/R",
        "tokens in/out",
        "executor ms",
        "overhead ms/step",
        "wall s",
        "dup. effects",
        "targets",
    ]
    return _table(header, lines)


def scale_table(rows: list[Row]) -> list[str]:
    """Workload e: per-step executor prompt tokens and checkpoint bytes as plans grow."""
    lines = []
    for row in rows:
        par = row.results["parallel"].median
        seq = row.results["sequential"].median
        lines.append(
            [
                str(par.steps),
                _calls(par),
                _tokens(par),
                f"{prompt_per_step(par):.0f}",
                f"{bytes_per_step(par):,.0f}",
                f"{par.checkpoints}/{par.writes}",
                f"{par.wall_s:.3f}",
                _calls(seq),
                _tokens(seq),
                f"{seq.input_tokens / seq.steps:,.0f}",
                f"{bytes_per_step(seq):,.0f}",
                f"{seq.wall_s:.3f}",
                _verdict(row),
            ]
        )
    header = [
        "plan steps",
        "calls P/E/R",
        "tokens in/out",
        "executor prompt tokens/step",
        "checkpoint bytes/step",
        "checkpoints/writes",
        "wall s",
        "seq. calls P/E/R",
        "seq. tokens in/out",
        "seq. prompt tokens/step (all roles)",
        "seq. checkpoint bytes/step",
        "seq. wall s",
        "targets",
    ]
    return _table(header, lines)


def summary(rows: list[Row]) -> str:
    """The final line: how many rows met every target, and which did not."""
    failed = [row.workload.name for row in rows if not row.passed]
    checks = sum(len(row.checks) for row in rows)
    passed = sum(ok for row in rows for _, ok in row.checks)
    line = (
        f"bench summary: {len(rows) - len(failed)}/{len(rows)} rows PASS ({passed}/{checks} checks)"
    )
    return line + (f"; FAIL: {', '.join(failed)}" if failed else "")


def markdown(
    rows: list[Row], options: Options, argv: list[str], loads: tuple[float, float] | None = None
) -> str:
    """The full report; `loads` is the 1-minute load average before and after the runs."""
    info = machine()
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    reps = "1 run" if options.reps == 1 else f"median of {options.reps} runs"
    lines = [
        "# planexec benchmark",
        "",
        f"Command: `{command(argv)}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {info['cores']} cores, Python {info['python']}, {info['platform']}; "
        f"{packages}."
        + (f" Load average {loads[0]:.2f} before, {loads[1]:.2f} after." if loads else ""),
        "",
        "The real graph (`build_graph`, default model factory: `ChatOpenAI`) against "
        "`tests/fake_openai.py` on 127.0.0.1; `AsyncSqliteSaver` on a temporary file with "
        f'`durability="sync"`; `review="never"`, `max_concurrency={MAX_CONCURRENCY}`, '
        f"retry wait {1000 * RETRY_INTERVAL_S:g} ms. Sequential = the same graph with "
        '`max_concurrency=1, max_tool_concurrency=1, replan_policy="after_each_step"`. '
        "Invoke = the parallel "
        "configuration through the sync API: `graph.stream` called from a worker thread, "
        "with LangGraph's `SqliteSaver` (planexec runs the graph on its own event loop; "
        f"target: within {INVOKE_FACTOR}x of the async run). Calls are planner/executor/"
        "replanner, from the final state's usage (checked against the requests the server "
        "answered). Dup. effects = tool effects beyond one per step (each tool records its "
        "idempotency key). Wall-clock and overhead rows: "
        f"{reps} after a warm-up run; growth rows: 1 run. `targets` names every check "
        "that failed (all checks per row are in results.json).",
    ]
    latency = [r for r in rows if r.workload.kind == "latency"]
    if latency:
        latencies = (
            "no latency (smoke run)"
            if options.zero_latency
            else f"model: {1000 * MODEL_LATENCY_S:g} ms per call + {1000 * PER_TOKEN_S:g} ms "
            "per completion token; tools: 100-200 ms"
        )
        lines += [
            "",
            f"## Wall-clock against the critical path ({latencies})",
            "",
            "Bound = longest chain of tool latencies (a retried step counts both attempts "
            "and the retry wait) + the planning call + the final replanner call, as the "
            "server timed them.",
            "",
            *latency_table(latency),
        ]
    overhead = [r for r in rows if r.workload.kind == "overhead"]
    if overhead:
        lines += [
            "",
            "## Framework overhead (zero latency everywhere)",
            "",
            "Overhead per step = time of the executor pass (from the update before it to "
            "its own update) / steps; each step is a calculator call on the previous result.",
            "",
            *overhead_table(overhead),
        ]
    scale = [r for r in rows if r.workload.kind == "scale"]
    if scale:
        lines += [
            "",
            "## Growth with plan size (zero latency; each step answered by the executor "
            "model from the previous step's result)",
            "",
            "Checkpoint bytes = the thread's rows in the SQLite `checkpoints` and `writes` "
            f"tables after the run. Flat = within {FLAT_FACTOR:g}x of the smallest plan's "
            "value.",
            "",
            *scale_table(scale),
        ]
    lines += ["", summary(rows), ""]
    return "\n".join(lines)


def as_json(
    rows: list[Row], options: Options, argv: list[str], loads: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The full report as JSON data."""
    return {
        "command": command(argv),
        "argv": [sys.executable, "-m", "bench", *argv],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_1min": list(loads) if loads else None,
        "settings": {
            "reps": options.reps,
            "quick": options.quick,
            "model_latency_s": MODEL_LATENCY_S,
            "per_token_latency_s": PER_TOKEN_S,
            "retry_interval_s": RETRY_INTERVAL_S,
            "max_concurrency": MAX_CONCURRENCY,
            "durability": "sync",
            "zero_latency": options.zero_latency,
        },
        "rows": [row.as_json() for row in rows],
        "summary": summary(rows),
    }
