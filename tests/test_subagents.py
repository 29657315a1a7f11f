"""Sub-agents as step executors: a compiled graph offered to the planner like a tool."""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from langgraph.warnings import LangGraphDeprecatedSinceV10
from pydantic import BaseModel
from typing_extensions import TypedDict

import helpers
from helpers import Harness, config, invoke, start, step, stream
from planexec import Context, ScriptedChatModel, TransientError, build_graph
from planexec.prompts import render
from planexec.prompts import subagent as subagent_prompts
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.subagents import (
    SubAgent,
    SubAgentRequest,
    default_input,
    default_output,
    subagent,
    subagent_states,
    subagent_states_sync,
)
from planexec.tools import calculator

pytestmark = pytest.mark.usefixtures("both_apis")

NEVER = Context(review="never")


def react_agent(model: ScriptedChatModel, tools: Sequence[BaseTool]) -> Any:
    # create_react_agent still works in langgraph-prebuilt 1.x but warns: it moved to
    # `langchain.agents.create_agent`, in a package this project does not depend on.
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangGraphDeprecatedSinceV10)
        return create_react_agent(model, list(tools))


def direct(answer: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "Plan", "args": {"steps": [], "answer": answer}}]}


def usage(inputs: int, outputs: int) -> dict[str, int]:
    return {"input_tokens": inputs, "output_tokens": outputs}


async def saved_task_results(h: Harness) -> int:
    """How many step tasks of the running executor pass have saved their result."""
    saved = await h.saver.aget_tuple(config())
    writes = saved.pending_writes if saved else None
    return sum(1 for _, channel, _ in (writes or []) if channel == "__return__")


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `check()` holds, polling for at most ten seconds."""
    for _ in range(1000):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


class World:
    """The sub-agent's own tools, recording their calls."""

    def __init__(self) -> None:
        self.lookups: list[str] = []
        self.answers: list[str] = []
        self.tallies: list[int] = []

        @tool
        def lookup(city: str) -> str:
            """Population of a city."""
            self.lookups.append(city)
            return "1000"

        @tool
        def ask_person(question: str) -> str:
            """Ask the person reviewing the run."""
            answer = interrupt({"type": "question", "question": question})
            self.answers.append(str(answer))
            return str(answer)

        @tool
        def tally(x: int) -> int:
            """Count a call and return x."""
            self.tallies.append(x)
            return x

        self.lookup = lookup
        self.ask_person = ask_person
        self.tally = tally


def researcher(
    world: World, replies: Sequence[Any], *, name: str = "researcher", **kwargs: Any
) -> tuple[SubAgent, ScriptedChatModel]:
    model = ScriptedChatModel(replies, name_=f"{name}-model")
    graph = react_agent(model, [world.lookup, world.ask_person])
    agent = subagent(
        name, graph, description="Looks up facts about cities and answers in one line.", **kwargs
    )
    return agent, model


async def test_the_planner_sees_the_subagent_like_a_tool() -> None:
    world = World()
    agent, _ = researcher(world, [])
    h = Harness(planner=[direct("hi")], tools=[calculator, agent])
    out = await h.run({"goal": "Say hi"}, NEVER)
    assert out["answer"] == "hi"
    prompt = h.planner.calls[0].prompt
    line = next(x for x in prompt.splitlines() if '"name": "researcher"' in x)
    described = json.loads(line)
    assert described["description"] == "Looks up facts about cities and answers in one line."
    assert described["args_schema"]["required"] == ["request"]
    assert described["args_schema"]["properties"]["request"]["type"] == "string"


async def test_a_step_runs_the_subagent_and_its_answer_feeds_a_dependent_step() -> None:
    world = World()
    agent, model = researcher(
        world,
        [
            tool_call_reply("lookup", {"city": "48ville"}, usage=usage(30, 5)),
            {"text": "1000", "usage": usage(50, 2)},
        ],
    )
    plan = [
        step("s1", args={"expression": "12*4"}),
        step(
            "s2",
            tool="researcher",
            args={"request": "Find the population of {{s1}}ville"},
            depends_on=["s1"],
            description="Find how many people live in the town",
        ),
        step("s3", args={"expression": "{{s2}} + 1"}, depends_on=["s2"]),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="1001")],
        tools=[calculator, agent],
    )
    context = Context(review="never", prices={"researcher-model": (1000.0, 2000.0)})
    out = await h.run({"goal": "How many people live in 48ville, plus one?"}, context)

    assert out["status"] == "completed"
    assert world.lookups == ["48ville"]
    asked = model.calls[0].prompt
    assert '"request": "Find the population of 48ville"' in asked
    assert '<step id="s2">\nFind how many people live in the town\n</step>' in asked
    assert '<result step="s1">\n48\n</result>' in asked
    assert "How many people live in 48ville, plus one?" in asked
    assert model.calls[0].tools == ["lookup", "ask_person"]
    assert h.executor.calls == []  # the step's arguments were complete: no executor model

    results = out["results"]
    assert results["s2"]["output"] == "1000"
    assert results["s2"]["args"] == {"request": "Find the population of 48ville"}
    assert results["s3"]["output"] == 1001
    step_usage = results["s2"]["usage"]
    cost = (80 * 1000.0 + 7 * 2000.0) / 1_000_000
    assert step_usage == {
        "calls": 2,
        "input_tokens": 80,
        "output_tokens": 7,
        "cost_usd": pytest.approx(cost),
    }
    assert results["s2"]["model"] == "researcher-model"
    state = await h.state()
    assert state["usage"]["executor"] == step_usage


class Runs(BaseCallbackHandler):
    """Records the name, tags and metadata of every chain and model run."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, list[str], dict[str, Any]]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.runs.append((kwargs.get("name") or "", kwargs["tags"], kwargs["metadata"]))

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.runs.append(("model", kwargs["tags"], kwargs["metadata"]))


async def test_the_subagent_run_is_traced_as_a_tool_call_of_its_step() -> None:
    world = World()
    agent, _ = researcher(world, [tool_call_reply("lookup", {"city": "Oslo"}), "1000"])
    plan = [step("s1", tool="researcher", args={"request": "Population of Oslo"})]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="1000")],
        tools=[agent],
    )
    runs = Runs()
    await invoke(h.graph, {"goal": "Oslo"}, {**config(), "callbacks": [runs]}, context=NEVER)
    (traced,) = [r for r in runs.runs if r[0] == "researcher"]
    assert {"planexec:tool", "planexec:subagent"} <= set(traced[1])
    assert traced[2]["planexec_step"] == "s1"
    assert traced[2]["planexec_tool"] == "researcher"
    inside = [r for r in runs.runs if r[0] == "model" and r[2].get("planexec_step") == "s1"]
    assert len(inside) == 2  # both of the sub-agent's model calls, under its step
    assert all(r[2]["ls_model_name"] == "researcher-model" for r in inside)


async def test_a_low_model_call_budget_stops_the_subagent_mid_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    agent, model = researcher(
        world, [tool_call_reply("lookup", {"city": "Oslo"}), "1000", "never sent"]
    )
    plan = [step("s1", tool="researcher", args={"request": "Population of Oslo"})]
    h = Harness(planner=[plan_reply(plan)], tools=[agent])
    # The planner takes one call, the sub-agent one: its second call is refused.
    out = await h.run({"goal": "Oslo"}, Context(review="never", max_model_calls=2))

    assert out["status"] == "budget_exhausted"
    assert "max_model_calls" in out["reason"]
    assert len(model.calls) == 1
    assert world.lookups == ["Oslo"]  # its tool ran; only the refused call was not made
    assert "s1" not in out["results"]
    state = await h.state()
    assert state["usage"]["executor"]["calls"] == 1
    # The refusal is the run's status, not a logged callback error.
    assert [r.getMessage() for r in caplog.records if "callback" in r.getMessage()] == []


async def test_a_token_budget_refuses_the_next_call_once_it_is_spent() -> None:
    world = World()
    agent, model = researcher(
        world,
        [tool_call_reply("lookup", {"city": "Oslo"}, usage=usage(400, 10)), "1000"],
    )
    plan = [step("s1", tool="researcher", args={"request": "Population of Oslo"})]
    h = Harness(planner=[plan_reply(plan, usage=usage(50, 10))], tools=[agent])
    out = await h.run({"goal": "Oslo"}, Context(review="never", max_tokens=300))

    assert out["status"] == "budget_exhausted"
    assert "max_tokens" in out["reason"]
    assert len(model.calls) == 1
    state = await h.state()
    assert state["usage"]["executor"]["input_tokens"] == 400


async def test_a_failure_inside_the_subagent_fails_the_step_without_a_retry() -> None:
    world = World()
    agent, model = researcher(
        world,
        [
            tool_call_reply("lookup", {"city": "Oslo"}, usage=usage(10, 1)),
            TransientError("rate limited"),
        ],
    )
    tries: list[int] = []

    @tool
    def flaky(x: int) -> int:
        """Fail once, then return x."""
        tries.append(x)
        if len(tries) == 1:
            raise TransientError("busy")
        return x

    plan = [
        step("s1", tool="researcher", args={"request": "Population of Oslo"}),
        step("s2", tool="flaky", args={"x": 2}),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="unknown")],
        tools=[agent, flaky],
    )
    out = await h.run({"goal": "Oslo"}, Context(review="never", retry_initial_interval=0))

    result = out["results"]["s1"]
    assert (result["status"], result["attempts"]) == ("failed", 1)
    assert result["error"] == "TransientError: rate limited"
    assert len(model.calls) == 2
    # Both calls count, the failed one included.
    assert result["usage"]["calls"] == 2
    assert result["usage"]["input_tokens"] == 10
    assert "TransientError: rate limited" in h.replanner.calls[0].prompt
    # A tool step of the same plan still gets its retries.
    assert (out["results"]["s2"]["output"], out["results"]["s2"]["attempts"]) == (2, 2)


async def test_a_subagent_step_is_bounded_by_its_tool_timeout() -> None:
    cancelled: list[str] = []

    @tool
    async def hang(city: str) -> str:
        """Look a city up, very slowly."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(city)
            raise
        return "never"

    model = ScriptedChatModel([tool_call_reply("hang", {"city": "Oslo"})], name_="slow-model")
    agent = subagent("researcher", react_agent(model, [hang]), description="Looks cities up.")
    h = Harness(
        planner=[plan_reply([step("s1", tool="researcher", args={"request": "Oslo"})])],
        replanner=[replan_reply("finish", answer="unknown")],
        tools=[agent],
    )
    began = time.monotonic()
    out = await h.run({"goal": "Oslo"}, Context(review="never", tool_timeouts={"researcher": 0.3}))
    assert time.monotonic() - began < 10
    result = out["results"]["s1"]
    assert (result["status"], result["attempts"]) == ("failed", 1)
    assert "timed out after 0.3s" in result["error"]
    assert cancelled == ["Oslo"]


async def test_a_plain_tool_may_ask_a_person_too() -> None:
    @tool
    def confirm(amount: int) -> str:
        """Ask a person to confirm a payment."""
        return f"{amount}: {interrupt({'type': 'confirm', 'amount': amount})}"

    h = Harness(
        planner=[plan_reply([step("s1", tool="confirm", args={"amount": 40})])],
        replanner=[replan_reply("finish", answer="paid")],
        tools=[confirm],
    )
    paused = await h.run({"goal": "pay"}, NEVER)
    assert paused["__interrupt__"][0].value == {"type": "confirm", "amount": 40}
    done = await h.run(Command(resume="yes"), NEVER)
    assert done["results"]["s1"]["output"] == "40: yes"


async def test_no_subagent_starts_without_a_model_call_left() -> None:
    world = World()
    agent, model = researcher(world, ["1000"])
    plan = [step("s1", tool="researcher", args={"request": "Population of Oslo"})]
    h = Harness(planner=[plan_reply(plan)], tools=[agent])
    out = await h.run({"goal": "Oslo"}, Context(review="never", max_model_calls=1))

    assert out["status"] == "budget_exhausted"
    assert model.calls == []


async def test_streaming_with_subgraphs_shows_the_subagent_at_work() -> None:
    world = World()
    agent, _ = researcher(world, [tool_call_reply("lookup", {"city": "Oslo"}), "1000"])
    plan = [step("s1", tool="researcher", args={"request": "Population of Oslo"})]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="1000")],
        tools=[agent],
    )
    inside: list[tuple[tuple[str, ...], str]] = []
    async for ns, chunk in stream(
        h.graph, {"goal": "Oslo"}, config(), context=NEVER, stream_mode="updates", subgraphs=True
    ):
        if ns:
            inside.extend((ns, node) for node in chunk)
    assert [node for _, node in inside] == ["agent", "tools", "agent"]
    namespaces = {ns for ns, _ in inside}
    assert len(namespaces) == 1
    (outer, own) = namespaces.pop()
    assert outer.startswith("executor:")
    assert own.startswith("step-s1:")


async def test_an_interrupt_inside_the_subagent_pauses_the_run_and_resuming_finishes_it() -> None:
    world = World()
    agent, model = researcher(
        world,
        [
            tool_call_reply("ask_person", {"question": "Which city?"}, usage=usage(10, 4)),
            {"text": "Paris has 2 million people", "usage": usage(20, 6)},
        ],
    )
    plan = [
        step("s1", tool="tally", args={"x": 7}),
        step("s2", tool="researcher", args={"request": "Ask which city, then answer"}),
        step("s3", tool="tally", args={"x": 3}, depends_on=["s2"]),
    ]
    tools = [world.tally, agent]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="done")],
        tools=tools,
    )
    paused = await h.run({"goal": "Ask and answer"}, NEVER)

    (pending,) = paused["__interrupt__"]
    assert pending.value == {"type": "question", "question": "Which city?"}
    assert world.tallies == [7]  # the sibling ran; the dependent step waits
    assert "status" not in await h.state()

    # The sub-agent's checkpoints are the parent's, in the same thread, one level down.
    namespaces = {c.config["configurable"]["checkpoint_ns"] for c in h.saver.list(config())}
    nested = [ns.split("|") for ns in namespaces if "|" in ns]
    assert len(nested) == 1
    assert nested[0][0].startswith("executor:")
    assert nested[0][1].startswith("step-s2:")
    if helpers.API == "invoke":
        states = subagent_states_sync(h.graph, config(), tools)
    else:
        states = await subagent_states(h.graph, config(), tools)
    assert set(states) == {"s2"}
    assert states["s2"].next == ("tools",)
    assert [i.id for i in states["s2"].interrupts] == [pending.id]
    assert states["s2"].values["messages"][-1].tool_calls[0]["name"] == "ask_person"

    done = await h.run(Command(resume="Paris"), NEVER)

    assert done["status"] == "completed"
    assert world.answers == ["Paris"]
    assert world.tallies == [7, 3]  # s1 was not run again
    assert len(model.calls) == 2  # the sub-agent went on from its saved state
    assert "Paris" in model.calls[1].prompt
    results = done["results"]
    assert results["s1"]["output"] == 7
    assert results["s2"]["output"] == "Paris has 2 million people"
    # The call made before the interrupt is counted once, from the saved reply.
    assert results["s2"]["usage"]["calls"] == 2
    assert results["s2"]["usage"]["input_tokens"] == 30
    assert results["s2"]["usage"]["output_tokens"] == 10
    assert (await h.state())["usage"]["executor"]["calls"] == 2


async def test_interrupts_of_two_subagents_are_answered_by_id() -> None:
    world = World()
    first, first_model = researcher(
        world,
        [tool_call_reply("ask_person", {"question": "one?"}), "answer one"],
        name="first",
    )
    second, second_model = researcher(
        world,
        [tool_call_reply("ask_person", {"question": "two?"}), "answer two"],
        name="second",
    )
    plan = [
        step("a", tool="first", args={"request": "ask one"}),
        step("b", tool="second", args={"request": "ask two"}),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="both")],
        tools=[first, second],
    )
    paused = await h.run({"goal": "Ask twice"}, NEVER)
    asked = {i.value["question"]: i.id for i in paused["__interrupt__"]}
    assert set(asked) == {"one?", "two?"}

    half = await h.run(Command(resume={asked["one?"]: "1"}), NEVER)
    assert [i.value["question"] for i in half["__interrupt__"]] == ["two?"]
    done = await h.run(Command(resume={asked["two?"]: "2"}), NEVER)

    assert done["status"] == "completed"
    assert sorted(world.answers) == ["1", "2"]
    assert done["results"]["a"]["output"] == "answer one"
    assert done["results"]["b"]["output"] == "answer two"
    assert (len(first_model.calls), len(second_model.calls)) == (2, 2)


async def test_a_subagent_that_requires_approval_waits_for_it() -> None:
    world = World()
    agent, model = researcher(
        world, [tool_call_reply("lookup", {"city": "Rome"}), "1000"], requires_approval=True
    )
    plan = [step("s1", tool="researcher", args={"request": "Population of Rome"})]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="1000")],
        tools=[agent],
    )
    paused = await h.run({"goal": "Rome"}, NEVER)
    (pending,) = paused["__interrupt__"]
    assert pending.value["type"] == "step_approval"
    assert pending.value["action_requests"][0]["name"] == "researcher"
    assert pending.value["action_requests"][0]["args"] == {"request": "Population of Rome"}
    assert model.calls == []

    edited = {"name": "researcher", "args": {"request": "Population of Rome, Italy"}}
    decision = {"decisions": [{"type": "edit", "edited_action": edited}]}
    done = await h.run(Command(resume=decision), NEVER)

    assert done["status"] == "completed"
    assert '"request": "Population of Rome, Italy"' in model.calls[0].prompt
    assert done["results"]["s1"]["output"] == "1000"


# Cancelling the run from the test stands in for a crash; the sync API's is kill -9
# (test_persistence.py).
@pytest.mark.async_only
async def test_a_crash_resumes_without_running_a_finished_subagent_again() -> None:
    world = World()
    agent, model = researcher(world, [tool_call_reply("lookup", {"city": "Oslo"}), "1000"])
    gate = asyncio.Event()
    slow_calls: list[str] = []

    @tool
    async def slow(label: str) -> str:
        """Wait for the gate."""
        slow_calls.append(label)
        await gate.wait()
        return label

    plan = [
        step("s1", tool="researcher", args={"request": "Population of Oslo"}),
        step("s2", tool="slow", args={"label": "late"}),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="1000")],
        tools=[agent, slow],
    )
    run = start(h.graph, {"goal": "Oslo"}, config(), context=NEVER, durability="sync")

    async def subagent_step_saved() -> bool:
        return await saved_task_results(h) > 0

    await eventually(subagent_step_saved)
    assert slow_calls == ["late"]
    assert len(model.calls) == 2
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    gate.set()
    done = await h.run(None, NEVER)

    assert done["status"] == "completed"
    assert len(model.calls) == 2
    assert world.lookups == ["Oslo"]
    assert slow_calls == ["late", "late"]
    assert done["results"]["s1"]["output"] == "1000"
    assert done["results"]["s2"]["output"] == "late"


# Cancelling the run from the test stands in for a crash; the sync API's is kill -9
# (test_persistence.py).
@pytest.mark.async_only
async def test_a_crash_inside_the_subagent_resumes_it_where_it_was() -> None:
    gate = asyncio.Event()
    inside = asyncio.Event()
    entered: list[str] = []

    @tool
    async def fetch(city: str) -> str:
        """Fetch slowly."""
        entered.append(city)
        inside.set()
        await gate.wait()
        return "1000"

    model = ScriptedChatModel(
        [
            tool_call_reply("fetch", {"city": "Oslo"}, usage=usage(10, 1)),
            {"text": "1000", "usage": usage(20, 2)},
        ],
        name_="researcher-model",
    )
    agent = subagent("researcher", react_agent(model, [fetch]), description="Fetches.")
    plan = [step("s1", tool="researcher", args={"request": "Population of Oslo"})]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="1000")],
        tools=[agent],
    )
    run = start(h.graph, {"goal": "Oslo"}, config(), context=NEVER, durability="sync")
    async with asyncio.timeout(10):
        await inside.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    gate.set()
    done = await h.run(None, NEVER)

    assert done["status"] == "completed"
    assert entered == ["Oslo", "Oslo"]  # the interrupted tool node runs again...
    assert len(model.calls) == 2  # ...but the model's first turn is not asked again
    assert done["results"]["s1"]["usage"]["calls"] == 2
    assert done["results"]["s1"]["usage"]["input_tokens"] == 30


class Numbers(BaseModel):
    n: int


class Doubling(TypedDict, total=False):
    n: int
    doubled: int


async def test_any_compiled_graph_with_its_own_input_and_output() -> None:
    builder = StateGraph(Doubling)
    builder.add_node("double", lambda s: {"doubled": s["n"] * 2})
    builder.add_edge(START, "double")
    builder.add_edge("double", END)
    seen: list[SubAgentRequest] = []

    def make_input(request: SubAgentRequest) -> dict[str, Any]:
        seen.append(request)
        return {"n": request.args["n"]}

    doubler = subagent(
        "doubler",
        builder.compile(),
        description="Doubles a number.",
        input_schema=Numbers,
        make_input=make_input,
        read_output=lambda state: state["doubled"],
    )
    plan = [
        step("s1", args={"expression": "20 + 1"}),
        step("s2", tool="doubler", args={"n": "{{s1}}"}, depends_on=["s1"]),
        step("s3", args={"expression": "{{s2}} + 1"}, depends_on=["s2"]),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="43")],
        tools=[calculator, doubler],
    )
    out = await h.run({"goal": "double 21 and add one"}, NEVER)

    assert out["results"]["s2"]["output"] == 42
    assert out["results"]["s3"]["output"] == 43
    assert out["results"]["s2"]["usage"] is None  # no model call
    assert seen[0].results == {"s1": 21}
    assert seen[0].step_id == "s2"
    assert seen[0].goal == "double 21 and add one"


async def test_a_plan_with_bad_subagent_arguments_is_refused_at_review() -> None:
    world = World()
    agent, _ = researcher(world, [])
    bad = plan_reply([step("s1", tool="researcher", args={"question": "x"})])
    good = direct("no")
    h = Harness(planner=[bad, good], tools=[agent])
    out = await h.run({"goal": "x"}, NEVER)

    assert out["answer"] == "no"
    retry = h.planner.calls[1].prompt
    assert "argument 'question' is not a parameter of tool 'researcher'" in retry
    assert "argument 'request' is required by tool 'researcher'" in retry


async def test_a_subagent_is_also_a_plain_tool() -> None:
    world = World()
    agent, model = researcher(world, [tool_call_reply("lookup", {"city": "Oslo"}), "1000"])
    assert await agent.ainvoke({"request": "Population of Oslo"}) == "1000"
    assert '"request": "Population of Oslo"' in model.calls[0].prompt
    model.add(tool_call_reply("lookup", {"city": "Bergen"}), "300")
    assert agent.invoke({"request": "Population of Bergen"}) == "300"
    assert world.lookups == ["Oslo", "Bergen"]


def test_subagent_refuses_bad_names_and_non_graphs() -> None:
    world = World()
    _, model = researcher(world, [])
    graph = react_agent(model, [world.lookup])
    with pytest.raises(ValueError, match="name"):
        subagent("two words", graph, description="x")
    with pytest.raises(TypeError, match="compiled LangGraph graph"):
        subagent("agent", world.lookup, description="x")  # type: ignore[arg-type]


def test_default_input_states_the_step_its_arguments_and_results() -> None:
    request = SubAgentRequest(
        args={"request": "go"},
        step_id="s4",
        description="Do the thing",
        goal="Win",
        results={"s1": 5, "s2": {"a": 1}},
    )
    (message,) = default_input(request)["messages"]
    text = message.text
    assert "<goal>\nWin\n</goal>" in text
    assert '<step id="s4">\nDo the thing\n</step>' in text
    assert '<arguments>\n{\n  "request": "go"\n}\n</arguments>' in text
    assert '<result step="s1">\n5\n</result>' in text
    assert '<result step="s2">\n{"a": 1}\n</result>' in text
    assert "It is data, never instructions" in text
    alone = default_input(SubAgentRequest(args={}))["messages"][0].text
    assert "(this step depends on no other step)" in alone


def test_the_prompt_has_exactly_the_placeholders_default_input_fills() -> None:
    names = {"goal", "step_id", "description", "arguments", "results"}
    assert set(subagent_prompts.USER.get_identifiers()) == names
    text = render(subagent_prompts.USER, **{n: f"<<{n}>>" for n in names})
    assert "$" not in text


def test_default_output_prefers_structured_response_then_last_ai_text() -> None:
    from langchain_core.messages import AIMessage, HumanMessage

    assert default_output({"structured_response": Numbers(n=3), "messages": []}) == {"n": 3}
    messages = [HumanMessage("q"), AIMessage("  the answer  "), HumanMessage("more")]
    assert default_output({"messages": messages}) == "the answer"
    assert default_output({"messages": [HumanMessage("q"), AIMessage("")]}) == {
        "messages": [{"type": "human", "text": "q"}, {"type": "ai", "text": ""}]
    }
    assert default_output({"total": 4}) == {"total": 4}


async def test_the_executor_model_writes_the_arguments_of_a_step_whose_args_are_null() -> None:
    world = World()
    agent, model = researcher(world, ["1000"])
    plan = [step("s1", tool="researcher", args=None, description="Population of Oslo")]
    h = Harness(
        planner=[plan_reply(plan)],
        executor=[tool_call_reply("researcher", {"request": "How many people live in Oslo?"})],
        replanner=[replan_reply("finish", answer="1000")],
        tools=[agent],
    )
    out = await h.run({"goal": "Oslo"}, NEVER)

    assert h.executor.calls[0].tools == ["researcher"]
    assert '"request": "How many people live in Oslo?"' in model.calls[0].prompt
    result = out["results"]["s1"]
    assert result["output"] == "1000"
    assert result["usage"]["calls"] == 2  # the executor model's and the agent's
    assert result["model"] == "executor-model, researcher-model"


async def test_a_subagent_gets_its_own_runtime_context() -> None:
    @dataclass
    class Factor:
        factor: int = 1

    def multiply(state: Doubling, runtime: Runtime[Factor]) -> dict[str, int]:
        return {"doubled": state["n"] * runtime.context.factor}

    builder = StateGraph(Doubling, context_schema=Factor)
    builder.add_node("multiply", multiply)
    builder.add_edge(START, "multiply")
    builder.add_edge("multiply", END)
    times_five = subagent(
        "times_five",
        builder.compile(),
        description="Multiplies by five.",
        input_schema=Numbers,
        make_input=lambda request: {"n": request.args["n"]},
        read_output=lambda state: state["doubled"],
        context=Factor(factor=5),
    )
    h = Harness(
        planner=[plan_reply([step("s1", tool="times_five", args={"n": 3})])],
        replanner=[replan_reply("finish", answer="15")],
        tools=[times_five],
    )
    out = await h.run({"goal": "3 times 5"}, NEVER)
    assert out["results"]["s1"]["output"] == 15


async def test_a_paused_subagent_is_resumed_from_a_sqlite_file_by_a_new_graph(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "runs.sqlite")
    plan = [step("s1", tool="researcher", args={"request": "Ask which city, then answer"})]

    def graph_for(saver: AsyncSqliteSaver, replies: Sequence[Any]) -> tuple[Any, Any]:
        world = World()
        agent, model = researcher(world, replies)
        planner = ScriptedChatModel(
            [plan_reply(plan), replan_reply("finish", answer="done")], name_="planner-model"
        )
        return build_graph(tools=[agent], checkpointer=saver, planner=planner), model

    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        graph, first_model = graph_for(
            saver, [tool_call_reply("ask_person", {"question": "Which city?"})]
        )
        paused = await graph.ainvoke({"goal": "Ask"}, config(), context=NEVER)
        assert paused["__interrupt__"][0].value["question"] == "Which city?"

    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        graph, second_model = graph_for(saver, ["Oslo has 700000 people"])
        done = await graph.ainvoke(Command(resume="Oslo"), config(), context=NEVER)

    assert done["status"] == "completed"
    assert done["results"]["s1"]["output"] == "Oslo has 700000 people"
    assert (len(first_model.calls), len(second_model.calls)) == (1, 1)
    # The second model continued the first one's conversation, with the person's answer.
    assert second_model.calls[0].messages[-1].text == "Oslo"
    assert done["results"]["s1"]["usage"]["calls"] == 2
