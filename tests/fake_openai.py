"""A local OpenAI-compatible chat completions server for tests and benchmarks.

It speaks just enough of `POST /v1/chat/completions` for the real `openai` and
`langchain-openai` clients: plain JSON replies, server-sent-event streams (content and
tool call deltas, and a usage chunk when `stream_options.include_usage` is asked for),
error statuses with headers, bodies that are not JSON, and replies that hang.

    with FakeOpenAI([{"content": "hi"}]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        ...
        assert server.requests[0]["model"] == "gpt-4.1"
        server.assert_done()

Replies are dicts, consumed like `planexec.scripted`'s: each request takes the first
unused reply, in list order, that has no `"match"` or whose `"match"` text occurs in
the request's messages. Forms (keys combine where it makes sense):

    {"content": "text"}
    {"tool_calls": [{"name": "Plan", "arguments": {...} or "<raw string>", "id": "..."}]}
    {"status": 429, "headers": {"Retry-After": "0.01"}, "body": {...} or "text"}
    {"raw": "<a body that is not JSON>"}        (HTTP 200)
    {"hang": 5.0, ...}                          (wait before answering with the rest)
    {"cut": 2, ...}                             (a streamed reply: close the connection
                                                 after 2 deltas, mid-stream)
    {..., "usage": {"prompt_tokens": 9, "completion_tokens": 3}}
    {..., "match": "<text the request's messages must contain>"}

The key names of `planexec.scripted` replies work too (`"text"` for `"content"`,
`"args"` for `"arguments"`, `input_tokens`/`output_tokens` in `usage`), so its
`plan_reply()`, `replan_reply()` and `tool_call_reply()` and the demo scenario's
scripts can be served as they are.

Without `usage`, tokens are counted as a quarter of the characters (prompt: the
messages' text; completion: the content plus every call's arguments), rounded down.

`POST /v1/embeddings` answers every input with a deterministic vector of
`embedding_dims` numbers: each word hashed into one dimension, normalised, so texts that
share words are close (as float lists, or base64 when the client asks for it). The
requests are kept in `embedding_requests`.

A request that finds no reply left is answered HTTP 500 with `x-should-retry: false`
(so the client gives up at once), and kept in `unanswered`: an exhausted script never
passes silently.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Reply = dict[str, Any]
Responder = Callable[[dict[str, Any]], Reply | None]

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
_ARGUMENT_PIECE = 12
"""Characters of a tool call's arguments per streamed delta."""


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 with scripted replies.

    Args:
        replies: Reply dicts (see the module docstring), consumed as requests arrive.
        responder: Called with each request's JSON body to make its reply, instead of
            `replies`; returning None counts as "no reply left".
        latency: Seconds every request waits before its reply starts.
        per_token_latency: Seconds per completion token, added to each reply (spread
            over the chunks of a streamed reply).
        strict_schemas: Reject, as OpenAI does, a request whose tool or
            `response_format` schema is marked `"strict": true` but has an object
            without `additionalProperties: false` or not requiring all its properties.
        keep_alive: Keep each connection open after its reply, as real servers do, so
            that clients pool it. By default every reply closes its connection.
        embedding_dims: The size of the vectors `/v1/embeddings` answers with.
    """

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        responder: Responder | None = None,
        latency: float = 0.0,
        per_token_latency: float = 0.0,
        strict_schemas: bool = True,
        keep_alive: bool = False,
        embedding_dims: int = 64,
    ) -> None:
        self.keep_alive = keep_alive
        self._script = [dict(reply) for reply in replies]
        self._used = [False] * len(self._script)
        self.responder = responder
        self.latency = latency
        self.per_token_latency = per_token_latency
        self.strict_schemas = strict_schemas
        self.embedding_dims = embedding_dims
        self._embedding_requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._unanswered: list[dict[str, Any]] = []
        self._rejected: list[dict[str, Any]] = []
        self._not_found: list[str] = []
        self._usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Start serving in a background thread; `stop()` ends it."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._stopping.clear()
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: wake hanging replies, close connections, join every thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests read ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL for clients, ending in /v1 (what OPENAI_BASE_URL takes)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat completions request body received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the `/v1/embeddings` requests, in arrival order."""
        with self._lock:
            return list(self._embedding_requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """The headers of each request in `requests` (lower-case names), same order."""
        with self._lock:
            return list(self._headers)

    @property
    def unanswered(self) -> list[dict[str, Any]]:
        """Request bodies that found no reply left (each was answered HTTP 500)."""
        with self._lock:
            return list(self._unanswered)

    @property
    def rejected(self) -> list[dict[str, Any]]:
        """Request bodies refused with HTTP 400 (a non-conforming strict schema, say)."""
        with self._lock:
            return list(self._rejected)

    @property
    def not_found(self) -> list[str]:
        """Paths requested that the server does not serve (answered HTTP 404)."""
        with self._lock:
            return list(self._not_found)

    @property
    def usage(self) -> dict[str, int]:
        """Tokens reported in all successful replies: prompt, completion and total."""
        with self._lock:
            return dict(self._usage)

    @property
    def remaining(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return self._used.count(False)

    def add(self, *replies: Reply) -> None:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(dict(reply) for reply in replies)
            self._used.extend([False] * len(replies))

    def requests_for_tool(self, name: str) -> list[dict[str, Any]]:
        """The requests that offered the model a function tool called `name`."""
        return [body for body in self.requests if name in tool_names(body)]

    def requests_containing(self, text: str) -> list[dict[str, Any]]:
        """The requests whose messages contain `text`."""
        return [body for body in self.requests if text in prompt_of(body)]

    def assert_done(self) -> None:
        """Fail unless every request was answered and every scripted reply was used."""
        problems = []
        if self.unanswered:
            last = prompt_of(self.unanswered[-1])[-300:]
            problems.append(f"{len(self.unanswered)} request(s) found no reply; last: {last!r}")
        if self.responder is None and self.remaining:
            problems.append(f"{self.remaining} scripted reply(ies) never used")
        if problems:
            raise AssertionError("; ".join(problems))

    # -- serving -----------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        path = handler.path.split("?", 1)[0].rstrip("/")
        if handler.command == "POST" and path == EMBEDDINGS_PATH:
            self._embed(handler)
            return
        if handler.command != "POST" or path != CHAT_PATH:
            with self._lock:
                self._not_found.append(handler.path)
            _drain(handler)
            message = f"no route for {handler.command} {handler.path}"
            _send_json(handler, 404, _error(message, "not_found"))
            return
        try:
            body = json.loads(_drain(handler) or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            _send_json(handler, 400, _error("the request body is not a JSON object"))
            return
        with self._lock:
            self._requests.append(body)
            self._headers.append({k.lower(): v for k, v in handler.headers.items()})
        problems = strict_schema_errors(body) if self.strict_schemas else []
        if problems:
            with self._lock:
                self._rejected.append(body)
            message = "Invalid schema for a strict request: " + " ".join(problems)
            _send_json(handler, 400, _error(message, "invalid_request_error", "invalid_schema"))
            return
        reply, reason = self._reply_for(body)
        if reply is None:
            with self._lock:
                self._unanswered.append(body)
            _send_json(
                handler,
                500,
                _error(f"FakeOpenAI: {reason}", "server_error"),
                {"x-should-retry": "false"},
            )
            return
        self._answer(handler, body, reply)

    def _embed(self, handler: _Handler) -> None:
        try:
            body = json.loads(_drain(handler) or b"null")
        except ValueError:
            body = None
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            _send_json(handler, 400, _error("input must be a string or a list of strings"))
            return
        assert isinstance(body, dict)
        with self._lock:
            self._embedding_requests.append(body)
        data = []
        for index, text in enumerate(texts):
            vector = word_vector(text, self.embedding_dims)
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(text) // 4 for text in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": str(body.get("model", "fake")),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        _send_json(handler, 200, payload)

    def _reply_for(self, body: dict[str, Any]) -> tuple[Reply | None, str]:
        if self.responder is not None:
            try:
                made = self.responder(body)
            except Exception as exc:
                return None, f"the responder raised {type(exc).__name__}: {exc}"
            return (dict(made), "") if made is not None else (None, "the responder gave none")
        prompt = prompt_of(body)
        with self._lock:
            for index, reply in enumerate(self._script):
                if self._used[index]:
                    continue
                match = reply.get("match")
                if match is None or match in prompt:
                    self._used[index] = True
                    return reply, ""
        return None, f"no scripted reply left for a request ending {prompt[-200:]!r}"

    def _answer(self, handler: _Handler, body: dict[str, Any], reply: Reply) -> None:
        if self._wait(float(reply.get("hang", 0.0)) + self.latency):
            return
        if "status" in reply:
            content = reply.get("body", _error(f"HTTP {reply['status']} from FakeOpenAI"))
            _send_json(handler, int(reply["status"]), content, reply.get("headers"))
            return
        if "raw" in reply:
            _send_bytes(
                handler,
                200,
                str(reply["raw"]).encode(),
                {"Content-Type": reply.get("content_type", "application/json")},
            )
            return
        text = str(reply.get("content") or reply.get("text") or "")
        calls = [self._tool_call(call) for call in reply.get("tool_calls") or []]
        usage = self._count(body, reply, text, calls)
        completion = {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "created": int(time.time()),
            "model": str(body.get("model", "fake")),
        }
        if body.get("stream"):
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            cut = reply.get("cut")
            self._stream(handler, completion, text, calls, usage, with_usage, cut)
            return
        if self._wait(self.per_token_latency * usage["completion_tokens"]):
            return
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not calls else None,
        }
        if calls:
            message["tool_calls"] = calls
        payload = {
            **completion,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if calls else "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
        _send_json(handler, 200, payload)

    def _tool_call(self, call: Mapping[str, Any]) -> dict[str, Any]:
        arguments = call.get("arguments", call.get("args", {}))
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        return {
            "id": call.get("id") or f"call_fake_{next(self._ids)}",
            "type": "function",
            "function": {"name": call["name"], "arguments": arguments},
        }

    def _count(
        self, body: dict[str, Any], reply: Reply, text: str, calls: list[dict[str, Any]]
    ) -> dict[str, int]:
        given = reply.get("usage") or {}
        sent = text + "".join(call["function"]["arguments"] for call in calls)
        prompt = int(
            given.get("prompt_tokens", given.get("input_tokens", len(prompt_of(body)) // 4))
        )
        completion = int(given.get("completion_tokens", given.get("output_tokens", len(sent) // 4)))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        with self._lock:
            for key, value in usage.items():
                self._usage[key] += value
        return usage

    def _stream(
        self,
        handler: _Handler,
        completion: dict[str, Any],
        text: str,
        calls: list[dict[str, Any]],
        usage: dict[str, int],
        include_usage: bool,
        cut: int | None = None,
    ) -> None:
        deltas = list(_deltas(text, calls))
        pause = self.per_token_latency * usage["completion_tokens"] / max(1, len(deltas))
        head = {**completion, "object": "chat.completion.chunk"}
        finish = "tool_calls" if calls else "stop"
        try:
            _start_stream(handler)
            _write_event(handler, _chunk(head, {"role": "assistant", "content": ""}))
            for index, delta in enumerate(deltas):
                if self._wait(pause):
                    return
                if cut is not None and index >= cut:
                    # The server goes away mid-reply: no last chunk, no end of the body.
                    handler.close_connection = True
                    handler.connection.shutdown(socket.SHUT_RDWR)
                    return
                _write_event(handler, _chunk(head, delta))
            _write_event(handler, _chunk(head, {}, finish))
            if include_usage:
                _write_event(handler, {**head, "choices": [], "usage": usage})
            _write_chunk(handler, b"data: [DONE]\n\n")
            _write_chunk(handler, b"")
        except OSError:
            handler.close_connection = True

    def _wait(self, seconds: float) -> bool:
        """Sleep `seconds`; True when the server is stopping meanwhile."""
        if seconds <= 0:
            return self._stopping.is_set()
        return self._stopping.wait(seconds)


def word_vector(text: str, dims: int) -> list[float]:
    """A unit vector with one dimension per word (hashed): shared words, nearby vectors."""
    vector = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def prompt_of(body: Mapping[str, Any]) -> str:
    """The text of a request's messages, joined by newlines (what `match` searches)."""
    texts = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return "\n".join(texts)


def tool_names(body: Mapping[str, Any]) -> list[str]:
    """The names of the function tools a request offers."""
    names = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and "name" in function:
            names.append(str(function["name"]))
    return names


def strict_schema_errors(body: Mapping[str, Any]) -> list[str]:
    """Why OpenAI would refuse the strict schemas in a request; empty when it would not.

    In strict mode every object schema must say `additionalProperties: false` and list
    all of its properties in `required` (OpenAI's Structured Outputs rules).
    """
    errors: list[str] = []
    for index, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and function.get("strict") is True:
            where = f"tools[{index}] ({function.get('name')})"
            errors.extend(_object_errors(function.get("parameters") or {}, where))
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        if isinstance(spec, Mapping) and spec.get("strict") is True:
            where = f"response_format ({spec.get('name')})"
            errors.extend(_object_errors(spec.get("schema") or {}, where))
    return errors


def _object_errors(schema: Any, where: str) -> list[str]:
    if not isinstance(schema, Mapping):
        return []
    errors = []
    kind = schema.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            errors.append(f"{where}: 'additionalProperties' must be supplied and be false.")
        missing = [name for name in properties if name not in (schema.get("required") or [])]
        if missing:
            errors.append(f"{where}: 'required' must list every property; missing {missing}.")
    for key in ("properties", "$defs", "definitions"):
        children = schema.get(key)
        if isinstance(children, Mapping):
            for name, child in children.items():
                errors.extend(_object_errors(child, f"{where}.{key}.{name}"))
    for key in ("items", "additionalProperties", "not"):
        errors.extend(_object_errors(schema.get(key), f"{where}.{key}"))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        children = schema.get(key)
        if isinstance(children, list):
            for index, child in enumerate(children):
                errors.extend(_object_errors(child, f"{where}.{key}[{index}]"))
    return errors


def _deltas(text: str, calls: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for piece in re.findall(r"\s*\S+|\s+", text):
        yield {"content": piece}
    for index, call in enumerate(calls):
        function = call["function"]
        yield {
            "tool_calls": [
                {
                    "index": index,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": function["name"], "arguments": ""},
                }
            ]
        }
        arguments = function["arguments"]
        for start in range(0, len(arguments), _ARGUMENT_PIECE):
            piece = arguments[start : start + _ARGUMENT_PIECE]
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def _chunk(
    head: dict[str, Any], delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        **head,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _error(message: str, kind: str = "invalid_request_error", code: str | None = None) -> Any:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _drain(handler: _Handler) -> bytes:
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _send_json(
    handler: _Handler, status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> None:
    data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    _send_bytes(handler, status, data, {"Content-Type": "application/json", **(headers or {})})


def _send_bytes(handler: _Handler, status: int, data: bytes, headers: Mapping[str, str]) -> None:
    try:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, str(value))
        handler.send_header("Content-Length", str(len(data)))
        _close_after(handler)
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:
        handler.close_connection = True


def _start_stream(handler: _Handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    _close_after(handler)
    handler.end_headers()


def _close_after(handler: _Handler) -> None:
    """Close each connection after its reply, so that no client keeps idle sockets.

    A pooled keep-alive connection outlives the event loop of the test that opened it,
    and the client's transport then warns that it was never closed; a server made with
    `keep_alive=True` keeps them open.
    """
    if handler.server.fake.keep_alive:
        return
    handler.send_header("Connection", "close")
    handler.close_connection = True


def _write_event(handler: _Handler, event: dict[str, Any]) -> None:
    _write_chunk(handler, f"data: {json.dumps(event)}\n\n".encode())


def _write_chunk(handler: _Handler, data: bytes) -> None:
    """One piece of a chunked HTTP body; empty data ends the body."""
    handler.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
    handler.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """End idle keep-alive connections so their handler threads finish."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    def do_GET(self) -> None:
        self.server.fake._serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass
