"""Issue 18, items 8, 9 and 10: limits that padding, proposals or model names slipped past.

- Text a person or a model supplies is measured as sent: a goal padded with spaces, a
  3 MB step description, a reviewer's long message, a long replanner reason or answer.
- The executor model's proposal of a gated step's arguments runs under the step's
  timeout and the time budget, and its time counts.
- Under a cost budget every model has a price: dated snapshots take their family's,
  and a model with none is refused before the first call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from langgraph.warnings import LangGraphDeprecatedSinceV10

from helpers import ARITHMETIC, Harness, config, context, interrupt_of, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.errors import InvalidGoalError, ModelConfigError
from planexec.prices import price_of
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.subagents import subagent


def react_agent(model: ScriptedChatModel, tools: Sequence[BaseTool]) -> Any:
    """A ReAct agent; `create_react_agent` warns that it moved to a package not used here."""
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangGraphDeprecatedSinceV10)
        return create_react_agent(model, list(tools))


# --- the goal, measured as sent ---------------------------------------------------------

PADDING = [" ", "\n", "\t", "\u3000", "\u00a0", " \r\n"]


@pytest.mark.parametrize("pad", PADDING, ids=repr)
async def test_a_goal_padded_past_the_limit_is_refused_before_any_model_call(pad: str) -> None:
    h = Harness(planner=[plan_reply(ARITHMETIC)])
    goal = pad * 2_000_000 + "What is 6*7?" + pad * 10
    with pytest.raises(InvalidGoalError, match=f"is {len(goal)} characters long"):
        await h.run({"goal": goal}, context(max_goal_chars=1000))
    assert (h.planner.calls, h.executor.calls, h.replanner.calls) == ([], [], [])


@pytest.mark.parametrize("pad", PADDING, ids=repr)
async def test_every_model_is_sent_the_goal_without_its_padding(pad: str) -> None:
    goal = pad * 20 + "Count to 43" + pad * 20
    h = Harness(
        planner=[plan_reply([*ARITHMETIC, step("s3", tool=None, depends_on=["s2"])])],
        executor=["43"],
        replanner=[replan_reply("finish", answer="43")],
    )
    out = await h.run({"goal": goal}, context(max_goal_chars=len(goal)))
    assert out["status"] == "completed"
    for model in (h.planner, h.executor, h.replanner):
        [call] = model.calls
        assert "Count to 43" in call.prompt
        assert pad * 20 + "Count" not in call.prompt
        assert "43" + pad * 20 not in call.prompt


# --- other text: descriptions, messages, reasons, answers --------------------------------

WORDY = step("s1", args={"expression": "6*7"}, description="d" * 3_000_000)


async def test_a_huge_step_description_in_an_edit_is_refused() -> None:
    h = Harness(planner=[plan_reply(ARITHMETIC)], replanner=[replan_reply("finish", answer="43")])
    ctx = Context(retry_initial_interval=0.0)
    first = interrupt_of(await h.run({"goal": "count"}, ctx))
    again = interrupt_of(
        await h.run(Command(resume={"type": "edit", "plan": {"steps": [WORDY]}}), ctx)
    )
    assert again["errors"] == [
        "edited plan: step s1: the description is 3000000 characters long; the most allowed is 4000"
    ]
    assert again["plan"] == first["plan"]
    out = await h.run(Command(resume={"type": "approve"}), ctx)
    assert (out["status"], out["answer"]) == ("completed", "43")


@pytest.mark.parametrize("role", ["planner", "replanner"])
async def test_a_model_reply_with_a_huge_description_is_asked_again(role: str) -> None:
    bad = [WORDY] if role == "planner" else [step("s9", tool=None, description="d" * 5000)]
    h = Harness(
        planner=[plan_reply(bad), plan_reply(ARITHMETIC)]
        if role == "planner"
        else [plan_reply(ARITHMETIC)],
        replanner=[
            *([replan_reply("replan", steps=bad)] if role == "replanner" else []),
            replan_reply("finish", answer="43"),
        ],
    )
    out = await h.run({"goal": "count"}, context())
    assert (out["status"], out["answer"]) == ("completed", "43")
    again = (h.planner if role == "planner" else h.replanner).calls[1].prompt
    assert "the description is" in again
    # The invalid reply is shown back, but cut to max_output_chars like any output.
    assert len(again) < Context().max_output_chars + 10_000


LONG = "m" * 5000
DECISIONS = {
    "reject": {"type": "reject", "message": LONG},
    "cancel": {"type": "cancel", "message": LONG},
    "edit": {"type": "edit", "plan": {"steps": ARITHMETIC[:1]}, "message": LONG},
}


@pytest.mark.parametrize("kind", DECISIONS)
async def test_a_review_decision_with_a_message_too_long_is_refused(kind: str) -> None:
    h = Harness(planner=[plan_reply(ARITHMETIC)], replanner=[replan_reply("finish", answer="43")])
    ctx = Context(retry_initial_interval=0.0)
    interrupt_of(await h.run({"goal": "count"}, ctx))
    again = interrupt_of(await h.run(Command(resume=DECISIONS[kind]), ctx))
    assert again["errors"] == [
        f"{kind} decision: the message is 5000 characters long; the most allowed is 4000 "
        "(Context.max_text_chars)"
    ]
    state = await h.state()
    assert state.get("reviews", []) == []
    assert len(h.planner.calls) == 1
    out = await h.run(Command(resume={"type": "approve"}), ctx)
    assert out["status"] == "completed"


async def test_a_step_rejection_with_a_message_too_long_is_refused() -> None:
    h = Harness(planner=[plan_reply(ARITHMETIC)], replanner=[replan_reply("finish", answer="43")])
    ctx = context(approval_tools=["calculator"])
    interrupt_of(await h.run({"goal": "count"}, ctx))
    answer = {"decisions": [{"type": "reject", "message": LONG}]}
    again = interrupt_of(await h.run(Command(resume=answer), ctx))
    assert again["errors"] == [
        "step s1: the message is 5000 characters long; the most allowed is 4000 "
        "(Context.max_text_chars)"
    ]
    assert (await h.state()).get("approvals", {}) == {}


async def test_a_long_replanner_reason_and_answer_are_cut_to_their_limits() -> None:
    h = Harness(
        planner=[plan_reply(ARITHMETIC[:1])],
        replanner=[
            replan_reply("replan", steps=[ARITHMETIC[1]], reason="r" * 10_000),
            replan_reply("finish", answer="a" * 100_000, reason="done"),
        ],
    )
    out = await h.run({"goal": "count"}, context(max_text_chars=500, max_output_chars=1000))
    assert out["status"] == "completed"
    reason = out["revisions"][-1]["reason"]
    assert 490 <= len(reason) <= 500
    assert reason.startswith("rrr")
    assert "characters were cut here" in reason
    assert 990 <= len(out["answer"]) <= 1000
    assert "characters were cut here" in out["answer"]


# --- the executor model's proposal before a step approval -------------------------------


class SlowModel(ScriptedChatModel):
    """A scripted model whose every reply takes `delay` seconds (awaited, cancellable)."""

    delay: float = 30.0
    started: int = 0

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.started += 1
        await asyncio.sleep(self.delay)
        return self._generate(messages, stop, None, **kwargs)


def gated(launched: list[str]) -> list[BaseTool]:
    @tool
    def launch(target: str) -> str:
        """Launch at a target."""
        launched.append(target)
        return f"launched at {target}"

    return [launch]


PROPOSED = step("s1", tool="launch", args=None, description="Launch at the moon")


def slow_graph(
    delay: float, executor_replies: Sequence[Any], launched: list[str]
) -> tuple[Any, SlowModel, ScriptedChatModel]:
    planner = ScriptedChatModel([plan_reply([PROPOSED])], name_="planner-model")
    replanner = ScriptedChatModel([replan_reply("finish", answer="done")], name_="replanner")
    executor = SlowModel(list(executor_replies), delay=delay, name_="executor-model")
    graph = build_graph(
        tools=gated(launched),
        checkpointer=InMemorySaver(),
        planner=planner,
        executor=executor,
        replanner=replanner,
    )
    return graph, executor, replanner


async def test_a_proposal_past_the_step_timeout_is_cancelled_retried_and_fails() -> None:
    launched: list[str] = []
    graph, executor, replanner = slow_graph(30.0, [], launched)
    ctx = context(approval_tools=["launch"], step_timeout=0.2, step_attempts=2)
    began = time.monotonic()
    out = await graph.ainvoke({"goal": "launch"}, config(), context=ctx)
    assert time.monotonic() - began < 10
    assert "__interrupt__" not in out
    result = out["results"]["s1"]
    assert result["status"] == "failed"
    assert result["error"] == (
        "the executor model proposed no usable arguments: timed out after 0.2s"
    )
    assert executor.started == 2
    assert out["usage"]["executor"]["calls"] == 2
    assert launched == []
    assert len(replanner.calls) == 1
    assert out["status"] == "completed"


async def test_a_proposal_past_the_time_budget_ends_the_run_budget_exhausted() -> None:
    launched: list[str] = []
    graph, executor, replanner = slow_graph(30.0, [], launched)
    ctx = context(approval_tools=["launch"], step_timeout=60, time_budget_s=0.3)
    began = time.monotonic()
    out = await graph.ainvoke({"goal": "launch"}, config(), context=ctx)
    assert time.monotonic() - began < 10
    assert out["status"] == "budget_exhausted"
    assert "time_budget_s" in out["reason"]
    assert "__interrupt__" not in out
    assert executor.started == 1
    assert (launched, replanner.calls) == ([], [])
    state = (await graph.aget_state(config())).values
    assert state["active_s"] >= 0.3


async def test_the_time_a_proposal_took_counts_against_the_time_budget() -> None:
    launched: list[str] = []
    proposal = tool_call_reply("launch", {"target": "moon"})
    graph, executor, _ = slow_graph(0.4, [proposal], launched)
    ctx = context(approval_tools=["launch"], time_budget_s=60)
    paused = await graph.ainvoke({"goal": "launch"}, config(), context=ctx)
    request = interrupt_of(paused)
    assert request["action_requests"][0]["args"] == {"target": "moon"}
    await asyncio.sleep(0.5)  # a person thinking: not working time
    out = await graph.ainvoke(
        Command(resume={"decisions": [{"type": "approve"}]}), config(), context=ctx
    )
    assert out["status"] == "completed"
    assert launched == ["moon"]
    assert executor.started == 1  # answering the pause did not ask the model again
    active = (await graph.aget_state(config())).values["active_s"]
    assert 0.4 <= active < 0.9


# --- prices: dated snapshots, and no unpriced model under a cost budget ------------------

PRICES = {"gpt-4.1": (2.0, 8.0), "gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)}


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4.1", (2.0, 8.0)),
        ("openai:gpt-4.1", (2.0, 8.0)),
        ("gpt-4.1-2025-04-14", (2.0, 8.0)),
        ("openai:gpt-4.1-2025-04-14", (2.0, 8.0)),
        ("gpt-4o-mini-2024-07-18", (0.15, 0.6)),  # the family is gpt-4o-mini, not gpt-4o
        ("gpt-4o-2024-08-06", (2.5, 10.0)),
        ("gpt-4o-20240806", (2.5, 10.0)),
        ("gpt-4.1-preview", None),
        ("gpt-4.1-2025-04", None),
        ("gpt-5", None),
        ("", None),
    ],
)
def test_a_model_is_priced_by_its_name_or_its_family(
    model: str, price: tuple[float, float] | None
) -> None:
    assert price_of(model, PRICES) == price


def test_a_dated_snapshot_with_a_price_of_its_own_keeps_it() -> None:
    prices = {**PRICES, "gpt-4.1-2025-04-14": (1.0, 1.0)}
    assert price_of("gpt-4.1-2025-04-14", prices) == (1.0, 1.0)


def named(name: str, replies: Sequence[Any]) -> ScriptedChatModel:
    return ScriptedChatModel(list(replies), name_=name)


async def test_a_dated_snapshot_is_charged_at_its_familys_price_under_a_cost_budget() -> None:
    usage = {"usage": {"input_tokens": 1_000_000, "output_tokens": 0}}
    planner = named("gpt-4.1-2025-04-14", [plan_reply(ARITHMETIC, **usage)])
    replanner = named("gpt-4.1-2025-04-14", [replan_reply("finish", answer="43", **usage)])
    graph = build_graph(
        checkpointer=InMemorySaver(), planner=planner, executor=planner, replanner=replanner
    )
    ctx = context(max_cost_usd=1.5, prices=PRICES)
    out = await graph.ainvoke({"goal": "count"}, config(), context=ctx)
    # $2 for the plan: the replanner may not spend more.
    assert out["status"] == "budget_exhausted"
    assert "2 USD used of 1.5 allowed" in out["reason"]
    assert out["usage"]["planner"]["cost_usd"] == pytest.approx(2.0)
    assert replanner.calls == []


@pytest.mark.parametrize("role", ["planner", "executor", "replanner"])
async def test_a_model_with_no_price_under_a_cost_budget_is_refused_before_any_call(
    role: str,
) -> None:
    models = {r: named("gpt-4.1", []) for r in ("planner", "executor", "replanner")}
    models[role] = named("my-local-model", [])
    graph = build_graph(checkpointer=InMemorySaver(), **models)
    with pytest.raises(ModelConfigError) as raised:
        await graph.ainvoke(
            {"goal": "count"}, config(), context=context(max_cost_usd=1.0, prices=PRICES)
        )
    assert str(raised.value) == (
        "max_cost_usd is set, but model 'my-local-model' has no price, so the spending "
        "cannot be counted: add its (input, output) USD per million tokens to Context.prices"
    )
    assert [m.calls for m in models.values()] == [[], [], []]


async def test_a_model_with_no_price_counts_as_free_without_a_cost_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="planexec.prices")
    model = named("unpriced-model-for-this-test", [plan_reply(ARITHMETIC)])
    finish = named("unpriced-model-for-this-test", [replan_reply("finish", answer="43")])
    graph = build_graph(
        checkpointer=InMemorySaver(), planner=model, executor=model, replanner=finish
    )
    out = await graph.ainvoke({"goal": "count"}, config(), context=context(prices=PRICES))
    assert out["status"] == "completed"
    assert out["usage"]["planner"]["cost_usd"] == 0.0
    logged = [r.getMessage() for r in caplog.records if r.name == "planexec.prices"]
    assert logged == [
        "model 'unpriced-model-for-this-test' has no price in Context.prices: its calls "
        "are counted as free"
    ]


async def test_a_sub_agent_model_with_no_price_under_a_cost_budget_is_not_called() -> None:
    inner = named("unpriced-agent-model", ["never sent"])
    agent = subagent("helper", react_agent(inner, []), description="Helps.")
    h = Harness(
        planner=[plan_reply([step("s1", tool="helper", args={"request": "help"})])],
        replanner=[replan_reply("finish", answer="no help")],
        tools=[agent],
    )
    prices = {"planner-model": (1.0, 1.0), "executor-model": (1.0, 1.0)}
    prices["replanner-model"] = (1.0, 1.0)
    out = await h.run({"goal": "help"}, context(max_cost_usd=1.0, prices=prices))
    result = out["results"]["s1"]
    assert result["status"] == "failed"
    assert "'unpriced-agent-model' has no price" in result["error"]
    assert inner.calls == []
