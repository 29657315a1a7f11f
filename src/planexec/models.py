"""Chat models: the one place that turns a model string into a chat model.

A model string is `"<provider>:<model name>"`, for any provider that LangChain's
`init_chat_model` knows once its package is installed (`anthropic:claude-sonnet-4-5`,
`ollama:qwen2.5:7b`, `google_genai:gemini-2.5-flash`, `bedrock_converse:...`). A
provider whose package is missing is a one-line `ModelConfigError` naming the package,
raised when the model is made, before any model is called.

The `openai` provider is `langchain_openai.ChatOpenAI`; explicit `api_key` / `base_url`
arguments win, and otherwise the client reads `OPENAI_API_KEY` and `OPENAI_BASE_URL` as
it always does, so any OpenAI-compatible server works (vLLM, Ollama, llama.cpp, LM
Studio...). Other providers read their own environment (`ANTHROPIC_API_KEY`,
`GOOGLE_API_KEY`, the AWS credential chain...).

Structured output (the planner's `Plan`, the replanner's `Replan`) is asked for in the
way that suits the provider (`structured_method`): a strict tool call where the
provider has one (OpenAI, Anthropic), a JSON schema for the reply where forcing a tool
is not possible or not the provider's way (Ollama, Gemini), and a plain forced tool
call otherwise. `planexec.wire` gives the schemas their strict form.

An async HTTP client's pooled connections belong to the event loop that opened them,
and `ChatOpenAI` shares one client per process by default (so does `ChatAnthropic`;
`ChatOllama` keeps one per instance): a second `asyncio.run()` would reuse connections
of a closed loop ("Event loop is closed"). So each event loop calls such a model (made
here or passed in; a `ChatOpenAI` given its own `http_async_client` is left alone)
through a copy with a client of that loop's own, closed when the loop shuts its async
generators down, as `asyncio.run()` does on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import math
import os
import pickle
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

from planexec.context import Context, StructuredMethod
from planexec.errors import ModelConfigError
from planexec.plan import MAX_ARGS_DEPTH, nesting_problem
from planexec.prices import charged
from planexec.state import Role, Usage
from planexec.wire import parse_reply, strict_schema

ModelT = TypeVar("ModelT", bound=BaseModel)

ModelFactory = Callable[[str, Context], BaseChatModel]
"""Makes the chat model for a model string under a run's context."""


@dataclass(frozen=True)
class Provider:
    """What planexec knows about one `init_chat_model` provider."""

    package: str
    """The pip package of its LangChain integration."""
    method: StructuredMethod
    """How it is asked for structured output unless `Context.structured_output` says."""
    extra: str | None = None
    """The planexec extra that installs the package (`pip install 'planexec[extra]'`)."""
    module: str = ""
    """The integration's import name; the package's, with `_` for `-`, when empty."""
    whole_seconds: bool = False
    """Whether its timeout setting takes whole seconds only (rounded up)."""

    @property
    def import_name(self) -> str:
        """The module to import to use this provider."""
        return self.module or self.package.replace("-", "_")

    @property
    def install_hint(self) -> str:
        """What to run to install the provider's package."""
        if self.extra:
            return f"pip install 'planexec[{self.extra}]' (or {self.package})"
        return f"pip install {self.package}"


PROVIDERS: dict[str, Provider] = {
    "openai": Provider("langchain-openai", "strict_tool"),
    "azure_openai": Provider("langchain-openai", "strict_tool"),
    "anthropic": Provider("langchain-anthropic", "strict_tool", "anthropic"),
    # Ollama ignores a forced tool choice, but constrains replies to a JSON schema.
    "ollama": Provider("langchain-ollama", "json_schema", "ollama"),
    # Gemini's structured output is a response schema; its tools take an OpenAPI subset.
    "google_genai": Provider("langchain-google-genai", "json_schema", "google"),
    "google_vertexai": Provider("langchain-google-vertexai", "json_schema"),
    # Bedrock's strict mode depends on the model behind it; a forced tool call works on all.
    "bedrock_converse": Provider("langchain-aws", "tool", "bedrock", whole_seconds=True),
    "bedrock": Provider("langchain-aws", "tool", "bedrock", whole_seconds=True),
    "anthropic_bedrock": Provider("langchain-aws", "tool", "bedrock", whole_seconds=True),
    "mistralai": Provider("langchain-mistralai", "tool"),
    "groq": Provider("langchain-groq", "tool"),
    "fireworks": Provider("langchain-fireworks", "tool"),
    "deepseek": Provider("langchain-deepseek", "tool"),
    "xai": Provider("langchain-xai", "tool"),
    "together": Provider("langchain-together", "tool"),
    "huggingface": Provider("langchain-huggingface", "tool"),
}
"""Providers planexec knows by name. Any other that `init_chat_model` accepts works too,
asked for structured output by a plain forced tool call."""

_PACKAGE_PROVIDERS: dict[str, str] = {
    "langchain_openai": "openai",
    "langchain_anthropic": "anthropic",
    "langchain_ollama": "ollama",
    "langchain_google_genai": "google_genai",
    "langchain_google_vertexai": "google_vertexai",
    "langchain_aws": "bedrock_converse",
}
"""A model instance's provider, by the top-level package its class comes from."""


def split_model_spec(spec: str) -> tuple[str, str]:
    """`"openai:gpt-4.1"` -> `("openai", "gpt-4.1")`; the name may hold colons itself."""
    provider, sep, name = spec.partition(":")
    if not sep or not provider or not name:
        raise ModelConfigError(
            f"model '{spec}' is not of the form '<provider>:<model name>' "
            "(such as 'openai:gpt-4.1', 'anthropic:claude-sonnet-4-5' or 'ollama:qwen2.5:7b')"
        )
    return provider, name


def structured_method(model: BaseChatModel, context: Context | None = None) -> StructuredMethod:
    """How `model` is asked for structured output.

    `Context.structured_output` when it says, else the way of the model's provider
    (`PROVIDERS`, known by the package its class comes from), else a forced tool call.
    """
    if context is not None and context.structured_output != "auto":
        return context.structured_output
    provider = _PACKAGE_PROVIDERS.get(type(model).__module__.split(".")[0])
    known = PROVIDERS.get(provider or "")
    return known.method if known is not None else "tool"


def chat_model(
    spec: str,
    *,
    timeout: float,
    max_retries: int,
    api_key: str | None = None,
    base_url: str | None = None,
) -> BaseChatModel:
    """A chat model for `spec` with a request timeout and temperature 0.

    `api_key` and `base_url` are the `openai` provider's; other providers read their
    own settings from the environment, as their LangChain integrations do.

    Raises:
        ModelConfigError: the string is malformed, the provider is unknown or its
            package is not installed, or (for `openai`) neither an API key nor a base
            URL is known (a real model needs one; a local server needs only its URL).
    """
    provider, name = split_model_spec(spec)
    if provider == "openai":
        return _openai_model(spec, name, timeout, max_retries, api_key, base_url)
    return _provider_model(spec, provider, timeout, max_retries)


def _openai_model(
    spec: str,
    name: str,
    timeout: float,
    max_retries: int,
    api_key: str | None,
    base_url: str | None,
) -> BaseChatModel:
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


def _provider_model(spec: str, provider: str, timeout: float, max_retries: int) -> BaseChatModel:
    """Any other provider's model, through LangChain's `init_chat_model`."""
    known = PROVIDERS.get(provider)
    if known is not None and importlib.util.find_spec(known.import_name) is None:
        raise ModelConfigError(
            f"model '{spec}' needs the {known.package} package: {known.install_hint}"
        )
    options: dict[str, Any] = {"temperature": 0}
    if provider == "ollama":
        # ChatOllama has no timeout of its own (it would ignore one); its HTTP client does.
        options["client_kwargs"] = {"timeout": timeout}
    else:
        seconds = math.ceil(timeout) if known is not None and known.whole_seconds else timeout
        options.update(timeout=seconds, max_retries=max_retries)
    # Imported here: `langchain` takes a while to import, and `openai:` never needs it.
    from langchain.chat_models import init_chat_model

    try:
        made: BaseChatModel = init_chat_model(spec, **options)
    except ImportError as exc:
        raise ModelConfigError(f"model '{spec}': {_first_line(exc)}") from exc
    except ValueError as exc:
        # pydantic's ValidationError is a ValueError: a missing key, region or setting.
        if known is None and "provider" in str(exc):
            raise ModelConfigError(
                f"unknown model provider '{provider}' in '{spec}': use one that LangChain's "
                "init_chat_model knows, such as openai, anthropic, ollama, google_genai or "
                "bedrock_converse"
            ) from exc
        raise ModelConfigError(f"model '{spec}' cannot be made: {_reason(exc)}") from exc
    return made


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _reason(exc: ValueError) -> str:
    """The one line that says why: pydantic's first error message, or the error's text."""
    if isinstance(exc, ValidationError) and exc.errors():
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ").splitlines()[0]
    return _first_line(exc)


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
    openai_http: Any = None
    """The HTTP client every OpenAI copy of this loop shares: making one costs a TLS
    context (about 20 ms), so a new graph in a running loop makes none."""
    closer: asyncio.Future[Any] | None = None


_LOOP_COPIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCopies] = (
    weakref.WeakKeyDictionary()
)
_LOOP_COPIES_LOCK = threading.Lock()


def for_running_loop(model: BaseChatModel) -> BaseChatModel:
    """`model`, or its copy for the running event loop when its async client is shared.

    Copied: a `ChatOpenAI` whose async client is the process-wide default, and every
    `ChatAnthropic` and `ChatOllama` (whose async clients belong to the first loop that
    used them); any other model is returned as it is.
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
            entry = (weakref.ref(model), _with_own_client(model, copies))
            copies.models[id(model)] = entry
        return entry[1]


def _shares_async_client(model: BaseChatModel) -> bool:
    return _loop_bound(model) is not None


def _loop_bound(model: BaseChatModel) -> str | None:
    """Which kind of async client `model` holds that a second event loop cannot reuse."""
    openai_models = sys.modules.get("langchain_openai.chat_models.base")
    if (
        openai_models is not None
        and isinstance(model, openai_models.BaseChatOpenAI)
        and model.http_async_client is None
        and model.root_async_client is not None
    ):
        return "openai"
    # ChatAnthropic takes its async HTTP client from a process-wide cache, and ChatOllama
    # makes one per instance: both keep connections of the loop that opened them.
    anthropic_models = sys.modules.get("langchain_anthropic.chat_models")
    if anthropic_models is not None and isinstance(model, anthropic_models.ChatAnthropic):
        return "anthropic"
    ollama_models = sys.modules.get("langchain_ollama.chat_models")
    if ollama_models is not None and isinstance(model, ollama_models.ChatOllama):
        return "ollama"
    return None


def _with_own_client(model: BaseChatModel, copies: _LoopCopies) -> BaseChatModel:
    clients = copies.clients
    kind = _loop_bound(model)
    own = model.model_copy()
    if kind == "anthropic":
        import anthropic

        # The copy's own client, with its own HTTP client (none is passed to it).
        client = anthropic.AsyncAnthropic(**model._client_params)  # type: ignore[attr-defined]
        own.__dict__["_async_client"] = client
        clients.append(client)
        return own
    if kind == "ollama":
        own._set_clients()  # type: ignore[attr-defined]
        clients.append(own._async_client)  # type: ignore[attr-defined]
        return own
    import openai

    if copies.openai_http is None:
        copies.openai_http = openai.DefaultAsyncHttpxClient()
        clients.append(copies.openai_http)
    http = copies.openai_http
    root = model.root_async_client.copy(http_client=http)  # type: ignore[attr-defined]
    own.root_async_client = root  # type: ignore[attr-defined]
    own.async_client = root.chat.completions  # type: ignore[attr-defined]
    return own


async def _close_at_shutdown(clients: list[Any]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for client in clients:
            # httpx clients close with `aclose`; Anthropic's and Ollama's with `close`.
            close = getattr(client, "aclose", None) or client.close
            with contextlib.suppress(Exception):
                await close()


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
    # A copy, as the cached one must not change; pickling copies plain JSON data
    # several times faster than `copy.deepcopy` (which took 0.3 ms a call here).
    copied: dict[str, Any] = pickle.loads(
        pickle.dumps(_schema_tool(schema), pickle.HIGHEST_PROTOCOL)
    )
    return copied


async def structured_reply(
    model: BaseChatModel,
    schema: type[ModelT],
    messages: Sequence[BaseMessage],
    config: RunnableConfig | None = None,
    *,
    method: StructuredMethod = "tool",
) -> StructuredReply[ModelT]:
    """Ask `model` for a `schema` object in the way `method` says (`structured_method`).

    A forced tool call named after the schema, or (for "json_schema") a reply whose
    content is the object as JSON, parsed here so that a reply that does not parse is
    data (with readable errors) rather than an exception, whatever the model class.
    `config` names and tags the call's trace.
    """
    name = schema.__name__
    if method == "json_schema":
        bound = model.with_structured_output(
            {"title": name, **strict_schema(schema)},
            method="json_schema",
            include_raw=True,
            **_strict_flag(model),
        )
        answer = await bound.ainvoke(list(messages), config)
        raw = _message(answer.get("raw") if isinstance(answer, dict) else answer)
        return _parsed_content(raw, schema)
    if method == "strict_tool":
        # `strict` in the definition itself: `bind_tools` passes a ready definition through.
        function = {
            **schema_tool(schema)["function"],
            "parameters": strict_schema(schema),
            "strict": True,
        }
        strict = {"type": "function", "function": function}
        tool_bound = model.bind_tools([strict], tool_choice=name, strict=True)
    else:
        tool_bound = model.bind_tools([schema_tool(schema)], tool_choice=name)
    raw = _message(await tool_bound.ainvoke(list(messages), config))
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
        return StructuredReply(raw, parse_reply(schema, calls[0]["args"]), [])
    except ValidationError as exc:
        return StructuredReply(raw, None, [_field_error(error) for error in exc.errors()])


def _strict_flag(model: BaseChatModel) -> dict[str, Any]:
    """`strict=True` for the providers whose `with_structured_output` takes it."""
    openai_models = sys.modules.get("langchain_openai.chat_models.base")
    if openai_models is not None and isinstance(model, openai_models.BaseChatOpenAI):
        return {"strict": True}
    return {}


def _message(raw: Any) -> AIMessage:
    if isinstance(raw, AIMessage):
        return raw
    return AIMessage(content=str(getattr(raw, "content", raw)))


def _parsed_content(raw: AIMessage, schema: type[ModelT]) -> StructuredReply[ModelT]:
    """A "json_schema" reply: its text, parsed as the schema's object."""
    text = raw.text.strip()
    if not text:
        return StructuredReply(
            raw, None, [f"the reply has no {schema.__name__} object: it is empty"]
        )
    try:
        return StructuredReply(raw, parse_reply(schema, text), [])
    except json.JSONDecodeError as exc:
        return StructuredReply(
            raw, None, [f"the reply is not a JSON {schema.__name__} object: {exc}"]
        )
    except ValidationError as exc:
        return StructuredReply(raw, None, [_field_error(error) for error in exc.errors()])


def _field_error(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
