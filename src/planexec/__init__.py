"""planexec: a planner-executor agent on LangGraph.

A strong model writes an explicit plan, a person reviews it, a cheaper model and direct
tool calls carry it out in parallel, and a replanner revises what remains when reality
disagrees; every step is checkpointed.
"""

from planexec.context import Context
from planexec.errors import InvalidGoalError, ModelConfigError, PlanexecError, TransientError
from planexec.graph import build_graph, recursion_limit, run_config
from planexec.plan import Plan, PlanError, Replan, Step, validate_plan
from planexec.prompts.custom import PromptError, Prompts
from planexec.scripted import ScriptedChatModel
from planexec.state import InputState, OutputState, State, StepResult

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
