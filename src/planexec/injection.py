"""The parameters of a tool that planexec fills in, as LangGraph's `ToolNode` does.

A LangChain tool may take arguments that the model never sees (they are left out of
its `tool_call_schema`) and that whoever runs the tool fills in. planexec fills:

- `Annotated[dict, InjectedState]`: a copy of the run's state (`planexec.state.State`:
  goal, plan, results, messages, usage...) as it was when the executor pass running
  the step began, so the same on every retry and resume of the step. Its `results`
  are those of steps finished in earlier passes: steps that finish in the same pass
  (the step's own dependencies among them) are not in it, and reach the step through
  its `{{id}}` arguments instead. The tool may change its copy freely;
  `InjectedState("results")` gives that one key (None when the state has none);
- `Annotated[BaseStore, InjectedStore()]`: the graph's store (`build_graph(store=)`);
- `runtime: ToolRuntime`: the state, context, store, stream writer and config;
- `Annotated[str, InjectedToolCallId]`: the step's idempotency key.

Any other injected parameter (`InjectedToolArg` or a subclass of it) cannot be filled,
and `check_injections` refuses the tool when the graph is built, as it refuses a tool
that wants the store of a graph that has none.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.tools import BaseTool, InjectedToolArg, InjectedToolCallId
from langgraph.prebuilt import InjectedState, InjectedStore, ToolRuntime

__all__ = ["Injection", "check_injections", "injected_params", "state_view"]

InjectionKind = Literal["state", "store", "runtime", "tool_call_id", "unknown"]


@dataclass(frozen=True)
class Injection:
    """One parameter of a tool that its caller fills in."""

    kind: InjectionKind
    field: str | None = None
    """For "state": the one state key asked for, or None for the whole state."""
    marker: str = ""
    """The annotation that asked for it, for messages."""


def injected_params(tool: BaseTool) -> dict[str, Injection]:
    """The parameters of `tool` that are filled in rather than chosen by the model."""
    hints = _annotations(tool)
    injected: dict[str, Injection] = {}
    for name, hint in hints.items():
        found = _injection(hint)
        if found is not None:
            injected[name] = found
    return injected


def _annotations(tool: BaseTool) -> dict[str, Any]:
    """The tool's parameters' annotations: its function's and its input schema's."""
    func = getattr(tool, "coroutine", None) or getattr(tool, "func", None)
    schema = tool.args_schema if isinstance(tool.args_schema, type) else None
    try:
        return dict(_cached_hints(func, schema))
    except (NameError, TypeError):
        # An annotation that does not resolve (yet), or a callable that cannot key a
        # cache: read afresh, without what does not resolve.
        return _hints_of(func, schema, tolerant=True)


@functools.lru_cache(maxsize=1024)
def _cached_hints(func: Any, schema: Any) -> Mapping[str, Any]:
    """`_hints_of`, once per function and input schema.

    Resolving string annotations takes longer than the tool call, and a step calls
    its tool each time. Keyed by the function and schema objects themselves, so a tool given another
    function or schema is read afresh (the cache holds them, so their ids are not reused).
    An annotation that does not resolve raises, and is not cached.
    """
    return _hints_of(func, schema, tolerant=False)


def _hints_of(func: Any, schema: Any, *, tolerant: bool) -> dict[str, Any]:
    skipped = (NameError, TypeError) if tolerant else ()
    hints: dict[str, Any] = {}
    if func is not None:
        with contextlib.suppress(*skipped):
            hints.update(typing.get_type_hints(func, include_extras=True))
    if isinstance(schema, type):
        try:
            fields = typing.get_type_hints(schema, include_extras=True)
        except skipped:
            fields = {}
        model_fields = getattr(schema, "model_fields", {})
        hints.update({name: hint for name, hint in fields.items() if name in model_fields})
    hints.pop("return", None)
    return hints


def _injection(hint: Any) -> Injection | None:
    if hint is ToolRuntime or typing.get_origin(hint) is ToolRuntime:
        return Injection("runtime", marker="ToolRuntime")
    if typing.get_origin(hint) is not typing.Annotated:
        return None
    for meta in typing.get_args(hint)[1:]:
        kind = meta if isinstance(meta, type) else type(meta)
        if not issubclass(kind, InjectedToolArg):
            continue
        if issubclass(kind, InjectedState):
            field = meta.field if isinstance(meta, InjectedState) else None
            return Injection("state", field, "InjectedState")
        if issubclass(kind, InjectedStore):
            return Injection("store", marker="InjectedStore")
        if issubclass(kind, InjectedToolCallId):
            return Injection("tool_call_id", marker="InjectedToolCallId")
        return Injection("unknown", marker=kind.__name__)
    return None


def check_injections(tools: Sequence[BaseTool], *, has_store: bool) -> None:
    """Raise `ValueError` for a tool with an injected parameter planexec cannot fill.

    The message names the tool, the parameter and what asked for it.
    """
    for tool in tools:
        for name, injection in injected_params(tool).items():
            if injection.kind == "unknown":
                raise ValueError(
                    f"tool {tool.name!r}: parameter {name!r} is injected ({injection.marker}), "
                    "and planexec fills only InjectedState, InjectedStore, ToolRuntime and "
                    "InjectedToolCallId parameters"
                )
            if injection.kind == "store" and not has_store:
                raise ValueError(
                    f"tool {tool.name!r}: parameter {name!r} takes the graph's store "
                    "(InjectedStore), but the graph has none: pass build_graph(store=...)"
                )


def state_view(state: Mapping[str, Any], field: str | None) -> Any:
    """What an `InjectedState` parameter receives: a copy of the state, or of one key."""
    if field is not None:
        return copy.deepcopy(state.get(field))
    return copy.deepcopy(dict(state))
