"""The review node: a person approves, edits or rejects the plan before it runs.

The graph interrupts with a `plan_review` value. A decision that is malformed, or an
edited plan that fails validation, interrupts again at the same review with `errors`
added; nothing is recorded until a decision is valid. Chat front ends' answers
(`planexec.nodes._chat`) are taken as the decisions they stand for.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from pydantic import BaseModel, ValidationError

from planexec.context import Context, resolve_context
from planexec.events import emit, emit_plan_ready
from planexec.interrupts import (
    REVIEW_ACTION,
    REVIEW_DECISIONS,
    Approve,
    Cancel,
    Edit,
    PlanReviewRequest,
    Reject,
    ReviewDecision,
)
from planexec.nodes._chat import action_request, as_review_decision, inbox_config, review_config
from planexec.plan import MAX_ERRORS, PlanDict, parse_plan, plan_hash, validate_plan
from planexec.resources import Resources
from planexec.seals import Sealer
from planexec.state import (
    PlanRevision,
    ReviewRecord,
    State,
    current_revision,
    done_steps,
    goal_field,
    goal_of_record,
    is_approved,
    next_revision,
    retired_ids,
    timestamp,
)

DECISIONS = REVIEW_DECISIONS


class _Envelope(BaseModel):
    decision: ReviewDecision


def parse_decision(
    value: object, *, max_text_chars: int | None = None
) -> tuple[Approve | Edit | Reject | Cancel | None, list[str]]:
    """A review decision from a resume value, or the reasons it is not one. Never raises.

    The value is a `ReviewDecision` or a `ChatReviewAnswer`. A message longer than
    `max_text_chars` makes the decision unusable.
    """
    value, errors = as_review_decision(value)
    if errors:
        return None, errors
    if not isinstance(value, dict):
        return None, [
            f'a decision must be an object such as {{"type": "approve"}}, not {shown(value)}'
        ]
    if value.get("type") not in DECISIONS:
        return None, [
            f"unknown decision type {shown(value.get('type'))}: use one of {', '.join(DECISIONS)}"
        ]
    try:
        decision = _Envelope.model_validate({"decision": value}).decision
    except ValidationError as exc:
        return None, [
            f"{value['type']} decision: {'.'.join(str(p) for p in e['loc'][2:])}: {e['msg']}"
            for e in exc.errors()[:MAX_ERRORS]
        ]
    message = getattr(decision, "message", None)
    if max_text_chars is not None and message is not None and len(message) > max_text_chars:
        return None, [
            f"{decision.type} decision: the message is {len(message)} characters long; the "
            f"most allowed is {max_text_chars} (Context.max_text_chars)"
        ]
    return decision, []


def shown(value: object) -> str:
    """`value` as a short Python literal for an error message, however large or deep."""
    return _SHOWN.repr(value)


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80


def review_request(state: State, errors: list[str]) -> PlanReviewRequest:
    """The interrupt value that shows the current plan to a reviewer."""
    revision = current_revision(state)
    plan = state.get("plan")
    if revision is None or plan is None:
        raise ValueError("there is no plan to review")
    shown_action = action_request(revision["revision"], plan)
    request: PlanReviewRequest = {
        "type": "plan_review",
        "goal": state.get("goal"),
        "plan": plan,
        "revision": revision["revision"],
        "source": revision["source"],
        "reason": revision["reason"],
        "plan_hash": plan_hash(plan),
        "changes": revision["diff"] if _revises(state, revision) else None,
        "finished": sorted(done_steps(state)),
        "allowed_decisions": list(DECISIONS),
        "action_requests": [shown_action],
        "review_configs": [review_config()],
        "action_request": {"action": REVIEW_ACTION, "args": shown_action["args"]},
        "config": inbox_config(),
        "description": shown_action.get("description", ""),
    }
    if "library" in revision:
        request["library"] = revision["library"]
    if errors:
        request["errors"] = errors
    return request


def _revises(state: State, revision: PlanRevision) -> bool:
    """Whether `revision` follows an earlier plan of the same goal."""
    goal = goal_of_record(revision)
    return any(
        goal_of_record(r) == goal and r["revision"] < revision["revision"]
        for r in state.get("revisions") or []
    )


def needs_review(state: State, context: Context, genuine: Callable[[ReviewRecord], bool]) -> bool:
    """Whether the current plan waits for a person: review is on and it is not yet approved.

    Only approvals that `genuine` accepts count (`planexec.seals`).
    """
    return context.review == "always" and not is_approved(state, genuine)


async def review(
    state: State, runtime: Runtime[Context], *, resources: Resources
) -> Command[Literal["planner", "replanner", "executor", "__end__"]]:
    """Interrupt for a decision on the current plan and act on it.

    With review off, or for a revision already approved, go straight to the executor.
    Feedback sent as a chat message while the plan waited (`chat_answer`, from the
    intake node) is the first answer, taken as a rejection with that message.
    """
    command = await _review(state, runtime, resources)
    update = command.update if isinstance(command.update, dict) else {}
    if state.get("chat_answer") is not None:
        update = {**update, "chat_answer": None}
        command = dataclasses.replace(command, update=update)
    for record in update.get("reviews", []):
        emit(
            runtime.stream_writer,
            "review_decided",
            revision=record["revision"],
            decision=record["decision"],
            message=record["message"],
        )
    for revision in update.get("revisions", []):
        emit_plan_ready(runtime.stream_writer, revision)
    return command


async def _review(
    state: State, runtime: Runtime[Context], resources: Resources
) -> Command[Literal["planner", "replanner", "executor", "__end__"]]:
    """Interrupt for a decision on the current plan and act on it.

    With review off, or for a revision already approved, go straight to the executor.
    """
    context = resolve_context(runtime.context)
    revision = current_revision(state)
    plan = state.get("plan")
    if revision is None or plan is None:
        raise ValueError("there is no plan to review")
    seal = await resources.sealer(runtime)
    if not needs_review(state, context, seal.review):
        return Command(goto="executor")
    shown = plan_hash(plan)
    errors: list[str] = []
    chat = state.get("chat_answer")
    while True:
        if chat is not None:
            answer: object = {"type": "reject", "message": chat}
            chat = None
        else:
            answer = interrupt(review_request(state, errors))
        decision, errors = parse_decision(answer, max_text_chars=context.max_text_chars)
        if decision is not None and decision.plan_hash not in (None, shown):
            errors = [
                f"the decision is for plan {decision.plan_hash}, but the plan under review "
                f"is {shown}; decide on the plan shown"
            ]
            decision = None
        if isinstance(decision, Edit):
            edited, errors = _edited_plan(decision, state, context, resources)
            if edited is None:
                continue
            return _apply_edit(state, revision, edited, decision, shown, seal)
        if decision is not None:
            break
    record: ReviewRecord = {
        "revision": revision["revision"],
        "decision": decision.type,
        "message": getattr(decision, "message", None),
        "plan_hash": shown,
        "at": timestamp(),
        **goal_field(state),  # type: ignore[typeddict-item]
    }
    record = seal.seal("review", record)
    if isinstance(decision, Approve):
        return Command(goto="executor", update={"reviews": [record]})
    if isinstance(decision, Reject):
        # Once steps have finished, only the replanner can revise around them.
        goto: Literal["planner", "replanner"] = "replanner" if done_steps(state) else "planner"
        return Command(goto=goto, update={"reviews": [record]})
    reason = "cancelled by the reviewer" + (f": {decision.message}" if decision.message else "")
    return Command(
        goto="__end__", update={"reviews": [record], "status": "cancelled", "reason": reason}
    )


def _edited_plan(
    decision: Edit, state: State, context: Context, resources: Resources
) -> tuple[PlanDict | None, list[str]]:
    done = done_steps(state)
    parsed, problems = parse_plan(decision.plan, max_steps=context.max_plan_steps + len(done))
    if parsed is not None:
        problems = validate_plan(
            parsed,
            resources.tools,
            max_steps=context.max_plan_steps,
            done=done,
            retired=retired_ids(state),
            max_args_chars=context.max_args_chars,
            max_text_chars=context.max_text_chars,
        )
    if problems or parsed is None:
        return None, [f"edited plan: {problem}" for problem in problems]
    return parsed.to_dict(), []


def _apply_edit(
    state: State,
    revision: PlanRevision,
    edited: PlanDict,
    decision: Edit,
    shown: str,
    seal: Sealer,
) -> Command[Literal["planner", "replanner", "executor", "__end__"]]:
    record: ReviewRecord = {
        "revision": revision["revision"],
        "decision": "edit" if edited != state.get("plan") else "approve",
        "message": decision.message,
        "plan_hash": shown,
        "at": timestamp(),
        **goal_field(state),  # type: ignore[typeddict-item]
    }
    if record["decision"] == "approve":
        return Command(goto="executor", update={"reviews": [seal.seal("review", record)]})
    record["edited_hash"] = plan_hash(edited)
    record = seal.seal("review", record)
    new_revision = next_revision(
        state, edited, "human", decision.message or "edited by the reviewer"
    )
    return Command(
        goto="executor",
        update={
            "reviews": [record],
            "plan": edited,
            "revisions": [new_revision],
            "revision": new_revision["revision"],
        },
    )
