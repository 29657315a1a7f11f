"""planexec end to end with the real `langchain-openai` client against a local server.

Every graph here uses the default model factory: the `ChatOpenAI` clients are built from
`Context` model strings and find the server through `OPENAI_BASE_URL`, as a user's
would. The assertions read the HTTP request bodies the server received.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from fake_openai import FakeOpenAI, prompt_of, tool_names
from helpers import config, step
from planexec import Context, ModelConfigError, build_graph
from planexec.graph import PlanexecGraph

pytestmark = pytest.mark.integration

PLANNER = "You are the planner"
REPLANNER = "You are the replanner"

Serve = Callable[..., FakeOpenAI]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """Start a fake server and point OPENAI_BASE_URL at it; stopped after the test."""
    servers: list[FakeOpenAI] = []

    def start(replies: list[dict[str, Any]], **options: Any) -> FakeOpenAI:
        server = FakeOpenAI(replies, **options).start()
        servers.append(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        return server

    yield start
    for server in servers:
        server.stop()


def context(**overrides: Any) -> Context:
    settings: dict[str, Any] = {
        "planner_model": "openai:gpt-4.1",
        "executor_model": "openai:gpt-4.1-mini",
        "retry_initial_interval": 0.0,
        "model_timeout": 5.0,
        "model_max_retries": 0,
    }
    return Context(**{**settings, **overrides})


def graph() -> PlanexecGraph:
    return build_graph(checkpointer=InMemorySaver())


def plan(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "match": PLANNER,
        "tool_calls": [{"name": "Plan", "arguments": {"steps": list(steps)}}],
        **extra,
    }


def finish(answer: str, **extra: Any) -> dict[str, Any]:
    arguments = {"action": "finish", "answer": answer, "steps": None, "reason": "done"}
    return {"match": REPLANNER, "tool_calls": [{"name": "Replan", "arguments": arguments}], **extra}


def executor_turn(step_id: str, **reply: Any) -> dict[str, Any]:
    return {"match": f'<step id="{step_id}">', **reply}


def forced(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


async def run(g: PlanexecGraph, value: Any, ctx: Context, thread: str = "t1") -> dict[str, Any]:
    result: dict[str, Any] = await g.ainvoke(value, config(thread), context=ctx)
    return result


THREE_STEPS = [
    step("s1", args={"expression": "12*4"}, description="Multiply 12 by 4"),
    step("s2", args=None, depends_on=["s1"], description="Add 5 to the result of s1"),
    step("s3", tool=None, depends_on=["s2"], description="State the result in a sentence"),
]


async def test_plan_review_approve_then_steps_then_finish(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "dummy-key")
    server = serve(
        [
            plan(*THREE_STEPS),
            executor_turn(
                "s2", tool_calls=[{"name": "calculator", "arguments": {"expression": "48 + 5"}}]
            ),
            executor_turn("s3", content="The result is 53."),
            finish("12 * 4 + 5 = 53"),
        ]
    )
    g = graph()
    paused = await run(g, {"goal": "What is 12 * 4 + 5?"}, context())
    review = paused["__interrupt__"][0].value
    assert review["type"] == "plan_review"
    assert [s["id"] for s in review["plan"]["steps"]] == ["s1", "s2", "s3"]
    assert len(server.requests) == 1

    out = await run(g, Command(resume={"type": "approve"}), context())
    assert out["status"] == "completed"
    assert out["answer"] == "12 * 4 + 5 = 53"
    assert {k: v["output"] for k, v in out["results"].items()} == {
        "s1": 48,
        "s2": 53,
        "s3": "The result is 53.",
    }
    server.assert_done()

    planner, s2, s3, replanner = server.requests
    assert tool_names(planner) == ["Plan"]
    assert planner["tool_choice"] == forced("Plan")
    assert planner["temperature"] == 0
    assert planner["model"] == "gpt-4.1"
    assert not planner.get("stream")
    assert "What is 12 * 4 + 5?" in prompt_of(planner)
    # s1's arguments are complete: the tool ran without any model request.
    assert server.requests_containing('<step id="s1">') == []
    assert s2["model"] == "gpt-4.1-mini"
    assert tool_names(s2) == ["calculator"]
    assert s2["tool_choice"] == forced("calculator")
    assert '<result step="s1">\n48\n</result>' in prompt_of(s2)
    assert "tools" not in s3
    assert '<result step="s2">\n53\n</result>' in prompt_of(s3)
    assert '<result step="s1">' not in prompt_of(s3)
    assert "Multiply 12 by 4" not in prompt_of(s3)
    assert tool_names(replanner) == ["Replan"]
    assert replanner["tool_choice"] == forced("Replan")
    assert replanner["model"] == "gpt-4.1"
    assert "The result is 53." in prompt_of(replanner)
    assert {h["authorization"] for h in server.request_headers} == {"Bearer dummy-key"}


async def test_edited_plan_runs_instead_of_the_proposed_one(serve: Serve) -> None:
    proposed = step("s1", args={"expression": "2*3"}, description="Multiply")
    server = serve([plan(proposed), finish("42")])
    g = graph()
    await run(g, {"goal": "multiply"}, context())
    edited = {"steps": [{**proposed, "args": {"expression": "6*7"}}]}
    out = await run(g, Command(resume={"type": "edit", "plan": edited}), context())
    assert out["status"] == "completed"
    assert out["results"]["s1"]["output"] == 42
    assert out["plan"] == edited
    assert [r["source"] for r in out["revisions"]] == ["planner", "human"]
    server.assert_done()
    replanner = server.requests_for_tool("Replan")
    assert len(replanner) == 1
    assert "6*7" in prompt_of(replanner[0])
    assert "2*3" not in prompt_of(replanner[0])
    # No key was set: a local server needs only its URL, and the client sends a placeholder.
    assert {h["authorization"] for h in server.request_headers} == {"Bearer not-needed"}


async def test_rejected_plan_goes_back_to_the_planner_with_the_feedback(serve: Serve) -> None:
    server = serve(
        [
            plan(step("s1", args={"expression": "1+1"})),
            plan(step("s1", args={"expression": "6*7"})),
            finish("42"),
        ]
    )
    g = graph()
    first = await run(g, {"goal": "the answer"}, context())
    assert first["__interrupt__"][0].value["revision"] == 1
    feedback = "Use multiplication, not addition"
    second = await run(g, Command(resume={"type": "reject", "message": feedback}), context())
    assert second["__interrupt__"][0].value["revision"] == 2
    out = await run(g, Command(resume={"type": "approve"}), context())
    assert out["status"] == "completed"
    assert out["results"]["s1"]["output"] == 42
    assert [r["decision"] for r in out["reviews"]] == ["reject", "approve"]
    server.assert_done()
    first_prompt, second_prompt = (prompt_of(b) for b in server.requests_for_tool("Plan"))
    assert "<reviewer_feedback>" not in first_prompt
    assert "<reviewer_feedback>" in second_prompt
    assert feedback in second_prompt
    assert "1+1" in second_prompt


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 429, "headers": {"Retry-After": "0.01"}},
        {"status": 500, "headers": {"retry-after-ms": "10"}},
    ],
    ids=["rate-limited", "server-error"],
)
async def test_the_client_retries_a_failed_request(serve: Serve, failure: dict[str, Any]) -> None:
    # A short Retry-After keeps the client from its half-second default backoff
    # (it ignores a Retry-After of 0).
    server = serve([failure, plan(step("s1", args={"expression": "1+1"}))])
    out = await run(graph(), {"goal": "add"}, context(model_max_retries=1))
    assert out["__interrupt__"][0].value["plan"]["steps"][0]["id"] == "s1"
    planner = server.requests_for_tool("Plan")
    assert len(planner) == 2
    assert planner[0]["messages"] == planner[1]["messages"]
    server.assert_done()


async def test_a_rate_limit_without_retries_fails_the_run(serve: Serve) -> None:
    server = serve([{"status": 429, "body": {"error": {"message": "slow down"}}}])
    out = await run(graph(), {"goal": "add"}, context(model_max_retries=0))
    assert out["status"] == "failed"
    assert "the planner model call failed" in out["reason"]
    assert "RateLimit" in out["reason"]
    assert len(server.requests) == 1


MALFORMED = {"match": PLANNER, "tool_calls": [{"name": "Plan", "arguments": '{"steps": [{"id"'}]}
NO_CALL = {"match": PLANNER, "content": "First multiply, then add."}


async def test_unparsable_planner_replies_are_sent_back_with_their_errors(serve: Serve) -> None:
    server = serve([MALFORMED, NO_CALL, plan(step("s1", args={"expression": "1+1"}))])
    out = await run(graph(), {"goal": "add"}, context(max_plan_attempts=3))
    assert out["__interrupt__"][0].value["plan"]["steps"][0]["args"] == {"expression": "1+1"}
    first, second, third = (prompt_of(b) for b in server.requests_for_tool("Plan"))
    assert "<invalid_reply>" not in first
    assert "<invalid_reply>" in second
    assert "did not parse" in second
    assert '{"steps": [{"id"' in second
    assert "has no Plan call" in third
    assert "First multiply, then add." in third
    assert "did not parse" not in third
    server.assert_done()


async def test_the_run_fails_after_max_plan_attempts_invalid_replies(serve: Serve) -> None:
    server = serve([MALFORMED, NO_CALL])
    out = await run(graph(), {"goal": "add"}, context(max_plan_attempts=2))
    assert out["status"] == "failed"
    assert "did not produce a valid plan in 2 attempt(s)" in out["reason"]
    assert "has no Plan call" in out["reason"]
    assert out.get("results") in (None, {})
    assert len(server.requests) == 2
    server.assert_done()


async def test_a_planner_call_that_hangs_past_the_timeout_fails_the_run(serve: Serve) -> None:
    server = serve([{"hang": 30, "match": PLANNER}])
    out = await run(graph(), {"goal": "add"}, context(model_timeout=0.2, model_max_retries=0))
    assert out["status"] == "failed"
    assert "the planner model call failed" in out["reason"]
    assert "Timeout" in out["reason"]
    assert len(server.requests) == 1


async def test_an_executor_call_that_hangs_fails_its_step(serve: Serve) -> None:
    server = serve(
        [
            plan(step("s1", tool=None, description="Say hello")),
            executor_turn("s1", hang=30),
        ]
    )
    ctx = context(
        review="never",
        replan_policy="never",
        step_attempts=1,
        model_timeout=0.2,
        model_max_retries=0,
    )
    out = await run(graph(), {"goal": "greet"}, ctx)
    assert out["status"] == "failed"
    assert out["results"]["s1"]["status"] == "failed"
    assert "Timeout" in out["results"]["s1"]["error"]
    assert len(server.requests) == 2
    server.assert_done()


def structured(reply: dict[str, Any], method: str) -> dict[str, Any]:
    """`reply` (one structured tool call) as `method` has the model answer it."""
    if method != "json_schema":
        return reply
    (call,) = reply["tool_calls"]
    rest = {k: v for k, v in reply.items() if k != "tool_calls"}
    return {**rest, "content": json.dumps(call["arguments"])}


@pytest.mark.parametrize("method", ["strict_tool", "tool", "json_schema"])
async def test_streamed_messages_carry_the_answer_alone(serve: Serve, method: str) -> None:
    steps = [
        step("s1", args={"expression": "12*4"}),
        step("s2", tool=None, depends_on=["s1"], description="Say the number in words"),
    ]
    words = "The result is forty eight."
    answer = 'Forty-eight: twelve times four, "48" in digits.'
    server = serve(
        [
            structured(plan(*steps), method),
            executor_turn("s2", content=words),
            structured(finish(answer), method),
        ]
    )
    g = graph()
    ctx = context(review="never", structured_output=method)
    everything = [
        part
        async for part in g.astream(
            {"goal": "12*4 in words"}, config(), context=ctx, stream_mode="messages"
        )
    ]
    # Chunks of messages being written; a node's own messages arrive whole.
    chunks = [(m, md) for m, md in everything if isinstance(m, AIMessageChunk)]
    written = [m for m, _ in everything if not isinstance(m, AIMessageChunk)]
    final = (await g.aget_state(config())).values
    # Besides the answer's tokens, the stream carries the conversation as nodes write
    # it; the end message has the chunks' id, so it is not sent a second time.
    assert [m.id for m in written] == [m.id for m in final["messages"][:-1]]
    assert final["messages"][-1].id == chunks[0][0].id
    assert final["messages"][-1].content == final["answer"]
    assert final["status"] == "completed"
    assert final["results"]["s2"]["output"] == words
    server.assert_done()
    # Every call streamed over SSE, as in any messages-mode run...
    assert all(body["stream"] is True for body in server.requests)
    assert all(body["stream_options"] == {"include_usage": True} for body in server.requests)
    if method == "json_schema":
        assert all("tools" not in b for b in server.requests_containing("You are the"))
    # ...but only the answer reached the chat: no plan JSON, step text or Replan call.
    assert final["answer"] == answer
    assert {m.id for m, _ in chunks} == {chunks[0][0].id}
    assert "".join(str(m.content) for m, _ in chunks) == answer
    assert len(chunks) > 2
    assert {md["langgraph_node"] for _, md in chunks} == {"replanner"}
    assert not any(m.tool_call_chunks for m, _ in chunks)
    shown = " ".join(str(m.content) for m, _ in everything)
    assert "expression" not in shown
    assert words not in shown

    usage = final["usage"]
    assert {role: u["calls"] for role, u in usage.items()} == {
        "planner": 1,
        "executor": 1,
        "replanner": 1,
    }
    assert sum(u["input_tokens"] for u in usage.values()) == server.usage["prompt_tokens"]
    assert sum(u["output_tokens"] for u in usage.values()) == server.usage["completion_tokens"]


async def test_a_reply_cut_midway_streams_text_that_never_becomes_the_answer(
    serve: Serve,
) -> None:
    answer = "A long answer that the connection drops halfway through, sadly."
    server = serve([plan(step("s1", args={"expression": "12*4"})), finish(answer, cut=8)])
    g = graph()
    ctx = context(review="never")
    chunks = [
        m
        async for m, _ in g.astream({"goal": "12*4"}, config(), context=ctx, stream_mode="messages")
        if isinstance(m, AIMessageChunk)
    ]
    final = (await g.aget_state(config())).values
    server.assert_done()
    # The call failed: the run says so, and the text that did stream is no answer.
    assert final["status"] == "failed"
    assert "replanner model call failed" in final["reason"]
    assert final["answer"] is None
    streamed = "".join(str(m.content) for m in chunks)
    assert streamed
    assert answer.startswith(streamed)
    assert streamed != answer
    assert {m.id for m in chunks} == {chunks[0].id}


async def test_token_usage_lands_per_role_and_is_priced(serve: Serve) -> None:
    server = serve(
        [
            plan(step("s1", tool=None), usage={"prompt_tokens": 1000, "completion_tokens": 200}),
            executor_turn(
                "s1", content="done", usage={"prompt_tokens": 400, "completion_tokens": 100}
            ),
            finish("done", usage={"prompt_tokens": 1500, "completion_tokens": 50}),
        ]
    )
    ctx = context(
        review="never",
        planner_model="openai:big-model",
        executor_model="openai:small-model",
        prices={"big-model": (2.0, 8.0), "small-model": (0.5, 1.0)},
    )
    out = await run(graph(), {"goal": "do it"}, ctx)
    assert out["status"] == "completed"
    assert out["usage"] == {
        "planner": {"calls": 1, "input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.0036},
        "executor": {"calls": 1, "input_tokens": 400, "output_tokens": 100, "cost_usd": 0.0003},
        "replanner": {"calls": 1, "input_tokens": 1500, "output_tokens": 50, "cost_usd": 0.0034},
    }
    assert out["results"]["s1"]["usage"] == out["usage"]["executor"]
    assert [b["model"] for b in server.requests] == ["big-model", "small-model", "big-model"]
    server.assert_done()


async def test_without_key_or_base_url_the_run_stops_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeOpenAI([plan(step("s1", args={"expression": "1+1"}))]) as server:
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        with pytest.raises(ModelConfigError) as caught:
            await run(graph(), {"goal": "add"}, context())
        message = str(caught.value)
        assert "\n" not in message
        assert "OPENAI_API_KEY" in message
        assert "OPENAI_BASE_URL" in message
        assert "openai:gpt-4.1" in message
        assert server.requests == []
