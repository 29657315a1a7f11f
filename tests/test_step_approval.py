"""Issue 3, item 5: steps that call risky tools wait for a person's approval."""

# No `from __future__ import annotations` here: the TypedDicts below must keep their
# NotRequired markers at run time for the key comparison.

from typing import Any, Literal, NotRequired, TypedDict

import pytest
from langchain_core.tools import BaseTool, ToolException, tool
from langgraph.types import Command

from helpers import Harness, context, interrupt_of, step
from planexec import Context
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.usefixtures("both_apis")

# LangChain's human-in-the-loop middleware types, restated with the keys they document as
# optional: at runtime `langchain.agents.middleware.human_in_the_loop`'s TypedDicts list
# every key as required, so they cannot check an interrupt key by key.


class ActionRequest(TypedDict):
    name: str
    args: dict[str, Any]
    description: NotRequired[str]


class ReviewConfig(TypedDict):
    action_name: str
    allowed_decisions: list[Literal["approve", "edit", "reject"]]
    args_schema: NotRequired[dict[str, Any]]


class HITLRequest(TypedDict):
    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]


def assert_fits(value: dict[str, Any], schema: Any) -> None:
    keys = set(value)
    assert schema.__required_keys__ <= keys, f"missing {schema.__required_keys__ - keys}"
    assert keys <= schema.__required_keys__ | schema.__optional_keys__, f"extra {keys}"


def assert_hitl_request(value: dict[str, Any]) -> None:
    assert HITLRequest.__required_keys__ <= set(value)
    assert isinstance(value["action_requests"], list)
    assert len(value["action_requests"]) == len(value["review_configs"])
    for request, review in zip(value["action_requests"], value["review_configs"], strict=True):
        assert_fits(request, ActionRequest)
        assert_fits(review, ReviewConfig)
        assert isinstance(request["name"], str)
        assert isinstance(request["args"], dict)
        assert isinstance(request["description"], str)
        assert review["action_name"] == request["name"]
        assert set(review["allowed_decisions"]) <= {"approve", "edit", "reject"}


APPROVE = {"decisions": [{"type": "approve"}]}


def tools(calls: list[tuple[str, dict[str, Any]]]) -> list[BaseTool]:
    @tool
    def fetch(name: str) -> str:
        """Fetch a named value."""
        calls.append(("fetch", {"name": name}))
        return f"value of {name}"

    @tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        calls.append(("delete_file", {"path": path}))
        return f"deleted {path}"

    @tool
    def send_mail(to: str, body: str) -> str:
        """Send an email."""
        calls.append(("send_mail", {"to": to, "body": body}))
        return f"sent to {to}"

    @tool
    def broken(name: str) -> str:
        """Always fail."""
        calls.append(("broken", {"name": name}))
        raise ToolException(f"{name} is unavailable")

    delete_file.metadata = {"requires_approval": True}
    return [fetch, delete_file, send_mail, broken]


def fetch(id: str, depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    return step(id, tool="fetch", args={"name": id}, depends_on=depends_on)


def delete(id: str, path: str, depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    return step(
        id,
        tool="delete_file",
        args={"path": path},
        depends_on=depends_on,
        description=f"Delete the file named after {', '.join(depends_on) or 'nothing'}",
    )


def names(calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in calls]


def statuses(out: dict[str, Any]) -> dict[str, str]:
    return {i: r["status"] for i, r in out["results"].items()}


def approval_plan() -> list[dict[str, Any]]:
    return [
        fetch("a"),
        fetch("b"),
        delete("d", "{{a}}.txt", depends_on=("a",)),
        fetch("after", depends_on=("d",)),
    ]


# --- pausing ------------------------------------------------------------------------


async def test_a_tool_marked_in_its_metadata_pauses_before_its_step() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply(approval_plan())],
        replanner=[replan_reply("finish", answer="deleted")],
        tools=tools(calls),
    )
    paused = await h.run({"goal": "clean up"}, context())
    request = interrupt_of(paused)
    assert request["type"] == "step_approval"
    assert request["steps"] == ["d"]
    assert request["revision"] == 1
    assert request["action_requests"] == [
        {
            "name": "delete_file",
            "args": {"path": "value of a.txt"},
            "description": request["action_requests"][0]["description"],
        }
    ]
    description = request["action_requests"][0]["description"]
    assert "Delete the file named after a" in description
    assert "Step d" in description
    assert request["review_configs"] == [
        {"action_name": "delete_file", "allowed_decisions": ["approve", "edit", "reject"]}
    ]
    assert_hitl_request(request)
    # Independent steps ran before the pause; the held step and its dependent did not.
    assert sorted(names(calls)) == ["fetch", "fetch"]
    assert statuses(await h.state()) == {"a": "done", "b": "done"}

    out = await h.run(Command(resume=APPROVE), context())
    assert out["status"] == "completed"
    assert calls[2:] == [("delete_file", {"path": "value of a.txt"}), ("fetch", {"name": "after"})]
    assert out["results"]["d"]["output"] == "deleted value of a.txt"
    assert out["results"]["d"]["args"] == {"path": "value of a.txt"}
    approval = (await h.state())["approvals"]["d"]
    assert approval["decision"] == "approve"
    assert approval["args"] == {"path": "value of a.txt"}


async def test_a_tool_named_in_context_approval_tools_pauses_too() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    plan = [
        fetch("a"),
        step("m", tool="send_mail", args={"to": "ops", "body": "got {{a}}"}, depends_on=["a"]),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="mailed")],
        tools=tools(calls),
    )
    ctx = context(approval_tools=["send_mail"])
    request = interrupt_of(await h.run({"goal": "mail"}, ctx))
    assert request["type"] == "step_approval"
    assert request["action_requests"][0]["name"] == "send_mail"
    assert request["action_requests"][0]["args"] == {"to": "ops", "body": "got value of a"}
    assert_hitl_request(request)
    assert names(calls) == ["fetch"]
    out = await h.run(Command(resume=APPROVE), ctx)
    assert out["status"] == "completed"
    assert calls[-1] == ("send_mail", {"to": "ops", "body": "got value of a"})
    # Without the context entry, the same plan runs without asking.
    calls.clear()
    h2 = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="mailed")],
        tools=tools(calls),
    )
    out = await h2.run({"goal": "mail"}, context())
    assert "__interrupt__" not in out
    assert names(calls) == ["fetch", "send_mail"]


async def test_a_step_whose_args_the_executor_chooses_shows_the_proposed_call() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply([step("d", tool="delete_file", args=None)])],
        executor=[{"tool_calls": [{"name": "delete_file", "args": {"path": "x.txt"}}]}],
        replanner=[replan_reply("finish", answer="ok")],
        tools=tools(calls),
    )
    request = interrupt_of(await h.run({"goal": "delete"}, context()))
    # The person approves the call the model proposes, not a blank cheque.
    assert request["action_requests"][0]["args"] == {"path": "x.txt"}
    assert "proposed by the executor model" in request["action_requests"][0]["description"]
    assert len(h.executor.calls) == 1
    assert h.executor.calls[0].tools == ["delete_file"]
    assert calls == []
    out = await h.run(Command(resume=APPROVE), context())
    assert out["status"] == "completed"
    assert calls == [("delete_file", {"path": "x.txt"})]
    # Resuming replayed the proposal from the checkpoint: the model was not asked again.
    assert len(h.executor.calls) == 1
    assert out["usage"]["executor"]["calls"] == 1


async def test_a_proposal_the_person_edits_runs_as_edited() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply([step("d", tool="delete_file", args=None)])],
        executor=[{"tool_calls": [{"name": "delete_file", "args": {"path": "important.txt"}}]}],
        replanner=[replan_reply("finish", answer="ok")],
        tools=tools(calls),
    )
    interrupt_of(await h.run({"goal": "delete"}, context()))
    edit = {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "tmp.txt"}}}
    out = await h.run(Command(resume={"decisions": [edit]}), context())
    assert out["status"] == "completed"
    assert calls == [("delete_file", {"path": "tmp.txt"})]


async def test_a_model_that_proposes_no_usable_call_fails_the_step_without_asking() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply([step("d", tool="delete_file", args=None)])],
        executor=[{"tool_calls": [{"name": "delete_everything", "args": {}}]}] * 3,
        replanner=[replan_reply("finish", answer="could not delete")],
        tools=tools(calls),
    )
    out = await h.run({"goal": "delete"}, context())
    assert "__interrupt__" not in out
    assert out["results"]["d"]["status"] == "failed"
    assert "proposed no usable arguments" in out["results"]["d"]["error"]
    assert out["results"]["d"]["refused_calls"][0]["name"] == "delete_everything"
    assert calls == []


async def test_an_edit_may_use_the_results_of_the_step_dependencies() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    plan = [fetch("f"), delete("d", "x.txt", depends_on=("f",))]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="ok")],
        tools=tools(calls),
    )
    interrupt_of(await h.run({"goal": "delete"}, context()))
    bad = {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "{{zz}}"}}}
    again = interrupt_of(await h.run(Command(resume={"decisions": [bad]}), context()))
    assert any("{{zz}}" in e for e in again["errors"])
    good = {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "{{f}}.bak"}}}
    out = await h.run(Command(resume={"decisions": [good]}), context())
    assert out["status"] == "completed"
    fetched = out["results"]["f"]["output"]
    assert calls[-1] == ("delete_file", {"path": f"{fetched}.bak"})


async def test_several_held_steps_share_one_interrupt_answered_in_order() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    plan = [delete("d1", "one.txt"), delete("d2", "two.txt"), fetch("c")]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="one deleted")],
        tools=tools(calls),
    )
    request = interrupt_of(await h.run({"goal": "delete"}, context()))
    assert request["steps"] == ["d1", "d2"]
    assert [r["args"] for r in request["action_requests"]] == [
        {"path": "one.txt"},
        {"path": "two.txt"},
    ]
    assert_hitl_request(request)
    decisions = {"decisions": [{"type": "approve"}, {"type": "reject", "message": "keep it"}]}
    out = await h.run(Command(resume=decisions), context())
    assert out["status"] == "completed"
    assert ("delete_file", {"path": "one.txt"}) in calls
    assert ("delete_file", {"path": "two.txt"}) not in calls
    assert statuses(out) == {"c": "done", "d1": "done", "d2": "skipped"}


# --- decisions ----------------------------------------------------------------------


async def test_edit_changes_only_that_steps_arguments() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply(approval_plan())],
        replanner=[replan_reply("finish", answer="deleted")],
        tools=tools(calls),
    )
    await h.run({"goal": "clean up"}, context())
    edit = {
        "decisions": [
            {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "safe.txt"}}}
        ]
    }
    out = await h.run(Command(resume=edit), context())
    assert out["status"] == "completed"
    assert ("delete_file", {"path": "safe.txt"}) in calls
    assert ("delete_file", {"path": "value of a.txt"}) not in calls
    assert out["results"]["d"]["args"] == {"path": "safe.txt"}
    assert out["results"]["after"]["status"] == "done"
    # The plan itself is unchanged: the edit is recorded as the step's approval.
    assert out["plan"]["steps"][2]["args"] == {"path": "{{a}}.txt"}
    assert len(out["revisions"]) == 1
    state = await h.state()
    assert state["approvals"]["d"]["decision"] == "edit"
    assert state["approvals"]["d"]["args"] == {"path": "safe.txt"}


@pytest.mark.parametrize(
    ("decision", "error"),
    [
        (
            {"type": "edit", "edited_action": {"name": "delete_file", "args": {"file": "x"}}},
            "argument 'file' is not a parameter of tool 'delete_file'",
        ),
        (
            {"type": "edit", "edited_action": {"name": "fetch", "args": {"name": "x"}}},
            "an edit may change only the arguments, not the tool (delete_file)",
        ),
        ({"type": "edit"}, 'an edit needs "edited_action"'),
        ({"type": "maybe"}, "decision type must be one of approve, edit, reject"),
    ],
)
async def test_an_invalid_decision_asks_again_with_errors(
    decision: dict[str, Any], error: str
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply(approval_plan())],
        replanner=[replan_reply("finish", answer="deleted")],
        tools=tools(calls),
    )
    first = interrupt_of(await h.run({"goal": "clean up"}, context()))
    again = interrupt_of(await h.run(Command(resume={"decisions": [decision]}), context()))
    assert again["type"] == "step_approval"
    assert any(error in e for e in again["errors"]), again["errors"]
    assert again["action_requests"] == first["action_requests"]
    assert "delete_file" not in names(calls)
    assert not (await h.state()).get("approvals")
    out = await h.run(Command(resume=APPROVE), context())
    assert out["status"] == "completed"
    assert ("delete_file", {"path": "value of a.txt"}) in calls


async def test_the_wrong_number_of_decisions_asks_again() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(planner=[plan_reply(approval_plan())], tools=tools(calls))
    await h.run({"goal": "clean up"}, context())
    again = interrupt_of(
        await h.run(Command(resume={"decisions": [{"type": "approve"}] * 2}), context())
    )
    assert again["errors"] == ["expected 1 decision(s), one per action request, got 2"]
    again = interrupt_of(await h.run(Command(resume={"type": "approve"}), context()))
    assert "decisions" in again["errors"][0]
    assert "delete_file" not in names(calls)


async def test_reject_skips_the_step_and_tells_the_replanner_why() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply(approval_plan())],
        replanner=[replan_reply("finish", answer="nothing deleted")],
        tools=tools(calls),
    )
    await h.run({"goal": "clean up"}, context())
    reject = {"decisions": [{"type": "reject", "message": "that file is still needed"}]}
    out = await h.run(Command(resume=reject), context())
    assert out["status"] == "completed"
    assert "delete_file" not in names(calls)
    assert statuses(out) == {"a": "done", "b": "done", "d": "skipped", "after": "skipped"}
    assert out["results"]["d"]["error"] == "rejected by the reviewer: that file is still needed"
    assert len(h.replanner.calls) == 1
    prompt = h.replanner.calls[0].prompt
    assert '<result step="d" status="skipped">' in prompt
    assert "rejected by the reviewer: that file is still needed" in prompt


# --- approvals across revisions ------------------------------------------------------


async def test_an_unchanged_step_keeps_its_approval_across_a_replan() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply([delete("d1", "one.txt"), delete("d2", "two.txt")])],
        replanner=[
            # After d1, revise: keep d2 exactly as approved, and add a step.
            replan_reply("replan", steps=[delete("d2", "two.txt"), fetch("c")]),
            replan_reply("continue"),
            replan_reply("finish", answer="both deleted"),
        ],
        tools=tools(calls),
    )
    ctx = context(replan_policy="after_each_step")
    request = interrupt_of(await h.run({"goal": "delete"}, ctx))
    assert request["steps"] == ["d1", "d2"]
    out = await h.run(Command(resume={"decisions": [{"type": "approve"}] * 2}), ctx)
    assert "__interrupt__" not in out
    assert out["status"] == "completed"
    assert out["revisions"][-1]["diff"]["unchanged"] == ["d1", "d2"]
    assert out["revisions"][-1]["diff"]["added"] == ["c"]
    assert calls == [
        ("delete_file", {"path": "one.txt"}),
        ("delete_file", {"path": "two.txt"}),
        ("fetch", {"name": "c"}),
    ]


async def test_a_changed_step_asks_for_approval_again() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply([delete("d1", "one.txt"), delete("d2", "two.txt")])],
        replanner=[
            replan_reply("replan", steps=[delete("d2", "three.txt")]),
            replan_reply("finish", answer="deleted one and three"),
        ],
        tools=tools(calls),
    )
    ctx = context(replan_policy="after_each_step")
    await h.run({"goal": "delete"}, ctx)
    again = interrupt_of(await h.run(Command(resume={"decisions": [{"type": "approve"}] * 2}), ctx))
    assert again["type"] == "step_approval"
    assert again["steps"] == ["d2"]
    assert again["revision"] == 2
    assert again["action_requests"][0]["args"] == {"path": "three.txt"}
    assert ("delete_file", {"path": "two.txt"}) not in calls
    out = await h.run(Command(resume=APPROVE), ctx)
    assert out["status"] == "completed"
    assert calls == [
        ("delete_file", {"path": "one.txt"}),
        ("delete_file", {"path": "three.txt"}),
    ]


async def test_step_approval_after_plan_review_and_a_reviewed_revision() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    h = Harness(
        planner=[plan_reply([step("x", tool="broken", args={"name": "x"}), delete("d", "a.txt")])],
        replanner=[
            replan_reply("replan", steps=[fetch("y")]),
            replan_reply("finish", answer="done"),
        ],
        tools=tools(calls),
    )
    ctx = Context(review="always", retry_initial_interval=0.0)
    assert interrupt_of(await h.run({"goal": "g"}, ctx))["type"] == "plan_review"
    step_request = interrupt_of(await h.run(Command(resume={"type": "approve"}), ctx))
    assert step_request["type"] == "step_approval"
    assert names(calls) == ["broken"]
    # Approving d runs it; the failure of x is then replanned and the revision reviewed.
    review = interrupt_of(await h.run(Command(resume=APPROVE), ctx))
    assert review["type"] == "plan_review"
    assert review["finished"] == ["d"]
    out = await h.run(Command(resume={"type": "approve"}), ctx)
    assert out["status"] == "completed"
    assert names(calls) == ["broken", "delete_file", "fetch"]
