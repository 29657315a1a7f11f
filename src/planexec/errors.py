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
