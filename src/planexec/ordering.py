"""The order steps run in, and a step's output as text: plain functions on plain data.

Apart from `planexec.plan` (the plan's pydantic models and validation) so that drawing a
saved plan (`planexec show`) imports no pydantic. `planexec.plan` offers both names too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planexec.plan import StepDict

__all__ = ["as_text", "topological_order"]


def topological_order(steps: Sequence[StepDict]) -> list[StepDict]:
    """The steps ordered so that each comes after its dependencies; ties keep plan order.

    Steps come in rounds: first those with no dependencies, then those whose dependencies
    are all in earlier rounds, and so on; within a round, in plan order. Dependencies
    on steps not in `steps` are ignored. Takes time in proportion to the steps and their
    dependencies.

    Raises:
        ValueError: The steps have a dependency cycle (`validate_plan` refuses those).
    """
    first: dict[str, int] = {}
    for index, step in enumerate(steps):
        first.setdefault(step["id"], index)
    # waiting[i]: the steps that wait for the id of step i (its first step of that id).
    waiting: list[list[int]] = [[] for _ in steps]
    missing = [0] * len(steps)
    for index, step in enumerate(steps):
        for dep in set(step["depends_on"]):
            if dep in first:
                waiting[first[dep]].append(index)
                missing[index] += 1
    # Kahn's algorithm with a first-in first-out queue: steps leave it round by round,
    # and a step's round is one more than that of the dependency that freed it last.
    rounds = [0] * len(steps)
    queue = [index for index, count in enumerate(missing) if count == 0]
    placed: set[str] = set()
    head = 0
    while head < len(queue):
        index = queue[head]
        head += 1
        step_id = steps[index]["id"]
        if step_id in placed:
            continue
        placed.add(step_id)
        following = rounds[index] + 1
        for waiter in waiting[first[step_id]]:
            missing[waiter] -= 1
            if missing[waiter] == 0:
                rounds[waiter] = following
                queue.append(waiter)
    if len(queue) < len(steps):
        raise ValueError("the plan has a dependency cycle")
    return _by_round(steps, rounds)


def _by_round(steps: Sequence[StepDict], rounds: list[int]) -> list[StepDict]:
    """`steps` sorted by round, plan order kept within a round (a counting sort)."""
    starts = [0] * (max(rounds, default=0) + 2)
    for level in rounds:
        starts[level + 1] += 1
    for level in range(1, len(starts)):
        starts[level] += starts[level - 1]
    ordered: list[StepDict | None] = [None] * len(steps)
    for index, level in enumerate(rounds):
        ordered[starts[level]] = steps[index]
        starts[level] += 1
    return [step for step in ordered if step is not None]


def as_text(value: Any) -> str:
    """A step output as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
