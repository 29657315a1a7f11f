"""What the planner and the replanner do with a reply that is not a valid plan."""

from __future__ import annotations

from typing import Any

from planexec.budget import Budget
from planexec.context import Context
from planexec.errors import ModelCallError
from planexec.execution import bounded_text
from planexec.plan import PlanError
from planexec.prompts import render
from planexec.prompts.sections import INVALID_REPLY
from planexec.state import Role, State, Usage


def invalid_reply(
    role: Role,
    context: Context,
    attempts: int,
    reply: str,
    errors: list[str] | list[PlanError],
) -> dict[str, Any]:
    """The update for an invalid reply: ask again with the errors, or fail when out of tries.

    The reply and the errors are kept (and shown to the model) cut to
    `Context.max_output_chars`, like a step's output.
    """
    limit = context.max_output_chars
    messages = [bounded_text(str(error), limit) for error in errors]
    reply = bounded_text(reply, limit)
    tries = attempts + 1
    if tries >= context.max_plan_attempts:
        return {
            "status": "failed",
            "reason": (
                f"the {role} did not produce a valid plan in {tries} attempt(s): "
                + "; ".join(messages)
            ),
            "draft_errors": messages,
            "draft": reply,
            "draft_attempts": tries,
        }
    return {"draft_errors": messages, "draft": reply, "draft_attempts": tries}


def unreadable(exc: ModelCallError) -> str:
    """The error shown for a reply whose body could not be read."""
    return f"the reply could not be read ({type(exc.cause).__name__}: {exc.cause}); reply again"


def unanswered_calls(role: Role, budget: Budget) -> dict[str, Any]:
    """The usage update for the calls a node made that gave it no reply to use.

    A call that failed, was cancelled or whose body could not be read was still made:
    the budgets and the run's usage count it (with no tokens, since none are known).
    """
    made = budget.calls_made()
    if made <= 0:
        return {}
    usage: Usage = {"calls": made, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    return {"usage": {role: usage}}


def valid_reply() -> dict[str, Any]:
    """The update that clears the invalid-reply bookkeeping."""
    return {"draft_errors": [], "draft": None, "draft_attempts": 0}


def invalid_reply_section(state: State) -> str:
    """The prompt section that shows the model its last invalid reply, or ""."""
    errors = state.get("draft_errors") or []
    if not errors:
        return ""
    return render(
        INVALID_REPLY,
        reply=state.get("draft") or "",
        errors="\n".join(f"- {e}" for e in errors),
    )
