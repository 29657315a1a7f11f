"""Issue 18, item 5: a tool that requires approval is gated inside sub-agents too.

An injected instruction made a sub-agent's model call a gated tool, and it ran with no
pause: approval was enforced per plan step, not per tool call. Here the sub-agent's
model calls the gated tool itself, for each of the ways a tool can require approval.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.tools import BaseTool, tool
from langgraph.types import Command
from langgraph.warnings import LangGraphDeprecatedSinceV10

from helpers import Harness, context, interrupt_of, step
from planexec import Context, ScriptedChatModel
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.subagents import subagent


def react_agent(model: ScriptedChatModel, tools: Sequence[BaseTool]) -> Any:
    """A ReAct agent; `create_react_agent` warns that it moved to a package not used here."""
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangGraphDeprecatedSinceV10)
        return create_react_agent(model, list(tools))


class Bank:
    def __init__(self, marked: bool) -> None:
        self.transfers: list[int] = []
        self.lookups: list[str] = []

        @tool
        def transfer(amount: int) -> str:
            """Transfer money out of the account."""
            self.transfers.append(amount)
            return f"transferred {amount}"

        @tool
        def balance(account: str) -> str:
            """The balance of an account."""
            self.lookups.append(account)
            return "100"

        if marked:
            transfer.metadata = {"requires_approval": True}
        self.transfer = transfer
        self.balance = balance


INJECTED = [
    tool_call_reply("balance", {"account": "main"}),
    tool_call_reply("transfer", {"amount": 100}),  # what the injected instruction asked for
    "done: the balance is 100",
]
PLAN = [step("s1", tool="helper", args={"request": "What is the balance?"})]

# How the transfer tool requires approval: its own metadata, the run's context, or the
# run's own tool of that name.
WAYS = ["metadata", "approval_tools", "the run's tool of that name"]


def run_with(way: str, replies: Sequence[Any] = INJECTED) -> tuple[Harness, Bank, Context]:
    bank = Bank(marked=way == "metadata")
    agent = subagent(
        "helper",
        react_agent(
            ScriptedChatModel(list(replies), name_="helper-model"), [bank.balance, bank.transfer]
        ),
        description="Answers questions about the account.",
    )
    tools: list[BaseTool] = [agent]
    if way == "the run's tool of that name":

        @tool
        def transfer(amount: int) -> str:
            """Transfer money (the run's own)."""
            raise AssertionError("the plan never calls it")

        transfer.metadata = {"requires_approval": True}
        tools.append(transfer)
    h = Harness(
        planner=[plan_reply(PLAN)],
        replanner=[replan_reply("finish", answer="balance 100")] * 2,
        tools=tools,
    )
    ctx = context(approval_tools=["transfer"] if way == "approval_tools" else [])
    return h, bank, ctx


@pytest.mark.parametrize("way", WAYS)
async def test_a_gated_tool_called_inside_a_sub_agent_pauses_before_it_runs(way: str) -> None:
    h, bank, ctx = run_with(way)
    request = interrupt_of(await h.run({"goal": "balance"}, ctx))
    assert request["type"] == "step_approval"
    assert (request["steps"], request["subagent"]) == (["s1"], "helper")
    assert request["action_requests"] == [
        {
            "name": "transfer",
            "args": {"amount": 100},
            "description": "Step s1: the sub-agent helper calls transfer",
        }
    ]
    assert request["review_configs"] == [
        {"action_name": "transfer", "allowed_decisions": ["approve", "reject"]}
    ]
    assert bank.lookups == ["main"]  # an ungated tool ran without a pause
    assert bank.transfers == []
    decision = {"decisions": [{"type": "approve"}], "request_hash": request["request_hash"]}
    out = await h.run(Command(resume=decision), ctx)
    assert out["status"] == "completed"
    assert bank.transfers == [100]
    assert out["results"]["s1"]["output"] == "done: the balance is 100"


@pytest.mark.parametrize("way", WAYS)
async def test_a_rejected_call_inside_a_sub_agent_never_runs_and_fails_its_step(way: str) -> None:
    h, bank, ctx = run_with(way)
    interrupt_of(await h.run({"goal": "balance"}, ctx))
    answer = {"decisions": [{"type": "reject", "message": "nobody asked for a transfer"}]}
    out = await h.run(Command(resume=answer), ctx)
    assert bank.transfers == []
    result = out["results"]["s1"]
    assert result["status"] == "failed"
    assert result["error"] == (
        "CallRejected: a person rejected the sub-agent's call of transfer: nobody asked for "
        "a transfer"
    )
    assert "a person rejected the sub-agent's call of transfer" in h.replanner.calls[0].prompt


async def test_a_call_inside_a_sub_agent_cannot_be_edited_and_asks_again() -> None:
    h, bank, ctx = run_with("metadata")
    interrupt_of(await h.run({"goal": "balance"}, ctx))
    edited = {"type": "edit", "edited_action": {"name": "transfer", "args": {"amount": 1}}}
    again = interrupt_of(await h.run(Command(resume={"decisions": [edited]}), ctx))
    assert again["type"] == "step_approval"
    assert again["errors"] == [
        "a call inside a sub-agent can only be approved or rejected, not 'edit': its "
        "arguments are the sub-agent's"
    ]
    assert bank.transfers == []
    out = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), ctx)
    assert out["status"] == "completed"
    assert bank.transfers == [100]


async def test_each_gated_call_inside_a_sub_agent_waits_for_its_own_approval() -> None:
    replies = [
        tool_call_reply("transfer", {"amount": 1}),
        tool_call_reply("transfer", {"amount": 2}),
        "two transfers",
    ]
    h, bank, ctx = run_with("metadata", replies)
    first = interrupt_of(await h.run({"goal": "balance"}, ctx))
    assert first["action_requests"][0]["args"] == {"amount": 1}
    second = interrupt_of(await h.run(Command(resume={"decisions": [{"type": "approve"}]}), ctx))
    assert second["action_requests"][0]["args"] == {"amount": 2}
    assert bank.transfers == [1]
    out = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), ctx)
    assert out["status"] == "completed"
    assert bank.transfers == [1, 2]
