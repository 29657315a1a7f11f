"""The workloads: a plan, the latency of each step's tool, the model latency, and what
a correct run produces.

Step ids double as the keys of the tools' latency table (see `bench.tools`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.tools import lookup_value

Kind = Literal["latency", "overhead", "scale"]

MODEL_LATENCY_S = 0.05
"""Per model call, for the latency workloads."""
PER_TOKEN_S = 0.001
"""Per completion token, for the latency workloads."""
RETRY_INTERVAL_S = 0.05
"""Context.retry_initial_interval: the wait before a failed step's second attempt."""


@dataclass(frozen=True)
class Workload:
    """One benchmark plan and its simulated latencies."""

    name: str
    kind: Kind
    goal: str
    steps: list[dict[str, Any]]
    tool_latency: dict[str, float] = field(default_factory=dict)
    flaky: frozenset[str] = frozenset()
    model_latency: float = 0.0
    per_token: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)
    """The output a correct run records for these steps."""
    files: dict[str, str] = field(default_factory=dict)
    """The workspace files a correct run leaves, with their text."""

    @property
    def fully_specified(self) -> bool:
        """Whether every step is a tool call with complete arguments (no executor model)."""
        return all(s["tool"] is not None and s["args"] is not None for s in self.steps)

    def zero_latency(self) -> Workload:
        """The same plan with no tool or model latency (for a smoke test)."""
        return dataclasses.replace(self, tool_latency={}, model_latency=0.0, per_token=0.0)


def _step(
    id: str, description: str, tool: str | None, args: dict[str, Any] | None, deps: Iterable[str]
) -> dict[str, Any]:
    return {
        "id": id,
        "description": description,
        "tool": tool,
        "args": args,
        "depends_on": list(deps),
    }


def chain4() -> Workload:
    """Four lookups, each keyed by the previous one's result, 100 ms each."""
    steps = [
        _step("s1", "Look up the number stored under 'alpha'.", "lookup", {"key": "alpha"}, [])
    ]
    outputs = {"s1": lookup_value("alpha")}
    for i, word in enumerate(["beta", "gamma", "delta"], start=2):
        steps.append(
            _step(
                f"s{i}",
                f"Look up the number stored under '<result of s{i - 1}>-{word}'.",
                "lookup",
                {"key": f"{{{{s{i - 1}}}}}-{word}"},
                [f"s{i - 1}"],
            )
        )
        outputs[f"s{i}"] = lookup_value(f"{outputs[f's{i - 1}']}-{word}")
    return Workload(
        "chain4",
        "latency",
        "Follow the alpha-beta-gamma-delta chain of lookups and report the last number.",
        steps,
        {s["id"]: 0.1 for s in steps},
        model_latency=MODEL_LATENCY_S,
        per_token=PER_TOKEN_S,
        outputs=outputs,
    )


def fanout(width: int, *, flaky: bool = False) -> Workload:
    """`width` independent lookups (100-200 ms), their sum, and a file with the total.

    With `flaky`, the second lookup fails on its first attempt and succeeds on retry.
    """
    lookups = [f"s{i}" for i in range(1, width + 1)]
    steps = [
        _step(s, f"Look up the sales figure of region {i}.", "lookup", {"key": f"region-{i}"}, [])
        for i, s in enumerate(lookups, start=1)
    ]
    total = " + ".join(f"{{{{{s}}}}}" for s in lookups)
    steps.append(
        _step("sum", "Add up the regional figures.", "calculator", {"expression": total}, lookups)
    )
    steps.append(
        _step(
            "save",
            "Write the total to total.txt.",
            "write_file",
            {"path": "total.txt", "content": "Total sales: {{sum}}"},
            ["sum"],
        )
    )
    expected = sum(lookup_value(f"region-{i}") for i in range(1, width + 1))
    return Workload(
        f"fanout{width}" + ("_flaky" if flaky else ""),
        "latency",
        f"Add up the sales figures of regions 1 to {width} and save the total to total.txt.",
        steps,
        {s: round(0.1 + 0.1 * i / (width - 1), 4) for i, s in enumerate(lookups)},
        frozenset({"s2"}) if flaky else frozenset(),
        model_latency=MODEL_LATENCY_S,
        per_token=PER_TOKEN_S,
        outputs={"sum": expected},
        files={"total.txt": f"Total sales: {expected}"},
    )


def chain(length: int) -> Workload:
    """`length` calculator steps, each adding 1 to the previous result; no latency."""
    steps = [_step("s1", "Compute 1 + 1.", "calculator", {"expression": "1 + 1"}, [])]
    for i in range(2, length + 1):
        steps.append(
            _step(
                f"s{i}",
                f"Add 1 to the result of s{i - 1}.",
                "calculator",
                {"expression": f"{{{{s{i - 1}}}}} + 1"},
                [f"s{i - 1}"],
            )
        )
    return Workload(
        f"chain{length}",
        "overhead",
        f"Count from 2 to {length + 1}, one step at a time.",
        steps,
        outputs={f"s{length}": length + 1},
    )


def text_chain(length: int) -> Workload:
    """`length` steps answered by the executor model, each after the previous; no latency."""
    steps = [
        _step(
            f"s{i}",
            f"State fact number {i} about the subject in one short sentence.",
            None,
            None,
            [f"s{i - 1}"] if i > 1 else [],
        )
        for i in range(1, length + 1)
    ]
    return Workload(
        f"plan{length}", "scale", f"List {length} facts about the subject, one per step.", steps
    )


def latency_workloads() -> list[Workload]:
    """Workloads a-c: wall-clock against the critical path."""
    return [
        chain4(),
        fanout(4),
        fanout(8),
        fanout(4, flaky=True),
        fanout(8, flaky=True),
    ]
