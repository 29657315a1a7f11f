"""The conversation in `messages`, as chat front ends show it.

Each goal is a human message (a `{"goal": ...}` input is recorded as one); each plan
revision with steps gets a short AI message listing what the steps do, the plan itself
in `additional_kwargs["planexec"]`; the end of each goal is an AI message, the final
answer when it completed, else one sentence saying how it ended. Step results never
enter `messages`: they stay in `results`.

Every AI message planexec writes has `additional_kwargs["planexec"]` with its `kind`
(`"plan"` or `"end"`) and the `goal` number, and a fixed id (`planexec-revision-<n>`,
`planexec-goal-<n>-end`), so that a node run twice writes it once; a streamed final
answer's end message takes the id its chunks had (`answer_id`) instead; a goal recorded
from `{"goal": ...}` is the human message `planexec-human-<n>`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langgraph.types import Command

from planexec.execution import bounded_text
from planexec.plan import PlanDict
from planexec.state import GoalRecord, PlanRevision, State, goal_number

MessageKind = Literal["plan", "end"]

SHOWN_STEPS = 12
"""The most steps a plan message lists; the rest are counted."""
STEP_CHARS = 160
"""The most characters of a step's description a plan message shows."""
REASON_CHARS = 400
"""The most characters of the reason an end message gives."""

_ENDED = {
    "failed": "The run failed",
    "cancelled": "The run was cancelled",
    "budget_exhausted": "The run stopped: a budget ran out",
}
"""How an end message opens, by status, for a goal that did not complete."""


def text_of(message: BaseMessage) -> str:
    """The text of a message (its text blocks, when its content is a list)."""
    return message.text


def last_human(messages: Sequence[BaseMessage]) -> HumanMessage | None:
    """The latest human message, if any."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message
    return None


def input_goal(value: Any) -> tuple[bool, Any]:
    """Whether `value` is input that starts work, and the goal text it carries.

    A `{"goal": ...}` input carries its goal; a `{"messages": [...]}` input the last
    human message's text (None when there is none, or when the messages are not
    messages). Resumes (`Command`) and `None` start no new work: `(False, None)`.
    """
    if not isinstance(value, Mapping):
        return False, None
    if "goal" in value:
        return True, value["goal"]
    raw = value.get("messages")
    if raw is None:
        return True, None
    try:
        messages = convert_to_messages(raw if isinstance(raw, list) else [raw])
    except (ValueError, TypeError, NotImplementedError):
        return True, None
    human = last_human(messages)
    return True, text_of(human) if human is not None else None


def _one_line(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def human_message(text: str, messages: Sequence[BaseMessage]) -> HumanMessage:
    """A goal or feedback given as `{"goal": ...}`, as the human message it stands for.

    Its id (`planexec-human-<n>`, n the message's place in the conversation) is new to
    `messages`, and the same however often the run that records it is repeated.
    """
    taken = {message.id for message in messages}
    n = len(messages) + 1
    while f"planexec-human-{n}" in taken:
        n += 1
    return HumanMessage(text, id=f"planexec-human-{n}")


def plan_message(revision: PlanRevision) -> AIMessage | None:
    """The chat bubble for a plan revision; None for the empty plan of a direct answer."""
    plan: PlanDict = revision["plan"]
    steps = plan["steps"]
    if not steps:
        return None
    count = len(steps)
    lines = [f"Plan (revision {revision['revision']}, {count} step{'s' if count != 1 else ''}):"]
    for n, step in enumerate(steps[:SHOWN_STEPS], start=1):
        tool = f" [{step['tool']}]" if step.get("tool") else ""
        lines.append(f"{n}. {_one_line(step['description'], STEP_CHARS)}{tool}")
    if count > SHOWN_STEPS:
        lines.append(f"... and {count - SHOWN_STEPS} more")
    return AIMessage(
        "\n".join(lines),
        id=f"planexec-revision-{revision['revision']}",
        additional_kwargs={
            "planexec": {
                "kind": "plan",
                "goal": revision.get("goal") or 1,
                "revision": revision["revision"],
                "source": revision["source"],
                "plan": plan,
            }
        },
    )


def end_message(goal: int, update: Mapping[str, Any]) -> AIMessage:
    """The message that ends goal `goal`: its answer, or how it ended and why."""
    status = update.get("status")
    answer = update.get("answer")
    if status == "completed" and answer is not None:
        content = str(answer)
    else:
        opening = _ENDED.get(str(status), "The run ended")
        reason = update.get("reason")
        content = opening + (f": {bounded_text(str(reason), REASON_CHARS)}" if reason else ".")
    streamed = update.get("answer_id") if status == "completed" else None
    return AIMessage(
        content,
        id=str(streamed) if streamed else f"planexec-goal-{goal}-end",
        additional_kwargs={"planexec": {"kind": "end", "goal": goal, "status": status}},
    )


def messages_for(state: State, update: Mapping[str, Any]) -> list[AIMessage]:
    """The AI messages a node's `update` adds: one per new plan revision, and the end."""
    added = [plan_message(revision) for revision in update.get("revisions") or []]
    found = [message for message in added if message is not None]
    if update.get("status"):
        found.append(end_message(goal_number(state), update))
    return found


def with_messages(state: State, result: Any) -> Any:
    """A node's result (an update or a `Command`) with the messages it adds."""
    update = result.update if isinstance(result, Command) else result
    if not isinstance(update, dict):
        return result
    added = messages_for(state, update)
    if not added:
        return result
    update = {**update, "messages": [*update.get("messages", []), *added]}
    return dataclasses.replace(result, update=update) if isinstance(result, Command) else update


def earlier_answers(goals: Sequence[GoalRecord], count: int, chars: int) -> list[tuple[str, str]]:
    """The latest `count` earlier goals' texts and answers (or how they ended), each cut."""
    shown = []
    for record in goals[-count:]:
        ended = record["answer"] if record["status"] == "completed" else None
        outcome = ended or f"({record['status']}: {record['reason'] or 'no reason given'})"
        shown.append((bounded_text(record["text"], chars), bounded_text(str(outcome), chars)))
    return shown
