"""The intake node: every new input comes in here first.

LangGraph starts a thread's run again from the start when it gets new input, dropping
the task of any pause that input did not answer (verified on LangGraph 1.2: a thread
paused at plan review and given new input runs from the start, and the old review
never resumes). So the input's text, validated as a goal, is:

- on a new thread, or on one whose run has ended, a goal: the next goal of the thread
  (the ended one moves to `earlier_goals`, and the results, usage and working time that
  budgets count start empty);
- while a plan waits for review, the reviewer's feedback: the review node takes it as a
  rejection with that message, and the planner writes a new plan, reviewed again;
- before the goal's first plan (its planner stopped), the goal, in place of the old;
- while an approved plan runs (paused at a step approval, say), only a message: the
  run carries on where it was, through the executor, which asks for the same approval.

The input's text is a human message in `messages`: the last new one, or the `goal`.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from planexec.chat import human_message, last_human, text_of
from planexec.context import Context, resolve_context
from planexec.nodes.planner import goal_of
from planexec.resources import Resources
from planexec.state import GoalRecord, State, current_revision, goal_number, is_approved


def _goal_text(state: State) -> str | None:
    """The current goal as its human message says, if the message is still there."""
    wanted = state.get("goal_message")
    for message in state.get("messages") or []:
        if wanted is not None and message.id == wanted:
            return text_of(message)
    return None


def new_input(state: State) -> tuple[Any, list[HumanMessage], str | None]:
    """The new input's text, the human message to record for it, and that message's id.

    No message is recorded when the input is one already. A `goal` that differs from
    the current goal's is the input; else the last human message not taken yet; else
    the `goal` as it stands (the same goal asked again).
    """
    goal = state.get("goal")
    messages = state.get("messages") or []
    latest = last_human(messages)
    fresh = latest is not None and latest.id != state.get("heard")
    if fresh and latest is not None and (goal is None or goal == _goal_text(state)):
        return text_of(latest), [], latest.id
    if not isinstance(goal, str):
        return goal, [], None
    message = human_message(goal.strip(), messages)
    return goal, [message], message.id


async def intake(
    state: State, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Take the new input as a goal, as feedback on the plan under review, or as a message.

    An empty, missing or too long text raises `InvalidGoalError` before any model call.
    """
    context = resolve_context(runtime.context)
    raw, recorded, heard = new_input(state)
    text = goal_of({"goal": raw}, context.max_goal_chars)
    update: dict[str, Any] = {"messages": recorded, "heard": heard}
    revision = current_revision(state)
    if state.get("status") or ("goal_index" not in state and revision is None):
        return {**update, **_next_goal(state, text, heard)}
    if revision is None:
        return {**update, "goal": text, "goal_message": heard}
    # The plan under review or running stays the current goal's, whatever `goal` says.
    update["goal"] = _goal_text(state) or state.get("goal")
    seal = await resources.sealer(runtime)
    if not is_approved(state, seal.review):
        update["chat_answer"] = text
    return update


def _next_goal(state: State, text: str, message_id: str | None) -> dict[str, Any]:
    """The update that makes `text` the thread's next goal."""
    started = {"goal": text, "goal_message": message_id, "chat_answer": None}
    if not state.get("status"):
        return {**started, "goal_index": goal_number(state)}
    ended: GoalRecord = {
        "goal": goal_number(state),
        "text": _goal_text(state) or str(state.get("goal") or ""),
        "status": state.get("status"),
        "answer": state.get("answer"),
        "reason": state.get("reason"),
        "results": dict(state.get("results") or {}),
        "usage": dict(state.get("usage") or {}),
    }
    return {
        **started,
        "goal_index": goal_number(state) + 1,
        "earlier_goals": [ended],
        "status": None,
        "answer": None,
        "reason": None,
        "plan": None,
        "results": Overwrite({}),
        "usage": Overwrite({}),
        "active_s": Overwrite(0.0),
        "approvals": Overwrite({}),
        "awaiting_approval": [],
        "draft_errors": [],
        "draft": None,
        "draft_attempts": 0,
    }


def route_after_intake(state: State) -> Literal["planner", "review", "executor"]:
    """Feedback goes to the review; a plan already approved carries on; else plan."""
    if state.get("chat_answer") is not None:
        return "review"
    if current_revision(state) is not None:
        return "executor"
    return "planner"
