"""The results of steps that finished in an executor pass that was stopped.

Apart from `planexec.nodes.executor` so that `planexec show` reads them without
importing the executor, its models and tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from planexec.state import StepResult

__all__ = ["RESULT", "STEP", "in_flight_results"]

STEP, RESULT = "planexec_step", "result"
"""The keys of a step task's saved value: a pending write until the executor node ends."""
_RETURN = "__return__"
"""LangGraph's (private) channel for a task's return value in a checkpoint's pending
writes; `tests/test_cli_terminal.py` reads a stopped pass through it, so a rename fails there."""


def in_flight_results(pending_writes: Sequence[tuple[str, str, Any]]) -> dict[str, StepResult]:
    """Results of steps that finished in an executor pass that has not ended.

    A pass that is stopped (Ctrl-C, a crash, a pause) keeps each finished step's result
    as its task's pending write in the checkpoint: a resumed pass reuses it, and this
    reads it for display. `pending_writes` are a checkpoint tuple's.
    """
    found: dict[str, StepResult] = {}
    for _task_id, channel, value in pending_writes:
        if channel == _RETURN and isinstance(value, dict) and isinstance(value.get(STEP), str):
            result = value.get(RESULT)
            if isinstance(result, dict) and "status" in result:
                found[value[STEP]] = cast("StepResult", result)
    return found
