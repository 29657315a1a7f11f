"""The final answer, streamed as chat text while the model writes it.

Under `stream_mode="messages"` LangGraph emits the tokens of every chat model call a
node makes, unless the call is tagged `nostream`. Every planexec model call is tagged so
(`planexec.tracing`): its tokens are plan JSON, a step's work or a tool's arguments, not
chat text. The final answer is the exception. While the replanner (or the planner, for a
direct answer) writes its structured reply, `AnswerStream` watches the reply's tokens
(a tool call's argument deltas, or the text of a JSON-schema reply), reads the growing
`answer` string out of the partial JSON, and relays it through a chat model run of its
own that is not tagged (`_AnswerRelay`, run name `answer`), so LangGraph emits it as
`AIMessageChunk`s with one message id and the node's metadata (`langgraph_node`...).

What holds:

- Once `finish` has run, the chunks of its message id reassemble into exactly the
  state's `answer` (cut to `Context.max_output_chars` and stripped as the node does).
- Text is relayed only when the reply has already said it finishes (`"action":
  "finish"` for `Replan`, `"steps": []` for `Plan`) before its answer starts; a reply in
  another order is held back and its answer sent whole by `finish`. So is the answer of
  a model that does not stream.
- A reply that turns out invalid (it does not parse, fails validation, or the call
  fails midway) is not finished: the text already relayed stays under a message id that
  never becomes the run's answer; a model asked again writes under a new id.
- A message that carries the answer in a node's output should take `message_id` as its
  id: LangGraph has seen that id stream, so it does not emit the message a second time.
- Nothing is relayed unless a streaming listener (`stream_mode="messages"`,
  `astream_events`) is attached to the run: the model call is made as it always is.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from uuid import UUID, uuid4

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult, GenerationChunk
from langchain_core.runnables import RunnableConfig, ensure_config
from pydantic import PrivateAttr

from planexec.context import StructuredMethod
from planexec.execution import TRUNCATED
from planexec.internals import has_streaming_listener

Gate = Callable[[Mapping[str, Any]], bool]
"""Whether the reply's fields written before its `answer` say the answer is final."""

ANSWER_RUN_NAME = "answer"
"""The run name of the relay that streams the answer (in traces and `astream_events`)."""
ANSWER_TAG = "planexec:answer"
"""The tag of that run."""


def finishes_replan(fields: Mapping[str, Any]) -> bool:
    """A `Replan` reply whose `action` is "finish" (the gate of the replanner's answer)."""
    return fields.get("action") == "finish"


def answers_directly(fields: Mapping[str, Any]) -> bool:
    """A `Plan` reply with no steps (the gate of the planner's direct answer)."""
    return fields.get("steps") == []


def new_answer_id() -> str:
    """A fresh id for the message that carries a final answer."""
    return f"planexec-answer-{uuid4().hex}"


class AnswerStream:
    """The final answer of one model call, relayed as chat text while it is written.

    A node makes one per structured call that may end the run, passes it to
    `Resources.ask_structured(..., answer=...)`, then either calls `finish` with the
    answer it puts in the state (which returns the message id the chunks carry) or
    `close` to drop the call's text. Use it as an async context manager so that a run
    that fails or is cancelled closes it too.
    """

    def __init__(self, gate: Gate, *, limit: int, strip: bool = False) -> None:
        self.message_id = new_answer_id()
        """The id of the message the answer's chunks carry; `finish` may change it."""
        self._gate = gate
        self._strip = strip
        # At most this many characters are sent before the reply ends: a longer answer
        # is cut (`bounded_text`), and the cut point moves with the note's length.
        note = len(TRUNCATED.format(dropped=10**15, limit=limit))
        self._safe = max(0, limit - note)
        self._sent: list[str] = []
        self._sent_chars = 0
        self._pending = ""
        """Text received but held back: trailing spaces the node may strip."""
        self._node: tuple[RunnableConfig, contextvars.Context] | None = None
        """The node's config and context, which the relay runs under; None: no listener."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._relay: _AnswerRelay | None = None
        self._task: asyncio.Task[Any] | None = None
        self._done = False

    @property
    def relayed(self) -> bool:
        """Whether a streaming listener was attached, so chunks may have been sent."""
        return self._node is not None

    async def __aenter__(self) -> AnswerStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def watch(
        self, config: RunnableConfig, *, method: StructuredMethod, schema: str
    ) -> RunnableConfig:
        """`config` for the model call, with the watcher of its tokens added.

        Unchanged when no streaming listener is attached to the run. Call it from the
        node's own task: the relay runs under the node's config.
        """
        node = ensure_config()
        callbacks = node.get("callbacks")
        if not has_streaming_listener(callbacks) or callbacks is None:
            return config
        self._node = (node, contextvars.copy_context())
        self._loop = asyncio.get_running_loop()
        watcher = _Watcher(self, _Scanner(self._gate), method=method, schema=schema)
        if isinstance(callbacks, list):
            watched: Any = [*callbacks, watcher]
        else:
            watched = callbacks.copy()
            watched.add_handler(watcher, inherit=True)
        return {**config, "callbacks": watched}

    def offer(self, text: str) -> None:
        """Relay `text`, what the reply's answer has grown by, as far as it is sure.

        Held back: spaces the node will strip (leading ones, and trailing ones until
        more text follows), and anything past the length that a cut answer keeps.
        """
        if self._done or self._node is None or self._sent_chars >= self._safe:
            return
        if self._strip and not self._sent and not self._pending:
            text = text.lstrip()
        pending = self._pending + text
        head = pending.rstrip() if self._strip else pending
        sure = head[: self._safe - self._sent_chars]
        if sure:
            self._send(sure)
            self._sent.append(sure)
            self._sent_chars += len(sure)
        self._pending = pending[len(sure) :]

    def offer_threadsafe(self, text: str) -> None:
        """`offer`, from whichever thread a model's callbacks run on."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.offer(text)
        else:
            loop.call_soon_threadsafe(self.offer, text)

    async def finish(self, answer: str) -> str:
        """Send the rest of `answer`, end the message, and return its id.

        `answer` is the run's final answer as the state will hold it. Should the text
        already sent not begin it (the reply's text and its parsed answer would have to
        differ), that message is dropped and `answer` sent whole under a new id.
        """
        if self._node is None or self._done:
            self._done = True
            return self.message_id
        sent = "".join(self._sent)
        if not answer.startswith(sent):
            await self.close()
            self._done = False
            self.message_id, sent = new_answer_id(), ""
        rest = answer[len(sent) :]
        if rest:
            self._send(rest)
        await self.close()
        return self.message_id

    async def close(self) -> None:
        """End the message, sending nothing more.

        After `finish` there is nothing to do. Without it, the text sent so far stays
        under a message id that never becomes the run's answer.
        """
        self._done = True
        relay, task = self._relay, self._task
        if relay is None or task is None:
            return
        self._relay = self._task = None
        relay.put(None)
        # A relay that failed must not mask why the node stopped; it raises nothing else.
        with contextlib.suppress(Exception):
            await task

    def _send(self, text: str) -> None:
        if self._relay is None and self._node is not None:
            node, context = self._node
            self._relay = _AnswerRelay(message_id=self.message_id, cache=False)
            config: RunnableConfig = {
                **node,
                "run_name": ANSWER_RUN_NAME,
                "tags": [*(node.get("tags") or []), ANSWER_TAG],
            }
            config.pop("run_id", None)  # the relay is a run of its own
            call = self._relay.ainvoke([], config, stream=True)
            self._task = asyncio.get_running_loop().create_task(call, context=context)
        if self._relay is not None:
            self._relay.put(text)


class _Watcher(BaseCallbackHandler):
    """Reads the answer out of a model call's streamed tokens and offers it."""

    run_inline = True  # on the loop's thread, in token order

    def __init__(
        self, stream: AnswerStream, scanner: _Scanner, *, method: StructuredMethod, schema: str
    ) -> None:
        self._stream = stream
        self._scanner = scanner
        self._content = method == "json_schema"
        self._schema = schema
        self._names: dict[Any, str] = {}
        self._chosen: Any = None
        self._run: UUID | None = None

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Feed the token's part of the reply to the scanner."""
        if not isinstance(chunk, ChatGenerationChunk) or not isinstance(
            chunk.message, AIMessageChunk
        ):
            return
        # One model call: tokens of any other run (there is none today) are ignored.
        if self._run is None:
            self._run = run_id
        elif run_id != self._run:
            return
        message = chunk.message
        if self._content:
            self._scanner.feed(message.text)
        else:
            for piece in message.tool_call_chunks:
                index = piece.get("index")
                if piece.get("name"):
                    self._names[index] = str(piece["name"])
                if self._names.get(index) != self._schema:
                    continue
                if self._chosen is None:
                    self._chosen = index
                if index == self._chosen:
                    self._scanner.feed(piece.get("args") or "")
        if self._scanner.released:
            grown = self._scanner.take()
            if grown:
                self._stream.offer_threadsafe(grown)


class _AnswerRelay(BaseChatModel):
    """A chat model run that replays the answer's text as it is put, then ends.

    Each piece becomes an `AIMessageChunk` with the answer's message id; the last is
    marked `chunk_position="last"`, so the run adds no empty chunk of its own.
    """

    message_id: str
    _queue: asyncio.Queue[str | None] = PrivateAttr(default_factory=asyncio.Queue)

    @property
    def _llm_type(self) -> str:
        return "planexec-answer"

    def put(self, text: str | None) -> None:
        """Queue a piece of the answer; None ends the message."""
        self._queue.put_nowait(text)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("the answer relay only streams")

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        held = await self._queue.get()
        while held is not None:
            following = await self._queue.get()
            last = following is None
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=held, id=self.message_id, chunk_position="last" if last else None
                )
            )
            held = following


_SPECIAL = re.compile(r'["\\]')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _Scanner:
    """Reads a JSON object as it arrives, keeping its top-level `answer` string so far.

    Every character is read once. The values of the other top-level fields are decoded
    when they end; `released` says whether those written before `answer` pass the gate,
    and `take` gives what the answer has grown by since it was last called.
    """

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self.fields: dict[str, Any] = {}
        self.released = False
        self._state = "start"
        self._key = ""
        self._raw: list[str] = []
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._unicode: str | None = None
        self._high: int | None = None
        self._pieces: list[str] = []
        self._taken = 0
        self._handlers: dict[str, Callable[[str], None]] = {
            "start": self._on_start,
            "key": self._on_key,
            "key_text": self._on_key_text,
            "colon": self._on_colon,
            "value_start": self._on_value_start,
            "value": self._on_value,
            "answer": self._on_answer,
            "after_answer": self._on_after_answer,
        }

    @property
    def answer(self) -> str:
        """The answer's text so far."""
        return "".join(self._pieces)

    def take(self) -> str:
        """What the answer has grown by since the last call."""
        grown = "".join(self._pieces[self._taken :])
        self._taken = len(self._pieces)
        return grown

    def feed(self, text: str) -> None:
        """Read the next piece of the reply's JSON text."""
        at, end = 0, len(text)
        while at < end and self._state != "done":
            if self._state == "answer" and self._unicode is None and not self._escape:
                special = _SPECIAL.search(text, at)
                stop = special.start() if special else end
                if stop > at:
                    self._append(text[at:stop])
                    at = stop
                    continue
            self._handlers[self._state](text[at])
            at += 1

    def _on_start(self, char: str) -> None:
        if char == "{":
            self._state = "key"

    def _on_key(self, char: str) -> None:
        if char == '"':
            self._state, self._raw, self._escape = "key_text", [], False
        elif char == "}":
            self._state = "done"

    def _on_key_text(self, char: str) -> None:
        if self._escape:
            self._escape = False
        elif char == "\\":
            self._escape = True
        elif char == '"':
            self._key = _decoded('"' + "".join(self._raw) + '"', "")
            self._state = "colon"
            return
        self._raw.append(char)

    def _on_colon(self, char: str) -> None:
        if char == ":":
            self._state = "value_start"

    def _on_value_start(self, char: str) -> None:
        if char.isspace():
            return
        if char == '"' and self._key == "answer":
            self.released = self._gate(self.fields)
            self._state = "answer"
            return
        self._state, self._raw = "value", []
        self._depth, self._in_string, self._escape = 0, False, False
        self._on_value(char)

    def _on_value(self, char: str) -> None:
        if self._in_string:
            if self._escape:
                self._escape = False
            elif char == "\\":
                self._escape = True
            elif char == '"':
                self._in_string = False
        elif char == '"':
            self._in_string = True
        elif char in "{[":
            self._depth += 1
        elif char in "}]" and self._depth > 0:
            self._depth -= 1
        elif char in ",}" and self._depth == 0:
            self.fields[self._key] = _decoded("".join(self._raw).strip(), None)
            self._state = "key" if char == "," else "done"
            return
        self._raw.append(char)

    def _on_answer(self, char: str) -> None:
        if self._unicode is not None:
            self._unicode += char
            if len(self._unicode) == 4:
                self._code_point(self._unicode)
                self._unicode = None
        elif self._escape:
            self._escape = False
            if char == "u":
                self._unicode = ""
            else:
                self._append(_ESCAPES.get(char, char))
        elif char == "\\":
            self._escape = True
        elif char == '"':
            self.fields["answer"] = self.answer
            self._state = "after_answer"
        else:
            self._append(char)

    def _on_after_answer(self, char: str) -> None:
        if char == ",":
            self._state = "key"
        elif char == "}":
            self._state = "done"

    def _code_point(self, digits: str) -> None:
        try:
            code = int(digits, 16)
        except ValueError:
            self._state = "done"  # not JSON: the reply will not parse either
            return
        if 0xD800 <= code < 0xDC00:
            self._high = code
        elif 0xDC00 <= code < 0xE000 and self._high is not None:
            self._append(chr(0x10000 + ((self._high - 0xD800) << 10) + (code - 0xDC00)))
        else:
            self._append(chr(code))

    def _append(self, text: str) -> None:
        self._high = None
        self._pieces.append(text)


def _decoded(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default
