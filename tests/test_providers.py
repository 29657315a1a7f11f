"""Model providers: `provider:model` strings, missing packages, structured output per method.

The providers' real LangChain integrations build their real requests; a local server
(tests/fake_providers.py, tests/fake_openai.py) records them and answers as the provider
would, so each method's request is checked against that provider's schema rules.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_aws import ChatBedrockConverse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from fake_openai import FakeOpenAI, strict_schema_errors
from fake_providers import (
    FakeProviders,
    anthropic_strict_errors,
    gemini_schema_errors,
    ollama_format_errors,
)
from planexec import Context, ModelConfigError, Plan, Replan, ScriptedChatModel, build_graph
from planexec.cli.session import check_models
from planexec.errors import PlanexecError
from planexec.models import (
    PROVIDERS,
    chat_model,
    default_model_factory,
    structured_method,
    structured_reply,
)
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.tools import calculator
from planexec.wire import parse_reply, strict_schema

MESSAGES = [SystemMessage("plan it"), HumanMessage("<goal>add</goal>")]
STEP_TEXT_ARGS = {
    "id": "s1",
    "description": "Add",
    "tool": "calculator",
    "args": '{"expression": "1+1"}',
    "depends_on": [],
}
PLAN_ARGS = {"steps": [STEP_TEXT_ARGS], "answer": None}
REPLAN_ARGS = {"action": "replan", "answer": None, "steps": [STEP_TEXT_ARGS], "reason": "more"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials botocore signs with; nothing leaves the machine."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def server() -> Iterator[FakeProviders]:
    with FakeProviders() as fake:
        yield fake


def _model(provider: str, url: str) -> BaseChatModel:
    if provider == "anthropic":
        return ChatAnthropic(model="claude-sonnet-4-5", api_key="x", base_url=url, max_retries=0)
    if provider == "ollama":
        return ChatOllama(model="qwen2.5:7b", base_url=url)
    if provider == "gemini":
        return ChatGoogleGenerativeAI(
            model="gemini-2.5-flash", api_key="x", base_url=url, max_retries=0
        )
    return ChatBedrockConverse(
        model="anthropic.claude-sonnet-4-5", region_name="us-east-1", endpoint_url=url
    )


# --- model strings -----------------------------------------------------------------------


def test_each_provider_string_makes_its_model_with_the_run_settings(
    monkeypatch: pytest.MonkeyPatch, aws: None
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("GOOGLE_API_KEY", "g-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    made = {
        spec: chat_model(spec, timeout=7.5, max_retries=4)
        for spec in (
            "anthropic:claude-sonnet-4-5",
            "ollama:qwen2.5:7b",
            "google_genai:gemini-2.5-flash",
            "bedrock_converse:anthropic.claude-sonnet-4-5",
        )
    }
    anthropic = made["anthropic:claude-sonnet-4-5"]
    assert isinstance(anthropic, ChatAnthropic)
    assert (anthropic.model, anthropic.default_request_timeout, anthropic.max_retries) == (
        "claude-sonnet-4-5",
        7.5,
        4,
    )
    ollama = made["ollama:qwen2.5:7b"]
    assert isinstance(ollama, ChatOllama)
    # The name keeps its own colon; the timeout goes to Ollama's HTTP client.
    assert ollama.model == "qwen2.5:7b"
    assert ollama.client_kwargs == {"timeout": 7.5}
    gemini = made["google_genai:gemini-2.5-flash"]
    assert isinstance(gemini, ChatGoogleGenerativeAI)
    assert (gemini.timeout, gemini.max_retries) == (7.5, 4)
    bedrock = made["bedrock_converse:anthropic.claude-sonnet-4-5"]
    assert isinstance(bedrock, ChatBedrockConverse)
    # botocore takes whole seconds: the timeout is rounded up, never down to less.
    assert (bedrock.model_id, bedrock.timeout, bedrock.max_retries) == (
        "anthropic.claude-sonnet-4-5",
        8,
        4,
    )
    for model in made.values():
        assert model.temperature == 0  # type: ignore[attr-defined]


def test_openai_still_reads_its_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    model = chat_model("openai:gpt-4.1", timeout=3, max_retries=1)
    assert isinstance(model, ChatOpenAI)
    assert str(model.openai_api_base) == "http://127.0.0.1:9/v1"
    assert (model.model_name, model.request_timeout, model.max_retries) == ("gpt-4.1", 3, 1)


@pytest.mark.parametrize(
    ("provider", "package", "extra"),
    [
        ("anthropic", "langchain-anthropic", "anthropic"),
        ("ollama", "langchain-ollama", "ollama"),
        ("google_genai", "langchain-google-genai", "google"),
        ("bedrock_converse", "langchain-aws", "bedrock"),
    ],
)
def test_a_missing_provider_package_is_one_line_naming_it_and_the_extra(
    monkeypatch: pytest.MonkeyPatch, provider: str, package: str, extra: str
) -> None:
    module = package.replace("-", "_")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    with pytest.raises(ModelConfigError) as caught:
        chat_model(f"{provider}:some-model", timeout=5, max_retries=0)
    message = str(caught.value)
    assert "\n" not in message
    assert package in message
    assert f"planexec[{extra}]" in message
    assert f"{provider}:some-model" in message


def test_a_provider_without_an_extra_names_the_package_langchain_asks_for() -> None:
    assert importlib.util.find_spec("langchain_groq") is None
    with pytest.raises(ModelConfigError) as caught:
        chat_model("groq:llama-3.3-70b", timeout=5, max_retries=0)
    assert "\n" not in str(caught.value)
    assert "pip install langchain-groq" in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("nosuch:model", "unknown model provider 'nosuch'"),
        ("gpt-4.1", "is not of the form '<provider>:<model name>'"),
        ("anthropic:", "is not of the form"),
        ("google_genai:gemini-2.5-flash", "API key required"),
        ("bedrock_converse:anthropic.claude", "region"),
    ],
)
def test_a_model_that_cannot_be_made_is_one_clear_line(
    spec: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ModelConfigError) as caught:
        chat_model(spec, timeout=5, max_retries=0)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_package_stops_the_cli_check_and_the_run_before_any_model_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "langchain_anthropic" else real(name, *a),
    )
    context = Context(
        planner_model="anthropic:claude-sonnet-4-5", executor_model="openai:x", review="never"
    )
    with pytest.raises(PlanexecError, match="langchain-anthropic"):
        check_models(context, default_model_factory)
    executor = ScriptedChatModel([])
    graph = build_graph(tools=[calculator], executor=executor)
    with pytest.raises(ModelConfigError, match=r"planexec\[anthropic\]"):
        graph.invoke({"goal": "add"}, context=context)
    assert executor.calls == []


# --- the method per provider ---------------------------------------------------------------


def test_each_provider_has_its_method_and_the_context_can_choose(aws: None) -> None:
    url = "http://127.0.0.1:9"
    assert structured_method(ChatOpenAI(model="gpt-4.1", api_key="x")) == "strict_tool"
    assert structured_method(_model("anthropic", url)) == "strict_tool"
    assert structured_method(_model("ollama", url)) == "json_schema"
    assert structured_method(_model("gemini", url)) == "json_schema"
    assert structured_method(_model("bedrock", url)) == "tool"
    assert structured_method(ScriptedChatModel()) == "tool"
    chosen = Context(structured_output="tool")
    assert structured_method(ChatOpenAI(model="gpt-4.1", api_key="x"), chosen) == "tool"
    assert {p.method for p in PROVIDERS.values()} == {"strict_tool", "json_schema", "tool"}


# --- the strict wire form ------------------------------------------------------------------


@pytest.mark.parametrize("schema", [Plan, Replan])
def test_the_strict_form_is_closed_inlined_and_keeps_args_representable(
    schema: type[BaseModel],
) -> None:
    wire = strict_schema(schema)
    text = json.dumps(wire)
    assert "$ref" not in text
    assert "pattern" not in text
    assert "default" not in text
    body = {"tools": [{"function": {"name": schema.__name__, "strict": True, "parameters": wire}}]}
    assert strict_schema_errors(body) == []
    # The loose pydantic schema is what strict mode refuses: the checks can fail.
    loose = {"tools": [{"function": {"strict": True, "parameters": schema.model_json_schema()}}]}
    assert strict_schema_errors(loose) != []


@pytest.mark.parametrize(
    "args",
    [
        {"expression": "1+1"},
        {"path": "a/b.txt", "lines": [1, 2], "options": {"deep": {"x": None}}},
        {"text": 'quote " and {{s0}} and unicode é'},
        {},
    ],
)
def test_any_args_object_survives_the_trip_as_text_or_as_an_object(args: dict[str, Any]) -> None:
    step = {"id": "s1", "description": "d", "tool": "t", "depends_on": []}
    as_text = parse_reply(Plan, {"steps": [{**step, "args": json.dumps(args)}], "answer": None})
    as_object = parse_reply(Plan, {"steps": [{**step, "args": args}]})
    assert as_text.steps[0].args == args
    assert as_object.steps[0].args == args
    assert parse_reply(Plan, {"steps": [{**step, "args": "null"}]}).steps[0].args is None


@pytest.mark.parametrize("text", ["[1, 2]", "not json", '"a string"'])
def test_args_text_that_is_not_an_object_is_refused(text: str) -> None:
    step = {"id": "s1", "description": "d", "tool": "t", "args": text, "depends_on": []}
    with pytest.raises(ValueError, match="args"):
        parse_reply(Plan, {"steps": [step]})


# --- each method's request, checked against each provider's rules ------------------------


@pytest.mark.parametrize(("schema", "args"), [(Plan, PLAN_ARGS), (Replan, REPLAN_ARGS)])
async def test_openai_strict_tool_call(schema: type[BaseModel], args: dict[str, Any]) -> None:
    reply = {"tool_calls": [{"name": schema.__name__, "arguments": args}]}
    with FakeOpenAI([reply], strict_schemas=True) as server:
        model = ChatOpenAI(model="gpt-4.1", api_key="x", base_url=server.url, max_retries=0)
        got = await structured_reply(model, schema, MESSAGES, method=structured_method(model))
        [body] = server.requests
    assert got.errors == []
    assert got.parsed is not None
    assert got.parsed.steps[0].args == {"expression": "1+1"}  # type: ignore[attr-defined]
    [tool] = body["tools"]
    assert tool["function"]["strict"] is True
    assert body["tool_choice"] == {"type": "function", "function": {"name": schema.__name__}}
    assert strict_schema_errors(body) == []


async def test_openai_json_schema_reply() -> None:
    with FakeOpenAI([{"content": json.dumps(PLAN_ARGS)}], strict_schemas=True) as server:
        model = ChatOpenAI(model="gpt-4.1", api_key="x", base_url=server.url, max_retries=0)
        got = await structured_reply(model, Plan, MESSAGES, method="json_schema")
        [body] = server.requests
    assert got.parsed is not None
    assert got.parsed.steps[0].tool == "calculator"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert "tools" not in body
    assert strict_schema_errors(body) == []


@pytest.mark.parametrize(("schema", "args"), [(Plan, PLAN_ARGS), (Replan, REPLAN_ARGS)])
async def test_anthropic_strict_tool_call(
    server: FakeProviders, schema: type[BaseModel], args: dict[str, Any]
) -> None:
    server.add({"tool_calls": [{"name": schema.__name__, "args": args}]})
    model = _model("anthropic", server.url)
    got = await structured_reply(model, schema, MESSAGES, method=structured_method(model))
    assert got.errors == []
    assert got.parsed.steps[0].args == {"expression": "1+1"}  # type: ignore[union-attr]
    [request] = server.requests
    [tool] = request.body["tools"]
    assert request.body["tool_choice"] == {"type": "tool", "name": schema.__name__}
    assert anthropic_strict_errors(tool) == []
    loose = {"name": "x", "strict": True, "input_schema": schema.model_json_schema()}
    assert anthropic_strict_errors(loose) != []


@pytest.mark.parametrize(("schema", "args"), [(Plan, PLAN_ARGS), (Replan, REPLAN_ARGS)])
async def test_gemini_json_schema(
    server: FakeProviders, schema: type[BaseModel], args: dict[str, Any]
) -> None:
    server.add({"tool_calls": [{"name": schema.__name__, "args": args}]})
    model = _model("gemini", server.url)
    got = await structured_reply(model, schema, MESSAGES, method=structured_method(model))
    assert got.errors == []
    assert got.parsed.steps[0].args == {"expression": "1+1"}  # type: ignore[union-attr]
    [request] = server.requests
    config = request.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert "tools" not in request.body
    assert gemini_schema_errors(config["responseJsonSchema"]) == []
    assert gemini_schema_errors(schema.model_json_schema()) != []


@pytest.mark.parametrize(("schema", "args"), [(Plan, PLAN_ARGS), (Replan, REPLAN_ARGS)])
async def test_ollama_json_schema(
    server: FakeProviders, schema: type[BaseModel], args: dict[str, Any]
) -> None:
    server.add({"tool_calls": [{"name": schema.__name__, "args": args}]})
    model = _model("ollama", server.url)
    got = await structured_reply(model, schema, MESSAGES, method=structured_method(model))
    assert got.errors == []
    assert got.parsed.steps[0].args == {"expression": "1+1"}  # type: ignore[union-attr]
    [request] = server.requests
    assert not request.body.get("tools")
    assert ollama_format_errors(request.body["format"]) == []
    assert ollama_format_errors(schema.model_json_schema()) != []


async def test_bedrock_forced_tool_call_keeps_args_an_object(
    server: FakeProviders, aws: None
) -> None:
    plan = {**PLAN_ARGS, "steps": [{**STEP_TEXT_ARGS, "args": {"expression": "1+1"}}]}
    server.add({"tool_calls": [{"name": "Plan", "args": plan}]})
    model = _model("bedrock", server.url)
    got = await structured_reply(model, Plan, MESSAGES, method=structured_method(model))
    assert got.errors == []
    assert got.parsed is not None
    assert got.parsed.steps[0].args == {"expression": "1+1"}
    [request] = server.requests
    [tool] = request.body["toolConfig"]["tools"]
    assert request.body["toolConfig"]["toolChoice"] == {"tool": {"name": "Plan"}}
    assert tool["toolSpec"]["name"] == "Plan"
    assert "strict" not in tool["toolSpec"]
    # A plain tool call: `args` stays a free-form object on the wire.
    step = tool["toolSpec"]["inputSchema"]["json"]["properties"]["steps"]["items"]
    assert step["properties"]["args"]["type"] == "object"
    assert step["properties"]["args"]["additionalProperties"] is True


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "ollama"])
async def test_a_reply_that_does_not_fit_comes_back_as_errors(
    server: FakeProviders, provider: str
) -> None:
    bad = {"steps": [{"id": "s1", "tool": None, "args": None, "depends_on": []}], "answer": None}
    server.add({"tool_calls": [{"name": "Plan", "args": bad}]})
    got = await structured_reply(_model(provider, server.url), Plan, MESSAGES, method="json_schema")
    assert got.parsed is None
    assert any("description" in error for error in got.errors)


# --- a whole run with a provider per role ------------------------------------------------


async def test_a_run_with_anthropic_planning_ollama_executing_gemini_replanning(
    server: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every role from a model string, each through its provider's real client."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "x")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    monkeypatch.setenv("GOOGLE_API_KEY", "x")
    steps = [
        {"id": "s1", "description": "Add", "tool": "calculator", "args": None, "depends_on": []}
    ]
    server.add(
        *[
            plan_reply(steps),
            tool_call_reply("calculator", {"expression": "2+3"}),
            replan_reply("finish", answer="5"),
        ]
    )

    def factory(spec: str, context: Context) -> BaseChatModel:
        # Gemini's base URL has no environment variable: the factory passes it.
        if spec.startswith("google_genai:"):
            return ChatGoogleGenerativeAI(
                model=spec.split(":", 1)[1], api_key="x", base_url=server.url
            )
        return default_model_factory(spec, context)

    graph = build_graph(tools=[calculator], checkpointer=InMemorySaver(), model_factory=factory)
    context = Context(
        review="never",
        planner_model="anthropic:claude-sonnet-4-5",
        executor_model="ollama:qwen2.5:7b",
        replanner_model="google_genai:gemini-2.5-flash",
        prices={"claude-sonnet-4-5": (3.0, 15.0), "qwen2.5:7b": (0.0, 0.0)},
    )
    done = await graph.ainvoke(
        {"goal": "add 2 and 3"}, {"configurable": {"thread_id": "t"}}, context=context
    )
    assert done["status"] == "completed", done.get("reason")
    assert done["answer"] == "5"
    assert done["results"]["s1"]["output"] == 5
    assert [r.provider for r in server.requests] == ["anthropic", "ollama", "gemini"]
    assert done["usage"]["planner"]["input_tokens"] == 11
    # Priced by the model's name without its provider: 11 in and 7 out at $3 / $15 per M.
    assert done["usage"]["planner"]["cost_usd"] == pytest.approx((11 * 3.0 + 7 * 15.0) / 1e6)
    assert done["usage"]["executor"]["calls"] == 1
    # The executor was offered the one tool of its step.
    [offered] = server.requests[1].body["tools"]
    assert offered["function"]["name"] == "calculator"


def test_anthropic_and_ollama_models_serve_one_event_loop_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Their async clients keep pooled connections of the loop that opened them; each loop
    gets a copy with its own, so successive `asyncio.run()` calls all work."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "x")
    steps = [
        {"id": "s1", "description": "Add", "tool": "calculator", "args": None, "depends_on": []}
    ]
    with FakeProviders(keep_alive=True) as fake:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("OLLAMA_HOST", fake.url)
        graph = build_graph(tools=[calculator])
        context = Context(
            review="never",
            planner_model="anthropic:claude-sonnet-4-5",
            executor_model="ollama:qwen2.5:7b",
        )
        for run in range(3):
            fake.add(
                plan_reply(steps),
                tool_call_reply("calculator", {"expression": f"{run}+1"}),
                replan_reply("finish", answer=str(run + 1)),
            )
            done = asyncio.run(graph.ainvoke({"goal": "add"}, context=context))
            assert done["status"] == "completed", done.get("reason")
            assert done["answer"] == str(run + 1)
    assert len(fake.requests) == 9
