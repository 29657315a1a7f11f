"""`calculator`: arithmetic by walking the expression's syntax tree, never `eval`.

Its cost is bounded before anything is computed, because a pure Python computation
holds the interpreter (and so the event loop, every timeout and the lease heartbeat)
until it ends, and no timeout can cut it short. The expression is at most 1,000
characters; it is walked without recursion; every integer in it and every function's
integer result is at most 10**100 in size, and so is every operation's result; a power
whose result would be larger is refused from the sizes of its operands, before it is
computed; and `round` takes at most 100 digits either side of the point. Floats cost
the same at any size. So every expression is evaluated with at most a thousand
operations on numbers of at most about a thousand bits.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from langchain_core.tools import ToolException, tool

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

MAX_EXPRESSION = 1000
"""Characters an expression may have."""
MAX_EXPONENT = 10_000
MAX_MAGNITUDE = 10**100
"""The largest number (in absolute value) an expression may hold at any point."""
MAX_ROUND_DIGITS = 100
"""The most digits `round` may keep or drop: `round(x, n)` needs `-100 <= n <= 100`."""

_MAX_BITS = MAX_MAGNITUDE.bit_length()
_SHOWN_DEPTH = 50
"""Sub-expressions nested deeper than this are quoted from the source in errors."""


class CalculatorError(ToolException):
    """The expression is not arithmetic the calculator can do."""


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression such as `"(12 * 4) + 5"`.

    Numbers, `+ - * / // % **`, parentheses, `pi`, `e` and the functions abs, round,
    min, max, sqrt, floor and ceil. Anything else, and anything whose cost is not
    bounded (see the module's docstring), raises `CalculatorError`.
    """
    text = expression.strip()
    if not text:
        raise CalculatorError("the expression is empty")
    if len(text) > MAX_EXPRESSION:
        raise CalculatorError(f"the expression is longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        # ValueError: a literal too long to convert; the others: nesting the parser refuses.
        raise CalculatorError(f"not an arithmetic expression: {text!r}") from exc
    value = _walk(tree.body, text)
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is not a finite number")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _walk(root: ast.expr, text: str) -> Number:
    """Evaluate `root` bottom-up with an explicit stack: nesting costs no recursion."""
    values: list[Number] = []
    pending: list[tuple[ast.expr, bool]] = [(root, False)]
    while pending:
        node, operands_done = pending.pop()
        if operands_done:
            count = len(_operands(node, text))
            operands = values[len(values) - count :]
            del values[len(values) - count :]
            values.append(_apply(node, operands))
            continue
        children = _operands(node, text)
        pending.append((node, True))
        pending.extend((child, False) for child in reversed(children))
    [value] = values
    return value


def _operands(node: ast.expr, text: str) -> list[ast.expr]:
    """The sub-expressions `node` computes from, or `CalculatorError` if it is not allowed."""
    if isinstance(node, ast.Constant | ast.Name):
        if isinstance(node, ast.Name) and node.id not in _CONSTANTS:
            raise _not_allowed(node, text)
        return []
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return [node.operand]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id not in _FUNCTIONS or node.keywords:
            raise CalculatorError(f"unknown function {node.func.id!r}")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise _not_allowed(node, text)
        return list(node.args)
    raise _not_allowed(node, text)


def _apply(node: ast.expr, operands: list[Number]) -> Number:
    """`node`'s value from its operands' values, each of them at most MAX_MAGNITUDE."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"{node.value!r} is not a number")
        return _bounded_int(node.value)
    if isinstance(node, ast.Name):
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](operands[0])
    if isinstance(node, ast.BinOp):
        return _binary(node.op, operands[0], operands[1])
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise AssertionError("_operands let an unknown node through")  # pragma: no cover
    return _call(node.func.id, operands)


def _binary(op: ast.operator, left: Number, right: Number) -> Number:
    if isinstance(op, ast.Pow):
        if abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"the exponent {right} is too large")
        # |left| ** right >= 2 ** ((bits - 1) * right): refuse before computing it.
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and right > 0
            and (abs(left).bit_length() - 1) * right > _MAX_BITS
        ):
            raise CalculatorError("the result is too large")
    try:
        result = _BINARY[type(op)](left, right)
    except ZeroDivisionError as exc:
        raise CalculatorError("division by zero") from exc
    except OverflowError as exc:
        raise CalculatorError("the result is too large") from exc
    if isinstance(result, complex):
        raise CalculatorError("the result is not a real number")
    return _bounded(result)


def _call(name: str, args: list[Number]) -> Number:
    if (
        name == "round"
        and len(args) == 2
        and isinstance(args[1], int)
        and abs(args[1]) > MAX_ROUND_DIGITS
    ):
        raise CalculatorError(
            f"round: the number of digits must be between {-MAX_ROUND_DIGITS} and "
            f"{MAX_ROUND_DIGITS}"
        )
    try:
        result = _FUNCTIONS[name](*args)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CalculatorError(f"{name}: {exc}") from exc
    return _bounded_int(result)


def _bounded(value: Number) -> Number:
    """`value`, if its size is at most MAX_MAGNITUDE (NaN passes, to be named at the end)."""
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("the result is too large")
    return value


def _bounded_int(value: Number) -> Number:
    """`value`, if it is a float (whose arithmetic costs the same at any size) or a small int."""
    return _bounded(value) if isinstance(value, int) else value


def _not_allowed(node: ast.expr, text: str) -> CalculatorError:
    return CalculatorError(f"not allowed in arithmetic: {_shown(node, text)!r}")


def _shown(node: ast.expr, text: str) -> str:
    """`node` as code: unparsed when shallow (unparsing recurses), else its source, cut."""
    depth = 0
    level: list[ast.AST] = [node]
    while level and depth <= _SHOWN_DEPTH:
        level = [child for item in level for child in ast.iter_child_nodes(item)]
        depth += 1
    if depth <= _SHOWN_DEPTH:
        return ast.unparse(node)
    source = ast.get_source_segment(text, node) or ""
    return source if len(source) <= 80 else source[:77] + "..."


@tool
def calculator(expression: str) -> Number:
    """Evaluate an arithmetic expression such as "(12 * 4) + 5" and return the number.

    Supports + - * / // % ** and parentheses, pi, e, and abs, round, min, max, sqrt,
    floor, ceil. No variables or other code. Numbers may be at most 10**100.
    """
    return evaluate(expression)
