"""Linear algorithms: plan validation, topological order and whole runs, per step.

`python -m bench.linear [--quick]` measures how the cost per step grows with the plan,
for three shapes of plan:

- `chain`: s1 <- s2 <- ... <- sn, listed in order;
- `newest-first`: the same chain listed from sn down to s1 (the order that made
  validation recurse once per step, and topological order rescan the steps n times);
- `fan-out`: s1, then s2..sn each depending on s1 only.

Two tables. **Algorithms**: `parse_plan` + `validate_plan` and `topological_order` on
plans of 500 to 8,000 steps (the best of 7 samples, the shapes measured in turn), in
microseconds per step, with the growth exponent fitted from the smallest to the largest
plan (1 is linear, 2 is quadratic). **Whole runs**: the real graph (`build_graph`,
scripted planner and replanner, calculator steps with complete arguments, so no model
call per step) on an
`AsyncSqliteSaver` with `durability="sync"`, one executor pass, in milliseconds per
step of the executor pass, for the fan-out also one step at a time (a chain never
runs two steps at once, so that is the comparison at equal concurrency). The target: a
2,000-step chain costs the same per step as a 2,000-step fan-out, within 20%, in both
tables.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from planexec import Context, ScriptedChatModel, build_graph, run_config
from planexec.checkpoints import open_checkpointer
from planexec.plan import StepDict, parse_plan, topological_order, validate_plan
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import default_tools

SHAPES = ("chain", "newest-first", "fan-out")
ONE_AT_A_TIME = "fan-out, 1 at a time"
SIZES = (500, 1000, 2000, 4000, 8000)
RUN_SIZES = (500, 1000, 2000)
TARGET_SIZE = 2000
SAME_FACTOR = 1.2
"""Target: a chain's cost per step at most this times the fan-out's (and the reverse)."""
REPS = 7


def plan_of(shape: str, n: int) -> list[StepDict]:
    """A plan of `n` calculator steps in `shape`."""
    steps: list[StepDict] = []
    for i in range(1, n + 1):
        if shape == "fan-out":
            deps = ["s1"] if i > 1 else []
            expression = "{{s1}} + 1" if i > 1 else "1"
        else:
            deps = [f"s{i - 1}"] if i > 1 else []
            expression = f"{{{{s{i - 1}}}}} + 1" if i > 1 else "1"
        steps.append(
            {
                "id": f"s{i}",
                "description": f"step {i}",
                "tool": "calculator",
                "args": {"expression": expression},
                "depends_on": deps,
            }
        )
    return steps[::-1] if shape == "newest-first" else steps


@dataclass
class AlgorithmRow:
    """Per-step cost of validation and ordering for one shape, at each size."""

    shape: str
    validate_us: dict[int, float]
    order_us: dict[int, float]

    def exponent(self, series: dict[int, float]) -> float:
        """The fitted growth exponent of total cost from the smallest to the largest size."""
        small, large = min(series), max(series)
        total = (series[large] * large) / (series[small] * small)
        return math.log(total) / math.log(large / small)


@dataclass
class RunRow:
    """Executor milliseconds per step of a whole run, for one shape and size."""

    shape: str
    steps: int
    executor_ms_per_step: float
    wall_s: float
    status: str


def _interleaved(works: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Seconds one call of each work takes: the best of REPS samples of 100 ms or more.

    The best, not the median: on a shared machine, other work only ever adds time. The
    garbage collector is off while a sample is timed, and run between samples.
    """
    repeats = {}
    for name, work in works.items():
        began = time.perf_counter()
        work()
        repeats[name] = max(1, math.ceil(0.1 / max(time.perf_counter() - began, 1e-6)))
    best = dict.fromkeys(works, math.inf)
    # As timeit does: the collector's passes cost in proportion to everything alive,
    # which would charge one plan for the garbage of all the others.
    gc.collect()
    gc.disable()
    try:
        for _ in range(REPS):
            for name, work in works.items():
                began = time.perf_counter()
                for _ in range(repeats[name]):
                    work()
                best[name] = min(best[name], (time.perf_counter() - began) / repeats[name])
                gc.collect()
    finally:
        gc.enable()
    return best


def _checker(steps: list[StepDict], tools: dict[str, Any]) -> Callable[[], None]:
    data = {"steps": steps}

    def check() -> None:
        parsed, errors = parse_plan(data, max_steps=len(steps))
        assert parsed is not None, errors
        assert validate_plan(parsed, tools, max_steps=len(steps)) == []

    return check


def measure_algorithms(sizes: tuple[int, ...] = SIZES) -> list[AlgorithmRow]:
    """Validation and topological order, microseconds per step.

    The shapes are measured in turn within each repetition, so that whatever else the
    machine does weighs on all of them alike; each keeps its best sample.
    """
    tools = {t.name: t for t in default_tools()}
    validate: dict[str, dict[int, float]] = {shape: {} for shape in SHAPES}
    order: dict[str, dict[int, float]] = {shape: {} for shape in SHAPES}
    for n in sizes:
        work: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
        for shape in SHAPES:
            steps = plan_of(shape, n)
            work[shape] = (_checker(steps, tools), lambda steps=steps: topological_order(steps))
        for table, which in ((validate, 0), (order, 1)):
            best = _interleaved({shape: work[shape][which] for shape in SHAPES})
            for shape, seconds in best.items():
                table[shape][n] = seconds / n * 1e6
    return [AlgorithmRow(shape, validate[shape], order[shape]) for shape in SHAPES]


RUN_SHAPES = (*SHAPES, ONE_AT_A_TIME)


async def measure_run(shape: str, n: int, folder: Path) -> RunRow:
    """One whole run of an `n`-step plan of `shape` on SQLite; the executor pass timed.

    `ONE_AT_A_TIME` is the fan-out run one step at a time: a chain can never run
    two steps at once, so this is the fan-out at the chain's concurrency.
    """
    single = shape == ONE_AT_A_TIME
    steps = plan_of("fan-out" if single else shape, n)
    planner = ScriptedChatModel([plan_reply(steps)], name_="planner")
    replanner = ScriptedChatModel([replan_reply("finish", answer="done")], name_="replanner")
    width = 1 if single else 4
    context = Context(
        review="never", max_plan_steps=n, max_concurrency=width, max_tool_concurrency=width
    )
    async with open_checkpointer(folder / f"{shape.replace(' ', '-')}-{n}.sqlite") as saver:
        graph = build_graph(checkpointer=saver, planner=planner, replanner=replanner)
        config = run_config(f"{shape.replace(' ', '-')}-{n}", context)
        began = time.perf_counter()
        executor_s = 0.0
        mark = began
        status = "unknown"
        async for update in graph.astream(
            {"goal": "count"}, config, context=context, stream_mode="updates"
        ):
            now = time.perf_counter()
            if "executor" in update:
                executor_s += now - mark  # from the review's update: the whole pass
            if not any(name.startswith("step-") for name in update):
                mark = now
            for value in update.values():
                if isinstance(value, dict) and value.get("status"):
                    status = str(value["status"])
        wall = time.perf_counter() - began
    return RunRow(shape, n, executor_s / n * 1000, wall, status)


async def measure_runs(sizes: tuple[int, ...] = RUN_SIZES) -> list[RunRow]:
    """Whole runs of every shape and size (after one untimed warm-up run)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="planexec-bench-linear-") as tmp:
        await measure_run("chain", 20, Path(tmp))
        for n in sizes:
            for shape in RUN_SHAPES:
                rows.append(await measure_run(shape, n, Path(tmp)))
    return rows


def _ratio(values: dict[str, float]) -> float:
    """The larger of chain/fan-out and newest-first/fan-out."""
    return max(values["chain"], values["newest-first"]) / values["fan-out"]


def summary(algorithms: list[AlgorithmRow], runs: list[RunRow]) -> list[str]:
    """One line per target, saying whether it holds."""
    lines = []
    size = max(n for n in algorithms[0].validate_us if n <= TARGET_SIZE)
    for label, pick in (
        ("validation", lambda row: row.validate_us[size]),
        ("topological order", lambda row: row.order_us[size]),
    ):
        ratio = _ratio({row.shape: pick(row) for row in algorithms})
        verdict = "PASS" if ratio <= SAME_FACTOR else "FAIL"
        lines.append(f"{label}, {size} steps: chain / fan-out = {ratio:.2f} ({verdict})")
    big = max((row.steps for row in runs), default=0)
    if big:
        per_step = {row.shape: row.executor_ms_per_step for row in runs if row.steps == big}
        same = _ratio({**per_step, "fan-out": per_step[ONE_AT_A_TIME]})
        verdict = "PASS" if same <= SAME_FACTOR else "FAIL"
        lines.append(
            f"whole run, {big} steps, one step at a time: chain / fan-out = {same:.2f} ({verdict})"
        )
        overlap = _ratio(per_step)
        lines.append(
            f"whole run, {big} steps, the fan-out 4 at a time: chain / fan-out = "
            f"{overlap:.2f} (for reference: steps that run together overlap their "
            "checkpoint writes)"
        )
    return lines


def markdown(algorithms: list[AlgorithmRow], runs: list[RunRow]) -> str:
    """The report as Markdown tables, with the targets' verdicts."""
    sizes = sorted(algorithms[0].validate_us)
    head = " | ".join(f"{n:,}" for n in sizes)
    lines = [
        "### Linear algorithms: cost per step as plans grow",
        "",
        "Validation (`parse_plan` + `validate_plan`) and `topological_order`, µs per step "
        f"(best of {REPS} samples of 100 ms or more, the shapes in turn); exponent: total "
        f"cost ~ steps^k from {sizes[0]:,} to {sizes[-1]:,} steps.",
        "",
        f"| shape | validate: {head} | k | order: {head} | k |",
        "|---|" + "---|" * (2 * len(sizes) + 2),
    ]
    for row in algorithms:
        validate = " | ".join(f"{row.validate_us[n]:.1f}" for n in sizes)
        order = " | ".join(f"{row.order_us[n]:.2f}" for n in sizes)
        lines.append(
            f"| {row.shape} | {validate} | {row.exponent(row.validate_us):.2f} "
            f"| {order} | {row.exponent(row.order_us):.2f} |"
        )
    if runs:
        lines += [
            "",
            "Whole runs (calculator steps with complete arguments, SQLite, sync durability), "
            "executor ms per step:",
            "",
            "| shape | steps | executor ms/step | wall s | status |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.shape} | {r.steps:,} | {r.executor_ms_per_step:.2f} | {r.wall_s:.1f} "
            f"| {r.status} |"
            for r in runs
        ]
    lines += ["", *(f"- {line}" for line in summary(algorithms, runs))]
    return "\n".join(lines) + "\n"


def as_json(algorithms: list[AlgorithmRow], runs: list[RunRow]) -> dict[str, Any]:
    """The figures as JSON data."""
    return {
        "algorithms": [asdict(row) for row in algorithms],
        "runs": [asdict(row) for row in runs],
        "summary": summary(algorithms, runs),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the report; always 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.linear", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller plans, fewer runs")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sizes = (250, 500, 1000) if args.quick else SIZES
    run_sizes = (200, 500) if args.quick else RUN_SIZES
    algorithms = measure_algorithms(sizes)
    runs = asyncio.run(measure_runs(run_sizes))
    print(markdown(algorithms, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
