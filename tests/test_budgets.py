"""Issue 3, item 2: every budget stops the run at its limit and keeps what finished."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import planexec
from helpers import Harness, config, context, invoke, state_history, step
from planexec import Context, build_graph, run_config
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.usefixtures("both_apis")


def usage(inputs: int, outputs: int = 0) -> dict[str, int]:
    return {"input_tokens": inputs, "output_tokens": outputs}


def text(reply: str, inputs: int, outputs: int = 0) -> dict[str, Any]:
    return {"text": reply, "usage": usage(inputs, outputs)}


def calc_chain(n: int) -> list[dict[str, Any]]:
    steps = [step("s1", args={"expression": "1+1"})]
    for i in range(2, n + 1):
        steps.append(
            step(f"s{i}", args={"expression": f"{{{{s{i - 1}}}}} + 1"}, depends_on=[f"s{i - 1}"])
        )
    return steps


def text_chain(n: int) -> list[dict[str, Any]]:
    steps = [step("s1", tool=None)]
    for i in range(2, n + 1):
        steps.append(step(f"s{i}", tool=None, depends_on=[f"s{i - 1}"]))
    return steps


def model_calls(h: Harness) -> int:
    return len(h.planner.calls) + len(h.executor.calls) + len(h.replanner.calls)


def statuses(out: dict[str, Any]) -> dict[str, str]:
    return {i: r["status"] for i, r in out["results"].items()}


class HungModel(BaseChatModel):
    """A model whose every call hangs far longer than any test waits."""

    seconds: float = 30.0
    started: int = 0

    @property
    def _llm_type(self) -> str:
        return "hung"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[Any, AIMessage]:
        return self.bind(tool_choice=tool_choice, **kwargs)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.started += 1
        await asyncio.sleep(self.seconds)
        return ChatResult(generations=[ChatGeneration(message=AIMessage("too late"))])


# --- max_steps_executed -------------------------------------------------------------


async def test_max_steps_executed_stops_a_chain_and_keeps_finished_results() -> None:
    h = Harness(planner=[plan_reply(calc_chain(4))])
    out = await h.run({"goal": "count"}, context(max_steps_executed=2))
    assert out["status"] == "budget_exhausted"
    assert "max_steps_executed" in out["reason"]
    assert "2 steps used of 2 allowed" in out["reason"]
    assert statuses(out) == {"s1": "done", "s2": "done"}
    assert out["results"]["s2"]["output"] == 3
    assert h.replanner.calls == []
    # The stop is checkpointed: the thread's state says the same.
    saved = await h.state()
    assert saved["status"] == "budget_exhausted"
    assert statuses(saved) == {"s1": "done", "s2": "done"}


async def test_max_steps_executed_with_parallel_steps_runs_exactly_the_limit() -> None:
    steps = [step(f"s{i}", args={"expression": f"{i}*10"}) for i in range(1, 6)]
    h = Harness(planner=[plan_reply(steps)])
    out = await h.run({"goal": "five"}, context(max_steps_executed=3))
    assert out["status"] == "budget_exhausted"
    assert list(statuses(out).values()) == ["done"] * 3
    for step_id, result in out["results"].items():
        assert result["output"] == int(step_id[1:]) * 10


async def test_max_steps_executed_counts_steps_across_replans() -> None:
    new_steps = [
        step("s3", args={"expression": "{{s2}} * 2"}, depends_on=["s2"]),
        step("s4", args={"expression": "{{s3}} * 2"}, depends_on=["s3"]),
    ]
    h = Harness(
        planner=[plan_reply(calc_chain(2))],
        replanner=[replan_reply("replan", steps=new_steps, reason="need more")],
    )
    out = await h.run({"goal": "grow"}, context(max_steps_executed=3))
    assert out["status"] == "budget_exhausted"
    assert "3 steps used of 3 allowed" in out["reason"]
    assert statuses(out) == {"s1": "done", "s2": "done", "s3": "done"}
    assert out["results"]["s3"]["output"] == 6
    assert len(h.replanner.calls) == 1


# --- max_model_calls ----------------------------------------------------------------


async def test_max_model_calls_stops_before_the_executor_exceeds_it() -> None:
    h = Harness(
        planner=[plan_reply(text_chain(4))],
        executor=["one", "two", "three", "four"],
        replanner=[replan_reply("finish", answer="never")],
    )
    out = await h.run({"goal": "talk"}, context(max_model_calls=3))
    assert out["status"] == "budget_exhausted"
    assert "max_model_calls" in out["reason"]
    assert "3 calls used of 3 allowed" in out["reason"]
    assert model_calls(h) == 3
    assert statuses(out) == {"s1": "done", "s2": "done"}
    assert out["results"]["s2"]["output"] == "two"
    assert out["usage"]["planner"]["calls"] == 1
    assert out["usage"]["executor"]["calls"] == 2


async def test_max_model_calls_bounds_the_planner_asking_again() -> None:
    bad = plan_reply([step("s1", tool="no_such_tool", args={})])
    h = Harness(planner=[bad, bad, bad, bad])
    out = await h.run({"goal": "plan"}, context(max_model_calls=2, max_plan_attempts=5))
    assert out["status"] == "budget_exhausted"
    assert "max_model_calls" in out["reason"]
    assert "2 calls used of 2 allowed" in out["reason"]
    assert len(h.planner.calls) == 2
    assert out["usage"]["planner"]["calls"] == 2


async def test_max_model_calls_bounds_the_replanner() -> None:
    h = Harness(
        planner=[plan_reply(calc_chain(1))],
        replanner=[replan_reply("finish", answer="")] * 3,  # invalid: no answer
    )
    out = await h.run({"goal": "sum"}, context(max_model_calls=2, max_plan_attempts=5))
    assert out["status"] == "budget_exhausted"
    assert "2 calls used of 2 allowed" in out["reason"]
    assert len(h.replanner.calls) == 1
    assert model_calls(h) == 2
    assert statuses(out) == {"s1": "done"}


# --- max_tokens ---------------------------------------------------------------------


async def test_max_tokens_stops_after_the_call_that_crossed_it() -> None:
    h = Harness(
        planner=[plan_reply(text_chain(4), usage=usage(40, 10))],
        executor=[text(f"r{i}", 30, 10) for i in range(1, 5)],
        replanner=[replan_reply("finish", answer="never")],
    )
    out = await h.run({"goal": "talk"}, context(max_tokens=100))
    # planner 50, s1 40 (90 < 100), s2 40 (130): the call that crossed it is the last one.
    assert out["status"] == "budget_exhausted"
    assert "max_tokens" in out["reason"]
    assert "130 tokens used of 100 allowed" in out["reason"]
    assert model_calls(h) == 3
    assert statuses(out) == {"s1": "done", "s2": "done"}
    assert out["usage"]["planner"]["input_tokens"] == 40
    assert out["usage"]["executor"] == {
        "calls": 2,
        "input_tokens": 60,
        "output_tokens": 20,
        "cost_usd": 0.0,
    }


async def test_max_tokens_overshoot_is_one_call_even_with_parallel_model_steps() -> None:
    steps = [step(f"s{i}", tool=None) for i in range(1, 5)]
    h = Harness(
        planner=[plan_reply(steps, usage=usage(10))],
        executor=[text(f"r{i}", 50) for i in range(1, 5)],
    )
    out = await h.run({"goal": "fan out"}, context(max_tokens=30, max_concurrency=4))
    assert out["status"] == "budget_exhausted"
    assert "60 tokens used of 30 allowed" in out["reason"]
    assert len(h.executor.calls) == 1
    assert list(statuses(out).values()) == ["done"]


async def test_max_tokens_bounds_the_planner_asking_again() -> None:
    bad = plan_reply([step("s1", tool="no_such_tool", args={})], usage=usage(60))
    h = Harness(planner=[bad, bad, bad])
    out = await h.run({"goal": "plan"}, context(max_tokens=100, max_plan_attempts=5))
    assert out["status"] == "budget_exhausted"
    assert "120 tokens used of 100 allowed" in out["reason"]
    assert len(h.planner.calls) == 2


async def test_max_tokens_stops_the_replanner() -> None:
    h = Harness(
        planner=[plan_reply(calc_chain(1), usage=usage(50))],
        replanner=[
            replan_reply("replan", steps=[step("s2", args={"expression": "2"})], usage=usage(60)),
            replan_reply("finish", answer="never"),
        ],
    )
    out = await h.run({"goal": "sum"}, context(max_tokens=100))
    assert out["status"] == "budget_exhausted"
    assert "110 tokens used of 100 allowed" in out["reason"]
    assert len(h.replanner.calls) == 1
    assert statuses(out) == {"s1": "done"}


# --- max_cost_usd -------------------------------------------------------------------

PRICES = {
    "planner-model": (10.0, 30.0),
    "executor-model": (1.0, 2.0),
    "replanner-model": (5.0, 15.0),
}


async def test_max_cost_stops_at_the_limit_priced_per_model() -> None:
    h = Harness(
        planner=[plan_reply(text_chain(4), usage=usage(100, 0))],
        executor=[text(f"r{i}", 500, 250) for i in range(1, 5)],
    )
    # planner $0.001; each executor call $0.001: the second call reaches $0.003.
    out = await h.run({"goal": "spend"}, context(max_cost_usd=0.0025, prices=PRICES))
    assert out["status"] == "budget_exhausted"
    assert "max_cost_usd" in out["reason"]
    assert "0.003 USD used of 0.0025 allowed" in out["reason"]
    assert model_calls(h) == 3
    assert statuses(out) == {"s1": "done", "s2": "done"}
    assert out["usage"]["planner"]["cost_usd"] == pytest.approx(0.001)
    assert out["usage"]["executor"]["cost_usd"] == pytest.approx(0.002)
    assert out["results"]["s1"]["usage"]["cost_usd"] == pytest.approx(0.001)


async def test_usage_and_cost_are_kept_per_role() -> None:
    h = Harness(
        planner=[plan_reply(text_chain(2), usage=usage(1000, 100))],
        executor=[text("a", 200, 20), text("b", 300, 30)],
        replanner=[replan_reply("finish", answer="ab", usage=usage(400, 40))],
    )
    out = await h.run({"goal": "count"}, context(prices=PRICES))
    assert out["status"] == "completed"
    assert out["usage"] == {
        "planner": {
            "calls": 1,
            "input_tokens": 1000,
            "output_tokens": 100,
            "cost_usd": pytest.approx(0.013),
        },
        "executor": {
            "calls": 2,
            "input_tokens": 500,
            "output_tokens": 50,
            "cost_usd": pytest.approx(0.0006),
        },
        "replanner": {
            "calls": 1,
            "input_tokens": 400,
            "output_tokens": 40,
            "cost_usd": pytest.approx(0.0026),
        },
    }


async def test_scripted_replies_without_usage_are_still_counted() -> None:
    h = Harness(
        planner=[plan_reply(calc_chain(1))],
        replanner=[replan_reply("finish", answer="2")],
    )
    out = await h.run({"goal": "estimate"}, context())
    assert out["usage"]["planner"]["calls"] == 1
    assert out["usage"]["planner"]["input_tokens"] > 0
    assert out["usage"]["replanner"]["output_tokens"] > 0


# --- time_budget_s ------------------------------------------------------------------


def sleepy_tools() -> list[BaseTool]:
    @tool
    async def nap(seconds: float) -> str:
        """Sleep, then say so."""
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    return [nap]


async def test_time_budget_cancels_a_step_still_running_at_the_deadline() -> None:
    steps = [
        step("hang", tool="nap", args={"seconds": 30}),
        step("quick", tool="nap", args={"seconds": 0.01}),
    ]
    h = Harness(
        planner=[plan_reply(steps)],
        replanner=[replan_reply("finish", answer="never")],
        tools=sleepy_tools(),
    )
    began = time.monotonic()
    out = await h.run({"goal": "wait"}, context(time_budget_s=0.3, step_timeout=60))
    assert time.monotonic() - began < 10
    assert out["status"] == "budget_exhausted"
    assert "time_budget_s" in out["reason"]
    assert "seconds used of 0.3 allowed" in out["reason"]
    assert statuses(out) == {"quick": "done"}
    assert h.replanner.calls == []


async def test_time_budget_cancels_a_hung_planner_call() -> None:
    hung = HungModel()
    graph = build_graph(checkpointer=InMemorySaver(), planner=hung, executor=hung)
    began = time.monotonic()
    out = await invoke(graph, {"goal": "x"}, config(), context=context(time_budget_s=0.2))
    assert time.monotonic() - began < 10
    assert out["status"] == "budget_exhausted"
    assert "time_budget_s" in out["reason"]
    assert hung.started == 1


async def test_time_budget_cancels_a_hung_replanner_call() -> None:
    hung = HungModel()
    h = Harness(planner=[plan_reply(calc_chain(1))])
    graph = build_graph(
        checkpointer=InMemorySaver(), planner=h.planner, executor=h.executor, replanner=hung
    )
    began = time.monotonic()
    out = await invoke(graph, {"goal": "x"}, config(), context=context(time_budget_s=1.0))
    assert time.monotonic() - began < 10
    assert out["status"] == "budget_exhausted"
    assert "time_budget_s" in out["reason"]
    assert statuses(out) == {"s1": "done"}
    assert hung.started == 1


async def test_time_paused_for_review_does_not_count() -> None:
    h = Harness(
        planner=[plan_reply(calc_chain(2))],
        replanner=[replan_reply("finish", answer="3")],
    )
    ctx = Context(review="always", retry_initial_interval=0.0, time_budget_s=1.0)
    paused = await h.run({"goal": "count"}, ctx)
    assert paused["__interrupt__"][0].value["type"] == "plan_review"
    await asyncio.sleep(1.2)
    out = await h.run(Command(resume={"type": "approve"}), ctx)
    assert out["status"] == "completed"
    assert out["answer"] == "3"
    assert 0 < (await h.state())["active_s"] < 1.0


# --- recursion limit ----------------------------------------------------------------


def test_recursion_limit_grows_with_the_bounds() -> None:
    base = planexec.recursion_limit(Context())
    assert base < 10_000
    assert planexec.recursion_limit(Context(max_replans=6)) > base
    assert planexec.recursion_limit(Context(max_plan_steps=40)) > base
    assert planexec.recursion_limit(Context(max_plan_attempts=5)) > base
    assert planexec.recursion_limit(Context(max_replans=0)) < base


def test_run_config_sets_thread_and_recursion_limit() -> None:
    ctx = Context(max_replans=1, max_plan_steps=4)
    cfg = run_config("abc", ctx, tags=["x"])
    assert cfg["configurable"] == {"thread_id": "abc"}
    assert cfg["recursion_limit"] == planexec.recursion_limit(ctx)
    assert cfg["tags"] == ["x"]


async def test_a_run_with_run_config_completes_within_its_recursion_limit() -> None:
    # A busy run: a step per superstep, a step approval, a replan after each step.
    ctx = Context(
        review="never",
        retry_initial_interval=0.0,
        replan_policy="after_each_step",
        approval_tools=["calculator"],
        max_replans=1,
        max_plan_steps=3,
        max_plan_attempts=2,
    )
    h = Harness(
        planner=[plan_reply(calc_chain(3))],
        replanner=[
            replan_reply("finish", answer=""),  # invalid: asked again
            replan_reply("continue"),
            replan_reply("continue"),
            replan_reply(
                "replan", steps=[step("s4", args={"expression": "{{s3}}*2"}, depends_on=["s3"])]
            ),
            replan_reply("finish", answer="8"),
        ],
    )
    cfg = run_config("busy", ctx)
    out = await invoke(h.graph, {"goal": "count"}, cfg, context=ctx)
    approvals = 0
    while "__interrupt__" in out:
        assert out["__interrupt__"][0].value["type"] == "step_approval"
        approvals += 1
        out = await invoke(
            h.graph, Command(resume={"decisions": [{"type": "approve"}]}), cfg, context=ctx
        )
    assert out["status"] == "completed"
    assert out["answer"] == "8"
    assert approvals == 4
    history = await state_history(h.graph, cfg)
    assert max(s.metadata["step"] for s in history) < cfg["recursion_limit"]


# --- step timeouts ------------------------------------------------------------------


def hanging_tools(log: list[str], hang_first: int = 1_000) -> list[BaseTool]:
    """`hang` hangs (30 s) on its first `hang_first` calls, then answers at once."""

    @tool
    async def hang(label: str) -> str:
        """Hang for a long time."""
        log.append("start")
        try:
            if log.count("start") <= hang_first:
                await asyncio.sleep(30)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        return f"{label} answered"

    @tool
    async def nap(seconds: float) -> str:
        """Sleep, then say so."""
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    return [hang, nap]


async def test_a_hung_tool_is_cancelled_retried_and_fails_with_timed_out() -> None:
    log: list[str] = []
    h = Harness(
        planner=[plan_reply([step("s1", tool="hang", args={"label": "x"})])],
        replanner=[replan_reply("finish", answer="gave up")],
        tools=hanging_tools(log),
    )
    began = time.monotonic()
    out = await h.run({"goal": "wait"}, context(step_timeout=0.2, step_attempts=2))
    assert time.monotonic() - began < 10
    result = out["results"]["s1"]
    assert result["status"] == "failed"
    assert "timed out" in result["error"]
    assert result["attempts"] == 2
    assert log == ["start", "cancelled", "start", "cancelled"]
    # The failure reached the replanner, which decided how the run ends.
    assert "timed out" in h.replanner.calls[0].prompt
    assert out["status"] == "completed"


async def test_a_timeout_that_a_retry_fixes_needs_no_replan() -> None:
    log: list[str] = []
    h = Harness(
        planner=[plan_reply([step("s1", tool="hang", args={"label": "x"})])],
        replanner=[replan_reply("finish", answer="x answered")],
        tools=hanging_tools(log, hang_first=1),
    )
    out = await h.run({"goal": "wait"}, context(step_timeout=0.2, step_attempts=3))
    assert out["results"]["s1"]["status"] == "done"
    assert out["results"]["s1"]["output"] == "x answered"
    assert out["results"]["s1"]["attempts"] == 2
    assert log == ["start", "cancelled", "start"]
    assert len(h.replanner.calls) == 1
    assert out["revisions"][-1]["revision"] == 1


async def test_tool_timeouts_override_the_step_timeout_both_ways() -> None:
    log: list[str] = []
    steps = [
        step("hung", tool="hang", args={"label": "x"}),
        step("slow", tool="nap", args={"seconds": 0.3}),
    ]
    h = Harness(
        planner=[plan_reply(steps)],
        replanner=[replan_reply("finish", answer="partly")],
        tools=hanging_tools(log),
    )
    ctx = context(step_timeout=0.1, step_attempts=1, tool_timeouts={"hang": 0.2, "nap": 5.0})
    began = time.monotonic()
    out = await h.run({"goal": "wait"}, ctx)
    assert time.monotonic() - began < 10
    assert out["results"]["hung"]["status"] == "failed"
    assert "timed out after 0.2s" in out["results"]["hung"]["error"]
    # 0.3 s is longer than step_timeout but within nap's own timeout.
    assert out["results"]["slow"]["status"] == "done"
    assert out["results"]["slow"]["output"] == "slept 0.3"


async def test_a_hung_executor_model_call_times_out() -> None:
    hung = HungModel()
    h = Harness(
        planner=[plan_reply([step("s1", tool=None)])],
        replanner=[replan_reply("finish", answer="no answer")],
    )
    graph = build_graph(
        checkpointer=InMemorySaver(), planner=h.planner, executor=hung, replanner=h.replanner
    )
    began = time.monotonic()
    out = await invoke(
        graph, {"goal": "think"}, config(), context=context(step_timeout=0.2, step_attempts=2)
    )
    assert time.monotonic() - began < 10
    assert out["results"]["s1"]["status"] == "failed"
    assert "timed out" in out["results"]["s1"]["error"]
    assert out["results"]["s1"]["attempts"] == 2
    assert hung.started == 2
    # Calls that never answered still count against the model-call budget.
    assert out["results"]["s1"]["usage"]["calls"] == 2
    assert out["usage"]["executor"]["calls"] == 2


async def test_unanswered_executor_calls_count_in_later_nodes() -> None:
    hung = HungModel()
    h = Harness(
        planner=[plan_reply([step("s1", tool=None)])],
        replanner=[replan_reply("finish", answer="never asked")],
    )
    graph = build_graph(
        checkpointer=InMemorySaver(), planner=h.planner, executor=hung, replanner=h.replanner
    )
    ctx = context(step_timeout=0.1, step_attempts=2, max_model_calls=3)
    out = await invoke(graph, {"goal": "think"}, config(), context=ctx)
    # planner 1 + two timed-out executor calls: the replanner may not make a fourth.
    assert out["status"] == "budget_exhausted"
    assert "3 calls used of 3 allowed" in out["reason"]
    assert h.replanner.calls == []
