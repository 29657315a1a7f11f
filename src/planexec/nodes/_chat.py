"""Plan review as chat front ends show it and answer it.

A plan review is also one action, `REVIEW_ACTION` with args `{"plan": <plan>}`, in
LangChain's `HITLRequest` shape and in Agent Inbox's `HumanInterrupt` shape, which Agent
Chat UI renders. Their answers are turned into planexec's own decisions here, before
the review node parses them, so each is checked exactly as a `ReviewDecision` is: its
plan digest, its message length, the edited plan's validation, and the seal of the record.
"""

from __future__ import annotations

import json
from typing import Any

from planexec.interrupts import (
    CHAT_REVIEW_DECISIONS,
    REVIEW_ACTION,
    ActionRequest,
    InboxConfig,
    ReviewConfig,
)
from planexec.plan import PlanDict, digest

_INBOX_TYPES = {"accept": "approve", "edit": "edit", "response": "reject", "ignore": "cancel"}
"""Agent Inbox's answer types, as the review decision each one is."""


def action_request(revision: int, plan: PlanDict) -> ActionRequest:
    """The plan under review as the one action a chat front end shows."""
    steps = len(plan["steps"])
    return {
        "name": REVIEW_ACTION,
        "args": {"plan": plan},
        "description": (
            f"Plan revision {revision}, {steps} step{'s' if steps != 1 else ''}. Approve to "
            "run it, edit the plan, or respond with feedback for the planner to write a new one."
        ),
    }


def review_config() -> ReviewConfig:
    """What a chat front end may answer to the plan review."""
    return {"action_name": REVIEW_ACTION, "allowed_decisions": list(CHAT_REVIEW_DECISIONS)}


def inbox_config() -> InboxConfig:
    """Agent Inbox's buttons at a plan review: all four, ignore being cancel."""
    return {"allow_accept": True, "allow_edit": True, "allow_respond": True, "allow_ignore": True}


def as_review_decision(value: object) -> tuple[object, list[str]]:
    """`value` as a `ReviewDecision`-shaped object, or the reasons it cannot be one.

    A `{"decisions": [...]}` answer (LangChain's middleware), one of its decisions on its
    own (`respond`, or an edit with `edited_action`), and an Agent Inbox answer
    (`{"type": "accept" | "edit" | "response" | "ignore", "args": ...}`, alone or in a
    list of one object) are translated; any other value is returned unchanged, for the review
    node to parse as planexec's own decision. Never raises.
    """
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        if len(value) != 1:
            return None, [
                f"answer with one response for the plan review, not a list of {len(value)}"
            ]
        return _from_inbox(value[0])
    if not isinstance(value, dict):
        return value, []
    if "decisions" in value:
        return _from_middleware(value)
    if value.get("type") == "respond" or ("edited_action" in value and "plan" not in value):
        # One middleware decision on its own, as its per-call interrupts are answered.
        return _from_middleware({"decisions": [value]})
    if value.get("type") in _INBOX_TYPES and "args" in value and "plan" not in value:
        return _from_inbox(value)
    return value, []


def _from_middleware(value: dict[str, Any]) -> tuple[object, list[str]]:
    decisions = value["decisions"]
    if not isinstance(decisions, list) or len(decisions) != 1:
        return None, [
            'answer with {"decisions": [<one decision>]}: the plan review shows one action'
        ]
    [decision] = decisions
    kind = decision.get("type") if isinstance(decision, dict) else None
    if not isinstance(decision, dict) or kind not in CHAT_REVIEW_DECISIONS:
        return None, [f"decision type must be one of {', '.join(CHAT_REVIEW_DECISIONS)}"]
    ours: dict[str, Any] = {"type": "reject" if kind == "respond" else kind}
    hashes = [h for h in (value.get("plan_hash"), decision.get("plan_hash")) if h is not None]
    if len(set(hashes)) > 1:
        return None, ["the answer names two different plan_hash values"]
    if hashes:
        ours["plan_hash"] = hashes[0]
    if "message" in decision:
        ours["message"] = decision["message"]
    if kind == "edit":
        plan, errors = _edited_plan(decision.get("edited_action"), "name")
        if errors:
            return None, errors
        ours["plan"] = plan
    return ours, []


def _from_inbox(response: object) -> tuple[object, list[str]]:
    kind = response.get("type") if isinstance(response, dict) else None
    if not isinstance(response, dict) or kind not in _INBOX_TYPES:
        return None, [f"response type must be one of {', '.join(_INBOX_TYPES)}"]
    ours: dict[str, Any] = {"type": _INBOX_TYPES[kind]}
    if response.get("plan_hash") is not None:
        ours["plan_hash"] = response["plan_hash"]
    args = response.get("args")
    if kind == "response":
        ours["message"] = args
    elif kind == "edit":
        plan, errors = _edited_plan(args, "action")
        if errors:
            return None, errors
        ours["plan"] = plan
    elif kind == "accept" and args is not None:
        # Agent Chat UI accepts with the action it showed: the approval is of that plan.
        plan, errors = _edited_plan(args, "action", "an accept")
        if errors:
            return None, errors
        shown = _digest(plan)
        if shown is None:
            return None, ["the accepted plan is not JSON data"]
        if ours.get("plan_hash", shown) != shown:
            return None, ["the accepted plan is not the one its plan_hash names"]
        ours["plan_hash"] = shown
    return ours, []


def _edited_plan(
    action: object, name_key: str, answer: str = "an edit"
) -> tuple[object, list[str]]:
    """The plan in an answer's action (`name_key` is "name" or Agent Inbox's "action")."""
    args = action.get("args") if isinstance(action, dict) else None
    if not isinstance(action, dict) or not isinstance(args, dict) or "plan" not in args:
        return None, [
            f'{answer} needs the action {{"{name_key}": "{REVIEW_ACTION}", '
            '"args": {"plan": <plan>}}'
        ]
    if action.get(name_key, REVIEW_ACTION) != REVIEW_ACTION:
        return None, [f"{answer} may name only the action {REVIEW_ACTION}"]
    plan = args["plan"]
    if isinstance(plan, str):
        try:
            plan = json.loads(plan)
        except ValueError as exc:
            return None, [f"the edited plan is not valid JSON: {exc}"]
    return plan, []


def _digest(plan: object) -> str | None:
    try:
        return digest(plan)
    except (TypeError, ValueError):
        return None
