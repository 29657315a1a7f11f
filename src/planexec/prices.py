"""What a model costs: its price in `Context.prices`, found from the name it is called by.

A model is priced by its name without the provider (`"openai:gpt-4.1"` is priced as
`"gpt-4.1"`). A dated snapshot (`"gpt-4.1-2025-04-14"`, `"claude-3-5-haiku-20241022"`)
that has no price of its own takes its family's (`"gpt-4.1"`). A model with no price
under a cost budget (`Context.max_cost_usd`) is refused before it is called: its
spending could not be counted. Without a cost budget it counts as free (local models
usually are), which is logged once per model at INFO level.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping

from planexec.context import Context
from planexec.errors import ModelConfigError

__all__ = ["Price", "price_of", "require_prices"]

Price = tuple[float, float]
"""USD per million input tokens and per million output tokens."""

_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")
"""A snapshot's date suffix: `-2025-04-14` (OpenAI) or `-20241022`."""

_log = logging.getLogger(__name__)
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _names(model: str) -> list[str]:
    """The names `model` may be priced under, most specific first."""
    names = [model]
    if ":" in model:
        names.append(model.split(":", 1)[1])
    for name in list(names):
        family = _DATED.sub("", name)
        if family != name:
            names.append(family)
    return names


def price_of(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of `model` in `prices`, or None when it has none.

    Example:
        ```python
        price_of("openai:gpt-4.1-2025-04-14", {"gpt-4.1": (2.0, 8.0)})  # (2.0, 8.0)
        ```
    """
    for name in _names(model):
        if name in prices:
            return prices[name]
    return None


def charged(model: str, prices: Mapping[str, Price]) -> Price:
    """The price to count `model`'s calls at: its own, or free (logged once) if it has none."""
    price = price_of(model, prices)
    if price is not None:
        return price
    with _warned_lock:
        first = model not in _warned
        _warned.add(model)
    if first:
        _log.info("model %r has no price in Context.prices: its calls are counted as free", model)
    return (0.0, 0.0)


def require_prices(models: Iterable[str], context: Context) -> None:
    """Refuse models that have no price when the run has a cost budget.

    Raises:
        ModelConfigError: `context.max_cost_usd` is set and a model has no price.
    """
    if context.max_cost_usd is None:
        return
    unpriced = sorted({m for m in models if price_of(m, context.prices) is None})
    if unpriced:
        names = ", ".join(repr(m) for m in unpriced)
        has, its = ("has", "its") if len(unpriced) == 1 else ("have", "their")
        raise ModelConfigError(
            f"max_cost_usd is set, but model {names} {has} no price, so the spending cannot "
            f"be counted: add {its} (input, output) USD per million tokens to Context.prices"
        )
