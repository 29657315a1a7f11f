"""How one async graph answers LangGraph's sync API too, from any thread or event loop.

planexec's nodes are async: they rely on `asyncio` timeouts, semaphores and awaited
LangGraph tasks, and a sync LangGraph run cannot await a task's future. So there is one
implementation of each node, and the sync entry points drive the async graph:

- `PlanexecGraph.stream` (and so `invoke`, `batch` and `stream_events(version="v3")`)
  runs `astream` on *the runtime loop*: an event loop planexec owns, in a daemon thread
  of its own, started on first use. The calling thread waits on a queue for each part,
  so it may itself be running a loop (Jupyter's, say): that loop is only blocked, never
  used. The caller's context variables (tracing settings, a parent run's config) go
  with the run. Breaking out of the stream, or Ctrl-C, cancels the run and waits for it
  to unwind, as cancelling `astream` would.
- A saver with only sync methods (`SqliteSaver`, `PostgresSaver`) is lent to such a run
  wrapped in `ThreadedSaver`, whose async methods call the sync ones on a worker thread
  of its own, one call at a time. A saver bound to another event loop
  (`AsyncSqliteSaver`, `AsyncPostgresSaver`) is lent wrapped in `ForwardingSaver`,
  which hands each call to that loop, when the loop is running in another thread.
- A saver that cannot serve the API called gets `SaverMismatchError`, one line naming
  the saver to use, before any node runs: a sync-only saver under `ainvoke`, or an
  async saver whose loop is the one the sync call would block.

The state methods (`get_state`, `update_state`, ...) run no nodes and call the saver
directly, as LangGraph does; they get the same mismatch checks.

Each part costs two thread hand-offs (a few tens of microseconds): `bench/` measures it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from typing_extensions import override

from planexec.errors import PlanexecError

__all__ = [
    "ForwardingSaver",
    "SaverMismatchError",
    "ThreadedSaver",
    "iterate",
    "saver_for_async",
    "saver_for_sync_run",
    "saver_for_sync_state",
]

T = TypeVar("T")
SaverAPI = Literal["sync", "async", "both"]

UNWIND_S = 10.0
"""How long a sync call that was interrupted (Ctrl-C, or the caller stopped reading)
waits for the cancelled run to save its state and let go of its resources."""

_PAIRS = {
    "SqliteSaver": "AsyncSqliteSaver (langgraph.checkpoint.sqlite.aio)",
    "AsyncSqliteSaver": "SqliteSaver (langgraph.checkpoint.sqlite)",
    "PostgresSaver": "AsyncPostgresSaver (langgraph.checkpoint.postgres.aio)",
    "AsyncPostgresSaver": "PostgresSaver (langgraph.checkpoint.postgres)",
}
"""For a saver that cannot serve a call, the saver that can."""


class SaverMismatchError(PlanexecError, TypeError):
    """The graph's saver cannot serve the API called (a sync saver under `ainvoke`, say)."""


# --- savers ------------------------------------------------------------------------------


def saver_api(saver: BaseCheckpointSaver[Any]) -> SaverAPI:
    """Which of LangGraph's saver APIs `saver` implements.

    A saver bound to an event loop (it has a `loop`, as `AsyncSqliteSaver` and
    `AsyncPostgresSaver` do) is "async": its sync methods only hand calls to that loop.
    """
    if isinstance(saver, ThreadedSaver | ForwardingSaver):
        return "both"
    if isinstance(getattr(saver, "loop", None), asyncio.AbstractEventLoop):
        return "async"
    kind = type(saver)
    has_sync = kind.get_tuple is not BaseCheckpointSaver.get_tuple
    has_async = kind.aget_tuple is not BaseCheckpointSaver.aget_tuple and not _async_refused(saver)
    if has_sync and has_async:
        return "both"
    return "sync" if has_sync else "async"


def _async_refused(saver: BaseCheckpointSaver[Any]) -> bool:
    """Whether `saver` defines async methods only to refuse them (SqliteSaver does)."""
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:  # pragma: no cover - the SQLite saver is a dependency
        return False
    return isinstance(saver, SqliteSaver)


def _name(saver: BaseCheckpointSaver[Any]) -> str:
    return type(saver).__name__


def _instead(saver: BaseCheckpointSaver[Any], default: str) -> str:
    return _PAIRS.get(_name(saver), default)


def saver_for_async(saver: BaseCheckpointSaver[Any] | None, call: str) -> None:
    """Refuse an async `call` (`"ainvoke"`, say) that `saver` cannot serve."""
    if saver is not None and saver_api(saver) == "sync":
        raise SaverMismatchError(
            f"{_name(saver)} has no async methods, so graph.{call}() cannot use it: use "
            f"{_instead(saver, 'a saver with async methods')} for the async API, or call "
            f"graph.{call.removeprefix('a')}() with this one"
        )


def saver_for_sync_state(saver: BaseCheckpointSaver[Any] | None, call: str) -> None:
    """Refuse a sync state `call` (`"get_state"`, say) that `saver` cannot serve from here."""
    if saver is None:
        return
    api = saver_api(saver)
    if api == "async" and isinstance(getattr(saver, "loop", None), asyncio.AbstractEventLoop):
        _check_reachable(saver, call)
    elif api == "async":
        raise SaverMismatchError(
            f"{_name(saver)} has no sync methods, so graph.{call}() cannot use it: "
            f"await graph.a{call}() instead, or use a saver with sync methods"
        )


def saver_for_sync_run(
    saver: BaseCheckpointSaver[Any] | None, call: str
) -> BaseCheckpointSaver[Any] | None:
    """The saver that a sync `call` (`"invoke"`, say) lends its run on the runtime loop.

    Raises:
        SaverMismatchError: `saver` is bound to an event loop that this call would block
            (or that is not running), so the run could never save a checkpoint.
    """
    if saver is None:
        return None
    api = saver_api(saver)
    if api == "sync":
        return ThreadedSaver(saver)
    loop = getattr(saver, "loop", None)
    if api == "async" and isinstance(loop, asyncio.AbstractEventLoop):
        _check_reachable(saver, call)
        return ForwardingSaver(saver, loop)
    return saver


def _check_reachable(saver: BaseCheckpointSaver[Any], call: str) -> None:
    loop: asyncio.AbstractEventLoop = saver.loop  # type: ignore[attr-defined]
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        raise SaverMismatchError(
            f"{_name(saver)} belongs to the event loop running here, which graph.{call}() "
            f"would block: await graph.a{call}() instead, or use "
            f"{_instead(saver, 'a saver with sync methods')} with graph.{call}()"
        )
    if loop.is_closed() or not loop.is_running():
        raise SaverMismatchError(
            f"the event loop that opened {_name(saver)} is not running, so graph.{call}() "
            f"cannot use it: use {_instead(saver, 'a saver with sync methods')} with "
            f"graph.{call}(), or await graph.a{call}() inside that loop"
        )


class _DelegatingSaver(BaseCheckpointSaver[Any]):
    """A saver whose sync methods are `inner`'s; subclasses supply the async ones."""

    def __init__(self, inner: BaseCheckpointSaver[Any]) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        # Anything else the inner saver offers (its connection, setup()...).
        if name == "inner":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    @override
    def config_specs(self) -> list[Any]:
        return list(self.inner.config_specs)

    @override
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    @override
    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, filter=filter, before=before, limit=limit)

    @override
    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.inner.put(config, checkpoint, metadata, new_versions)

    @override
    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.inner.put_writes(config, writes, task_id, task_path)

    @override
    def delete_thread(self, thread_id: str) -> None:
        self.inner.delete_thread(thread_id)

    @override
    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.inner.delete_for_runs(run_ids)

    @override
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.inner.copy_thread(source_thread_id, target_thread_id)

    @override
    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.inner.prune(thread_ids, strategy=strategy)

    @override
    def get_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> Any:
        return self.inner.get_delta_channel_history(config=config, channels=channels)

    @override
    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)

    @override
    def with_allowlist(self, extra_allowlist: Any) -> BaseCheckpointSaver[Any]:
        inner = self.inner.with_allowlist(extra_allowlist)
        return self if inner is self.inner else self._rewrap(inner)

    def _rewrap(self, inner: BaseCheckpointSaver[Any]) -> _DelegatingSaver:
        raise NotImplementedError

    # The async methods: each is `inner`'s method of the same name, run as the subclass
    # says (`_run`), so the two adapters differ only in how a call reaches `inner`.

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`inner`'s `method` (a sync method's name) called with these arguments."""
        raise NotImplementedError

    async def _listed(
        self, config: RunnableConfig | None, **options: Any
    ) -> Sequence[CheckpointTuple]:
        """`inner`'s listing, read whole (a listing must not hold the saver while suspended)."""
        raise NotImplementedError

    @override
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        found: CheckpointTuple | None = await self._run("get_tuple", config)
        return found

    @override
    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in await self._listed(config, filter=filter, before=before, limit=limit):
            yield item

    @override
    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        saved: RunnableConfig = await self._run("put", config, checkpoint, metadata, new_versions)
        return saved

    @override
    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._run("put_writes", config, writes, task_id, task_path)

    @override
    async def adelete_thread(self, thread_id: str) -> None:
        await self._run("delete_thread", thread_id)

    @override
    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._run("delete_for_runs", run_ids)

    @override
    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._run("copy_thread", source_thread_id, target_thread_id)

    @override
    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._run("prune", thread_ids, strategy=strategy)

    @override
    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Any:
        return await self._run("get_delta_channel_history", config=config, channels=channels)


class ThreadedSaver(_DelegatingSaver):
    """A sync-only saver with async methods: each call runs on a worker thread of its own.

    One worker serves the saver, so calls run one at a time in the order made (the
    savers lock around each call anyway), and a slow tool elsewhere never holds one up.
    """

    def __init__(self, inner: BaseCheckpointSaver[Any], worker: _Worker | None = None) -> None:
        super().__init__(inner)
        self._worker = worker or _Worker(f"planexec-saver-{_name(inner)}")

    def _rewrap(self, inner: BaseCheckpointSaver[Any]) -> ThreadedSaver:
        return ThreadedSaver(inner, self._worker)

    async def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self._worker.submit(func, *args, **kwargs))

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._call(getattr(self.inner, method), *args, **kwargs)

    async def _listed(
        self, config: RunnableConfig | None, **options: Any
    ) -> Sequence[CheckpointTuple]:
        # Read whole: a sync saver holds its lock while its listing is suspended.
        return await self._call(lambda: list(self.inner.list(config, **options)))


class ForwardingSaver(_DelegatingSaver):
    """An async saver bound to another event loop, callable from any loop.

    Each async call runs on the saver's own loop (which must be running, in another
    thread) and is awaited from the caller's.
    """

    def __init__(self, inner: BaseCheckpointSaver[Any], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(inner)
        self._loop = loop

    def _rewrap(self, inner: BaseCheckpointSaver[Any]) -> ForwardingSaver:
        return ForwardingSaver(inner, self._loop)

    async def _on_loop(self, make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self._loop))

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._on_loop(lambda: getattr(self.inner, "a" + method)(*args, **kwargs))

    async def _listed(
        self, config: RunnableConfig | None, **options: Any
    ) -> Sequence[CheckpointTuple]:
        async def collect() -> Sequence[CheckpointTuple]:
            return [item async for item in self.inner.alist(config, **options)]

        return await self._on_loop(collect)


class _Worker:
    """One daemon thread that runs submitted calls in order (it never delays exit)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._pid: int | None = None

    def submit(
        self, func: Callable[..., T], *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child without the thread
                self._pid = os.getpid()
                threading.Thread(target=self._serve, name=self._name, daemon=True).start()
        self._calls.put((future, lambda: func(*args, **kwargs)))
        return future

    def _serve(self) -> None:
        while True:
            future, call = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)


# --- the runtime loop --------------------------------------------------------------------


class _RuntimeLoop:
    """The event loop that sync calls run the graph on, in a daemon thread, made on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        """The loop, started if this process has none yet."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                ready = threading.Event()
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._serve, args=(loop, ready), name="planexec-runtime", daemon=True
                )
                self._thread.start()
                ready.wait()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the runtime loop's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    def stop(self) -> None:
        """Stop the loop at interpreter exit, as `asyncio.run` ends its loop.

        Runs still going (a stream the program never finished reading, say) are
        cancelled and given `UNWIND_S` to unwind; then async generators are closed.
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._pid != os.getpid() or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(_wind_down(), loop)
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            future.result(timeout=UNWIND_S + 2.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=2.0)


async def _wind_down() -> None:
    here = asyncio.current_task()
    running = [task for task in asyncio.all_tasks() if task is not here]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running, timeout=UNWIND_S)
    await asyncio.get_running_loop().shutdown_asyncgens()


_RUNTIME = _RuntimeLoop()
atexit.register(_RUNTIME.stop)


def iterate(make: Callable[[], AsyncIterator[T]], call: str) -> Iterator[T]:
    """The parts of the async iterator `make()` gives, produced on the runtime loop.

    `call` names the sync method for errors. Stopping early (or Ctrl-C while waiting)
    cancels the iteration and waits up to `UNWIND_S` for it to unwind.
    """
    if _RUNTIME.in_loop_thread():
        raise RuntimeError(
            f"graph.{call}() was called from async code on planexec's runtime loop, which it "
            f"would block: await graph.a{call}() there instead"
        )
    loop = _RUNTIME.get()
    parts: queue.Queue[tuple[Literal["part", "error", "end"], Any]] = queue.Queue()
    unwound = threading.Event()

    async def pump() -> None:
        try:
            async for part in make():
                parts.put(("part", part))
        except BaseException as exc:  # raised again in the calling thread
            parts.put(("error", exc))
        else:
            parts.put(("end", None))
        finally:
            unwound.set()

    # The task runs in a copy of this thread's context (run_coroutine_threadsafe copies it).
    task = asyncio.run_coroutine_threadsafe(pump(), loop)
    try:
        while True:
            kind, value = parts.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        if not unwound.is_set():
            task.cancel()
            unwound.wait(UNWIND_S)
