"""The linear-algorithms benchmark runs and reports every shape (structure, not speed)."""

from __future__ import annotations

import sys
from pathlib import Path

# `bench` sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import linear

from planexec.plan import topological_order


def test_the_shapes_are_what_they_say() -> None:
    chain = linear.plan_of("chain", 5)
    assert [s["depends_on"] for s in chain] == [[], ["s1"], ["s2"], ["s3"], ["s4"]]
    newest = linear.plan_of("newest-first", 5)
    assert [s["id"] for s in newest] == ["s5", "s4", "s3", "s2", "s1"]
    assert [s["id"] for s in topological_order(newest)] == ["s1", "s2", "s3", "s4", "s5"]
    fan = linear.plan_of("fan-out", 5)
    assert [s["depends_on"] for s in fan] == [[], ["s1"], ["s1"], ["s1"], ["s1"]]


async def test_the_report_has_every_shape_size_and_target() -> None:
    algorithms = linear.measure_algorithms((20, 40))
    runs = await linear.measure_runs((10,))
    assert [row.shape for row in algorithms] == list(linear.SHAPES)
    assert all(set(row.validate_us) == set(row.order_us) == {20, 40} for row in algorithms)
    assert [(r.shape, r.steps, r.status) for r in runs] == [
        (shape, 10, "completed") for shape in linear.RUN_SHAPES
    ]
    assert all(r.executor_ms_per_step > 0 for r in runs)
    report = linear.markdown(algorithms, runs)
    for shape in linear.SHAPES:
        assert f"| {shape} |" in report
    [validation, order, whole, overlapped] = linear.summary(algorithms, runs)
    assert validation.startswith("validation, 40 steps: chain / fan-out = ")
    assert order.startswith("topological order, 40 steps: ")
    assert whole.startswith("whole run, 10 steps, one step at a time: chain / fan-out = ")
    assert overlapped.startswith("whole run, 10 steps, the fan-out 4 at a time: ")
    assert set(linear.as_json(algorithms, runs)) == {"algorithms", "runs", "summary"}
