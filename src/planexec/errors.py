"""Errors planexec raises on purpose, each with a message meant for a person."""

from __future__ import annotations

import json
from datetime import datetime


class PlanexecError(Exception):
    """Base class of planexec's own errors."""


class InvalidGoalError(PlanexecError, ValueError):
    """The run's input has no usable goal."""


class ModelConfigError(PlanexecError, ValueError):
    """A model string or the credentials for it cannot give a working model."""


class TransientError(PlanexecError):
    """Raise from a tool for a failure that may succeed on retry (the step is retried)."""


class StepTimeoutError(TransientError, TimeoutError):
    """One attempt of a step took longer than its timeout."""


class StepAbandonedError(PlanexecError):
    """A step's attempt ran out of time while its plain `def` tool was still running.

    Python cannot stop a thread, so the call runs on. The step is not retried, not
    recorded and not asked about while its effect may still happen: the run ends.
    """


class ExecutorReplyError(TransientError):
    """The executor model's reply cannot be used for the step (asked again on retry)."""


class ModelCallError(PlanexecError):
    """A model call failed: an HTTP error, a timeout, or a reply the client could not read."""

    def __init__(self, role: str, cause: BaseException) -> None:
        self.role = role
        self.cause = cause
        self.is_retryable = bool(getattr(cause, "is_retryable", False)) or isinstance(
            cause, ConnectionError | TimeoutError
        )
        self.unreadable = isinstance(cause, json.JSONDecodeError) or (
            type(cause).__name__ == "APIResponseValidationError"
        )
        """Whether a reply arrived but its body could not be read (not JSON, say): the
        client does not retry that, and the planner and replanner ask again instead."""
        super().__init__(f"the {role} model call failed: {type(cause).__name__}: {cause}")


class ThreadBusyError(PlanexecError):
    """Another client holds the thread's lease: it is running or resuming the thread now.

    Running the thread at the same time would fork its history, so this client is
    refused; it may try again once the other finishes (or its lease lapses).
    """

    def __init__(self, thread_id: str, owner: str, since: datetime, lapses: datetime) -> None:
        self.thread_id = thread_id
        self.owner = owner
        self.since = since
        """When the holder took the lease (UTC)."""
        self.lapses = lapses
        """When the lease expires unless its holder renews it (UTC)."""
        super().__init__(
            f"thread {thread_id} is being run by {owner} since {since:%Y-%m-%d %H:%M:%S} UTC; "
            "try again when it finishes (if that process has died, its lease lapses at "
            f"{lapses:%H:%M:%S} UTC)"
        )


class LeaseLostError(PlanexecError):
    """The thread's lease could not be renewed in time, so the run holding it was stopped."""


class CheckpointError(PlanexecError):
    """A saved checkpoint cannot be trusted: it is corrupt, was changed, or the key is wrong.

    Nothing runs on it: the run or command stops with this error instead.
    """
