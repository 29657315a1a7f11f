"""`python -m bench`: run the benchmark and report.

A full run writes `bench/results.md` and `bench/results.json`; `--quick` and `--only`
runs print only, unless `--out` names a directory, so a partial look never replaces
the published results. The exit code is 0 whatever the targets say: this is a report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import cold, concurrency, goals, growth, linear
from bench import library as plan_library
from bench import prompts as replanner_prompts
from bench.report import as_json, markdown
from bench.suite import Options, known_names, run_suite

HERE = Path(__file__).resolve().parent


def parse(argv: list[str]) -> tuple[Options, Path | None]:
    """Options from the command line, and where to write the results (None: nowhere)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark planexec against a local fake model."
    )
    parser.add_argument(
        "--quick", action="store_true", help="one run per workload, plans up to 50 steps"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this workload or group (latency, overhead, scale, concurrency, "
        "library, linear, prompts, growth, cold, goals); "
        "repeatable, or comma-separated",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for results.md and results.json (default: bench/ for a full run, "
        "nowhere for --quick or --only)",
    )
    args = parser.parse_args(argv)
    only = [name for value in args.only for name in value.split(",") if name]
    names = [
        *known_names(),
        *("concurrency", "library", "linear", "prompts", "growth", "cold", "goals"),
    ]
    unknown = sorted(set(only) - set(names))
    if unknown:
        parser.error(f"unknown --only {', '.join(unknown)}; choose from {', '.join(names)}")
    options = Options(quick=args.quick, only=only)
    out = args.out
    if out is None and not args.quick and not only:
        out = HERE
    return options, out


def _goals(options: Options) -> tuple[str, dict[str, Any]]:
    """The follow-up-goals report and its JSON (`{"goals": ...}`), or nothing if not asked."""
    if options.only and "goals" not in options.only:
        return "", {}
    rows, wall = asyncio.run(goals.measure(5 if options.quick else goals.GOALS))
    return "\n" + goals.markdown(rows, wall), {"goals": goals.as_json(rows, wall)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the report, write it if asked; always 0."""
    argv = sys.argv[1:] if argv is None else argv
    options, out = parse(argv)
    # A benchmark run sends nothing anywhere but to its own local server.
    os.environ["LANGSMITH_TRACING"] = "false"
    os.environ["LANGCHAIN_TRACING_V2"] = "false"
    load = os.getloadavg()[0]
    separate = ("concurrency", "library", "linear", "prompts", "growth", "cold", "goals")
    workloads = [name for name in options.only if name not in separate]
    with_suite = not options.only or bool(workloads)
    with_concurrency = not options.only or "concurrency" in options.only
    with_library = not options.only or "library" in options.only
    with_linear = not options.only or "linear" in options.only
    with_prompts = not options.only or "prompts" in options.only
    with_growth = not options.only or "growth" in options.only
    with_cold = not options.only or "cold" in options.only
    progress = lambda line: print(line, file=sys.stderr)  # noqa: E731
    suite_options = Options(quick=options.quick, only=workloads)
    rows = asyncio.run(run_suite(suite_options, progress=progress)) if with_suite else []
    runs = 20 if options.quick else concurrency.RUNS
    many = asyncio.run(concurrency.measure_all(runs)) if with_concurrency else []
    repeats = 3 if options.quick else plan_library.REPEATS
    reused = asyncio.run(plan_library.measure_all(repeats)) if with_library else []
    algorithms: list[linear.AlgorithmRow] = []
    linear_runs: list[linear.RunRow] = []
    if with_linear:
        algorithms = linear.measure_algorithms((250, 500, 1000) if options.quick else linear.SIZES)
        sizes = (200, 500) if options.quick else linear.RUN_SIZES
        linear_runs = asyncio.run(linear.measure_runs(sizes))
    prompt_rows: list[replanner_prompts.PromptRow] = []
    prompt_wall = 0.0
    if with_prompts:
        revisions = (10, 50) if options.quick else replanner_prompts.REVISIONS
        prompt_rows, prompt_wall = asyncio.run(replanner_prompts.measure(revisions))
    growth_rows = asyncio.run(growth.measure_for(options.quick)) if with_growth else []
    cold_report = cold.measure_all(quick=options.quick) if with_cold else None
    goal_part = _goals(options)
    loads = (load, os.getloadavg()[0])
    report = markdown(rows, options, argv, loads)
    if many:
        report += "\n" + concurrency.markdown(many, runs, concurrency.LATENCY_S)
    if reused:
        report += "\n" + plan_library.markdown(reused, repeats, plan_library.LATENCY_S)
    if algorithms:
        report += "\n" + linear.markdown(algorithms, linear_runs)
    if prompt_rows:
        report += "\n" + replanner_prompts.markdown(prompt_rows, prompt_wall)
    report += growth.section(growth_rows)
    if cold_report is not None:
        report += "\n" + cold.markdown(cold_report)
    report += goal_part[0]
    print(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text(report, encoding="utf-8")
        data = as_json(rows, options, argv, loads)
        data["concurrency"] = [row.as_json() for row in many]
        data["library"] = {
            "rows": [asdict(row) for row in reused],
            "targets": plan_library.targets(reused) if reused else {},
        }
        if algorithms:
            data["linear"] = linear.as_json(algorithms, linear_runs)
        if prompt_rows:
            data["prompts"] = replanner_prompts.as_json(prompt_rows, prompt_wall)
        data.update(growth.json_part(growth_rows))
        if cold_report is not None:
            data["cold"] = cold_report.as_json()
        data.update(goal_part[1])
        (out / "results.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out / 'results.md'} and {out / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
