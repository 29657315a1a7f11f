"""The planner node: the goal and the tools in, a validated plan out."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from planexec.budget import Budget, BudgetExhaustedError
from planexec.chat import earlier_answers
from planexec.context import Context, resolve_context
from planexec.errors import InvalidGoalError, ModelCallError
from planexec.events import emit, emit_plan_ready
from planexec.execution import bounded_text
from planexec.nodes._drafts import (
    invalid_reply,
    invalid_reply_section,
    unanswered_calls,
    unreadable,
    valid_reply,
)
from planexec.nodes._library import examples_section, replayed_revision
from planexec.plan import Plan, PlanDict, PlanError, validate_plan
from planexec.prompts import fill, render
from planexec.prompts import planner as prompts
from planexec.resources import Resources
from planexec.state import (
    PlanRevision,
    State,
    current_revision,
    next_revision,
    rejection_feedback,
    revision_number,
)
from planexec.streaming import AnswerStream, answers_directly


def validate_goal(goal: Any, context: Context | None = None) -> str:
    """`goal` as a run would take it (stripped), or the `InvalidGoalError` the run would raise.

    For callers that check input before they start or store a run: the CLI refuses a goal
    here, before its thread is written.
    """
    limit = (context or Context()).max_goal_chars
    return goal_of({"goal": goal}, limit)


def goal_of(state: State, max_chars: int | None = None) -> str:
    """The run's goal, or `InvalidGoalError` when it is missing, blank or too long."""
    goal = state.get("goal")
    if not isinstance(goal, str) or not goal.strip():
        raise InvalidGoalError(
            'the goal is empty: start the run with {"goal": "<what to achieve>"}, or with '
            '{"messages": [...]} ending in a human message that says it'
        )
    # Measured as sent, padding included: what is checked is what the models could see.
    if max_chars is not None and len(goal) > max_chars:
        raise InvalidGoalError(
            f"the goal is {len(goal)} characters long; the most allowed is {max_chars} "
            "(Context.max_goal_chars): put long material in a file for the tools to read"
        )
    return goal.strip()


EARLIER_GOALS = 3
"""How many of the thread's earlier goals (with their answers) the planner is shown."""
EARLIER_GOAL_CHARS = 1_000
"""The most characters of each earlier goal's text, and of its answer, shown."""


def earlier_goals_section(state: State) -> str:
    """`<earlier_goals>`: the latest `EARLIER_GOALS` goals and their answers, else nothing.

    Only their answers (or how they ended) are shown, never their step results.
    """
    shown = earlier_answers(state.get("earlier_goals") or [], EARLIER_GOALS, EARLIER_GOAL_CHARS)
    if not shown:
        return ""
    goals = "\n".join(
        render(prompts.EARLIER_GOAL, goal=goal, answer=answer) for goal, answer in shown
    )
    return render(prompts.EARLIER_GOALS, goals=goals)


def planner_messages(
    state: State, context: Context, resources: Resources, *, examples: str = ""
) -> list[SystemMessage | HumanMessage]:
    """The planner's prompt for this state: goal, tools, and feedback or errors if any.

    `examples` is the `<saved_plans>` section from the plan library, if any.
    """
    feedback = ""
    message = rejection_feedback(state)
    revision = current_revision(state)
    if message is not None and revision is not None:
        feedback = render(
            prompts.FEEDBACK,
            plan=json.dumps(revision["plan"], indent=1, ensure_ascii=False),
            message=message,
        )
    return [
        SystemMessage(
            fill(
                resources.prompts.template("planner", context),
                max_steps=context.max_plan_steps,
                direct_answers=prompts.DIRECT_ANSWERS_ON
                if context.direct_answers
                else prompts.DIRECT_ANSWERS_OFF,
            )
        ),
        HumanMessage(
            fill(
                resources.prompts.template("planner_user", context),
                goal=goal_of(state, context.max_goal_chars),
                tools=resources.describe_tools(),
                earlier_goals=earlier_goals_section(state),
                examples=examples,
                feedback=feedback,
                invalid_reply=invalid_reply_section(state),
            )
        ),
    ]


async def planner(
    state: State, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Ask the planner model for a plan and validate it.

    A reply that does not parse or fails validation is sent back with its errors, up to
    `max_plan_attempts` replies; then the run fails with the reasons.
    """
    context = resolve_context(runtime.context)
    messages = planner_messages(state, context, resources)
    # Before the first call: a model the run could not count the spending of is refused.
    resources.require_prices(context)
    budget = Budget.of(state, context, runtime.stream_writer)
    goal = goal_of(state, context.max_goal_chars)
    replayed = await replayed_revision(state, goal, runtime, resources)
    if replayed is not None:
        return {**_replay(replayed, context, runtime), "active_s": budget.elapsed()}
    examples = await examples_section(goal, runtime, resources)
    messages = planner_messages(state, context, resources, examples=examples)
    limit = context.max_output_chars
    async with AnswerStream(answers_directly, limit=limit, strip=True) as streamed:
        return await _draft(state, runtime, resources, budget, messages, streamed)


async def _draft(
    state: State,
    runtime: Runtime[Context],
    resources: Resources,
    budget: Budget,
    messages: list[SystemMessage | HumanMessage],
    streamed: AnswerStream,
) -> dict[str, Any]:
    """Ask the planner model for a plan (a direct answer streamed) and check it."""
    context = resolve_context(runtime.context)
    try:
        reply, usage = await resources.ask_structured(
            "planner",
            context,
            budget,
            Plan,
            messages,
            revision=revision_number(state),
            answer=streamed if context.direct_answers else None,
        )
    except BudgetExhaustedError as exc:
        return {
            "status": "budget_exhausted",
            "reason": str(exc),
            "active_s": budget.elapsed(),
            "answer": None,
            **unanswered_calls("planner", budget),
        }
    except ModelCallError as exc:
        made = {"active_s": budget.elapsed(), "answer": None, **unanswered_calls("planner", budget)}
        if exc.unreadable:
            # Asked again like an invalid plan, up to max_plan_attempts replies.
            attempts = state.get("draft_attempts", 0)
            update = invalid_reply("planner", context, attempts, "", [unreadable(exc)])
            return {**update, **made, "results": {}}
        return {"status": "failed", "reason": str(exc), **made}
    # The output always has these keys, however the run ends.
    spent = {
        "usage": {"planner": usage},
        "active_s": budget.elapsed(),
        "answer": None,
        "results": {},
    }
    if reply.parsed is None:
        update = invalid_reply(
            "planner", context, state.get("draft_attempts", 0), reply.text, reply.errors
        )
        return {**update, **spent}
    answer = bounded_text((reply.parsed.answer or "").strip(), context.max_output_chars)
    if not reply.parsed.steps and answer:
        if context.direct_answers:
            # The streamed chunks now spell the answer, under `streamed.message_id`.
            answer_id = await streamed.finish(answer)
            return {
                **spent,
                **valid_reply(),
                **_direct_answer(state, answer, runtime),
                "answer_id": answer_id if streamed.relayed else None,
            }
        errors: list[PlanError] = [
            PlanError(None, "direct answers are off: write a plan with at least one step")
        ]
    else:
        errors = validate_plan(
            reply.parsed,
            resources.tools,
            max_steps=context.max_plan_steps,
            max_args_chars=context.max_args_chars,
            max_text_chars=context.max_text_chars,
        )
    if errors:
        update = invalid_reply(
            "planner", context, state.get("draft_attempts", 0), reply.text, errors
        )
        return {**update, **spent}
    update = _new_revision(state, reply.parsed.to_dict(), runtime)
    if context.review == "always":
        emit(runtime.stream_writer, "review_requested", revision=update["revisions"][0]["revision"])
    return {**update, **valid_reply(), **spent}


def _replay(revision: PlanRevision, context: Context, runtime: Runtime[Context]) -> dict[str, Any]:
    """The update that makes a saved plan the first revision, with no planner call."""
    emit_plan_ready(runtime.stream_writer, revision)
    if context.review == "always":
        emit(runtime.stream_writer, "review_requested", revision=revision["revision"])
    return {
        "plan": revision["plan"],
        "revisions": [revision],
        "revision": revision["revision"],
        "answer": None,
        "results": {},
        **valid_reply(),
    }


def _new_revision(
    state: State, plan: PlanDict, runtime: Runtime[Context], reason: str | None = None
) -> dict[str, Any]:
    if reason is None:
        first = current_revision(state) is None
        reason = "first plan" if first else "rewritten after the reviewer's feedback"
    revision = next_revision(state, plan, "planner", reason)
    emit_plan_ready(runtime.stream_writer, revision)
    return {"plan": plan, "revisions": [revision], "revision": revision["revision"]}


def _direct_answer(state: State, answer: str, runtime: Runtime[Context]) -> dict[str, Any]:
    """End the run with the planner's answer; the empty plan is kept as a revision."""
    reason = "answered directly: the goal needs no steps"
    update = _new_revision(state, {"steps": []}, runtime, reason)
    return {
        **update,
        "status": "completed",
        "answer": answer,
        "reason": "the planner answered directly: the goal needs no tools or steps",
    }
