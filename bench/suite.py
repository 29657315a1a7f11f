"""The whole benchmark: which workloads run, how often, and what each row checks."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.runner import Api, Bench, Config, RunStats, SaverKind, open_saver
from bench.server import ModelServer
from bench.workloads import Workload, chain, chain4, latency_workloads, text_chain

WALL_FACTOR = 1.1
"""Target: wall-clock at most this times the critical-path bound."""
INVOKE_FACTOR = 1.05
"""Target: a fan-out run through `invoke` takes at most this times its `ainvoke` run."""
OVERHEAD_MS = 3.0
"""Target: framework overhead per step with SQLite checkpointing, in milliseconds."""
FLAT_FACTOR = 1.5
"""Target: per-step values of the largest plan within this factor of the 10-step plan's."""
CHAIN_LENGTH = 50
"""Steps of the overhead chain."""
PLAN_SIZES = (10, 50, 200)
"""Plan lengths of the growth workloads (`--quick` leaves out the largest)."""
GROUPS = ("latency", "overhead", "scale")


def known_names() -> list[str]:
    """Every name `--only` accepts: the workloads and their groups."""
    names = [w.name for w in latency_workloads()]
    names.append(chain(CHAIN_LENGTH).name)
    names.extend(f"plan{size}" for size in PLAN_SIZES)
    return [*names, *GROUPS]


@dataclass
class Options:
    """What to run."""

    quick: bool = False
    """One run per workload and smaller plans."""
    only: list[str] = field(default_factory=list)
    """Workload names or groups ("latency", "overhead", "scale") to run; all when empty."""
    zero_latency: bool = False
    """Drop every tool and model latency (for the smoke test)."""
    warmup: bool = True
    """Make one untimed run first, so that imports and first connections are not timed."""

    @property
    def reps(self) -> int:
        """Timed runs per workload and configuration (the median is reported)."""
        return 1 if self.quick else 5

    @property
    def plan_sizes(self) -> tuple[int, ...]:
        """Plan lengths of the growth workloads."""
        return PLAN_SIZES[:-1] if self.quick else PLAN_SIZES

    def wants(self, workload: Workload) -> bool:
        """Whether `workload` is selected."""
        return not self.only or workload.name in self.only or workload.kind in self.only


@dataclass
class Measured:
    """The runs of one workload in one configuration, and the one reported (the median)."""

    runs: list[RunStats]

    @property
    def median(self) -> RunStats:
        """The run with the median wall-clock (the lower one for an even count)."""
        ordered = sorted(self.runs, key=lambda run: run.wall_s)
        return ordered[(len(ordered) - 1) // 2]

    def as_json(self) -> dict[str, Any]:
        """The median run's figures, with every run's wall-clock."""
        return {**asdict(self.median), "walls_s": [round(r.wall_s, 4) for r in self.runs]}


@dataclass
class Row:
    """One line of a results table: the measured configurations and the target checks."""

    workload: Workload
    results: dict[str, Measured]
    """By "parallel", "sequential" or "parallel-memory"."""
    checks: list[tuple[str, bool]] = field(default_factory=list)
    """(what was checked, whether it held)."""

    @property
    def passed(self) -> bool:
        """Whether every check held."""
        return all(ok for _, ok in self.checks)

    def as_json(self) -> dict[str, Any]:
        """The row as JSON data."""
        return {
            "workload": self.workload.name,
            "kind": self.workload.kind,
            "steps": len(self.workload.steps),
            "results": {name: m.as_json() for name, m in self.results.items()},
            "checks": [{"check": what, "pass": ok} for what, ok in self.checks],
            "pass": self.passed,
        }


async def measure(
    workload: Workload,
    config: Config,
    saver_kind: SaverKind,
    reps: int,
    server: ModelServer,
    root: Path,
    api: Api = "ainvoke",
) -> Measured:
    """Run `workload` `reps` times on one compiled graph with its own saver."""
    directory = root / f"{workload.name}-{config}-{saver_kind}-{api}"
    directory.mkdir(parents=True)
    async with open_saver(saver_kind, directory) as saver:
        bench = Bench(workload, config, saver_kind, saver, server, directory, api)
        return Measured([await bench.run() for _ in range(reps)])


async def run_suite(options: Options, progress: Callable[[str], None] = print) -> list[Row]:
    """Start the model server, run every selected workload, and check the targets."""
    server = ModelServer().start()
    # The models are made by planexec's default factory, which reads the environment
    # like any user's program; this process is the benchmark, so it sets it.
    os.environ["OPENAI_BASE_URL"] = server.url
    os.environ["OPENAI_API_KEY"] = "bench"
    try:
        with tempfile.TemporaryDirectory(prefix="planexec-bench-") as tmp:
            return await _run_all(options, server, Path(tmp), progress)
    finally:
        server.stop()


async def _run_all(
    options: Options, server: ModelServer, root: Path, progress: Callable[[str], None]
) -> list[Row]:
    def adjust(workload: Workload) -> Workload:
        return workload.zero_latency() if options.zero_latency else workload

    if options.warmup:
        warm = chain4().zero_latency()
        await measure(
            Workload("warmup", warm.kind, warm.goal, warm.steps),
            "parallel",
            "memory",
            1,
            server,
            root,
        )
    rows: list[Row] = []
    for workload in map(adjust, latency_workloads()):
        if options.wants(workload):
            progress(f"bench: {workload.name}")
            results = {
                config: await measure(workload, config, "sqlite", options.reps, server, root)
                for config in ("parallel", "sequential")
            }
            if workload.name.startswith("fanout"):
                results["invoke"] = await measure(
                    workload, "parallel", "sqlite-sync", options.reps, server, root, "invoke"
                )
            rows.append(check_latency(Row(workload, dict(results))))
    overhead = chain(CHAIN_LENGTH)
    if options.wants(overhead):
        progress(f"bench: {overhead.name}")
        results = {
            "parallel": await measure(overhead, "parallel", "sqlite", options.reps, server, root),
            "parallel-memory": await measure(
                overhead, "parallel", "memory", options.reps, server, root
            ),
            "sequential": await measure(
                overhead, "sequential", "sqlite", options.reps, server, root
            ),
            "parallel-invoke": await measure(
                overhead, "parallel", "sqlite-sync", options.reps, server, root, "invoke"
            ),
        }
        rows.append(check_overhead(Row(overhead, results)))
    scaled: list[Row] = []
    for size in options.plan_sizes:
        workload = text_chain(size)
        if options.wants(workload):
            progress(f"bench: {workload.name}")
            results = {
                config: await measure(workload, config, "sqlite", 1, server, root)
                for config in ("parallel", "sequential")
            }
            scaled.append(Row(workload, dict(results)))
    rows.extend(check_scale(scaled))
    return rows


def _every_run(row: Row) -> list[RunStats]:
    return [run for measured in row.results.values() for run in measured.runs]


def _common_checks(row: Row) -> list[tuple[str, bool]]:
    """Checks that hold for every run of every configuration, not only the median."""
    runs = _every_run(row)
    checks = [
        ("completed", all(run.status == "completed" for run in runs)),
        (
            "usage in state = requests served",
            all(
                run.calls == run.server_calls
                and (run.input_tokens, run.output_tokens) == run.server_tokens
                for run in runs
            ),
        ),
    ]
    if row.workload.fully_specified:
        parallel = row.results["parallel"].runs
        expected = {"planner": 1, "executor": 0, "replanner": 1}
        checks.append(("calls = 1 plan + 1 finish", all(r.calls == expected for r in parallel)))
    if row.workload.outputs or row.workload.files:
        checks.append(("outputs and files correct", all(not run.wrong for run in runs)))
    checks.append(
        (
            "no duplicated effects",
            all(run.duplicates == 0 and not run.missing for run in runs),
        )
    )
    return checks


def check_latency(row: Row) -> Row:
    """Calls, effects, no replan after a retried failure, and wall-clock against the bound."""
    run = row.results["parallel"].median
    row.checks = _common_checks(row)
    if row.workload.flaky:
        retried = {step: 2 for step in sorted(row.workload.flaky)}
        fixed = all(r.retried == retried and r.revisions == 1 for r in _every_run(row))
        row.checks.append(("retried once, no replan", fixed))
    if row.workload.tool_latency or row.workload.model_latency:
        row.checks.append(
            (f"wall <= {WALL_FACTOR}x bound", run.wall_s <= WALL_FACTOR * run.bound_s)
        )
    if "invoke" in row.results:
        synced = row.results["invoke"].median
        row.checks.append(
            (
                f"invoke wall <= {INVOKE_FACTOR}x ainvoke",
                synced.wall_s <= INVOKE_FACTOR * run.wall_s,
            )
        )
    return row


def overhead_ms(run: RunStats) -> float:
    """Milliseconds of executor time per step."""
    return 1000 * run.executor_s / run.steps


def check_overhead(row: Row) -> Row:
    """Calls, effects, and the framework's time per step with SQLite checkpointing."""
    row.checks = _common_checks(row)
    run = row.results["parallel"].median
    row.checks.append((f"overhead <= {OVERHEAD_MS:g} ms/step", overhead_ms(run) <= OVERHEAD_MS))
    if "parallel-invoke" in row.results:
        synced = row.results["parallel-invoke"].median
        row.checks.append(
            (f"invoke overhead <= {OVERHEAD_MS:g} ms/step", overhead_ms(synced) <= OVERHEAD_MS)
        )
    return row


def prompt_per_step(run: RunStats) -> float:
    """Executor prompt tokens per executor call."""
    return run.executor_prompt_tokens / max(1, run.calls["executor"])


def bytes_per_step(run: RunStats) -> float:
    """Checkpoint and pending-write bytes per step."""
    return (run.checkpoint_bytes or 0) / run.steps


def check_scale(rows: list[Row]) -> list[Row]:
    """Calls, and per-step prompt tokens and checkpoint bytes flat against the smallest plan."""
    if not rows:
        return rows
    base = rows[0].results["parallel"].median
    for row in rows:
        run = row.results["parallel"].median
        row.checks = _common_checks(row)
        steps = len(row.workload.steps)
        row.checks.append(
            (
                f"calls = 1 plan + {steps} executor + 1 finish",
                run.calls == {"planner": 1, "executor": steps, "replanner": 1},
            )
        )
        if row is not rows[0]:
            row.checks.append(
                (
                    f"executor prompt tokens/step within {FLAT_FACTOR}x of {base.steps} steps",
                    _within(prompt_per_step(run), prompt_per_step(base)),
                )
            )
            row.checks.append(
                (
                    f"checkpoint bytes/step within {FLAT_FACTOR}x of {base.steps} steps",
                    _within(bytes_per_step(run), bytes_per_step(base)),
                )
            )
    return rows


def _within(value: float, reference: float) -> bool:
    return reference / FLAT_FACTOR <= value <= reference * FLAT_FACTOR
