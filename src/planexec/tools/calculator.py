"""`calculator`: arithmetic by walking the expression's syntax tree, never `eval`."""

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


class CalculatorError(ToolException):
    """The expression is not arithmetic the calculator can do."""


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression such as `"(12 * 4) + 5"`.

    Numbers, `+ - * / // % **`, parentheses, `pi`, `e` and the functions abs, round,
    min, max, sqrt, floor and ceil. Anything else raises `CalculatorError`.
    """
    text = expression.strip()
    if not text:
        raise CalculatorError("the expression is empty")
    if len(text) > MAX_EXPRESSION:
        raise CalculatorError(f"the expression is longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression: {text!r}") from exc
    value = _eval(tree.body)
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is not a finite number")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _eval(node: ast.AST) -> Number:  # noqa: C901 - one branch per kind of node
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"{node.value!r} is not a number")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"the exponent {right} is too large")
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError as exc:
            raise CalculatorError("division by zero") from exc
        except OverflowError as exc:
            raise CalculatorError("the result is too large") from exc
        if isinstance(result, complex):
            raise CalculatorError("the result is not a real number")
        if abs(result) > MAX_MAGNITUDE:
            raise CalculatorError("the result is too large")
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        function = _FUNCTIONS.get(node.func.id)
        if function is None or node.keywords:
            raise CalculatorError(f"unknown function {node.func.id!r}")
        try:
            return function(*(_eval(arg) for arg in node.args))
        except (TypeError, ValueError, OverflowError) as exc:
            raise CalculatorError(f"{node.func.id}: {exc}") from exc
    raise CalculatorError(f"not allowed in arithmetic: {ast.unparse(node)!r}")


@tool
def calculator(expression: str) -> Number:
    """Evaluate an arithmetic expression such as "(12 * 4) + 5" and return the number.

    Supports + - * / // % ** and parentheses, pi, e, and abs, round, min, max, sqrt,
    floor, ceil. No variables or other code.
    """
    return evaluate(expression)
