"""A scripted reviewer: the person who reviews plans during an evaluation.

A task's `reviewer` lists decisions for its plan reviews in order; the n-th review
gets the n-th decision, and every review after the list is approved::

    {"decisions": [
      {"type": "reject", "message": "Use the census archive.", "when_tool": "population"},
      {"type": "edit", "tool": "write_file", "args": {"path": "reports/q3.txt"},
       "message": "Reports go in reports/."}
    ]}

- `when_tool`: the decision applies only if the plan calls that tool; otherwise the plan
  is approved (a good plan needs no correction).
- `edit` merges `args` into the arguments of the steps picked by `step` (an id) and/or
  `tool`. When no step matches, or the edited plan is refused, the reviewer rejects the
  plan with the edit's `message` instead, so the planner still hears what to change.

Step approvals (tools that need a person's approval before each call) are approved.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planexec.interrupts import ReviewDecisionType


class ReviewDecision(BaseModel):
    """What the reviewer does at one plan review."""

    model_config = ConfigDict(extra="forbid")

    type: ReviewDecisionType
    message: str | None = Field(default=None, min_length=1)
    """The feedback (required for reject and edit)."""
    when_tool: str | None = None
    step: str | None = None
    tool: str | None = None
    args: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> ReviewDecision:
        if self.type in ("reject", "edit") and not self.message:
            raise ValueError(f"a {self.type} decision needs a message")
        if self.type == "edit" and (self.args is None or (self.step is None and self.tool is None)):
            raise ValueError("an edit decision needs args and a step or tool to apply them to")
        return self


class ReviewerPolicy(BaseModel):
    """The decisions for a task's plan reviews, in order; later reviews are approved."""

    model_config = ConfigDict(extra="forbid")

    decisions: list[ReviewDecision] = Field(min_length=1)


APPROVE: dict[str, Any] = {"type": "approve"}


def answer(policy: ReviewerPolicy | None, request: dict[str, Any], index: int) -> dict[str, Any]:
    """The resume value for an interrupt, given how many plan reviews were decided before."""
    if request.get("type") == "step_approval":
        return {"decisions": [dict(APPROVE) for _ in request.get("action_requests", [])]}
    decisions = policy.decisions if policy is not None else []
    if index >= len(decisions):
        return dict(APPROVE)
    decision = decisions[index]
    plan = request.get("plan") or {"steps": []}
    if decision.type == "approve" or (
        decision.when_tool is not None
        and not any(step.get("tool") == decision.when_tool for step in plan["steps"])
    ):
        return dict(APPROVE)
    if decision.type == "cancel":
        return {"type": "cancel", "message": decision.message}
    if decision.type == "edit" and not request.get("errors"):
        edited = edit_plan(plan, decision)
        if edited is not None:
            return {"type": "edit", "plan": edited, "message": decision.message}
    return {"type": "reject", "message": decision.message}


def edit_plan(plan: dict[str, Any], decision: ReviewDecision) -> dict[str, Any] | None:
    """`plan` with the decision's `args` merged into the steps it picks, or None if none."""
    edited = copy.deepcopy(plan)
    picked = [
        step
        for step in edited["steps"]
        if (decision.step is None or step.get("id") == decision.step)
        and (decision.tool is None or step.get("tool") == decision.tool)
    ]
    if not picked:
        return None
    for step in picked:
        step["args"] = {**(step.get("args") or {}), **(decision.args or {})}
    return edited
