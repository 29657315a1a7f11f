"""A local server that answers as Anthropic, Ollama, Gemini and Bedrock do, for tests.

The real LangChain integrations (`ChatAnthropic`, `ChatOllama`,
`ChatGoogleGenerativeAI`, `ChatBedrockConverse`) are pointed at it with their base URL
settings, so a test sees the exact request each one builds and the reply goes back
through the integration's own parsing:

    with FakeProviders([plan_reply(steps)]) as server:
        ChatAnthropic(model="claude-sonnet-4-5", api_key="x", base_url=server.url)
        ...
        server.requests[0].body["tools"]

Replies use `planexec.scripted`'s dict shapes (`{"text": ...}` or `{"tool_calls": [...]}`),
in order. A request that asked for JSON content (Ollama's `format`, Gemini's
`responseJsonSchema`, Anthropic's `output_config.format`) gets the first tool call's
arguments as JSON text; otherwise tool calls are sent as the provider's tool calls.

Also here: the schema rules of each provider's strict or structured mode, as the
providers document them, for tests to check requests against.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Reply = dict[str, Any]


@dataclass
class Request:
    """One request the server received."""

    path: str
    body: Any

    @property
    def provider(self) -> str:
        """Which provider's API the path belongs to."""
        return _provider_of(self.path)


def _provider_of(path: str) -> str:
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/api/chat"):
        return "ollama"
    if ":generateContent" in path:
        return "gemini"
    if path.endswith("/converse"):
        return "bedrock"
    return "unknown"


class FakeProviders:
    """The server; see the module docstring."""

    def __init__(self, replies: Iterable[Reply] = (), *, keep_alive: bool = False) -> None:
        self.keep_alive = keep_alive
        """Keep each connection open after its reply, as real servers do (clients pool it)."""
        self._replies = list(replies)
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self._httpd: ThreadingHTTPServer | None = None

    def __enter__(self) -> FakeProviders:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(size) or b"null")
                kind, payload = owner._answer(Request(self.path, body))
                data = payload.encode()
                self.send_response(200 if kind != "error" else 500)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                if not owner.keep_alive:
                    self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, *replies: Reply) -> None:
        """Append replies to the script."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def url(self) -> str:
        """The server's base URL (no path)."""
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def _answer(self, request: Request) -> tuple[str, str]:
        with self._lock:
            self.requests.append(request)
            if not self._replies:
                return "error", json.dumps({"error": "no reply left"})
            reply = self._replies.pop(0)
        text = reply.get("text", "")
        calls = [(c["name"], c.get("args", {})) for c in reply.get("tool_calls", [])]
        body = request.body
        if request.provider == "anthropic":
            if (body.get("output_config") or {}).get("format") and calls:
                text, calls = json.dumps(calls[0][1]), []
            content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            content += [
                {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args}
                for i, (name, args) in enumerate(calls)
            ]
            return "application/json", json.dumps(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": content,
                    "stop_reason": "tool_use" if calls else "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 11, "output_tokens": 7},
                }
            )
        if request.provider == "ollama":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if body.get("format") and calls:
                message["content"] = json.dumps(calls[0][1])
            elif calls:
                message["tool_calls"] = [
                    {"function": {"name": name, "arguments": args}} for name, args in calls
                ]
            line = {
                "model": body["model"],
                "created_at": "2026-01-01T00:00:00Z",
                "message": message,
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 11,
                "eval_count": 7,
            }
            return "application/x-ndjson", json.dumps(line) + "\n"
        if request.provider == "gemini":
            config = body.get("generationConfig") or {}
            if config.get("responseJsonSchema") and calls:
                parts: list[dict[str, Any]] = [{"text": json.dumps(calls[0][1])}]
            else:
                parts = [{"text": text}] if text else []
                parts += [{"functionCall": {"name": n, "args": a}} for n, a in calls]
            return "application/json", json.dumps(
                {
                    "candidates": [
                        {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}
                    ],
                    "usageMetadata": {
                        "promptTokenCount": 11,
                        "candidatesTokenCount": 7,
                        "totalTokenCount": 18,
                    },
                }
            )
        if request.provider == "bedrock":
            blocks: list[dict[str, Any]] = [{"text": text}] if text else []
            blocks += [
                {"toolUse": {"toolUseId": f"t{i}", "name": name, "input": args}}
                for i, (name, args) in enumerate(calls)
            ]
            return "application/json", json.dumps(
                {
                    "output": {"message": {"role": "assistant", "content": blocks}},
                    "stopReason": "tool_use" if calls else "end_turn",
                    "usage": {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18},
                    "metrics": {"latencyMs": 1},
                }
            )
        return "error", json.dumps({"error": f"unknown path {request.path}"})


# -- the providers' schema rules ---------------------------------------------------------

_ANTHROPIC_UNSUPPORTED = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
    "$ref",
)
"""Keywords that Anthropic's strict tool use (structured outputs) refuses."""


def anthropic_strict_errors(tool: Mapping[str, Any]) -> list[str]:
    """Why Anthropic would refuse `tool` (a request's tool) as a strict tool; empty if not.

    Strict tools must say `strict: true`; every object in `input_schema` must set
    `additionalProperties: false`; numeric, length and most array bounds are refused,
    and so is a schema that refers to itself.
    """
    errors = [] if tool.get("strict") is True else [f"{tool.get('name')}: not strict"]
    errors += _walk(tool.get("input_schema") or {}, "input_schema", _anthropic_node)
    return errors


def _anthropic_node(node: Mapping[str, Any], where: str) -> list[str]:
    errors = [f"{where}: '{key}' is not supported" for key in _ANTHROPIC_UNSUPPORTED if key in node]
    if node.get("type") == "object" and node.get("additionalProperties") is not False:
        errors.append(f"{where}: objects must set additionalProperties: false")
    if node.get("minItems") not in (None, 0, 1):
        errors.append(f"{where}: minItems above 1 is not supported")
    return errors


_GEMINI_KEYWORDS = {
    "type",
    "format",
    "title",
    "description",
    "enum",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "anyOf",
    "oneOf",
    "properties",
    "additionalProperties",
    "required",
    "propertyOrdering",
    "nullable",
    "$id",
    "$defs",
    "$ref",
    "$anchor",
}
"""The JSON Schema keywords Gemini's `responseJsonSchema` supports (Gemini API docs)."""


def gemini_schema_errors(schema: Mapping[str, Any]) -> list[str]:
    """Why Gemini would refuse or ignore parts of a response schema; empty if it would not.

    Only the supported keywords; every object lists its properties (a free-form object
    cannot be constrained), and types are single names, `null` written with `anyOf`.
    """
    return _walk(schema, "responseJsonSchema", _gemini_node)


def _gemini_node(node: Mapping[str, Any], where: str) -> list[str]:
    errors = [f"{where}: '{key}' is not supported" for key in node if key not in _GEMINI_KEYWORDS]
    if node.get("type") == "object" and not node.get("properties"):
        errors.append(f"{where}: an object must list its properties")
    if isinstance(node.get("type"), list):
        errors.append(f"{where}: type must be one name")
    return errors


def ollama_format_errors(schema: Any) -> list[str]:
    """Why Ollama could not turn `format` into a grammar; empty if it could.

    Ollama compiles the schema into a grammar: it needs a JSON object schema whose
    objects list their properties; free-form objects and `$ref` are not followed.
    """
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return ["format: must be a JSON schema of an object"]
    return _walk(schema, "format", _ollama_node)


def _ollama_node(node: Mapping[str, Any], where: str) -> list[str]:
    errors = [f"{where}: '$ref' is not followed"] if "$ref" in node else []
    if node.get("type") == "object" and not node.get("properties"):
        errors.append(f"{where}: an object must list its properties")
    return errors


def _walk(schema: Any, where: str, check: Any) -> list[str]:
    if not isinstance(schema, Mapping):
        return []
    errors: list[str] = list(check(schema, where))
    for name, child in (schema.get("properties") or {}).items():
        errors += _walk(child, f"{where}.{name}", check)
    if isinstance(schema.get("items"), Mapping):
        errors += _walk(schema["items"], f"{where}[]", check)
    for key in ("anyOf", "oneOf", "allOf"):
        for index, child in enumerate(schema.get(key) or []):
            errors += _walk(child, f"{where}.{key}[{index}]", check)
    return errors
