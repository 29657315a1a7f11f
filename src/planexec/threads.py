"""Plain `def` tools, run in daemon threads of planexec's own.

LangChain runs a tool that has no coroutine in the event loop's default executor. Its
threads cannot be stopped, and they are joined when the interpreter exits, so a call
that never returns keeps the process alive, and a call cancelled by a timeout goes on
to have its effect after the step was recorded as failed and retried.

planexec calls such a tool itself, in a daemon thread of a pool of its own (the process
may exit while it runs, which ends the call as a crash would), and keeps a register of
the calls still running, by the step's idempotency key. When the attempt waiting for a call is
cancelled (its timeout, the time budget, the run's own cancellation), the call runs on:
`still_running(key)` says so until it returns, and the executor leaves that step
unsettled (no retry, no result, no question about an uncertain call) rather than
settle it while its effect may still happen. A later call with the same key in this
process waits for the earlier one instead of running beside it, and takes its outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, Tool

__all__ = ["call_in_thread", "runs_in_a_thread", "still_running"]

_running: dict[str, concurrent.futures.Future[Any]] = {}
_lock = threading.Lock()


def runs_in_a_thread(tool: BaseTool) -> bool:
    """Whether `tool` has no async implementation, so that it must run in a thread."""
    if isinstance(tool, StructuredTool | Tool):
        return tool.coroutine is None
    return type(tool)._arun is BaseTool._arun


def still_running(key: str) -> bool:
    """Whether a call made with `key` in this process has not returned yet."""
    with _lock:
        future = _running.get(key)
    return future is not None and not future.done()


async def call_in_thread(key: str, function: Callable[[], Any]) -> Any:
    """`function()`, run in a daemon thread with this task's context variables.

    If a call with `key` is still running in this process, it is waited for and its
    outcome returned (or raised) instead. Cancelling the wait leaves the call running.
    """
    with _lock:
        future = _running.get(key)
        if future is None or future.done():
            future = concurrent.futures.Future()
            _running[key] = future
            _start(key, future, function)
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()

    def relay(done: concurrent.futures.Future[Any]) -> None:
        # From the tool's thread; the loop may be gone by the time a hung call returns.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_copy, done, waiter)

    future.add_done_callback(relay)
    return await waiter


def _copy(done: concurrent.futures.Future[Any], waiter: asyncio.Future[Any]) -> None:
    if waiter.cancelled():
        return  # nobody waits any more: the attempt was cancelled, the call ran on
    error = done.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(done.result())


def _start(key: str, future: concurrent.futures.Future[Any], function: Callable[[], Any]) -> None:
    context = contextvars.copy_context()

    def run() -> None:
        if not future.set_running_or_notify_cancel():  # pragma: no cover - never cancelled
            return
        try:
            result = context.run(function)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        finally:
            with _lock:
                if _running.get(key) is future:
                    del _running[key]

    _POOL.submit(run)


class _DaemonPool:
    """Daemon threads that take calls from a queue: as many as calls ever ran at once.

    A thread is started only when no idle one is left, so a call that hangs holds its
    thread and the others go on; being daemons, they never keep the process alive.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._count = 0
        self._lock = threading.Lock()

    def submit(self, call: Callable[[], None]) -> None:
        with self._lock:
            if self._idle == 0:
                self._count += 1
                worker = threading.Thread(
                    target=self._work, name=f"planexec-tool-{self._count}", daemon=True
                )
                worker.start()
            else:
                self._idle -= 1
        self._calls.put(call)

    def _work(self) -> None:
        while True:
            call = self._calls.get()
            call()
            with self._lock:
                self._idle += 1


_POOL = _DaemonPool()
