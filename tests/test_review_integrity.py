"""Issue 6, item 3: an approval applies to the exact plan, or call, that was shown.

Every test counts the side effects of its tools: a plan or call nobody approved must
never produce one. Stale or repeated decisions, and plans changed through
`update_state` after an approval, either pause for a person again or end the run
"failed" with the reason; they never run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langgraph.types import Command, Overwrite

from helpers import (
    Harness,
    config,
    get_state,
    interrupt_of,
    invoke,
    state_history,
    step,
    update_state,
)
from planexec import Context
from planexec.nodes.approval import request_hash
from planexec.plan import diff_plans, plan_hash, step_hash
from planexec.scripted import plan_reply, replan_reply
from planexec.state import timestamp

pytestmark = pytest.mark.usefixtures("both_apis")

# --- tools with visible side effects ---------------------------------------------------


@dataclass
class Effects:
    """Every tool call, in order, with the idempotency key the launch tool was given."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def tools(self) -> list[BaseTool]:
        @tool
        def fetch(name: str) -> str:
            """Fetch a named value."""
            self.calls.append(("fetch", name))
            return f"value of {name}"

        @tool
        def launch(target: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
            """Launch a rocket at a target. Irreversible."""
            self.calls.append(("launch", target))
            self.keys.append(tool_call_id)
            return f"launched at {target}"

        return [fetch, launch]

    def launched(self) -> list[str]:
        return [target for name, target in self.calls if name == "launch"]


def fetch(id: str, depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    return step(id, tool="fetch", args={"name": id}, depends_on=depends_on)


def launch(id: str, target: str, depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    return step(id, tool="launch", args={"target": target}, depends_on=depends_on)


PLAN_STEPS = [fetch("a"), launch("n", "moon", depends_on=("a",))]
PLAN = {"steps": PLAN_STEPS}
EVIL_STEPS = [fetch("a"), launch("n", "earth", depends_on=("a",))]
EVIL = {"steps": EVIL_STEPS}

REVIEW = Context(review="always", retry_initial_interval=0.0)
GATED = Context(review="always", retry_initial_interval=0.0, approval_tools=["launch"])
UNREVIEWED_GATED = Context(review="never", retry_initial_interval=0.0, approval_tools=["launch"])


def harness(
    effects: Effects,
    planner: list[Any] | None = None,
    replanner: list[Any] | None = None,
) -> Harness:
    return Harness(
        planner=planner if planner is not None else [plan_reply(PLAN_STEPS)],
        replanner=replanner if replanner is not None else [replan_reply("finish", answer="done")],
        tools=effects.tools(),
    )


def refusal(decided_on: str, shown: str) -> str:
    return (
        f"the decision is for plan {decided_on}, but the plan under review is {shown}; "
        "decide on the plan shown"
    )


def approve(request: dict[str, Any]) -> Command:
    return Command(resume={"type": "approve", "plan_hash": request["plan_hash"]})


def approve_steps(request: dict[str, Any]) -> Command:
    count = len(request["action_requests"])
    return Command(
        resume={"decisions": [{"type": "approve"}] * count, "request_hash": request["request_hash"]}
    )


# --- the review shows a digest, and a decision must name it ----------------------------


async def test_the_review_carries_the_plans_digest_and_an_approval_naming_it_runs() -> None:
    effects = Effects()
    h = harness(effects)
    request = interrupt_of(await h.run({"goal": "launch"}, REVIEW))
    state = await h.state()
    assert request["plan"] == PLAN
    assert request["plan_hash"] == plan_hash(request["plan"]) == plan_hash(state["plan"])
    assert request["plan_hash"] == plan_hash(state["revisions"][-1]["plan"])
    assert effects.calls == []

    out = await h.run(approve(request), REVIEW)
    assert out["status"] == "completed"
    assert effects.calls == [("fetch", "a"), ("launch", "moon")]
    [record] = out["reviews"]
    assert (record["revision"], record["decision"], record["plan_hash"]) == (
        1,
        "approve",
        request["plan_hash"],
    )


@pytest.mark.parametrize(
    "decision",
    [
        {"type": "approve"},
        {"type": "edit", "plan": EVIL},
        {"type": "reject", "message": "try again"},
        {"type": "cancel", "message": "stop"},
    ],
    ids=lambda d: d["type"],
)
async def test_a_decision_naming_another_plan_changes_nothing_and_runs_nothing(
    decision: dict[str, Any],
) -> None:
    effects = Effects()
    h = harness(effects)
    shown = interrupt_of(await h.run({"goal": "launch"}, REVIEW))["plan_hash"]
    before = await h.state()
    # The digest of a real plan, only not of the one under review: here the edited one.
    other = plan_hash(EVIL)
    request = interrupt_of(await h.run(Command(resume={**decision, "plan_hash": other}), REVIEW))
    assert request["type"] == "plan_review"
    assert request["errors"] == [refusal(other, shown)]
    assert (request["plan"], request["plan_hash"], request["revision"]) == (PLAN, shown, 1)
    after = await h.state()
    for key in ("plan", "revisions", "reviews", "results", "status"):
        assert after.get(key) == before.get(key), key
    assert effects.calls == []
    assert (len(h.planner.calls), h.executor.calls, h.replanner.calls) == (1, [], [])

    out = await h.run(approve(request), REVIEW)
    assert out["status"] == "completed"
    assert effects.calls == [("fetch", "a"), ("launch", "moon")]


# --- a stale review -------------------------------------------------------------------


async def test_a_decision_on_a_rejected_revision_is_refused_at_the_next() -> None:
    second = [fetch("a"), launch("n", "mars", depends_on=("a",))]
    effects = Effects()
    h = harness(effects, planner=[plan_reply(PLAN_STEPS), plan_reply(second)])
    first = interrupt_of(await h.run({"goal": "launch"}, REVIEW))
    reject = {"type": "reject", "message": "not the moon", "plan_hash": first["plan_hash"]}
    current = interrupt_of(await h.run(Command(resume=reject), REVIEW))
    assert (current["revision"], current["plan"]) == (2, {"steps": second})
    stale, shown = first["plan_hash"], current["plan_hash"]
    assert stale != shown

    # Whoever still holds revision 1's review answers it: every kind of decision is refused.
    for decision in (
        {"type": "approve"},
        {"type": "edit", "plan": first["plan"]},
        {"type": "cancel"},
        {"type": "reject", "message": "again"},
    ):
        again = interrupt_of(await h.run(Command(resume={**decision, "plan_hash": stale}), REVIEW))
        assert again["errors"] == [refusal(stale, shown)]
        assert (again["revision"], again["plan_hash"]) == (2, shown)
    state = await h.state()
    assert [(r["revision"], r["decision"]) for r in state["reviews"]] == [(1, "reject")]
    assert [r["revision"] for r in state["revisions"]] == [1, 2]
    assert effects.calls == []
    assert len(h.planner.calls) == 2

    out = await h.run(approve(current), REVIEW)
    assert out["status"] == "completed"
    assert effects.calls == [("fetch", "a"), ("launch", "mars")]


async def test_an_approval_of_an_earlier_revision_does_not_approve_the_replanners() -> None:
    effects = Effects()
    h = harness(
        effects,
        planner=[plan_reply([fetch("a")])],
        replanner=[
            replan_reply("replan", steps=[launch("n", "moon", depends_on=("a",))]),
            replan_reply("finish", answer="done"),
        ],
    )
    first = interrupt_of(await h.run({"goal": "launch"}, REVIEW))
    second = interrupt_of(await h.run(approve(first), REVIEW))
    assert (second["revision"], second["source"]) == (2, "replanner")
    assert second["changes"]["added"] == ["n"]
    assert effects.calls == [("fetch", "a")]

    again = interrupt_of(await h.run(approve(first), REVIEW))
    assert again["errors"] == [refusal(first["plan_hash"], second["plan_hash"])]
    assert effects.calls == [("fetch", "a")]
    assert [(r["revision"], r["decision"]) for r in (await h.state())["reviews"]] == [
        (1, "approve")
    ]

    out = await h.run(approve(second), REVIEW)
    assert out["status"] == "completed"
    assert effects.calls == [("fetch", "a"), ("launch", "moon")]


@pytest.mark.parametrize("kind", ["plan only", "new revision"])
async def test_a_plan_changed_while_under_review_is_not_approved_by_a_decision_on_the_old(
    kind: str,
) -> None:
    effects = Effects()
    h = harness(effects)
    [shown] = (await h.run({"goal": "launch"}, REVIEW))["__interrupt__"]
    await update_state(h.graph, config(), tamper(kind, await h.state()), as_node="planner")
    decision = {"type": "approve", "plan_hash": shown.value["plan_hash"]}
    # Keyed by the old interrupt's id, the answer finds no pending interrupt.
    current = interrupt_of(await h.run(Command(resume={shown.id: decision}), REVIEW))
    assert (current["plan"], current["plan_hash"]) == (EVIL, plan_hash(EVIL))
    assert "errors" not in current
    # Unkeyed, it names the plan that was shown, not this one.
    current = interrupt_of(await h.run(Command(resume=decision), REVIEW))
    assert current["errors"] == [refusal(shown.value["plan_hash"], plan_hash(EVIL))]
    assert effects.calls == []

    out = await h.run(approve(current), REVIEW)
    if kind == "plan only":
        # The plan is not its revision's: approving what was shown does not make it so.
        assert out["status"] == "failed"
        assert "not the plan of its recorded revision" in out["reason"]
        assert effects.calls == []
    else:
        # A revision of its own, approved by a person who saw it.
        assert out["status"] == "completed"
        assert effects.calls == [("fetch", "a"), ("launch", "earth")]


# --- resuming twice -------------------------------------------------------------------


async def test_resending_a_consumed_approval_after_the_run_ended_runs_nothing_again() -> None:
    effects = Effects()
    h = harness(effects)
    paused = await h.run({"goal": "launch"}, REVIEW)
    [pending] = paused["__interrupt__"]
    decision = {"type": "approve", "plan_hash": pending.value["plan_hash"]}
    done = await h.run(Command(resume=decision), REVIEW)
    assert done["status"] == "completed"
    calls = list(effects.calls)

    for resend in (Command(resume=decision), Command(resume={pending.id: decision})):
        out = await h.run(resend, REVIEW)
        assert (out["status"], out["answer"]) == ("completed", "done")
        assert out["reviews"] == done["reviews"]
    assert effects.calls == calls == [("fetch", "a"), ("launch", "moon")]
    assert (len(h.planner.calls), len(h.replanner.calls), h.executor.calls) == (1, 1, [])


async def test_resending_a_consumed_approval_does_not_approve_the_next_revision() -> None:
    effects = Effects()
    h = harness(
        effects,
        planner=[plan_reply([fetch("a")])],
        replanner=[
            replan_reply("replan", steps=[launch("n", "moon", depends_on=("a",))]),
            replan_reply("finish", answer="done"),
        ],
    )
    [first] = (await h.run({"goal": "launch"}, REVIEW))["__interrupt__"]
    decision = {"type": "approve", "plan_hash": first.value["plan_hash"]}
    [second] = (await h.run(Command(resume={first.id: decision}), REVIEW))["__interrupt__"]
    assert second.value["revision"] == 2
    assert second.id != first.id

    # Keyed by the consumed interrupt's id (as the CLI answers), the answer reaches no
    # pending interrupt: revision 2 is shown again, undecided.
    [again] = (await h.run(Command(resume={first.id: decision}), REVIEW))["__interrupt__"]
    assert (again.id, again.value["revision"]) == (second.id, 2)
    assert "errors" not in again.value
    # Sent as it was, it names revision 1's plan: refused.
    [again] = (await h.run(Command(resume=decision), REVIEW))["__interrupt__"]
    assert again.value["errors"] == [refusal(first.value["plan_hash"], second.value["plan_hash"])]
    state = await h.state()
    assert [(r["revision"], r["decision"]) for r in state["reviews"]] == [(1, "approve")]
    assert effects.calls == [("fetch", "a")]
    assert len(h.replanner.calls) == 1


async def test_resending_a_consumed_step_approval_runs_the_step_once() -> None:
    effects = Effects()
    h = harness(effects)
    request = interrupt_of(await h.run({"goal": "launch"}, UNREVIEWED_GATED))
    assert request["type"] == "step_approval"
    assert effects.calls == [("fetch", "a")]
    out = await h.run(approve_steps(request), UNREVIEWED_GATED)
    assert out["status"] == "completed"
    for _ in range(2):
        out = await h.run(approve_steps(request), UNREVIEWED_GATED)
        assert out["status"] == "completed"
    assert effects.calls == [("fetch", "a"), ("launch", "moon")]
    assert len(h.replanner.calls) == 1


async def test_replaying_a_decided_review_runs_only_the_plan_approved_there() -> None:
    # Time travel: a resume sent to the checkpoint that waited for the review, after the
    # review was decided there, gets the decision saved with that checkpoint (the first
    # resume value), whatever it says. Only the plan approved there runs again, and its
    # steps carry the same idempotency keys, so a tool that deduplicates by key does
    # nothing twice.
    effects = Effects()
    h = harness(
        effects,
        replanner=[replan_reply("finish", answer="done"), replan_reply("finish", answer="again")],
    )
    request = interrupt_of(await h.run({"goal": "launch"}, REVIEW))
    done = await h.run(approve(request), REVIEW)
    assert done["status"] == "completed"
    history = await state_history(h.graph, config())
    [waiting] = [s for s in history if s.next == ("review",)]

    stale = {"type": "approve", "plan_hash": plan_hash(EVIL)}
    replayed = await invoke(h.graph, Command(resume=stale), waiting.config, context=REVIEW)
    assert replayed["status"] == "completed"
    decided = [(r["revision"], r["decision"], r["plan_hash"]) for r in replayed["reviews"]]
    assert decided == [(1, "approve", request["plan_hash"])]
    assert replayed["plan"] == PLAN
    assert set(effects.launched()) == {"moon"}
    assert set(effects.keys) == {"t1:r1:n"}

    # Without a resume value, the replayed review asks again.
    again = interrupt_of(await invoke(h.graph, None, waiting.config, context=REVIEW))
    assert (again["type"], again["plan_hash"]) == ("plan_review", request["plan_hash"])


@pytest.mark.parametrize("as_node", ["planner", "approval"])
async def test_a_fork_that_changes_the_plan_after_its_approval_is_refused(as_node: str) -> None:
    effects = Effects()
    h = harness(effects)
    request = interrupt_of(await h.run({"goal": "launch"}, REVIEW))
    assert (await h.run(approve(request), REVIEW))["status"] == "completed"
    history = await state_history(h.graph, config())
    # The checkpoint written by the approving review: the executor is next.
    [approved] = [s for s in history if s.next == ("executor",)]
    assert approved.values["reviews"][0]["decision"] == "approve"

    fork = await update_state(h.graph, approved.config, {"plan": EVIL}, as_node=as_node)
    out = await invoke(h.graph, None, fork, context=REVIEW)
    assert out["status"] == "failed"
    assert "not the plan of its recorded revision" in out["reason"]
    assert effects.launched() == ["moon"]


# --- update_state after approval -------------------------------------------------------


def _new_revision(state: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "revision": state["revisions"][-1]["revision"] + 1,
        "source": source,
        "reason": "written through update_state",
        "plan": EVIL,
        "diff": diff_plans(state["plan"], EVIL),
        "at": timestamp(),
    }


def _forged_edit(state: dict[str, Any], edited_hash: str) -> dict[str, Any]:
    return {
        "revision": state["revisions"][-1]["revision"],
        "decision": "edit",
        "message": "forged",
        "plan_hash": plan_hash(state["plan"]),
        "edited_hash": edited_hash,
        "at": timestamp(),
    }


def tamper(kind: str, state: dict[str, Any]) -> dict[str, Any]:
    """An update that swaps the approved plan for EVIL, in one of several ways."""
    if kind == "plan only":
        return {"plan": EVIL}
    if kind == "new revision":
        return {"plan": EVIL, "revisions": [_new_revision(state, "planner")]}
    if kind == "human revision, random edit digest":
        return {
            "plan": EVIL,
            "revisions": [_new_revision(state, "human")],
            "reviews": [_forged_edit(state, "0123456789abcdef")],
        }
    if kind == "human revision, edit record without a digest":
        forged = _forged_edit(state, "")
        del forged["edited_hash"]
        return {"plan": EVIL, "revisions": [_new_revision(state, "human")], "reviews": [forged]}
    if kind == "human revision, digest of the approved plan":
        return {
            "plan": EVIL,
            "revisions": [_new_revision(state, "human")],
            "reviews": [_forged_edit(state, plan_hash(PLAN))],
        }
    if kind == "new revision, approval naming the approved plan":
        revision = _new_revision(state, "planner")
        record = {
            "revision": revision["revision"],
            "decision": "approve",
            "message": None,
            "plan_hash": plan_hash(PLAN),
            "at": timestamp(),
        }
        return {"plan": EVIL, "revisions": [revision], "reviews": [record]}
    if kind == "approved revision rewritten":
        rewritten = [dict(r) for r in state["revisions"]]
        rewritten[-1]["plan"] = EVIL
        return {"plan": EVIL, "revisions": Overwrite(rewritten)}
    raise AssertionError(kind)


KINDS = [
    "plan only",
    "new revision",
    "human revision, random edit digest",
    "human revision, edit record without a digest",
    "human revision, digest of the approved plan",
    "new revision, approval naming the approved plan",
    "approved revision rewritten",
]
AS_NODES = [None, "planner", "review", "approval", "executor", "replanner"]


@pytest.mark.parametrize("as_node", AS_NODES)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_plan_changed_through_update_state_after_approval_never_runs(
    kind: str, as_node: str | None
) -> None:
    effects = Effects()
    h = harness(effects, replanner=[replan_reply("finish", answer="done")] * 2)
    request = interrupt_of(await h.run({"goal": "launch"}, GATED))
    held = interrupt_of(await h.run(approve(request), GATED))
    assert (held["type"], held["action_requests"][0]["args"]) == (
        "step_approval",
        {"target": "moon"},
    )
    state = await h.state()
    await update_state(h.graph, config(), tamper(kind, state), as_node=as_node)

    out = await h.run(None, GATED)
    asked: list[dict[str, Any]] = []
    while "__interrupt__" in out and interrupt_of(out)["type"] == "step_approval":
        # Whoever answers step approvals approves anything: the plan check must hold alone.
        asked.append(interrupt_of(out))
        out = await h.run(approve_steps(interrupt_of(out)), GATED)
    assert effects.calls == [("fetch", "a")]
    assert asked == []

    revision = (await h.state())["revisions"][-1]["revision"]
    if as_node == "review":
        # The review node leads nowhere by itself: written as if by it, the run stops.
        assert "__interrupt__" not in out
        assert out.get("status") is None
        assert (await get_state(h.graph, config())).next == ()
    elif kind == "plan only":
        assert out["status"] == "failed"
        assert out["reason"] == (
            "the plan in state is not the plan of its recorded revision; refusing to run it"
        )
    elif as_node in ("planner", "replanner"):
        # Back to review: a person sees the changed plan, with its own digest.
        again = interrupt_of(out)
        assert again["type"] == "plan_review"
        assert (again["revision"], again["plan"]) == (revision, EVIL)
        assert again["plan_hash"] == plan_hash(EVIL)
    else:
        assert out["status"] == "failed"
        assert out["reason"] == (
            f"plan revision {revision} has not been approved; refusing to run it"
        )
    assert effects.calls == [("fetch", "a")]


async def test_a_changed_plan_back_at_review_runs_once_a_person_approves_it_and_its_step() -> None:
    effects = Effects()
    h = harness(effects)
    request = interrupt_of(await h.run({"goal": "launch"}, GATED))
    interrupt_of(await h.run(approve(request), GATED))
    await update_state(
        h.graph, config(), tamper("new revision", await h.state()), as_node="planner"
    )
    review = interrupt_of(await h.run(None, GATED))
    assert (review["revision"], review["changes"]["changed"]) == (2, ["n"])
    # The step approval given for the moon does not cover the earth: asked again.
    step_request = interrupt_of(await h.run(approve(review), GATED))
    assert step_request["type"] == "step_approval"
    assert step_request["action_requests"][0]["args"] == {"target": "earth"}
    assert effects.calls == [("fetch", "a")]
    out = await h.run(approve_steps(step_request), GATED)
    assert out["status"] == "completed"
    assert effects.calls == [("fetch", "a"), ("launch", "earth")]


# --- step approval ----------------------------------------------------------------------


async def test_step_decisions_naming_another_request_are_refused() -> None:
    effects = Effects()
    h = harness(effects)
    request = interrupt_of(await h.run({"goal": "launch"}, UNREVIEWED_GATED))
    shown = request["request_hash"]
    assert shown == request_hash([PLAN_STEPS[1]], {"n": {"target": "moon"}})
    other = request_hash([PLAN_STEPS[1]], {"n": {"target": "earth"}})
    answer = {"decisions": [{"type": "approve"}], "request_hash": other}
    again = interrupt_of(await h.run(Command(resume=answer), UNREVIEWED_GATED))
    assert again["errors"] == [
        f"the decisions are for request {other}, but the steps waiting for approval are "
        f"request {shown}; decide on the steps shown"
    ]
    assert again["request_hash"] == shown
    assert (await h.state()).get("approvals", {}) == {}
    assert effects.calls == [("fetch", "a")]

    out = await h.run(approve_steps(again), UNREVIEWED_GATED)
    assert out["status"] == "completed"
    assert effects.launched() == ["moon"]


async def test_a_step_approval_stops_applying_when_the_step_changes() -> None:
    effects = Effects()
    h = harness(effects)
    first = interrupt_of(await h.run({"goal": "launch"}, UNREVIEWED_GATED))
    # Approved, but stopped before the executor takes the step.
    await invoke(
        h.graph,
        approve_steps(first),
        config(),
        context=UNREVIEWED_GATED,
        interrupt_before=["executor"],
    )
    state = await h.state()
    assert state["approvals"]["n"]["step_hash"] == step_hash(PLAN_STEPS[1])
    assert effects.calls == [("fetch", "a")]

    await update_state(h.graph, config(), tamper("new revision", state), as_node="approval")
    second = interrupt_of(await h.run(None, UNREVIEWED_GATED))
    assert second["type"] == "step_approval"
    assert (second["steps"], second["revision"]) == (["n"], 2)
    assert second["action_requests"][0]["args"] == {"target": "earth"}
    assert second["request_hash"] != first["request_hash"]
    assert effects.calls == [("fetch", "a")]

    # The answer given for the moon, sent again, does not cover the earth.
    stale = interrupt_of(await h.run(approve_steps(first), UNREVIEWED_GATED))
    assert stale["errors"] == [
        f"the decisions are for request {first['request_hash']}, but the steps waiting for "
        f"approval are request {second['request_hash']}; decide on the steps shown"
    ]
    assert effects.calls == [("fetch", "a")]

    out = await h.run(approve_steps(second), UNREVIEWED_GATED)
    assert out["status"] == "completed"
    assert effects.launched() == ["earth"]
    assert out["results"]["n"]["revision"] == 2
    assert (await h.state())["approvals"]["n"]["step_hash"] == step_hash(EVIL_STEPS[1])


async def test_a_step_approval_written_for_another_step_does_not_release_it() -> None:
    effects = Effects()
    h = harness(effects)
    interrupt_of(await h.run({"goal": "launch"}, UNREVIEWED_GATED))
    forged = {
        "decision": "approve",
        "args": {"target": "moon"},
        "message": None,
        "revision": 1,
        "step_hash": step_hash(EVIL_STEPS[1]),
        "at": timestamp(),
    }
    await update_state(
        h.graph, config(), {"approvals": {"n": forged}, "awaiting_approval": []}, as_node="approval"
    )
    again = interrupt_of(await h.run(None, UNREVIEWED_GATED))
    assert (again["type"], again["steps"]) == ("step_approval", ["n"])
    assert effects.calls == [("fetch", "a")]
