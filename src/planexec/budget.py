"""Run budgets: steps executed, model calls, tokens, cost and working time.

A `Budget` is made at the start of each node from what the state has recorded, and
counts what the node adds. A model call is reserved before it is made, so the
model-call budget is never exceeded. Tokens and cost are known only after a call, so
under a token or cost budget model calls are made one at a time (tools still run in
parallel): the run overshoots those budgets by at most the one call that crossed them.
Working time is a deadline: work still running when it passes is cancelled.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from langgraph.types import StreamWriter

from planexec.context import Context
from planexec.events import WARNING_FRACTION, emit
from planexec.state import State, Usage


class BudgetExhaustedError(Exception):
    """A budget ran out; the run ends with status "budget_exhausted"."""

    def __init__(self, budget: str, limit: float, used: float, unit: str) -> None:
        self.budget = budget
        self.limit = limit
        self.used = used
        super().__init__(
            f"budget {budget} exhausted: {_fmt(used)} {unit} used of {_fmt(limit)} allowed"
        )


def _fmt(value: float) -> str:
    return f"{value:,.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"


def steps_executed(state: State) -> int:
    """Steps that ran (done or failed), in every plan revision."""
    return sum(1 for r in (state.get("results") or {}).values() if r["status"] != "skipped")


@dataclass
class Budget:
    """What a run may still spend, counted from its state plus this node's work."""

    context: Context
    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    steps: int = 0
    active_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    writer: StreamWriter | None = None
    """Where `budget_warning` events go."""
    recorded_calls: int = 0
    """The model calls the state already records; any beyond were made by this node."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _one_call: asyncio.Lock = field(default_factory=asyncio.Lock)
    _quiet: set[str] = field(default_factory=set)
    """Budgets already past the warning line: warned about, here or in an earlier node."""

    @classmethod
    def of(cls, state: State, context: Context, writer: StreamWriter | None = None) -> Budget:
        """The budget left for a node that starts now on `state`."""
        usage = (state.get("usage") or {}).values()
        budget = cls(
            context=context,
            calls=sum(u["calls"] for u in usage),
            tokens=sum(u["input_tokens"] + u["output_tokens"] for u in usage),
            cost_usd=sum(u["cost_usd"] for u in usage),
            steps=steps_executed(state),
            active_s=float(state.get("active_s") or 0.0),
            writer=writer,
        )
        budget.recorded_calls = budget.calls
        budget._quiet = {
            name for name, used, limit in budget._levels() if used >= limit * WARNING_FRACTION
        }
        return budget

    def _levels(self) -> list[tuple[str, float, float]]:
        ctx = self.context
        levels = [
            ("max_model_calls", self.calls, ctx.max_model_calls),
            ("max_tokens", self.tokens, ctx.max_tokens),
            ("max_cost_usd", self.cost_usd, ctx.max_cost_usd),
            ("max_steps_executed", self.steps, ctx.max_steps_executed),
            ("time_budget_s", self.active_s + self.elapsed(), ctx.time_budget_s),
        ]
        return [(name, float(used), float(limit)) for name, used, limit in levels if limit]

    def _warn(self) -> None:
        """Emit a `budget_warning` for each budget that just passed the warning line."""
        for name, used, limit in self._levels():
            if name not in self._quiet and used >= limit * WARNING_FRACTION:
                self._quiet.add(name)
                fraction = round(used / limit, 3)
                emit(
                    self.writer,
                    "budget_warning",
                    budget=name,
                    used=used,
                    limit=limit,
                    fraction=fraction,
                )

    def calls_made(self) -> int:
        """Model calls this node has reserved: made, or being made, whatever came of them."""
        return self.calls - self.recorded_calls

    def elapsed(self) -> float:
        """Seconds this node has been working."""
        return time.monotonic() - self.started

    def check(self) -> None:
        """Raise `BudgetExhaustedError` if tokens, cost or working time have run out."""
        ctx = self.context
        if ctx.max_tokens is not None and self.tokens >= ctx.max_tokens:
            raise BudgetExhaustedError("max_tokens", ctx.max_tokens, self.tokens, "tokens")
        if ctx.max_cost_usd is not None and self.cost_usd >= ctx.max_cost_usd:
            raise BudgetExhaustedError("max_cost_usd", ctx.max_cost_usd, self.cost_usd, "USD")
        left = self.time_left()
        if left is not None and left <= 0:
            raise self._out_of_time()

    def time_left(self) -> float | None:
        """Seconds of working time left, or None when there is no time budget."""
        limit = self.context.time_budget_s
        return None if limit is None else limit - self.active_s - self.elapsed()

    def _out_of_time(self) -> BudgetExhaustedError:
        limit = self.context.time_budget_s or 0.0
        spent = self.active_s + self.elapsed()
        return BudgetExhaustedError("time_budget_s", limit, spent, "seconds")

    @asynccontextmanager
    async def deadline(self) -> AsyncIterator[None]:
        """Run the body until the time budget runs out.

        Then the body is cancelled and `BudgetExhaustedError` is raised.
        """
        left = self.time_left()
        if left is None:
            yield
            return
        if left <= 0:
            raise self._out_of_time()
        try:
            async with asyncio.timeout(left) as scope:
                yield
        except TimeoutError:
            if scope.expired():
                raise self._out_of_time() from None
            raise

    @asynccontextmanager
    async def model_call(self) -> AsyncIterator[None]:
        """Reserve a model call for the body, which makes it and `spend`s its use.

        Under a token or cost budget the calls of one node are made one at a time, so
        each is checked against the use of every call before it.
        """
        if self.context.max_tokens is None and self.context.max_cost_usd is None:
            self.reserve_model_call()
            yield
            return
        async with self._one_call:
            self.reserve_model_call()
            yield

    def check_model_call(self) -> None:
        """Raise `BudgetExhaustedError` if the budgets forbid another model call now."""
        self.check()
        limit = self.context.max_model_calls
        if limit is not None and self.calls >= limit:
            raise BudgetExhaustedError("max_model_calls", limit, self.calls, "calls")

    def reserve_model_call(self) -> None:
        """Count a model call about to be made, or raise if the budgets forbid it."""
        with self._lock:
            self.check_model_call()
            self.calls += 1
            self._warn()

    def reserve_step(self) -> None:
        """Count a step about to run, or raise if the budgets forbid it."""
        with self._lock:
            self.check()
            limit = self.context.max_steps_executed
            if limit is not None and self.steps >= limit:
                raise BudgetExhaustedError("max_steps_executed", limit, self.steps, "steps")
            self.steps += 1
            self._warn()

    def spend(self, usage: Usage, *, reserved: bool = True) -> None:
        """Add a finished call's tokens and cost (its call was counted when reserved).

        With `reserved=False` its calls are counted too: calls made before this node
        started that the state does not record yet (a sub-agent's, before an interrupt).
        """
        with self._lock:
            if not reserved:
                self.calls += usage["calls"]
            self.tokens += usage["input_tokens"] + usage["output_tokens"]
            self.cost_usd += usage["cost_usd"]
            self._warn()
