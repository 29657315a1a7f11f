"""The LangGraph and LangChain internals planexec relies on, in one place.

Each name here is private to the library it comes from, so an upgrade may move or
change it; tests/test_internals.py checks every one, so that such an upgrade fails
loudly here rather than quietly somewhere else.
"""

from __future__ import annotations

from typing import Any, cast

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers._streaming import _StreamingCallbackHandler
from langgraph._internal._typing import MISSING as _MISSING
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

__all__ = [
    "CHECKPOINTER_KEY",
    "DURABILITY_KEY",
    "MISSING",
    "astate_snapshot",
    "has_streaming_listener",
    "lend_saver",
    "saver_of",
    "state_snapshot",
]

MISSING: Any = _MISSING
"""What a channel's stored value is when the checkpoint holds none: a `DeltaChannel`
left out of `channel_values` is rebuilt from its ancestors' writes."""

CHECKPOINTER_KEY: str = CONFIG_KEY_CHECKPOINTER
"""Where LangGraph keeps the saver a run uses in its config: a parent graph lends its
saver to a subgraph this way, and a graph's own runs read it before `graph.checkpointer`."""

DURABILITY_KEY = "__pregel_durability"
"""Where LangGraph keeps the run's durability mode in a task's config (and reads a
graph's default from its `with_config` configurable)."""


def saver_of(graph: Any, config: RunnableConfig | None) -> BaseCheckpointSaver[Any] | None:
    """The saver a run or state call of `graph` with `config` would use, if any.

    This mirrors how LangGraph picks it: a saver lent through the config first, then
    the graph's own (`False` and `True`, for subgraphs, mean none of its own).
    """
    configurable = (config or {}).get("configurable") or {}
    saver = configurable.get(CHECKPOINTER_KEY, graph.checkpointer)
    return saver if isinstance(saver, BaseCheckpointSaver) else None


def lend_saver(config: RunnableConfig | None, saver: BaseCheckpointSaver[Any]) -> RunnableConfig:
    """`config`, with `saver` lent to the run in place of the graph's own."""
    base: dict[str, Any] = dict(config or {})
    base["configurable"] = {**(base.get("configurable") or {}), CHECKPOINTER_KEY: saver}
    return cast(RunnableConfig, base)


def has_streaming_listener(callbacks: Any) -> bool:
    """Whether `callbacks` (a config's) hold a handler that wants a model's tokens.

    LangChain streams a chat model's reply exactly when such a handler is attached:
    LangGraph's `stream_mode="messages"` handler and `astream_events`' are both
    `_StreamingCallbackHandler`s, a private protocol of langchain-core.
    """
    if isinstance(callbacks, BaseCallbackManager):
        handlers: list[Any] = callbacks.handlers
    elif isinstance(callbacks, list):
        handlers = callbacks
    else:
        return False
    return any(isinstance(handler, _StreamingCallbackHandler) for handler in handlers)


def state_snapshot(
    graph: Pregel[Any, Any, Any, Any], saved: CheckpointTuple, saver: BaseCheckpointSaver[Any]
) -> StateSnapshot:
    """The snapshot `get_state_history` makes of `saved`.

    `saver` is asked for the values of the channels stored by delta
    (`get_delta_channel_history`).
    """
    return graph._prepare_state_snapshot(saved.config, saved, saver=saver)


async def astate_snapshot(
    graph: Pregel[Any, Any, Any, Any], saved: CheckpointTuple, saver: BaseCheckpointSaver[Any]
) -> StateSnapshot:
    """`state_snapshot`, asking `saver` through its async methods."""
    return await graph._aprepare_state_snapshot(saved.config, saved, saver=saver)
