"""What the commands share.

The environment, the checkpoint file, the run's settings kept with the thread, the
models, and the loop that streams a run and answers its interrupts.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, Interrupt
from pydantic import TypeAdapter, ValidationError

from planexec.checkpoints import AsyncCheckpointer
from planexec.cli.environment import Environment, UserError
from planexec.cli.opening import (
    CONTEXT_KEY,
    DEMO_KEY,
    GOAL_KEY,
    SEAL_KEY,
)
from planexec.context import Context
from planexec.errors import CheckpointError, PlanexecError
from planexec.events import is_event
from planexec.graph import PlanexecGraph, run_config
from planexec.lease import Lease, default_owner, thread_lease
from planexec.models import ModelFactory, chat_model
from planexec.serde import metadata_seal

_CONTEXT = TypeAdapter(Context)


def make_context(settings: Mapping[str, Any]) -> Context:
    """A `Context` from settings, or a one-line `UserError` naming the bad setting."""
    try:
        return Context(**settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise UserError(f"invalid setting {where}: {first['msg']}") from exc
    except TypeError as exc:
        raise UserError(f"invalid settings: {exc}") from exc


def context_json(context: Context) -> str:
    """The context as JSON, for the thread's checkpoint metadata."""
    return json.dumps(_CONTEXT.dump_python(context, mode="json"), sort_keys=True)


def thread_config(
    thread_id: str, context: Context, goal: str, *, demo: bool = False
) -> RunnableConfig:
    """The run config, with the context and goal in the metadata of every checkpoint."""
    metadata = {CONTEXT_KEY: context_json(context), GOAL_KEY: goal}
    if demo:
        metadata[DEMO_KEY] = "1"
    return run_config(thread_id, context, metadata=metadata)


def seal_config(config: RunnableConfig, key: str | None) -> RunnableConfig:
    """`config` with its metadata signed under `key`; as it is without a key.

    The goal is left out of signed metadata: the encrypted state holds it.
    """
    if key is None:
        return config
    metadata = {k: v for k, v in (config.get("metadata") or {}).items() if k != GOAL_KEY}
    metadata[SEAL_KEY] = _seal(metadata, key)
    return {**config, "metadata": metadata}


def check_seal(metadata: Mapping[str, Any] | None, key: str | None) -> None:
    """Raise `CheckpointError` unless `metadata` carries a valid signature under `key`."""
    if key is None:
        return
    found = (metadata or {}).get(SEAL_KEY)
    if not isinstance(found, str) or not hmac.compare_digest(found, _seal(metadata or {}, key)):
        raise CheckpointError(
            "the run settings kept with this thread are not signed with the checkpoint key, "
            "or were changed since: refusing to resume it"
        )


def _seal(metadata: Mapping[str, Any], key: str) -> str:
    kept = sorted(
        (k, str(v)) for k, v in metadata.items() if k.startswith("planexec_") and k != SEAL_KEY
    )
    return metadata_seal(key, *(f"{k}={v}" for k, v in kept))


def model_factory(env: Environment) -> ModelFactory:
    """Makes chat models with the credentials read from the environment."""

    def make(spec: str, context: Context) -> BaseChatModel:
        return chat_model(
            spec,
            timeout=context.model_timeout,
            max_retries=context.model_max_retries,
            api_key=env.api_key,
            base_url=env.base_url,
        )

    return make


def check_models(context: Context, factory: ModelFactory) -> None:
    """Fail now, with a one-line reason, if a role's model cannot be made."""
    for spec in dict.fromkeys((context.planner_model, context.executor_model, context.replanner)):
        try:
            factory(spec, context)
        except PlanexecError as exc:
            raise UserError(str(exc)) from exc


def hold_thread(
    saver: AsyncCheckpointer, thread_id: str, command: str
) -> AbstractAsyncContextManager[Lease]:
    """The thread's lease (`planexec.lease`): no other client may run it meanwhile.

    Raises `ThreadBusyError` on entry if another client holds it.
    """
    return thread_lease(saver, thread_id, owner=f"planexec {command} ({default_owner()})")


async def record_thread(
    graph: PlanexecGraph, config: RunnableConfig, context: Context, goal: str
) -> None:
    """Save a new run's input as its thread's first checkpoints, before any node runs.

    A process that dies before the planner's first checkpoint leaves its thread listed
    (`planexec threads`: interrupted), and `planexec resume` starts it from the goal.
    """
    async for _ in graph.astream(
        {"goal": goal},
        config,
        context=context,
        durability="sync",
        interrupt_before=["planner"],
    ):
        pass


Decide = Callable[[dict[str, Any]], Any]
"""Answers an interrupt's value with a resume value, or None to leave the run paused."""


@dataclass
class Outcome:
    """Where a run stopped: its state values, and the interrupt if it is paused."""

    values: dict[str, Any]
    paused: dict[str, Any] | None = None


async def drive(
    graph: PlanexecGraph,
    config: RunnableConfig,
    context: Context,
    start: Any,
    decide: Decide,
    on_event: Callable[[dict[str, Any]], None],
    on_update: Callable[[str, dict[str, Any]], None] | None = None,
) -> Outcome:
    """Stream the run from `start` until it ends or `decide` leaves it paused.

    `start` is the input, None (to continue an interrupted run), or a pending
    `Interrupt` to answer first. Every interrupt is answered with `decide`; progress
    events go to `on_event`, and nodes' state updates to `on_update`.
    """
    pending: Interrupt | None = start if isinstance(start, Interrupt) else None
    value: Any = None if pending is not None else start
    while True:
        if pending is None:
            pending = await _stream(graph, config, context, value, on_event, on_update)
        if pending is None:
            snapshot = await graph.aget_state(config)
            return Outcome(dict(snapshot.values))
        request = pending.value
        if not isinstance(request, dict):
            raise UserError(
                f"the run is paused at an interrupt planexec does not know: {request!r}"
            )
        answer = decide(request)
        if answer is None:
            snapshot = await graph.aget_state(config)
            return Outcome(dict(snapshot.values), paused=request)
        value = Command(resume={pending.id: answer})
        pending = None


async def _stream(
    graph: PlanexecGraph,
    config: RunnableConfig,
    context: Context,
    value: Any,
    on_event: Callable[[dict[str, Any]], None],
    on_update: Callable[[str, dict[str, Any]], None] | None,
) -> Interrupt | None:
    """Run until the graph ends or interrupts; the interrupt, if any."""
    pending: Interrupt | None = None
    async for mode, chunk in graph.astream(
        value, config, context=context, stream_mode=["updates", "custom"], durability="sync"
    ):
        if not isinstance(chunk, dict):
            continue
        if mode == "custom" and is_event(chunk):
            on_event(chunk)
        elif mode == "updates" and "__interrupt__" in chunk:
            pending = chunk["__interrupt__"][0]
        elif mode == "updates" and on_update is not None:
            for node, update in chunk.items():
                if isinstance(update, dict):
                    on_update(node, update)
    return pending
