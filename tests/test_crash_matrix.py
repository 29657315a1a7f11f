"""kill -9 at every checkpoint boundary and inside tools: nothing lost, nothing run twice.

`crash_worker.py` runs each case in forked processes: the first kills itself with
SIGKILL right after the checkpointer's Nth write (or inside a tool right after its side
effect), the second resumes the thread to its end. The worker checks each case against
a fault-free run of the same plan and reports every broken invariant.

`make test` runs a smoke subset (a few kill points per plan, once); the full matrix,
every boundary of every plan ten times, is `make crash-matrix` (`pytest -m crash_matrix`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# `bench` sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chaos import soak

WORKER = Path(__file__).with_name("crash_worker.py")
SCENARIOS = ("chain", "fanout", "replan", "uncertain")


def matrix(tmp_path: Path, *options: str, timeout: float = 600) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(WORKER), "matrix", "--root", str(tmp_path), *options],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def assert_held(summary: dict[str, Any], reps: int) -> None:
    assert summary["violations"] == [], json.dumps(summary["violations"], indent=1)[:5000]
    # Every case really died of SIGKILL, and every resumed run completed.
    assert summary["killed"] == summary["cases"]
    assert summary["statuses"] == {"completed": summary["cases"]}
    # The kill inside the charge tool left an uncertain call a person had to settle.
    assert summary["uncertain_pauses"] >= reps
    # Tools that deduplicate were called again after a kill, and took effect once.
    assert summary["calls_deduplicated"] >= reps


@pytest.mark.slow
def test_kills_at_sampled_boundaries_and_in_tools_lose_nothing(tmp_path: Path) -> None:
    summary = matrix(tmp_path, "--points", "smoke", "--reps", "1")
    assert sorted(summary["boundaries"]) == sorted(SCENARIOS)
    # Five boundaries and two tools per plan.
    assert summary["cases"] >= 4 * 6
    assert_held(summary, reps=1)


@pytest.mark.crash_matrix
def test_kills_at_every_boundary_ten_times_lose_nothing(tmp_path: Path) -> None:
    reps = 10
    summary = matrix(tmp_path, "--points", "all", "--reps", str(reps), timeout=3600)
    boundaries = summary["boundaries"]
    in_tools = {"chain": 4, "fanout": 5, "replan": 2, "uncertain": 3}
    assert summary["cases"] == reps * sum(boundaries[n] + in_tools[n] for n in SCENARIOS)
    assert summary["kills_in_tools"] == reps * sum(in_tools.values())
    assert_held(summary, reps=reps)


@pytest.mark.slow
def test_a_short_chaos_soak_holds_its_invariants() -> None:
    # Faults on a third of the model requests, so that a handful of runs meets several.
    summary = soak(runs=6, fault_rate=0.3, seed=3, jobs=2)
    assert summary["violations"] == []
    assert summary["runs"] == 6
    assert summary["model_faults"] > 0
    assert summary["statuses"] == {"completed": 6}
