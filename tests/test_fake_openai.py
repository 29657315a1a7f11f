"""The fake OpenAI server's own behaviour, seen through raw HTTP and the real client."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from langchain_core.exceptions import ModelTimeoutError
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import OpenAIAPIError, OpenAIInvalidRequestError

from fake_openai import FakeOpenAI, prompt_of, strict_schema_errors
from planexec.plan import Plan
from planexec.scripted import plan_reply, tool_call_reply

pytestmark = pytest.mark.integration


def client(server: FakeOpenAI, **options: Any) -> ChatOpenAI:
    settings: dict[str, Any] = {
        "model": "gpt-4.1-mini",
        "base_url": server.url,
        "api_key": "test-key",
        "timeout": 5,
        "max_retries": 0,
        "use_responses_api": False,
    }
    return ChatOpenAI(**{**settings, **options})


def post(url: str, body: Any, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


def test_replies_without_match_go_in_order_and_match_finds_its_request() -> None:
    replies = [
        {"match": "beta", "content": "for beta"},
        {"content": "first"},
        {"content": "second"},
    ]
    with FakeOpenAI(replies) as server:
        model = client(server)
        assert model.invoke("alpha").content == "first"
        assert model.invoke("here is beta").content == "for beta"
        assert model.invoke("gamma").content == "second"
        server.assert_done()
        assert [prompt_of(body) for body in server.requests] == ["alpha", "here is beta", "gamma"]


def test_an_earlier_unmatched_reply_is_taken_before_a_later_matching_one() -> None:
    # The scan is in list order, as in planexec.scripted: put matched replies first
    # when a request could take either.
    with FakeOpenAI([{"content": "plain"}, {"match": "x", "content": "matched"}]) as server:
        model = client(server)
        assert model.invoke("x").content == "plain"
        assert model.invoke("x").content == "matched"


def test_unknown_paths_are_404_and_not_recorded_as_requests() -> None:
    with FakeOpenAI([{"content": "unused"}]) as server:
        status, _, body = post(server.url + "/models", None, method="GET")
        assert status == 404
        assert "no route" in json.loads(body)["error"]["message"]
        status, _, _ = post(server.url + "/completions", {"prompt": "hi"})
        assert status == 404
        status, _, _ = post(server.url + "/chat/completions", None, method="GET")
        assert status == 404
        assert server.not_found == ["/v1/models", "/v1/completions", "/v1/chat/completions"]
        assert server.requests == []
        assert server.remaining == 1


def test_an_exhausted_script_fails_loudly_without_client_retries() -> None:
    with FakeOpenAI([{"content": "only one"}]) as server:
        model = client(server, max_retries=2)
        assert model.invoke("one").content == "only one"
        with pytest.raises(OpenAIAPIError, match="no scripted reply left"):
            model.invoke("two")
        assert len(server.requests) == 2
        assert [prompt_of(body) for body in server.unanswered] == ["two"]
        with pytest.raises(AssertionError, match="1 request"):
            server.assert_done()


def test_assert_done_reports_replies_never_used() -> None:
    with FakeOpenAI([{"content": "a"}, {"content": "b"}]) as server:
        client(server).invoke("hi")
        with pytest.raises(AssertionError, match="1 scripted reply"):
            server.assert_done()


def test_plain_reply_usage_defaults_to_a_quarter_of_the_characters() -> None:
    with FakeOpenAI([{"content": "twelve chars"}]) as server:
        reply = client(server).invoke("sixteen chars!!!")
        assert reply.usage_metadata is not None
        assert reply.usage_metadata["input_tokens"] == 4
        assert reply.usage_metadata["output_tokens"] == 3
        assert server.usage == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
        assert server.request_headers[0]["authorization"] == "Bearer test-key"


def test_tool_calls_with_dict_or_malformed_arguments() -> None:
    replies = [
        {"tool_calls": [{"name": "Plan", "arguments": {"steps": []}, "id": "call_a"}]},
        {"tool_calls": [{"name": "Plan", "arguments": '{"steps": ['}]},
    ]
    with FakeOpenAI(replies) as server:
        model = client(server).bind_tools([Plan], tool_choice="Plan")
        good = model.invoke("plan")
        assert good.tool_calls == [
            {"name": "Plan", "args": {"steps": []}, "id": "call_a", "type": "tool_call"}
        ]
        bad = model.invoke("plan again")
        assert bad.tool_calls == []
        assert bad.invalid_tool_calls[0]["args"] == '{"steps": ['
        assert server.requests_for_tool("Plan") == server.requests


def test_streamed_content_arrives_in_pieces_with_a_usage_chunk() -> None:
    with FakeOpenAI(
        [{"content": "one two three", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}]
    ) as server:
        chunks = list(client(server, stream_usage=True).stream("count"))
        pieces = [chunk.content for chunk in chunks if chunk.content]
        assert pieces == ["one", " two", " three"]
        total = chunks[0]
        for chunk in chunks[1:]:
            total = total + chunk
        assert isinstance(total, AIMessageChunk)
        assert total.usage_metadata is not None
        assert total.usage_metadata["input_tokens"] == 7
        assert total.usage_metadata["output_tokens"] == 3
        assert server.requests[0]["stream"] is True
        assert server.requests[0]["stream_options"] == {"include_usage": True}


def test_raw_stream_ends_with_done_and_sends_usage_only_when_asked() -> None:
    with FakeOpenAI([{"content": "a b"}, {"content": "a b"}]) as server:
        url = server.url + "/chat/completions"
        _, headers, body = post(url, chat("x", stream=True))
        assert headers["Content-Type"] == "text/event-stream"
        events = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        parsed = [json.loads(e) for e in events[:-1]]
        assert all(event["choices"] for event in parsed)
        assert parsed[-1]["choices"][0]["finish_reason"] == "stop"
        _, _, body = post(url, chat("x", stream=True, stream_options={"include_usage": True}))
        events = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
        last = json.loads(events[-2])
        assert last["choices"] == []
        assert last["usage"]["completion_tokens"] == len("a b") // 4


def test_streamed_tool_call_deltas_aggregate_into_the_call() -> None:
    steps = [{"id": "s1", "description": "a step long enough to span several deltas"}]
    with FakeOpenAI([{"tool_calls": [{"name": "Plan", "arguments": {"steps": steps}}]}]) as server:
        chunks = list(client(server).bind_tools([Plan], tool_choice="Plan").stream("plan"))
        assert len(chunks) > 5
        total = chunks[0]
        for chunk in chunks[1:]:
            total = total + chunk
        assert isinstance(total, AIMessageChunk)
        assert [call["args"] for call in total.tool_calls] == [{"steps": steps}]


def test_error_status_with_retry_after_is_retried_by_the_client() -> None:
    replies = [
        {"status": 429, "headers": {"Retry-After": "0.01"}, "body": {"error": {"message": "slow"}}},
        {"content": "after the wait"},
    ]
    with FakeOpenAI(replies) as server:
        assert client(server, max_retries=1).invoke("hi").content == "after the wait"
        assert len(server.requests) == 2
        assert server.requests[1]["messages"] == server.requests[0]["messages"]


def test_a_body_that_is_not_json_reaches_the_client_as_a_decode_error() -> None:
    with FakeOpenAI([{"raw": "<html>proxy error</html>"}]) as server:
        with pytest.raises(ValueError, match="Expecting value"):
            client(server).invoke("hi")
        status, _, _ = post(server.url + "/chat/completions", "not an object")
        assert status == 400


def test_strict_schema_that_openai_would_refuse_gets_400() -> None:
    free_form = {
        "type": "function",
        "function": {
            "name": "Plan",
            "description": "A plan.",
            "parameters": Plan.model_json_schema(),
            "strict": True,
        },
    }
    with FakeOpenAI([{"content": "ok"}]) as server:
        with pytest.raises(OpenAIInvalidRequestError, match="additionalProperties"):
            client(server).bind_tools([free_form], tool_choice="Plan").invoke("plan")
        assert len(server.rejected) == 1
        assert server.remaining == 1


def test_strict_response_format_is_checked_and_conforming_schemas_pass() -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    tight = {**loose, "required": ["a", "b"], "additionalProperties": False}

    def response_format(schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "json_schema",
            "json_schema": {"name": "AB", "strict": True, "schema": schema},
        }

    assert strict_schema_errors({"response_format": response_format(tight)}) == []
    assert len(strict_schema_errors({"response_format": response_format(loose)})) == 2
    with FakeOpenAI([{"content": '{"a": "x", "b": 1}'}]) as server:
        url = server.url + "/chat/completions"
        status, _, _ = post(url, chat("x", response_format=response_format(loose)))
        assert status == 400
        status, _, body = post(url, chat("x", response_format=response_format(tight)))
        assert status == 200
        assert json.loads(body)["choices"][0]["message"]["content"] == '{"a": "x", "b": 1}'


def test_non_strict_schemas_and_disabled_checks_are_accepted() -> None:
    with FakeOpenAI([{"content": "one"}, {"content": "two"}], strict_schemas=False) as server:
        tool = {
            "type": "function",
            "function": {"name": "Plan", "parameters": Plan.model_json_schema(), "strict": True},
        }
        assert client(server).bind_tools([tool]).invoke("x").content == "one"
        assert client(server).bind_tools([Plan]).invoke("y").content == "two"
        assert server.rejected == []


def test_responder_makes_replies_from_the_request() -> None:
    def responder(body: dict[str, Any]) -> dict[str, Any] | None:
        text = prompt_of(body)
        return None if text == "stop" else {"content": text.upper()}

    with FakeOpenAI(responder=responder) as server:
        model = client(server)
        assert model.invoke("shout").content == "SHOUT"
        with pytest.raises(OpenAIAPIError, match="responder gave none"):
            model.invoke("stop")
        assert len(server.unanswered) == 1


def test_a_hanging_reply_times_the_client_out_and_does_not_delay_stopping() -> None:
    server = FakeOpenAI([{"hang": 30, "content": "too late"}]).start()
    try:
        with pytest.raises(ModelTimeoutError):
            client(server, timeout=0.2).invoke("hi")
    finally:
        began = time.monotonic()
        server.stop()
    assert time.monotonic() - began < 5
    assert len(server.requests) == 1


def test_replies_in_planexec_scripted_form_are_served_as_they_are() -> None:
    steps = [{"id": "s1", "description": "d", "tool": None, "args": None, "depends_on": []}]
    replies = [
        plan_reply(steps, usage={"input_tokens": 11, "output_tokens": 5}),
        tool_call_reply("calculator", {"expression": "1+1"}),
        {"text": "in words"},
    ]
    with FakeOpenAI(replies) as server:
        model = client(server)
        first = model.bind_tools([Plan], tool_choice="Plan").invoke("plan")
        assert first.tool_calls[0]["args"] == {"steps": steps}
        assert first.usage_metadata is not None
        assert first.usage_metadata["input_tokens"] == 11
        second = model.invoke("calculate")
        assert second.tool_calls[0]["args"] == {"expression": "1+1"}
        assert model.invoke("say it").content == "in words"
        server.assert_done()


def test_latency_settings_delay_replies() -> None:
    reply = {"content": "a b c d", "usage": {"prompt_tokens": 1, "completion_tokens": 10}}
    with FakeOpenAI([reply, reply], latency=0.05, per_token_latency=0.01) as server:
        model = client(server)
        began = time.monotonic()
        model.invoke("plain")
        assert time.monotonic() - began >= 0.15
        began = time.monotonic()
        assert "".join(str(c.content) for c in model.stream("streamed")) == "a b c d"
        assert time.monotonic() - began >= 0.15
