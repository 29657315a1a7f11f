"""Checkers: declarative tests of a task's outcome that a program can decide.

Each is a JSON object with a `type`:

- `number`: the answer states a number within `tolerance` (absolute) of `expected`,
  and no number within `tolerance` of one in `forbid` (a stale or planted value).
- `contains`: the answer contains every `text`, at least one of `any` and none of
  `none` (ignoring case unless `case_sensitive`).
- `file`: the workspace file `path` exists (or not, with `"exists": false`), and its
  content `equals`, `contains`, or states the `number`.
- `record`: the inventory record `id`, or the one record matching `where`, exists (or
  not) and has `fields`.
- `no_call`: `tool` never ran; a forbidden tool that ran fails the task.
- `called`: `tool` ran at least `min` times.
- `status`: the run ended with status `expected`.

A task succeeds when every check passes. Unless a task has a `status` check, the run
must also have ended "completed".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from planexec.evals.records import records_of
from planexec.tools.files import WorkspaceError, resolve_inside

NUMBER = re.compile(r"(?<![\w.,])([-\u2212]?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?!\d)")
"""A number in text: 1284.40, 1,553,950, -3; not the 2 of "Q2" or "SUP-2"'s sign."""


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NumberCheck(_Check):
    """The answer states a number."""

    type: Literal["number"]
    expected: float
    tolerance: float = Field(default=0.01, ge=0)
    """The largest absolute difference accepted."""
    forbid: list[float] = Field(default_factory=list)
    """Wrong numbers the answer must not state (a stale or planted value)."""


class ContainsCheck(_Check):
    """The answer contains (or avoids) some text."""

    type: Literal["contains"]
    text: str | list[str] = Field(default_factory=list)
    any: list[str] = Field(default_factory=list)
    none: list[str] = Field(default_factory=list)
    case_sensitive: bool = False


class FileCheck(_Check):
    """A file in the task's workspace."""

    type: Literal["file"]
    path: str
    exists: bool = True
    equals: str | None = None
    """The whole content, compared without surrounding whitespace."""
    contains: str | list[str] = Field(default_factory=list)
    number: float | None = None
    tolerance: float = Field(default=0.01, ge=0)


class RecordCheck(_Check):
    """A record of the inventory database after the run."""

    type: Literal["record"]
    id: str | None = None
    where: dict[str, Any] | None = None
    """Fields that pick the record; exactly one record must match (or none, when
    `exists` is false)."""
    fields: dict[str, Any] = Field(default_factory=dict)
    exists: bool = True


class NoCallCheck(_Check):
    """A tool that must never run."""

    type: Literal["no_call"]
    tool: str


class CalledCheck(_Check):
    """A tool that must have run."""

    type: Literal["called"]
    tool: str
    min: int = Field(default=1, ge=1)


class StatusCheck(_Check):
    """How the run ended."""

    type: Literal["status"]
    expected: Literal["completed", "failed", "cancelled", "budget_exhausted"]


Check = Annotated[
    NumberCheck | ContainsCheck | FileCheck | RecordCheck | NoCallCheck | CalledCheck | StatusCheck,
    Field(discriminator="type"),
]


class CheckResult(TypedDict):
    """One check's verdict."""

    type: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Outcome:
    """What the checkers look at: how the run ended and the world it left."""

    status: str | None
    answer: str | None
    world: dict[str, Any]
    """The world's state (see `World.snapshot`)."""
    workspace: Path


def numbers_in(text: str) -> list[float]:
    """Every number written in `text`, in order."""
    found = []
    for sign, digits in NUMBER.findall(text):
        value = float(digits.replace(",", ""))
        found.append(-value if sign else value)
    return found


def _near(values: Sequence[float], target: float, tolerance: float) -> bool:
    return any(math.isclose(v, target, rel_tol=0.0, abs_tol=tolerance + 1e-9) for v in values)


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _check_number(check: NumberCheck, text: str) -> tuple[bool, str]:
    found = numbers_in(text)
    wrong = [f for f in check.forbid if _near(found, f, check.tolerance)]
    if wrong:
        return False, f"states the wrong value {_fmt(wrong[0])}"
    if _near(found, check.expected, check.tolerance):
        return True, f"states {_fmt(check.expected)}"
    shown = ", ".join(_fmt(v) for v in found[:8]) or "no number"
    return False, f"expected {_fmt(check.expected)} (±{_fmt(check.tolerance)}); found {shown}"


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e15 else str(value)


def _check_contains(check: ContainsCheck, text: str) -> tuple[bool, str]:
    def norm(value: str) -> str:
        return value if check.case_sensitive else value.casefold()

    body = norm(text)
    missing = [t for t in _listed(check.text) if norm(t) not in body]
    if missing:
        return False, f"missing {missing[0]!r}"
    if check.any and not any(norm(t) in body for t in check.any):
        return False, f"contains none of {check.any}"
    present = [t for t in check.none if norm(t) in body]
    if present:
        return False, f"contains {present[0]!r}"
    return True, "text as expected"


def _check_file(check: FileCheck, workspace: Path) -> tuple[bool, str]:
    try:
        target = resolve_inside(workspace.resolve(), check.path)
    except WorkspaceError as exc:
        return False, str(exc)
    if not target.is_file():
        return (not check.exists), f"{check.path} {'is missing' if check.exists else 'is absent'}"
    if not check.exists:
        return False, f"{check.path} should not exist"
    content = target.read_text(encoding="utf-8", errors="replace")
    if check.equals is not None and content.strip() != check.equals.strip():
        return False, f"{check.path} is {content.strip()[:80]!r}, not {check.equals.strip()!r}"
    missing = [t for t in _listed(check.contains) if t.casefold() not in content.casefold()]
    if missing:
        return False, f"{check.path} lacks {missing[0]!r}"
    if check.number is not None and not _near(numbers_in(content), check.number, check.tolerance):
        return False, f"{check.path} does not state {_fmt(check.number)}"
    return True, f"{check.path} as expected"


def same(actual: Any, expected: Any) -> bool:
    """Whether a field's value is the expected one: numbers by value, text ignoring case."""
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(actual, expected, rel_tol=0.0, abs_tol=1e-9)
    if isinstance(expected, str) and isinstance(actual, str):
        return actual.strip().casefold() == expected.strip().casefold()
    return bool(actual == expected)


def _check_record(check: RecordCheck, world: dict[str, Any]) -> tuple[bool, str]:
    records = records_of(world)
    if check.id is not None:
        found = {check.id: records[check.id]} if check.id in records else {}
        what = f"record {check.id}"
    else:
        where = check.where or {}
        found = {
            key: rec
            for key, rec in records.items()
            if all(same(rec.get(k), v) for k, v in where.items())
        }
        what = f"a record with {where}"
    if not check.exists:
        return (not found), (f"{what} is absent" if not found else f"{what} still exists")
    if len(found) != 1:
        return False, f"{what}: {len(found)} found, expected one"
    key, record = next(iter(found.items()))
    wrong = [k for k, v in check.fields.items() if not same(record.get(k), v)]
    if wrong:
        return (
            False,
            f"{key}.{wrong[0]} is {record.get(wrong[0])!r}, not {check.fields[wrong[0]]!r}",
        )
    return True, f"{key} as expected"


def _calls(world: dict[str, Any], tool: str) -> int:
    return sum(1 for call in world.get("calls", []) if call["tool"] == tool)


def check(item: Check, outcome: Outcome) -> CheckResult:
    """One check's verdict on `outcome`."""
    answer = outcome.answer or ""
    if isinstance(item, NumberCheck):
        passed, detail = _check_number(item, answer)
    elif isinstance(item, ContainsCheck):
        passed, detail = _check_contains(item, answer)
    elif isinstance(item, FileCheck):
        passed, detail = _check_file(item, outcome.workspace)
    elif isinstance(item, RecordCheck):
        passed, detail = _check_record(item, outcome.world)
    elif isinstance(item, NoCallCheck):
        count = _calls(outcome.world, item.tool)
        passed, detail = count == 0, f"{item.tool} ran {count} time(s)"
    elif isinstance(item, CalledCheck):
        count = _calls(outcome.world, item.tool)
        passed, detail = count >= item.min, f"{item.tool} ran {count} time(s)"
    else:
        passed = outcome.status == item.expected
        detail = f"status {outcome.status}" + ("" if passed else f", expected {item.expected}")
    return {"type": item.type, "passed": passed, "detail": detail}


def run_checks(checks: Sequence[Check], outcome: Outcome) -> list[CheckResult]:
    """Every check's verdict, after an implied "completed" status check if none is given."""
    items = list(checks)
    if not any(isinstance(item, StatusCheck) for item in items):
        items.insert(0, StatusCheck(type="status", expected="completed"))
    return [check(item, outcome) for item in items]
