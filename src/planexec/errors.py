"""Errors planexec raises on purpose, each with a message meant for a person."""

from __future__ import annotations


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
        super().__init__(f"the {role} model call failed: {type(cause).__name__}: {cause}")
