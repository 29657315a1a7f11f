"""planexec: a planner-executor agent on LangGraph.

A strong model writes an explicit plan, a person reviews it, a cheaper model and direct
tool calls carry it out in parallel, and a replanner revises what remains when reality
disagrees; every step is checkpointed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planexec.context import Context
    from planexec.errors import InvalidGoalError, ModelConfigError, PlanexecError, TransientError
    from planexec.graph import build_graph, recursion_limit, run_config
    from planexec.plan import Plan, PlanError, Replan, Step, validate_plan
    from planexec.prompts.custom import PromptError, Prompts
    from planexec.scripted import ScriptedChatModel
    from planexec.state import InputState, OutputState, State, StepResult

_HOMES = {
    "Context": "planexec.context",
    "InputState": "planexec.state",
    "InvalidGoalError": "planexec.errors",
    "ModelConfigError": "planexec.errors",
    "OutputState": "planexec.state",
    "Plan": "planexec.plan",
    "PlanError": "planexec.plan",
    "PlanexecError": "planexec.errors",
    "PromptError": "planexec.prompts.custom",
    "Prompts": "planexec.prompts.custom",
    "Replan": "planexec.plan",
    "ScriptedChatModel": "planexec.scripted",
    "State": "planexec.state",
    "Step": "planexec.plan",
    "StepResult": "planexec.state",
    "TransientError": "planexec.errors",
    "build_graph": "planexec.graph",
    "recursion_limit": "planexec.graph",
    "run_config": "planexec.graph",
    "validate_plan": "planexec.plan",
}
"""Where each public name lives. They load on first use, so that `import planexec`, and
a command line that only prints its help, do not pay for LangGraph's import."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'planexec' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = [
    "Context",
    "InputState",
    "InvalidGoalError",
    "ModelConfigError",
    "OutputState",
    "Plan",
    "PlanError",
    "PlanexecError",
    "PromptError",
    "Prompts",
    "Replan",
    "ScriptedChatModel",
    "State",
    "Step",
    "StepResult",
    "TransientError",
    "build_graph",
    "recursion_limit",
    "run_config",
    "validate_plan",
]
