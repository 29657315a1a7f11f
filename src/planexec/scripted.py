"""A chat model that replays scripted replies and records what it was sent.

It stands in for a real model in the offline demo and in tests: it supports
`bind_tools` and `with_structured_output`, so the real graph runs unchanged, and
every request is kept in `calls` so a test can assert on prompts as well as results.
It streams too (under `stream_mode="messages"`, say): its reply in pieces, words of text
and slices of each tool call's arguments, as a provider sends them.

A reply is an `AIMessage`, a string, an exception to raise, or a dict (the form used
in bundled JSON scripts)::

    {"text": "...", "tool_calls": [{"name": "Plan", "args": {...}}],
     "match": "text the request must contain", "usage": {"input_tokens": 9, "output_tokens": 3}}

Replies without `match` are used in order. A reply with `match` is used by the first
request whose messages contain that text, which keeps scripts deterministic when
steps run in parallel. Replies without `usage` report an estimate of one token per
four characters, so budgets and costs can be exercised offline.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

ScriptedReply = AIMessage | str | BaseException | dict[str, Any]


class ScriptExhaustedError(AssertionError):
    """The model was asked more than its script answers."""


@dataclass
class ScriptedCall:
    """One request the scripted model received."""

    messages: list[BaseMessage]
    tools: list[str] = field(default_factory=list)
    """Names of the tools bound for this request."""
    tool_choice: Any = None

    @property
    def prompt(self) -> str:
        """Every message's text, joined: what a test searches for prompt content."""
        return "\n".join(message.text for message in self.messages)


class ScriptedChatModel(BaseChatModel):
    """A chat model whose replies come from a script; see the module docstring."""

    name_: str = "scripted"
    """The model name reported in records and used to look up prices."""

    _script: list[ScriptedReply] = PrivateAttr(default_factory=list)
    _used: list[bool] = PrivateAttr(default_factory=list)
    _calls: list[ScriptedCall] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, replies: Iterable[ScriptedReply] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._script = list(replies)
        self._used = [False] * len(self._script)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def model_name(self) -> str:
        """The name used for records and prices."""
        return self.name_

    @property
    def calls(self) -> list[ScriptedCall]:
        """Every request so far, in order."""
        with self._lock:
            return list(self._calls)

    @property
    def remaining(self) -> int:
        """How many scripted replies have not been used."""
        with self._lock:
            return self._used.count(False)

    def add(self, *replies: ScriptedReply) -> None:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(replies)
            self._used.extend([False] * len(replies))

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; the request records their names and the tool choice."""
        specs = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """The reply in pieces, as a provider streams it (see `stream_pieces`)."""
        yield from stream_pieces(self._reply(messages, kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in stream_pieces(self._reply(messages, kwargs)):
            yield chunk

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        """Record the request and take its reply (raising a scripted exception)."""
        call = ScriptedCall(
            messages=list(messages),
            tools=[spec["function"]["name"] for spec in kwargs.get("tools") or []],
            tool_choice=kwargs.get("tool_choice"),
        )
        with self._lock:
            self._calls.append(call)
            reply = self._take(call.prompt)
        if isinstance(reply, BaseException):
            raise reply
        message = _to_message(reply)
        if message.usage_metadata is None:
            inputs = max(1, len(call.prompt) // 4)
            outputs = max(1, len(_reply_text(message)) // 4)
            message.usage_metadata = {
                "input_tokens": inputs,
                "output_tokens": outputs,
                "total_tokens": inputs + outputs,
            }
        return message

    def _take(self, prompt: str) -> ScriptedReply:
        for index, reply in enumerate(self._script):
            if self._used[index]:
                continue
            match = reply.get("match") if isinstance(reply, dict) else None
            if match is None or match in prompt:
                self._used[index] = True
                return reply
        raise ScriptExhaustedError(
            f"scripted model '{self.name_}' has no reply left for a request ending: "
            f"{prompt[-400:]!r}"
        )


STREAMED_ARGUMENT_PIECE = 12
"""Characters of a tool call's arguments per streamed chunk."""


def stream_pieces(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    """`message` as streamed chunks that add up to it again.

    Its text word by word, then each tool call (valid or not): its name and id, then
    its arguments' JSON `STREAMED_ARGUMENT_PIECE` characters at a time; the last chunk
    carries the usage.
    """
    content = message.content
    if isinstance(content, str):
        for word in re.findall(r"\s*\S+|\s+", content):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
    elif content:
        yield ChatGenerationChunk(message=AIMessageChunk(content=content))
    calls = [
        (call["name"], call.get("id"), json.dumps(call["args"], ensure_ascii=False))
        for call in message.tool_calls
    ] + [
        (call.get("name"), call.get("id"), call.get("args") or "")
        for call in message.invalid_tool_calls
    ]
    for index, (name, call_id, arguments) in enumerate(calls):
        pieces = [
            arguments[start : start + STREAMED_ARGUMENT_PIECE]
            for start in range(0, len(arguments), STREAMED_ARGUMENT_PIECE)
        ]
        for number, piece in enumerate(["", *pieces]):
            first = number == 0
            chunk = tool_call_chunk(
                name=name if first else None,
                args=piece,
                id=call_id if first else None,
                index=index,
            )
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[chunk]))
    yield ChatGenerationChunk(
        message=AIMessageChunk(
            content="", usage_metadata=message.usage_metadata, chunk_position="last"
        )
    )


def _to_message(reply: AIMessage | str | dict[str, Any]) -> AIMessage:
    if isinstance(reply, AIMessage):
        return reply.model_copy(deep=True)
    if isinstance(reply, str):
        return AIMessage(content=reply)
    calls = [
        {
            "name": c["name"],
            "args": c.get("args", {}),
            "id": c.get("id") or f"call_{uuid4().hex[:8]}",
        }
        for c in reply.get("tool_calls", [])
    ]
    message = AIMessage(content=reply.get("text", ""), tool_calls=calls)
    usage = reply.get("usage")
    if usage:
        inputs, outputs = int(usage["input_tokens"]), int(usage["output_tokens"])
        message.usage_metadata = {
            "input_tokens": inputs,
            "output_tokens": outputs,
            "total_tokens": inputs + outputs,
        }
    return message


def _reply_text(message: AIMessage) -> str:
    return message.text + "".join(json.dumps(c["args"]) for c in message.tool_calls)


def expand_replies(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replies as written in a script file: one with `"times": n` stands for n copies."""
    expanded: list[dict[str, Any]] = []
    for reply in replies:
        body = {key: value for key, value in reply.items() if key != "times"}
        expanded.extend(dict(body) for _ in range(int(reply.get("times", 1))))
    return expanded


def plan_reply(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A scripted planner reply: a `Plan` call with these steps."""
    return {"tool_calls": [{"name": "Plan", "args": {"steps": steps}}], **extra}


def replan_reply(
    action: str,
    *,
    answer: str | None = None,
    steps: list[dict[str, Any]] | None = None,
    reason: str = "scripted",
    **extra: Any,
) -> dict[str, Any]:
    """A scripted replanner reply: a `Replan` call."""
    args = {"action": action, "answer": answer, "steps": steps, "reason": reason}
    return {"tool_calls": [{"name": "Replan", "args": args}], **extra}


def tool_call_reply(name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A scripted executor reply that calls one tool."""
    return {"tool_calls": [{"name": name, "args": args}], **extra}
