"""The interrupts planexec raises, and the status a thread waiting on each is listed with.

Apart from `planexec.interrupts` (which holds the interrupts' pydantic shapes) so that
the command line can name a thread's status without importing pydantic.
"""

from __future__ import annotations

from typing import Literal

InterruptType = Literal["plan_review", "step_approval", "uncertain_step"]
"""The `type` of each interrupt planexec raises."""

PausedStatus = Literal["paused_for_review", "awaiting_approval", "uncertain_step"]
"""A thread's status while it waits on one of these interrupts (`planexec threads`)."""

PAUSED_STATUS: dict[InterruptType, PausedStatus] = {
    "plan_review": "paused_for_review",
    "step_approval": "awaiting_approval",
    "uncertain_step": "uncertain_step",
}
"""The status a thread paused at each kind of interrupt is listed with."""

NEEDS_MODEL = "needs_model"
"""The interrupt a `planexec demo` run pauses at when a choice goes past its scripted
replies (`planexec.demo`); its thread is listed as `awaiting_model`."""

__all__ = ["NEEDS_MODEL", "PAUSED_STATUS", "InterruptType", "PausedStatus"]
