"""Model faults against the real ChatOpenAI client: bounded retries, counted exactly.

The rule (see `Context.model_max_retries` and `Context.step_attempts`): a model call
sends at most `1 + model_max_retries` requests, the client retrying rate limits, server
errors, timeouts and lost connections; a call that still fails is not retried by the
step, which fails and goes to the replanner. A reply that arrives but cannot be used (no
tool call, arguments that are not JSON or do not fit the tool) is asked again by the
step, `step_attempts` times at most. No step ever runs a tool from an unusable reply.
A planner or replanner reply whose body cannot be read is asked again like an invalid
plan, `max_plan_attempts` replies at most, one request each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from fake_openai import FakeOpenAI, prompt_of, tool_names
from helpers import config, get_state, invoke, step, stream
from planexec import Context, build_graph

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("both_apis")]

PLANNER = "You are the planner"
REPLANNER = "You are the replanner"
GOOD_CALL = {"tool_calls": [{"name": "multiply", "arguments": {"a": 6, "b": 7}}]}
RATE_LIMITED = {"status": 429, "headers": {"Retry-After": "0.01"}}
SERVER_ERROR = {"status": 500, "headers": {"retry-after-ms": "10"}}


class Model:
    """Answers the planner and the replanner well, and the executor with `fault(n)`."""

    def __init__(self, fault: Callable[[int], dict[str, Any]], plan: list[dict[str, Any]]):
        self.fault = fault
        self.plan = plan
        self.executor_requests = 0

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = prompt_of(body)
        if PLANNER in prompt:
            return {"tool_calls": [{"name": "Plan", "arguments": {"steps": self.plan}}]}
        if REPLANNER in prompt:
            answer = {"action": "finish", "answer": "stopped", "steps": None, "reason": "r"}
            return {"tool_calls": [{"name": "Replan", "arguments": answer}]}
        self.executor_requests += 1
        return self.fault(self.executor_requests)


@pytest.fixture
def multiplied() -> list[tuple[int, int]]:
    return []


@pytest.fixture
def serve(
    monkeypatch: pytest.MonkeyPatch, multiplied: list[tuple[int, int]]
) -> Iterator[Callable[..., tuple[FakeOpenAI, Model]]]:
    servers: list[FakeOpenAI] = []

    def start(
        fault: Callable[[int], dict[str, Any]], plan: list[dict[str, Any]] | None = None
    ) -> tuple[FakeOpenAI, Model]:
        model = Model(fault, plan or [step("s1", tool="multiply", description="6 times 7")])
        server = FakeOpenAI(responder=model).start()
        servers.append(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        return server, model

    yield start
    for server in servers:
        server.stop()


def tools(multiplied: list[tuple[int, int]]) -> list[Any]:
    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        multiplied.append((a, b))
        return a * b

    return [multiply]


def context(**overrides: Any) -> Context:
    settings: dict[str, Any] = {
        "review": "never",
        "retry_initial_interval": 0.0,
        "model_timeout": 5.0,
        "model_max_retries": 2,
        "step_attempts": 3,
    }
    return Context(**{**settings, **overrides})


async def run(
    multiplied: list[tuple[int, int]], ctx: Context, *, streamed: bool = False
) -> dict[str, Any]:
    graph = build_graph(tools=tools(multiplied), checkpointer=InMemorySaver())
    if not streamed:
        result: dict[str, Any] = await invoke(graph, {"goal": "6*7"}, config(), context=ctx)
        return result
    # Streaming messages makes the chat model stream its reply.
    async for _ in stream(
        graph, {"goal": "6*7"}, config(), context=ctx, stream_mode=["updates", "messages"]
    ):
        pass
    return dict((await get_state(graph, config())).values)


def executor_requests(server: FakeOpenAI) -> list[dict[str, Any]]:
    return [b for b in server.requests if "multiply" in tool_names(b)]


def assert_failed_then_replanned(out: dict[str, Any], server: FakeOpenAI, error: str) -> None:
    result = out["results"]["s1"]
    assert result["status"] == "failed"
    assert error in result["error"]
    # A clean failure: the replanner was asked, saw the failure, and ended the run.
    assert out["status"] == "completed"
    assert out["answer"] == "stopped"
    replanner = server.requests_for_tool("Replan")
    assert len(replanner) == 1
    assert 'step="s1" status="failed"' in prompt_of(replanner[0])


@pytest.mark.parametrize(
    ("fault", "error"),
    [(RATE_LIMITED, "RateLimitError"), (SERVER_ERROR, "Error code: 500")],
    ids=["429", "500"],
)
async def test_a_failing_model_call_is_retried_by_the_client_only(
    serve: Callable[..., tuple[FakeOpenAI, Model]],
    multiplied: list[tuple[int, int]],
    fault: dict[str, Any],
    error: str,
) -> None:
    server, _ = serve(lambda n: fault)
    ctx = context()
    out = await run(multiplied, ctx)
    # 1 + model_max_retries requests, not multiplied by step_attempts.
    assert len(executor_requests(server)) == 1 + ctx.model_max_retries == 3
    assert out["results"]["s1"]["attempts"] == 1
    assert_failed_then_replanned(out, server, error)
    assert multiplied == []


async def test_the_client_honours_retry_after_and_then_succeeds(
    serve: Callable[..., tuple[FakeOpenAI, Model]], multiplied: list[tuple[int, int]]
) -> None:
    server, _ = serve(lambda n: RATE_LIMITED if n == 1 else GOOD_CALL)
    out = await run(multiplied, context())
    assert len(executor_requests(server)) == 2
    assert (out["results"]["s1"]["status"], out["results"]["s1"]["output"]) == ("done", 42)
    assert multiplied == [(6, 7)]


async def test_a_call_that_hangs_past_the_timeout_is_retried_by_the_client_then_fails(
    serve: Callable[..., tuple[FakeOpenAI, Model]], multiplied: list[tuple[int, int]]
) -> None:
    server, _ = serve(lambda n: {"hang": 30, **GOOD_CALL})
    ctx = context(model_timeout=0.3, model_max_retries=1)
    out = await run(multiplied, ctx)
    assert len(executor_requests(server)) == 1 + ctx.model_max_retries == 2
    assert_failed_then_replanned(out, server, "Timeout")
    assert multiplied == []


async def test_a_reply_that_is_not_json_fails_the_call_without_a_step_retry(
    serve: Callable[..., tuple[FakeOpenAI, Model]], multiplied: list[tuple[int, int]]
) -> None:
    server, _ = serve(lambda n: {"raw": "<html>502 bad gateway</html>"})
    out = await run(multiplied, context())
    # The client does not retry a 200 it cannot read; the step does not either.
    assert len(executor_requests(server)) == 1
    assert_failed_then_replanned(out, server, "the executor model call failed")
    assert multiplied == []


async def test_a_stream_cut_mid_reply_fails_the_call_without_running_the_tool(
    serve: Callable[..., tuple[FakeOpenAI, Model]], multiplied: list[tuple[int, int]]
) -> None:
    server, _ = serve(lambda n: {"cut": 2, **GOOD_CALL})
    out = await run(multiplied, context(), streamed=True)
    assert all(b.get("stream") for b in executor_requests(server))
    # A stream broken after the request was answered is not retried by the client.
    assert len(executor_requests(server)) == 1
    assert_failed_then_replanned(out, server, "the executor model call failed")
    assert multiplied == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"tool_calls": [{"name": "multiply", "arguments": '{"a": 6, "b"'}]}, "did not call"),
        (
            {"tool_calls": [{"name": "multiply", "arguments": {"a": "six", "b": 7}}]},
            "argument 'a' of tool 'multiply'",
        ),
        ({"content": "6 times 7 is 42"}, "did not call multiply"),
    ],
    ids=["arguments-not-json", "arguments-invalid", "no-tool-call"],
)
async def test_an_unusable_reply_is_asked_again_step_attempts_times(
    serve: Callable[..., tuple[FakeOpenAI, Model]],
    multiplied: list[tuple[int, int]],
    reply: dict[str, Any],
    error: str,
) -> None:
    server, _ = serve(lambda n: reply)
    ctx = context()
    out = await run(multiplied, ctx)
    # One request per attempt: the client has nothing to retry.
    assert len(executor_requests(server)) == ctx.step_attempts == 3
    assert out["results"]["s1"]["attempts"] == 3
    assert_failed_then_replanned(out, server, error)
    # Never a step run from an unusable reply.
    assert multiplied == []


async def test_an_unusable_reply_then_a_good_one_runs_the_good_call_once(
    serve: Callable[..., tuple[FakeOpenAI, Model]], multiplied: list[tuple[int, int]]
) -> None:
    bad = {"tool_calls": [{"name": "multiply", "arguments": '{"a": 6'}]}
    server, _ = serve(lambda n: bad if n == 1 else GOOD_CALL)
    out = await run(multiplied, context())
    assert len(executor_requests(server)) == 2
    assert (out["results"]["s1"]["status"], out["results"]["s1"]["attempts"]) == ("done", 2)
    assert multiplied == [(6, 7)]


async def test_the_worst_case_is_step_attempts_times_one_plus_retries_requests(
    serve: Callable[..., tuple[FakeOpenAI, Model]], multiplied: list[tuple[int, int]]
) -> None:
    # Each attempt's call is rate limited twice, then answered with an unusable reply.
    bad = {"content": "no"}
    server, _ = serve(lambda n: bad if n % 3 == 0 else RATE_LIMITED)
    ctx = context()
    out = await run(multiplied, ctx)
    assert len(executor_requests(server)) == ctx.step_attempts * (1 + ctx.model_max_retries)
    assert out["results"]["s1"]["status"] == "failed"
    assert multiplied == []


async def test_a_planner_call_that_keeps_failing_fails_the_run_after_the_client_retries(
    serve: Callable[..., tuple[FakeOpenAI, Model]],
    multiplied: list[tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeOpenAI(responder=lambda body: SERVER_ERROR) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        ctx = context()
        out = await run(multiplied, ctx)
        assert len(server.requests) == 1 + ctx.model_max_retries
    assert out["status"] == "failed"
    assert "the planner model call failed" in out["reason"]
    assert out["results"] == {}


NOT_JSON = {"raw": "<html>502 bad gateway</html>"}


def planning(faults: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Answers well, except the planner's or replanner's requests listed in `faults`
    (e.g. ["planner", "replanner"]: the first of each), which get a body that is not JSON."""
    good = Model(lambda n: GOOD_CALL, [step("s1", tool="multiply", args={"a": 6, "b": 7})])
    pending = list(faults)

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        prompt = prompt_of(body)
        role = "planner" if PLANNER in prompt else "replanner" if REPLANNER in prompt else None
        if role is not None and role in pending:
            pending.remove(role)
            return NOT_JSON
        return good(body)

    return respond


@pytest.mark.parametrize("role", ["planner", "replanner"])
async def test_an_unreadable_plan_reply_is_asked_again_once_per_reply(
    role: str, monkeypatch: pytest.MonkeyPatch, multiplied: list[tuple[int, int]]
) -> None:
    with FakeOpenAI(responder=planning([role])) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        out = await run(multiplied, context())
        asked = server.requests_for_tool("Plan" if role == "planner" else "Replan")
    assert out["status"] == "completed"
    assert multiplied == [(6, 7)]
    # One request per reply: the client does not retry a body it cannot read, and the
    # second request tells the model why it is asked again.
    assert len(asked) == 2
    assert "could not be read (JSONDecodeError" in prompt_of(asked[1])
    assert "could not be read" not in prompt_of(asked[0])


async def test_a_planner_that_keeps_replying_garbage_fails_after_max_plan_attempts(
    monkeypatch: pytest.MonkeyPatch, multiplied: list[tuple[int, int]]
) -> None:
    with FakeOpenAI(responder=lambda body: NOT_JSON) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        ctx = context(max_plan_attempts=3)
        out = await run(multiplied, ctx)
        assert len(server.requests) == ctx.max_plan_attempts
    assert out["status"] == "failed"
    assert "the planner did not produce a valid plan in 3 attempt(s)" in out["reason"]
    assert "could not be read" in out["reason"]
    assert multiplied == []


# --- every call counts, whether or not its reply could be used ---------------------------


@pytest.mark.parametrize("role", ["planner", "replanner"])
async def test_unreadable_replies_count_in_usage_and_against_the_call_budget(
    role: str, monkeypatch: pytest.MonkeyPatch, multiplied: list[tuple[int, int]]
) -> None:
    with FakeOpenAI(responder=planning([role, role])) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        out = await run(multiplied, context(max_model_calls=3))
        requests = len(server.requests)
    # Two unreadable replies and one good one use the three calls allowed.
    assert requests == 3
    assert out["status"] == "budget_exhausted"
    assert "3 calls used of 3 allowed" in out["reason"]
    assert sum(u["calls"] for u in out["usage"].values()) == requests
    assert out["usage"][role]["calls"] == (2 if role == "replanner" else 3)


@pytest.mark.parametrize("role", ["planner", "replanner"])
async def test_a_call_that_failed_after_its_retries_counts_once(
    role: str, monkeypatch: pytest.MonkeyPatch, multiplied: list[tuple[int, int]]
) -> None:
    marker = PLANNER if role == "planner" else REPLANNER
    good = planning([])

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        return SERVER_ERROR if marker in prompt_of(body) else good(body)

    with FakeOpenAI(responder=respond) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        ctx = context()
        out = await run(multiplied, ctx)
        failed = len(server.requests_containing(marker))
    assert failed == 1 + ctx.model_max_retries
    assert out["status"] == "failed"
    assert out["usage"][role]["calls"] == 1
    assert out["usage"][role]["input_tokens"] == 0
