"""`python -m bench.chaos [--runs N]`: the chaos soak, random kills with model faults.

Each run is one of the crash scenarios of `tests/crash_worker.py` (a chain, a fan-out,
a reviewed plan that is revised, a plan with a tool that must not run twice), driven by
the real `ChatOpenAI` client against `tests/fake_openai.py`, whose replies fail at the
given rate (HTTP 429 with Retry-After, HTTP 500, a body that is not JSON, tool
arguments that are not JSON or do not fit the schema). The first process of each run
kills itself with SIGKILL at a random checkpoint write, or inside a tool right after
its side effect (a quarter of the runs); a second process resumes it to its end,
answering reviews and uncertain steps as a person would. The invariants checked for
every run: the resumed run ends (no exception, no pause left), no side effect happens
twice, and no result saved before the kill is run again or changed.

Prints a summary table; the exit code is 1 if any invariant broke. Not part of CI:
200 runs take a few minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().parent.parent / "tests" / "crash_worker.py"


def soak(runs: int, fault_rate: float, seed: int, jobs: int) -> dict[str, Any]:
    """Run the soak in a fresh process (it forks one child per run part); its summary."""
    with tempfile.TemporaryDirectory(prefix="planexec-chaos-") as root:
        done = subprocess.run(
            [
                sys.executable,
                str(WORKER),
                "chaos",
                "--root",
                root,
                "--runs",
                str(runs),
                "--fault-rate",
                str(fault_rate),
                "--seed",
                str(seed),
                "--jobs",
                str(jobs),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"the chaos worker failed:\n{done.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(summary["statuses"].items()))
    faults = ", ".join(f"{k} {v}" for k, v in sorted(summary["faults_by_kind"].items()))
    rows = [
        ("runs", summary["runs"]),
        ("processes killed with SIGKILL", summary["killed"]),
        ("  of them inside a tool, after its side effect", summary["kills_in_tools"]),
        ("model requests", summary["model_requests"]),
        (
            f"model faults injected ({summary['fault_rate']:.0%} of requests)",
            f"{summary['model_faults']} ({faults or 'none'})",
        ),
        ("repeated tool calls that deduplicated by idempotency key", summary["calls_deduplicated"]),
        ("uncertain steps settled by a person", summary["uncertain_pauses"]),
        ("final statuses", statuses),
        ("invariant violations", len(summary["violations"])),
        ("wall-clock seconds", summary["seconds"]),
    ]
    lines = ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="runs (default: 200)")
    parser.add_argument(
        "--fault-rate", type=float, default=0.05, help="share of model requests that fail"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default: 2)")
    args = parser.parse_args(argv)
    summary = soak(args.runs, args.fault_rate, args.seed, args.jobs)
    print(table(summary))
    for ended in summary.get("not_completed", []):
        print(f"{ended['scenario']}: {ended['status']}: {ended['reason']}")
    for violation in summary["violations"]:
        print(json.dumps(violation), file=sys.stderr)
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
