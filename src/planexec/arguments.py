"""A tool call's arguments checked against the tool's JSON Schema, with `jsonschema`.

Every keyword of the schema's dialect counts (`$schema`, else JSON Schema 2020-12):
`enum`, `minimum`, `pattern`, item types, nested objects' `required`, `anyOf` and the
rest; `format` is an annotation, as the standard says. `$ref`s resolve inside the schema
only: nothing is fetched. Patterns are matched for at most `PATTERN_TIMEOUT` seconds a
value: one that backtracks without end refuses the value instead of hanging planexec.

On top of JSON Schema, a top-level argument that the schema does not name is refused
when the schema lists `properties` and says nothing of `additionalProperties` or
`patternProperties` (most tools ignore such a key; a plan naming one is still wrong).

At plan time, arguments may hold `{{id}}` placeholders, replaced by step results
before the call (see `planexec.plan.resolve_args`). A value that holds one is checked
as far as it is known:

- a whole placeholder (`"{{s1}}"`) stands for any JSON value (a number stays a
  number): nothing about it is checked;
- text with a placeholder inside (`"total: {{s1}}"`) stays a string: its type is
  checked, its content (`pattern`, `enum`, lengths) is not;
- what a placeholder cannot change is checked around it: required and unknown keys,
  property and item counts, the types of the objects and arrays that hold it;
- any other check of a value that holds a placeholder waits (`enum`, `anyOf` or
  `uniqueItems` of an object or array holding one), and so does every check a
  condition (`if`/`then`/`else`, `not`, `dependentSchemas`) applies to such a value.

After substitution the arguments are checked again in full, before the tool is called.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache, lru_cache
from itertools import islice
from typing import Any

import regex
from jsonschema import Draft202012Validator, SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend, validator_for
from referencing import Registry
from referencing.exceptions import Unresolvable

__all__ = ["MAX_PROBLEMS", "PATTERN_TIMEOUT", "json_schema_problems", "schema_problem"]

MAX_PROBLEMS = 10
"""The most problems reported for one call's arguments; the rest are summed up in one line."""

PATTERN_TIMEOUT = 0.5
"""Seconds a schema's `pattern` may take on one value before the value counts as not fitting."""

_SHAPE = frozenset(
    {
        "type",
        "required",
        "additionalProperties",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "minItems",
        "maxItems",
    }
)
"""Keywords whose verdict a placeholder inside the value cannot change.

`type` is here because a placeholder inside text keeps it a string and one inside an
object or array keeps it that; a whole placeholder is excused before this is asked.
`additionalProperties` reaches here only as `false` (its schema form reports at the
offending value).
"""

_CONDITIONAL = frozenset({"if", "then", "else", "dependentSchemas", "dependencies", "not"})
"""Keywords whose errors depend on how the value they apply to fared against a schema."""

# How a schema path walks down the arguments: these keywords apply their schema to a
# value one level down (some name it next: a property, a pattern, an index) ...
_DOWN_NAMED = frozenset({"properties", "patternProperties", "prefixItems"})
_DOWN = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
    }
)
# ... and these to the same value, naming a branch next.
_SAME_NAMED = frozenset({"allOf", "anyOf", "oneOf", "$defs", "definitions"})

_SHORT = 80
"""How much of a value an error message quotes."""


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why `schema` is not a usable JSON Schema for a tool's arguments, or None."""
    return _compiled(_key(schema))[1]


def json_schema_problems(
    tool: str,
    schema: Mapping[str, Any],
    args: Mapping[str, Any],
    *,
    placeholder: re.Pattern[str] | None = None,
) -> list[str]:
    """Why `args` do not fit `tool`'s JSON Schema `schema`; empty when they do.

    With `placeholder` (the `{{id}}` pattern), values that hold one are checked as the
    module docstring says; without it every string is plain text.
    """
    validator, problem = _compiled(_key(schema))
    if validator is None:
        return [f"tool {tool!r} cannot be called: {problem}"]
    found = _problems(tool, validator, schema, args, placeholder)
    # The first problems found, shown in the order of the arguments they are about.
    order = {name: i for i, name in enumerate(args)}
    first = sorted(islice(found, MAX_PROBLEMS + 1), key=lambda p: order.get(p[0], -1))
    shown = [message for _, message in first]
    if len(shown) > MAX_PROBLEMS:
        shown[MAX_PROBLEMS:] = [f"and more problems with the arguments of tool {tool!r}"]
    return shown


def _key(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, default=str)


@lru_cache(maxsize=512)
def _compiled(key: str) -> tuple[Validator | None, str | None]:
    """A validator for the schema whose canonical JSON is `key`, or why there is none."""
    schema = json.loads(key)
    if not isinstance(schema, dict):
        return None, "its argument schema is not a JSON object"
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        detail = f" at {where}" if where else ""
        return None, f"its argument schema is not valid JSON Schema{detail}: {_cut(exc.message)}"
    kind = schema.get("type", "object")
    if kind != "object" and not (isinstance(kind, list) and "object" in kind):
        return None, "its argument schema does not describe an object"
    # An empty registry: `jsonschema`'s default one fetches a remote `$ref` over HTTP.
    return _bounded(cls)(schema, registry=Registry()), None


@cache
def _bounded(cls: type[Validator]) -> type[Validator]:
    """`cls` with its regular-expression keywords matched under `PATTERN_TIMEOUT`.

    `jsonschema` matches with `re`, which cannot be stopped: a pattern that backtracks
    without end (`^(a|aa)+$`) would hang the whole program on one argument.
    (`unevaluatedProperties` still matches `patternProperties` with `re`.)
    """
    keywords = {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    }
    present = {k: v for k, v in keywords.items() if k in cls.VALIDATORS}
    make: Any = extend  # untyped in types-jsonschema
    bounded: type[Validator] = make(cls, present)
    return bounded


def _search(pattern: str, text: str) -> bool | None:
    """Whether `pattern` matches somewhere in `text`; None if it took too long to tell."""
    try:
        return regex.search(pattern, text, timeout=PATTERN_TIMEOUT) is not None
    except TimeoutError:
        return None
    except regex.error:
        return False


# The keyword functions get the concrete validator (`descend` is not in the protocol).
def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    found = _search(pattern, instance)
    if found is None:
        yield ValidationError(f"matching the pattern {pattern!r} took over {PATTERN_TIMEOUT:g}s")
    elif not found:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key) is not False:  # a key it took too long to tell is checked
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, allowed: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif allowed is False and extras:
        listed = ", ".join(repr(extra) for extra in extras)
        yield ValidationError(f"additional properties are not allowed: {listed}")


def _problems(
    tool: str,
    validator: Validator,
    schema: Mapping[str, Any],
    args: Mapping[str, Any],
    placeholder: re.Pattern[str] | None,
) -> Iterator[tuple[Any, str]]:
    """Each problem with the top-level argument it is about (None: the whole call)."""
    pending = _Pending(placeholder)
    for name in _unknown_top_level(schema, args):
        yield name, f"argument {_path([name])!r} is not a parameter of tool {tool!r}"
    required_seen: set[tuple[Any, ...]] = set()
    try:
        for error in validator.iter_errors(dict(args)):
            if pending.excuses(error, args):
                continue
            where = tuple(error.absolute_path)
            top = where[0] if where else None
            if error.validator == "required":
                if where in required_seen:
                    continue
                required_seen.add(where)
                names: Any = error.validator_value
                present: Any = error.instance
                for name in (n for n in names if n not in present):
                    path = _path([*where, name])
                    yield top or name, f"argument {path!r} is required by tool {tool!r}"
            elif error.validator == "additionalProperties" and isinstance(error.schema, Mapping):
                for name in _additional(error.instance, error.schema):
                    path = _path([*where, name])
                    yield top or name, f"argument {path!r} is not a parameter of tool {tool!r}"
            else:
                yield top, _message(tool, error)
    except Unresolvable as exc:
        yield None, f"tool {tool!r} cannot be called: its argument schema has a $ref to {exc.ref!r}"
    except RecursionError:
        yield (
            None,
            f"tool {tool!r} cannot be called: its argument schema refers to itself endlessly",
        )


def _unknown_top_level(schema: Mapping[str, Any], args: Mapping[str, Any]) -> Iterator[str]:
    properties = schema.get("properties")
    if not properties or "additionalProperties" in schema or "patternProperties" in schema:
        return
    yield from (name for name in args if name not in properties)


def _additional(instance: Any, schema: Mapping[str, Any]) -> list[str]:
    """The keys of `instance` that `schema`'s `additionalProperties: false` refuses."""
    if not isinstance(instance, Mapping):
        return []
    properties = schema.get("properties") or {}
    patterns = list((schema.get("patternProperties") or {}).keys())
    return [
        key
        for key in instance
        if key not in properties and not any(_search(p, key) for p in patterns)
    ]


def _message(tool: str, error: ValidationError) -> str:
    path = _path(error.absolute_path)
    where = f"argument {path!r} of tool {tool!r}" if path else f"the arguments of tool {tool!r}"
    if error.validator == "type":
        expected = error.validator_value
        kinds = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return f"{where} should be of type {kinds}"
    text = error.message
    quoted = repr(error.instance)
    if len(quoted) > _SHORT:
        text = text.replace(quoted, _cut(quoted))
    return f"{where}: {_cut(text, 300)}"


def _path(parts: Any) -> str:
    return ".".join(_cut(str(part), 64) for part in parts)


def _cut(text: str, limit: int = _SHORT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Pending:
    """Decides which errors a `{{id}}` placeholder excuses until it is substituted."""

    def __init__(self, placeholder: re.Pattern[str] | None) -> None:
        self.placeholder = placeholder

    def excuses(self, error: ValidationError, args: Mapping[str, Any]) -> bool:
        """Whether `error` may be gone once every placeholder is substituted."""
        if self.placeholder is None:
            return False
        instance = error.instance
        if isinstance(instance, str) and self.placeholder.fullmatch(instance.strip()):
            return True
        depth = _conditional_depth(list(error.absolute_schema_path))
        if depth is not None:
            return self.holds(_at(args, list(error.absolute_path)[:depth]))
        return error.validator not in _SHAPE and self.holds(instance)

    def holds(self, value: object) -> bool:
        """Whether a placeholder is anywhere inside `value`."""
        if self.placeholder is None:
            return False
        if isinstance(value, str):
            return self.placeholder.search(value) is not None
        if isinstance(value, Mapping):
            return any(self.holds(item) for item in value.values())
        if isinstance(value, list | tuple):
            return any(self.holds(item) for item in value)
        return False


def _conditional_depth(schema_path: list[Any]) -> int | None:
    """How deep in the arguments the first condition on `schema_path` applies, if any."""
    depth, i = 0, 0
    while i < len(schema_path):
        keyword = schema_path[i]
        if keyword in _CONDITIONAL:
            return depth
        if keyword in _DOWN_NAMED:
            depth, i = depth + 1, i + 2
        elif keyword in _DOWN:
            depth, i = depth + 1, i + 1
            if keyword == "items" and i < len(schema_path) and isinstance(schema_path[i], int):
                i += 1  # the array form of `items` (drafts before 2020-12) names an index
        elif keyword in _SAME_NAMED:
            i += 2
        else:
            i += 1
    return None


def _at(value: Any, path: list[Any]) -> Any:
    for part in path:
        value = value[part]
    return value
