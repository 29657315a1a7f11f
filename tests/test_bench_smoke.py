"""The benchmark's code runs: its smallest workload at zero latency, and its report.

Only structure and invariants are checked here (model calls, effects, checkpoints,
the report's rows), never speed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# `bench` sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import as_json, markdown, summary
from bench.runner import critical_path_bound
from bench.server import Call
from bench.suite import Options, run_suite
from bench.workloads import RETRY_INTERVAL_S, fanout

pytestmark = pytest.mark.integration


async def test_smallest_workload_reports_calls_effects_and_checkpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The benchmark points the OpenAI client at its server through the environment;
    # registering the variables here makes the test restore them afterwards.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "unset")
    options = Options(quick=True, only=["chain4"], zero_latency=True, warmup=False)

    rows = await run_suite(options, progress=lambda _: None)

    assert [row.workload.name for row in rows] == ["chain4"]
    row = rows[0]
    parallel = row.results["parallel"].median
    sequential = row.results["sequential"].median
    assert parallel.status == sequential.status == "completed"
    assert parallel.calls == {"planner": 1, "executor": 0, "replanner": 1}
    assert sequential.calls == {"planner": 1, "executor": 0, "replanner": 4}
    assert parallel.server_calls == parallel.calls
    assert sequential.server_calls == sequential.calls
    for run in (parallel, sequential):
        assert run.duplicates == 0
        assert run.missing == []
        assert run.retried == {}
        assert run.events["step_started"] == run.events["step_finished"] == 4
        assert (run.checkpoints or 0) >= 4
        assert (run.checkpoint_bytes or 0) > 0
        assert run.server_tokens == (run.input_tokens, run.output_tokens)
        assert min(run.server_tokens) > 0
    # Replanning after each step costs at least a checkpoint per step.
    assert (sequential.checkpoints or 0) >= (parallel.checkpoints or 0) + 4
    assert len(row.checks) >= 4
    assert row.passed, row.checks

    data = as_json(rows, options, ["--only", "chain4"])
    reread = json.loads(json.dumps(data))
    assert reread["rows"][0]["results"]["parallel"]["calls"] == parallel.calls
    assert reread["machine"]["cores"] >= 1
    assert reread["command"] == ".venv/bin/python -m bench --only chain4"
    report = markdown(rows, options, ["--only", "chain4"])
    assert "| chain4 | 4 | 1/0/1 |" in report
    assert report.rstrip().endswith(summary(rows))
    assert summary(rows).startswith("bench summary: 1/1 rows PASS")


def test_bound_counts_a_retried_step_twice_plus_the_wait() -> None:
    workload = fanout(4, flaky=True)
    calls = [
        Call("planner", "plan", None, 100, 200, 0.25),
        Call("replanner", "finish", None, 100, 20, 0.07),
    ]
    # s2 (133.3 ms) fails once: 2 x 133.3 ms + the retry wait beats s4's 200 ms.
    expected = 0.25 + 2 * workload.tool_latency["s2"] + RETRY_INTERVAL_S + 0.07
    assert critical_path_bound(workload, calls) == pytest.approx(expected)
    steady = fanout(4)
    assert critical_path_bound(steady, calls) == pytest.approx(0.25 + 0.2 + 0.07)
