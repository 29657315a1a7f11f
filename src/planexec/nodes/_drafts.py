"""What the planner and the replanner do with a reply that is not a valid plan."""

from __future__ import annotations

from typing import Any

from planexec.context import Context
from planexec.errors import ModelCallError
from planexec.plan import PlanError
from planexec.prompts import render
from planexec.prompts.sections import INVALID_REPLY
from planexec.state import Role, State


def invalid_reply(
    role: Role,
    context: Context,
    attempts: int,
    reply: str,
    errors: list[str] | list[PlanError],
) -> dict[str, Any]:
    """The update for an invalid reply: ask again with the errors, or fail when out of tries."""
    messages = [str(error) for error in errors]
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
