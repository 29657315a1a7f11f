"""Chat models: the one place that turns a model string into a chat model.

Model strings look like `"openai:<model name>"`. The `openai` provider is
`langchain_openai.ChatOpenAI`; explicit `api_key` / `base_url` arguments win, and
otherwise the client reads `OPENAI_API_KEY` and `OPENAI_BASE_URL` as it always does,
so any OpenAI-compatible server works (vLLM, Ollama, llama.cpp, LM Studio...).

An async HTTP client's pooled connections belong to the event loop that opened them,
and `ChatOpenAI` shares one client per process by default: a second `asyncio.run()`
would reuse connections of a closed loop ("Event loop is closed"). So each event loop
calls a `ChatOpenAI` (made here or passed in, unless it was given its own
`http_async_client`) through a copy with a client of that loop's own, closed when
the loop shuts its async generators down, as `asyncio.run()` does on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import os
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from planexec.context import Context
from planexec.errors import ModelConfigError
from planexec.plan import MAX_ARGS_DEPTH, nesting_problem
from planexec.prices import charged
from planexec.state import Role, Usage

ModelT = TypeVar("ModelT", bound=BaseModel)

ModelFactory = Callable[[str, Context], BaseChatModel]
"""Makes the chat model for a model string under a run's context."""


def split_model_spec(spec: str) -> tuple[str, str]:
    """`"openai:gpt-4.1"` -> `("openai", "gpt-4.1")`."""
    provider, sep, name = spec.partition(":")
    if not sep or not provider or not name:
        raise ModelConfigError(f"model '{spec}' is not of the form 'openai:<model name>'")
    return provider, name


def chat_model(
    spec: str,
    *,
    timeout: float,
    max_retries: int,
    api_key: str | None = None,
    base_url: str | None = None,
) -> BaseChatModel:
    """A chat model for `spec` with a request timeout and temperature 0.

    Raises:
        ModelConfigError: the provider is unknown, or neither an API key nor a base URL
            is known (a real model needs one; a local server needs only its URL).
    """
    provider, name = split_model_spec(spec)
    if provider != "openai":
        raise ModelConfigError(
            f"unknown model provider '{provider}' in '{spec}': use 'openai:<model name>' "
            "(OPENAI_BASE_URL points it at any OpenAI-compatible server)"
        )
    from langchain_openai import ChatOpenAI

    key = api_key or os.environ.get("OPENAI_API_KEY")
    url = base_url or os.environ.get("OPENAI_BASE_URL")
    if not key and not url:
        raise ModelConfigError(
            f"no credentials for model '{spec}': set OPENAI_API_KEY, or OPENAI_BASE_URL for "
            "an OpenAI-compatible server (run `planexec demo` to try it offline)"
        )
    options: dict[str, Any] = {
        "model": name,
        "temperature": 0,
        "timeout": timeout,
        "max_retries": max_retries,
        "stream_usage": True,
        # Local servers speak chat completions only; OpenAI's newer models accept it too.
        "use_responses_api": False,
    }
    # A local server needs no key, but the client insists on one.
    options["api_key"] = key or "not-needed"
    if url:
        options["base_url"] = url
    return ChatOpenAI(**options)


def default_model_factory(spec: str, context: Context) -> BaseChatModel:
    """Make a model from its string with the run's timeout and retry settings."""
    return chat_model(spec, timeout=context.model_timeout, max_retries=context.model_max_retries)


@dataclass
class Models:
    """The chat model for each role: a caller's instance, or one made from the context.

    Models made from strings are cached by string and settings, so a run makes one
    client per model rather than one per call.
    """

    planner: BaseChatModel | None = None
    executor: BaseChatModel | None = None
    replanner: BaseChatModel | None = None
    factory: ModelFactory = default_model_factory
    _cache: dict[tuple[str, float, int], BaseChatModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def spec(self, role: Role, context: Context) -> str:
        """The model string that `role` uses under `context` (for records and prices)."""
        given = self._instance(role, context)
        if given is not None:
            return model_name(given)
        if role == "planner":
            return context.planner_model
        if role == "executor":
            return context.executor_model
        return context.replanner

    def _instance(self, role: Role, context: Context) -> BaseChatModel | None:
        given: BaseChatModel | None = getattr(self, role)
        if given is None and role == "replanner" and context.replanner_model is None:
            return self.planner
        return given

    def get(self, role: Role, context: Context) -> BaseChatModel:
        """The chat model for `role`, as the running event loop should call it."""
        given = self._instance(role, context)
        if given is not None:
            return for_running_loop(given)
        spec = self.spec(role, context)
        key = (spec, context.model_timeout, context.model_max_retries)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self.factory(spec, context)
            made = self._cache[key]
        return for_running_loop(made)


@dataclass
class _LoopCopies:
    """One event loop's copies of models, and what closes their clients with the loop."""

    models: dict[int, tuple[weakref.ref[BaseChatModel], BaseChatModel]] = field(
        default_factory=dict
    )
    """By the original's id: a weak reference to it (ids are reused) and its copy."""
    clients: list[Any] = field(default_factory=list)
    closer: asyncio.Future[Any] | None = None


_LOOP_COPIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCopies] = (
    weakref.WeakKeyDictionary()
)
_LOOP_COPIES_LOCK = threading.Lock()


def for_running_loop(model: BaseChatModel) -> BaseChatModel:
    """`model`, or its copy for the running event loop when its async client is shared.

    Only a `ChatOpenAI` whose async client is the process-wide default is copied; any
    other model is returned as it is.
    """
    if not _shares_async_client(model):
        return model
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return model
    with _LOOP_COPIES_LOCK:
        copies = _LOOP_COPIES.get(loop)
        if copies is None:
            copies = _LOOP_COPIES[loop] = _LoopCopies()
            # Runs to its `yield` at once; the loop closes it when it shuts down.
            copies.closer = asyncio.ensure_future(anext(_close_at_shutdown(copies.clients)))
        entry = copies.models.get(id(model))
        if entry is None or entry[0]() is not model:
            entry = (weakref.ref(model), _with_own_client(model, copies.clients))
            copies.models[id(model)] = entry
        return entry[1]


def _shares_async_client(model: BaseChatModel) -> bool:
    openai_models = sys.modules.get("langchain_openai.chat_models.base")
    if openai_models is None:  # not imported, so `model` cannot be one
        return False
    return (
        isinstance(model, openai_models.BaseChatOpenAI)
        and model.http_async_client is None
        and model.root_async_client is not None
    )


def _with_own_client(model: BaseChatModel, clients: list[Any]) -> BaseChatModel:
    import openai

    http = openai.DefaultAsyncHttpxClient()
    clients.append(http)
    own = model.model_copy()
    root = model.root_async_client.copy(http_client=http)  # type: ignore[attr-defined]
    own.root_async_client = root  # type: ignore[attr-defined]
    own.async_client = root.chat.completions  # type: ignore[attr-defined]
    return own


async def _close_at_shutdown(clients: list[Any]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()


def model_name(model: BaseChatModel) -> str:
    """A model instance's name as the provider knows it, for records and prices."""
    for attr in ("model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def usage_of(message: BaseMessage, model: str, prices: dict[str, tuple[float, float]]) -> Usage:
    """One call's tokens and cost, from the reply's usage metadata (`planexec.prices`)."""
    meta = getattr(message, "usage_metadata", None) or {}
    inputs = int(meta.get("input_tokens", 0) or 0)
    outputs = int(meta.get("output_tokens", 0) or 0)
    price_in, price_out = charged(model, prices)
    cost = (inputs * price_in + outputs * price_out) / 1_000_000
    return {
        "calls": 1,
        "input_tokens": inputs,
        "output_tokens": outputs,
        "cost_usd": round(cost, 8),
    }


@dataclass
class StructuredReply(Generic[ModelT]):
    """A model's reply to a request for structured output."""

    raw: AIMessage
    parsed: ModelT | None
    errors: list[str]
    """Why the reply did not parse; empty when `parsed` is set."""

    @property
    def text(self) -> str:
        """What the model sent, as text: its call's arguments, or its words."""
        if self.raw.tool_calls:
            args = self.raw.tool_calls[0]["args"]
            if nesting_problem(args, MAX_ARGS_DEPTH + 3) is not None:
                return "(arguments nested too deeply to show)"
            return json.dumps(args, ensure_ascii=False, default=str)
        if self.raw.invalid_tool_calls:
            return str(self.raw.invalid_tool_calls[0].get("args") or "")
        return self.raw.text


@functools.cache
def _schema_tool(schema: type[BaseModel]) -> dict[str, Any]:
    return convert_to_openai_tool(schema)


def schema_tool(schema: type[BaseModel]) -> dict[str, Any]:
    """`schema` as an OpenAI tool definition; made once per schema (it takes milliseconds)."""
    return copy.deepcopy(_schema_tool(schema))


async def structured_reply(
    model: BaseChatModel,
    schema: type[ModelT],
    messages: Sequence[BaseMessage],
    config: RunnableConfig | None = None,
) -> StructuredReply[ModelT]:
    """Ask `model` for a `schema` object through a forced tool call named after the schema.

    This is LangChain's "function calling" structured output, parsed here so that a reply
    that does not parse is data (with readable errors) rather than an exception, whatever
    the model class. `config` names and tags the call's trace.
    """
    bound = model.bind_tools([schema_tool(schema)], tool_choice=schema.__name__)
    raw = await bound.ainvoke(list(messages), config)
    if not isinstance(raw, AIMessage):
        raw = AIMessage(content=str(getattr(raw, "content", raw)))
    name = schema.__name__
    calls = [call for call in raw.tool_calls if call["name"] == name]
    if not calls:
        bad = [call for call in raw.invalid_tool_calls if call.get("name") in (name, None)]
        if bad:
            detail = bad[0].get("error") or "its arguments are not valid JSON"
            return StructuredReply(raw, None, [f"the {name} call did not parse: {detail}"])
        others = [call["name"] for call in raw.tool_calls]
        said = f" it called {', '.join(others)}" if others else f" it said: {raw.text[:300]!r}"
        return StructuredReply(raw, None, [f"the reply has no {name} call;{said}"])
    try:
        return StructuredReply(raw, schema.model_validate(calls[0]["args"]), [])
    except ValidationError as exc:
        return StructuredReply(raw, None, [_field_error(error) for error in exc.errors()])


def _field_error(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
