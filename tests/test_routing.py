import re
import typing
from pathlib import Path
from typing import Any

import pytest

from helpers import step
from planexec import Context, build_graph
from planexec.graph import route_after_executor, route_after_planner, route_after_replanner
from planexec.nodes.intake import route_after_intake
from planexec.nodes.review import needs_review
from planexec.plan import plan_hash
from planexec.tools import calculator

SNAPSHOT = Path(__file__).parent / "snapshots" / "graph.mmd"

PLAN = {"steps": [step("s1", args={"expression": "1+1"})]}
REPLANNED = {
    "steps": [*PLAN["steps"], step("s2", args={"expression": "{{s1}}*2"}, depends_on=["s1"])]
}


def revision(number: int, source: str, plan: Any = PLAN) -> dict[str, Any]:
    return {
        "revision": number,
        "source": source,
        "reason": None,
        "plan": plan,
        "diff": {"added": [], "removed": [], "changed": [], "unchanged": []},
        "at": "",
    }


def review(number: int, decision: str, plan: Any = PLAN) -> dict[str, Any]:
    # An approval counts only for the plan whose digest it names.
    digest = plan_hash(plan)
    return {
        "revision": number,
        "decision": decision,
        "message": None,
        "plan_hash": digest,
        "at": "",
    }


NEW = {"goal": "g", "plan": PLAN, "revisions": [revision(1, "planner")]}
APPROVED = {**NEW, "reviews": [review(1, "approve")]}
REJECTED = {**NEW, "reviews": [review(1, "reject")]}
EDITED = {
    **NEW,
    "revisions": [revision(1, "planner"), revision(2, "human")],
    "reviews": [{**review(1, "edit"), "edited_hash": plan_hash(PLAN)}],
}
REWRITTEN = {
    **NEW,
    "revisions": [revision(1, "planner"), revision(2, "planner")],
    "reviews": [review(1, "reject")],
}
REPLANNED_STATE = {
    **APPROVED,
    "plan": REPLANNED,
    "revisions": [revision(1, "planner"), revision(2, "replanner", REPLANNED)],
}
DRAFT = {"goal": "g", "draft_errors": ["step s1: unknown tool 'x'"], "draft_attempts": 1}
DRAFT_AFTER_RUN = {**APPROVED, "draft_errors": ["bad"], "draft_attempts": 1}
GAVE_UP = {**DRAFT, "status": "failed", "draft_attempts": 3}

ALWAYS = Context(review="always")
NEVER = Context(review="never")


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param({"goal": "g", "goal_index": 1}, "planner", id="new goal: plan"),
        pytest.param({**NEW, "chat_answer": "smaller"}, "review", id="feedback: review"),
        pytest.param({**NEW, "chat_answer": ""}, "review", id="empty feedback: review"),
        pytest.param(APPROVED, "executor", id="approved plan: carry on"),
        pytest.param(DRAFT, "planner", id="no plan yet: plan"),
        pytest.param(DRAFT_AFTER_RUN, "executor", id="replanner's reply pending: carry on"),
        pytest.param({**APPROVED, "goal_index": 2}, "planner", id="next goal: plan anew"),
    ],
)
def test_route_after_intake(state: Any, expected: str) -> None:
    assert route_after_intake(state) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(DRAFT, "planner", id="invalid reply: ask again"),
        pytest.param(GAVE_UP, "__end__", id="out of attempts: end"),
        pytest.param(NEW, "review", id="new plan: review"),
        pytest.param(APPROVED, "review", id="approved: review passes it on"),
        pytest.param({**NEW, "draft_errors": []}, "review", id="cleared draft errors: review"),
        pytest.param({**NEW, "status": "budget_exhausted"}, "__end__", id="budget gone: end"),
    ],
)
def test_route_after_planner(state: Any, expected: str) -> None:
    assert route_after_planner(state) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(APPROVED, "replanner", id="pass done: replanner decides"),
        pytest.param({**APPROVED, "awaiting_approval": []}, "replanner", id="nothing held"),
        pytest.param({**APPROVED, "awaiting_approval": ["s1"]}, "approval", id="held step"),
        pytest.param({**APPROVED, "status": "budget_exhausted"}, "__end__", id="budget gone"),
        pytest.param(
            {**APPROVED, "status": "failed", "awaiting_approval": ["s1"]},
            "__end__",
            id="status wins over held steps",
        ),
    ],
)
def test_route_after_executor(state: Any, expected: str) -> None:
    assert route_after_executor(state) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(DRAFT_AFTER_RUN, "replanner", id="invalid reply: ask again"),
        pytest.param({**DRAFT_AFTER_RUN, "status": "failed"}, "__end__", id="out of attempts"),
        pytest.param({**APPROVED, "status": "completed"}, "__end__", id="finished"),
        pytest.param({**APPROVED, "status": "budget_exhausted"}, "__end__", id="max_replans hit"),
        pytest.param(REPLANNED_STATE, "review", id="new revision: review"),
        pytest.param(APPROVED, "review", id="continue: review passes it on"),
    ],
)
def test_route_after_replanner(state: Any, expected: str) -> None:
    assert route_after_replanner(state) == expected


@pytest.mark.parametrize(
    ("state", "context", "expected"),
    [
        pytest.param(NEW, ALWAYS, True, id="new plan"),
        pytest.param(NEW, Context(), True, id="review is on by default"),
        pytest.param(NEW, NEVER, False, id="review off"),
        pytest.param(APPROVED, ALWAYS, False, id="approved"),
        pytest.param(EDITED, ALWAYS, False, id="edited by a person"),
        pytest.param(REJECTED, ALWAYS, True, id="rejected revision"),
        pytest.param(REWRITTEN, ALWAYS, True, id="rewritten after rejection"),
        pytest.param(REPLANNED_STATE, ALWAYS, True, id="replanned revision"),
        pytest.param(REPLANNED_STATE, NEVER, False, id="replanned, review off"),
    ],
)
def test_review_gate(state: Any, context: Context, expected: bool) -> None:
    # Which records are genuine (sealed by the graph) is tests/test_forged_approvals.py's.
    assert needs_review(state, context, lambda record: True) is expected


@pytest.mark.parametrize(
    ("router", "targets"),
    [
        (route_after_intake, {"planner", "review", "executor"}),
        (route_after_planner, {"planner", "review", "__end__"}),
        (route_after_executor, {"approval", "replanner", "__end__"}),
        (route_after_replanner, {"replanner", "review", "__end__"}),
    ],
)
def test_router_annotations_name_every_branch(router: Any, targets: set[str]) -> None:
    # The Literal return type is what draw_mermaid() and Studio draw.
    assert set(typing.get_args(typing.get_type_hints(router)["return"])) == targets


def edges(mermaid: str) -> set[tuple[str, str]]:
    return set(re.findall(r"^\s*(\w+) -(?:-|\.-)> (\w+);$", mermaid, flags=re.MULTILINE))


def test_topology_matches_the_snapshot() -> None:
    drawn = build_graph(tools=[calculator]).get_graph().draw_mermaid()
    assert drawn == SNAPSHOT.read_text()
    assert edges(drawn) == {
        ("__start__", "intake"),
        ("intake", "planner"),
        ("intake", "review"),
        ("intake", "executor"),
        ("planner", "planner"),
        ("planner", "review"),
        ("planner", "__end__"),
        ("review", "planner"),
        ("review", "replanner"),
        ("review", "executor"),
        ("review", "__end__"),
        ("executor", "approval"),
        ("executor", "replanner"),
        ("executor", "__end__"),
        ("approval", "executor"),
        ("replanner", "replanner"),
        ("replanner", "review"),
        ("replanner", "__end__"),
    }


def test_the_module_graph_has_the_same_topology() -> None:
    from planexec.graph import graph

    assert graph.get_graph().draw_mermaid() == SNAPSHOT.read_text()
