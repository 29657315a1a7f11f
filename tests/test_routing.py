import re
import typing
from pathlib import Path
from typing import Any

import pytest
from langgraph.runtime import Runtime

from helpers import step
from planexec import Context, build_graph
from planexec.graph import route_after_executor, route_after_planner, route_after_replanner
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


def review(number: int, decision: str) -> dict[str, Any]:
    return {"revision": number, "decision": decision, "message": None, "plan_hash": "", "at": ""}


NEW = {"goal": "g", "plan": PLAN, "revisions": [revision(1, "planner")]}
APPROVED = {**NEW, "reviews": [review(1, "approve")]}
REJECTED = {**NEW, "reviews": [review(1, "reject")]}
EDITED = {**APPROVED, "revisions": [revision(1, "planner"), revision(2, "human")]}
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


def runtime(context: Any) -> Runtime[Context]:
    return Runtime(context=context)


@pytest.mark.parametrize(
    ("state", "context", "expected"),
    [
        pytest.param(DRAFT, ALWAYS, "planner", id="invalid reply: ask again"),
        pytest.param(DRAFT, NEVER, "planner", id="invalid reply, no review: ask again"),
        pytest.param(GAVE_UP, ALWAYS, "__end__", id="out of attempts: end"),
        pytest.param(NEW, ALWAYS, "review", id="new plan: review"),
        pytest.param(NEW, None, "review", id="no context: review by default"),
        pytest.param(NEW, {"review": "never"}, "executor", id="dict context: no review"),
        pytest.param(NEW, NEVER, "executor", id="new plan, no review: run"),
        pytest.param(APPROVED, ALWAYS, "executor", id="approved: run"),
        pytest.param(EDITED, ALWAYS, "executor", id="edited by a person: run"),
        pytest.param(REJECTED, ALWAYS, "review", id="rejected revision: not approved"),
        pytest.param(REWRITTEN, ALWAYS, "review", id="rewritten after rejection: review"),
        pytest.param(
            {**NEW, "draft_errors": []}, ALWAYS, "review", id="cleared draft errors: review"
        ),
        pytest.param(
            {**NEW, "status": "budget_exhausted"}, NEVER, "__end__", id="budget gone: end"
        ),
    ],
)
def test_route_after_planner(state: Any, context: Any, expected: str) -> None:
    assert route_after_planner(state, runtime(context)) == expected


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
    ("state", "context", "expected"),
    [
        pytest.param(DRAFT_AFTER_RUN, ALWAYS, "replanner", id="invalid reply: ask again"),
        pytest.param(
            {**DRAFT_AFTER_RUN, "status": "failed"}, ALWAYS, "__end__", id="out of attempts"
        ),
        pytest.param({**APPROVED, "status": "completed"}, ALWAYS, "__end__", id="finished"),
        pytest.param(
            {**APPROVED, "status": "budget_exhausted"}, NEVER, "__end__", id="max_replans hit"
        ),
        pytest.param(REPLANNED_STATE, ALWAYS, "review", id="new revision: review"),
        pytest.param(REPLANNED_STATE, None, "review", id="no context: review by default"),
        pytest.param(REPLANNED_STATE, NEVER, "executor", id="new revision, no review: run"),
        pytest.param(APPROVED, ALWAYS, "executor", id="continue: approved plan runs on"),
    ],
)
def test_route_after_replanner(state: Any, context: Any, expected: str) -> None:
    assert route_after_replanner(state, runtime(context)) == expected


@pytest.mark.parametrize(
    ("router", "targets"),
    [
        (route_after_planner, {"planner", "review", "executor", "__end__"}),
        (route_after_executor, {"approval", "replanner", "__end__"}),
        (route_after_replanner, {"replanner", "review", "executor", "__end__"}),
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
        ("__start__", "planner"),
        ("planner", "planner"),
        ("planner", "review"),
        ("planner", "executor"),
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
        ("replanner", "executor"),
        ("replanner", "__end__"),
    }


def test_the_module_graph_has_the_same_topology() -> None:
    from planexec.graph import graph

    assert graph.get_graph().draw_mermaid() == SNAPSHOT.read_text()
