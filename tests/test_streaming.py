"""`stream_mode="messages"`: only the final answer streams as chat text, token by token.

The scripted models stream their replies in pieces (words of text, slices of a tool
call's arguments), as providers do, so every planner, executor and replanner call
would show up as chat text unless it is tagged `nostream`.
"""

from __future__ import annotations

import json
import random
from typing import Annotated, Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command
from typing_extensions import TypedDict

from helpers import Harness, config, get_state, step, stream
from planexec import Context, ScriptedChatModel, build_graph
from planexec.execution import bounded_text
from planexec.scripted import plan_reply, replan_reply
from planexec.streaming import (
    ANSWER_TAG,
    AnswerStream,
    _Scanner,
    answers_directly,
    finishes_replan,
)

pytestmark = pytest.mark.usefixtures("both_apis")

NEVER = Context(review="never", retry_initial_interval=0.0)
ANSWER = "The product is 42, and the sum is 43: both computed by the calculator."


async def streamed(h: Harness, goal: str, ctx: Context = NEVER) -> list[Any]:
    """The (message, metadata) pairs a messages-mode run of `goal` streams."""
    return [
        part
        async for part in stream(
            h.graph, {"goal": goal}, config(), context=ctx, stream_mode="messages"
        )
    ]


def tokens(parts: list[Any]) -> list[Any]:
    """The pairs whose message is a chunk of one being written (not a node's message)."""
    return [(message, meta) for message, meta in parts if isinstance(message, AIMessageChunk)]


async def chat_chunks(h: Harness, goal: str, ctx: Context = NEVER) -> list[Any]:
    """The message chunks a messages-mode run of `goal` streams."""
    return tokens(await streamed(h, goal, ctx))


def by_id(parts: list[Any]) -> dict[str, str]:
    """Each streamed message's text, by message id, in the order the ids first came."""
    texts: dict[str, str] = {}
    for chunk, _ in parts:
        texts[chunk.id] = texts.get(chunk.id, "") + chunk.content
    return texts


async def test_plan_steps_and_replans_stay_silent_and_the_answer_streams() -> None:
    h = Harness(
        planner=[
            plan_reply(
                [
                    step("s1", args=None, description="Multiply 6 by 7"),
                    step("s2", tool=None, depends_on=["s1"], description="Say it in words"),
                ]
            )
        ],
        executor=[
            {"tool_calls": [{"name": "calculator", "args": {"expression": "6*7"}}]},
            "forty-two, said in words by the executor",
        ],
        replanner=[
            replan_reply(
                "replan",
                steps=[step("s3", args={"expression": "{{s1}} + 1"}, depends_on=["s1"])],
                reason="one more step",
            ),
            replan_reply("finish", answer=ANSWER),
        ],
    )
    everything = await streamed(h, "6*7, then add one")
    parts = tokens(everything)
    final = (await get_state(h.graph, config())).values
    assert final["status"] == "completed"
    assert final["results"]["s3"]["output"] == 43
    # Every role was asked, and each model streamed: only the answer reached the chat.
    assert (len(h.planner.calls), len(h.executor.calls), len(h.replanner.calls)) == (1, 2, 2)
    assert by_id(parts) == {parts[0][0].id: final["answer"]}
    assert final["answer"] == ANSWER
    # No message of any kind shows the plan, a step's work or a call's arguments.
    shown = " ".join(str(message.content) for message, _ in everything)
    for hidden in ('"steps"', "expression", "said in words", '"action"', "Replan"):
        assert hidden not in shown
    assert len(parts) > 3
    assert {meta["langgraph_node"] for _, meta in parts} == {"replanner"}
    assert all(ANSWER_TAG in meta["tags"] for _, meta in parts)
    # One message: only its last chunk says so.
    assert [chunk.chunk_position for chunk, _ in parts][-2:] == [None, "last"]


async def test_a_direct_answer_streams_from_the_planner_stripped() -> None:
    answer = "  Hello! Nothing to compute here, so here is the answer directly.  \n"
    h = Harness(
        planner=[{"tool_calls": [{"name": "Plan", "args": {"steps": [], "answer": answer}}]}]
    )
    parts = await chat_chunks(h, "Say hello")
    final = (await get_state(h.graph, config())).values
    assert final["answer"] == answer.strip()
    assert list(by_id(parts).values()) == [answer.strip()]
    assert len(parts) > 3
    assert {meta["langgraph_node"] for _, meta in parts} == {"planner"}


async def test_an_invalid_finish_leaves_its_chunks_under_an_id_that_is_not_the_answer() -> None:
    no_reason = {"action": "finish", "answer": "A half-written answer that will not count."}
    h = Harness(
        planner=[plan_reply([step("s1", args={"expression": "6*7"})])],
        replanner=[
            {"tool_calls": [{"name": "Replan", "args": no_reason}]},
            replan_reply("finish", answer=ANSWER),
        ],
    )
    parts = await chat_chunks(h, "6*7")
    final = (await get_state(h.graph, config())).values
    assert final["status"] == "completed"
    assert len(h.replanner.calls) == 2
    assert "reason" in h.replanner.calls[1].prompt  # the error was sent back
    texts = by_id(parts)
    assert list(texts.values()) == [no_reason["answer"], ANSWER]
    # The last message streamed is the answer; the first never becomes one.
    assert list(texts)[-1] == parts[-1][0].id
    assert final["answer"] == ANSWER


async def test_an_answer_written_before_its_action_is_held_back_and_sent_whole() -> None:
    early = {"answer": ANSWER, "action": "finish", "steps": None, "reason": "done"}
    h = Harness(
        planner=[plan_reply([step("s1", args={"expression": "6*7"})])],
        replanner=[{"tool_calls": [{"name": "Replan", "args": early}]}],
    )
    parts = await chat_chunks(h, "6*7")
    assert [chunk.content for chunk, _ in parts] == [ANSWER]
    assert (await get_state(h.graph, config())).values["answer"] == ANSWER


async def test_a_replan_that_writes_an_answer_streams_nothing() -> None:
    # "replan" comes first: its answer is not final, so none of it is chat text.
    odd = {
        "action": "replan",
        "answer": "not the answer",
        "steps": [step("s2", args={"expression": "1+1"})],
        "reason": "more",
    }
    h = Harness(
        planner=[plan_reply([step("s1", args={"expression": "6*7"})])],
        replanner=[
            {"tool_calls": [{"name": "Replan", "args": odd}]},
            replan_reply("finish", answer="2"),
        ],
    )
    parts = await chat_chunks(h, "6*7")
    assert [chunk.content for chunk, _ in parts] == ["2"]


async def test_a_long_answer_streams_as_the_state_keeps_it_cut() -> None:
    long = " ".join(f"word{i}" for i in range(60))
    h = Harness(
        planner=[plan_reply([step("s1", args={"expression": "6*7"})])],
        replanner=[replan_reply("finish", answer=long)],
    )
    ctx = Context(review="never", max_output_chars=100)
    parts = await chat_chunks(h, "6*7", ctx)
    answer = (await get_state(h.graph, config())).values["answer"]
    assert answer == bounded_text(long, 100)
    assert answer != long
    assert list(by_id(parts).values()) == [answer]
    assert len(parts) > 2


class RunNames(BaseCallbackHandler):
    """Records the name of every chat model run started."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        self.names.append(str(kwargs.get("name")))


@pytest.mark.parametrize("mode", ["updates", "messages"])
async def test_the_relay_runs_only_when_something_listens_for_tokens(mode: str) -> None:
    h = Harness(
        planner=[plan_reply([step("s1", args={"expression": "6*7"})])],
        replanner=[replan_reply("finish", answer=ANSWER)],
    )
    names = RunNames()
    cfg = {**config(), "callbacks": [names]}
    async for _ in stream(h.graph, {"goal": "6*7"}, cfg, context=NEVER, stream_mode=mode):
        pass
    assert (await get_state(h.graph, config())).values["answer"] == ANSWER
    expected = ["planner model", "replanner model"] + (["answer"] if mode == "messages" else [])
    assert names.names == expected


@pytest.mark.async_only
@pytest.mark.parametrize("seed", range(5))
def test_the_scanner_reads_the_answer_in_any_chunking(seed: int) -> None:
    answer = 'Caf\u00e9 \U0001f600 costs "5\u20ac"\\n\nnext line\t/ end'
    text = json.dumps({"action": "finish", "answer": answer, "steps": None, "reason": "r,}"})
    scanner = _Scanner(finishes_replan)
    rng = random.Random(seed)
    seen, at = [""], 0
    while at < len(text):
        size = rng.randint(1, 5)
        scanner.feed(text[at : at + size])
        at += size
        assert scanner.answer.startswith(seen[-1])
        seen.append(scanner.answer)
    assert scanner.released
    assert scanner.answer == answer
    assert scanner.fields == {"action": "finish", "answer": answer, "steps": None, "reason": "r,}"}


@pytest.mark.async_only
def test_the_scanner_holds_an_answer_its_gate_does_not_open() -> None:
    plan = json.dumps({"steps": [{"id": "s1", "answer": "inner"}], "answer": "a"})
    scanner = _Scanner(answers_directly)
    scanner.feed(plan)
    assert scanner.fields["steps"] == [{"id": "s1", "answer": "inner"}]
    assert scanner.answer == "a"
    assert not scanner.released


class ChatState(TypedDict):
    messages: Annotated[list[BaseMessage], add_messages]


@pytest.mark.async_only
async def test_an_answer_message_with_the_streams_id_is_not_emitted_twice() -> None:
    """The hook for a `messages` channel: the final AIMessage carries `message_id`."""
    model = ScriptedChatModel([replan_reply("finish", answer=ANSWER)] * 2)

    async def answer_node(state: ChatState) -> dict[str, Any]:
        async with AnswerStream(finishes_replan, limit=10_000) as streamed:
            traced = streamed.watch({"tags": ["nostream"]}, method="tool", schema="Replan")
            bound = model.bind_tools(
                [{"type": "function", "function": {"name": "Replan", "parameters": {}}}]
            )
            reply = await bound.ainvoke(state["messages"], traced)
            text = reply.tool_calls[0]["args"]["answer"]
            message_id = await streamed.finish(text)
        return {"messages": [AIMessage(text, id=message_id)]}

    graph = (
        StateGraph(ChatState).add_node("answer", answer_node).add_edge(START, "answer").compile()
    )
    parts = [
        part
        async for part in graph.astream({"messages": [HumanMessage("q")]}, stream_mode="messages")
    ]
    assert all(isinstance(chunk, AIMessageChunk) for chunk, _ in parts)
    assert by_id(parts) == {parts[0][0].id: ANSWER}
    out = await graph.ainvoke({"messages": [HumanMessage("q")]})
    assert out["messages"][-1].content == ANSWER


async def test_a_model_that_does_not_stream_sends_the_answer_whole() -> None:
    replanner = ScriptedChatModel([replan_reply("finish", answer=ANSWER)], disable_streaming=True)
    graph = build_graph(
        checkpointer=InMemorySaver(),
        planner=ScriptedChatModel([plan_reply([step("s1", args={"expression": "6*7"})])]),
        replanner=replanner,
    )
    parts = [
        part
        async for part in stream(
            graph, {"goal": "6*7"}, config(), context=NEVER, stream_mode="messages"
        )
    ]
    assert [chunk.content for chunk, _ in tokens(parts)] == [ANSWER]
    assert (await get_state(graph, config())).values["answer"] == ANSWER


@pytest.mark.async_only
async def test_astream_events_shows_the_answer_as_the_answer_runs_stream() -> None:
    h = Harness(
        planner=[plan_reply([step("s1", args={"expression": "6*7"})])],
        replanner=[replan_reply("finish", answer=ANSWER)],
    )
    streamed: dict[str, list[str]] = {}
    async for event in h.graph.astream_events(
        {"goal": "6*7"}, config(), context=NEVER, version="v2"
    ):
        if event["event"] == "on_chat_model_stream":
            streamed.setdefault(event["name"], []).append(str(event["data"]["chunk"].content))
    assert "".join(streamed["answer"]) == ANSWER
    assert len(streamed["answer"]) > 2
    # The model calls' own tokens are there too, tagged nostream for clients to skip.
    assert set(streamed) == {"answer", "planner model", "replanner model"}


@pytest.mark.async_only
async def test_an_answer_the_sent_text_does_not_begin_is_sent_whole_under_a_new_id() -> None:
    model = ScriptedChatModel([replan_reply("finish", answer=ANSWER)])
    ids: list[str] = []

    async def answer_node(state: ChatState) -> dict[str, Any]:
        async with AnswerStream(finishes_replan, limit=10_000) as streamed:
            first = streamed.message_id
            traced = streamed.watch({"tags": ["nostream"]}, method="tool", schema="Replan")
            bound = model.bind_tools(
                [{"type": "function", "function": {"name": "Replan", "parameters": {}}}]
            )
            await bound.ainvoke(state["messages"], traced)
            ids.extend([first, await streamed.finish("Another answer altogether.")])
        return {}

    graph = StateGraph(ChatState).add_node("answer", answer_node).add_edge(START, "answer")
    compiled = graph.compile()
    parts = [
        part
        async for part in compiled.astream(
            {"messages": [HumanMessage("q")]}, stream_mode="messages"
        )
    ]
    first, final = ids
    assert first != final
    assert by_id(parts) == {first: ANSWER, final: "Another answer altogether."}


async def test_after_plan_review_the_resumed_run_streams_the_answer() -> None:
    h = Harness(
        planner=[plan_reply([step("s1", args={"expression": "6*7"})])],
        replanner=[replan_reply("finish", answer=ANSWER)],
    )
    ctx = Context(retry_initial_interval=0.0)
    assert await chat_chunks(h, "6*7", ctx) == []
    resumed = [
        part
        async for part in stream(
            h.graph,
            Command(resume={"type": "approve"}),
            config(),
            context=ctx,
            stream_mode="messages",
        )
    ]
    assert list(by_id(tokens(resumed)).values()) == [ANSWER]
    assert (await get_state(h.graph, config())).values["answer"] == ANSWER
