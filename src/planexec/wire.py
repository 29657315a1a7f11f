"""What the planner and replanner models are asked to send: `Plan` and `Replan` on the wire.

Providers' strict modes (OpenAI's and Anthropic's strict tool calls and JSON schemas,
Gemini's response schemas) accept only a closed subset of JSON Schema: every object
lists its properties, requires all of them and allows no others. A plan step's `args`
is free-form (any tool's arguments), so the strict form carries it as one JSON object
written as a string, and `parse_reply` turns it back into the object before the reply
is validated as a `Plan` or `Replan`. The loose form is the pydantic schema itself,
for plain tool calling where free-form objects are fine.

Either way a reply may give `args` as an object or as JSON text: models do both.
"""

from __future__ import annotations

import copy
import functools
import json
import pickle
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["ARGS_AS_TEXT", "parse_reply", "strict_schema"]

ModelT = TypeVar("ModelT", bound=BaseModel)

ARGS_AS_TEXT = ' Written as one JSON object in a string, such as "{\\"expression\\": \\"12*4\\"}".'
"""Added to the description of a free-form object that the strict form sends as text."""

_KEPT = ("type", "description", "enum")
"""The keywords kept from the pydantic schema besides the structure (properties, items,
anyOf). Bounds and patterns are dropped: some strict modes refuse them, and planexec
checks them itself once the reply is parsed."""


def strict_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """`schema` as a JSON schema that providers' strict modes accept.

    Inlined (no `$ref`), every object closed (`additionalProperties: false`) with all its
    properties required (optional ones are nullable), free-form objects as JSON text, and
    no keyword besides type, description, enum, properties, required, items and anyOf.
    """
    # A copy, as the cached one must not change; pickling copies plain JSON data
    # several times faster than `copy.deepcopy` (which took 0.3 ms a call here).
    copied: dict[str, Any] = pickle.loads(
        pickle.dumps(_strict_schema(schema), pickle.HIGHEST_PROTOCOL)
    )
    return copied


@functools.cache
def _strict_schema(schema: type[BaseModel]) -> dict[str, Any]:
    source = schema.model_json_schema()
    defs = source.get("$defs", {})
    return _strict(source, defs)


def _strict(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = _strict(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        if "description" in node:
            target["description"] = node["description"]
        return target
    out: dict[str, Any] = {key: copy.deepcopy(node[key]) for key in _KEPT if key in node}
    if "const" in node:
        out["enum"] = [node["const"]]
    if "anyOf" in node:
        out["anyOf"] = [_strict(variant, defs) for variant in node["anyOf"]]
        if "description" in out and any(_free_form(v) for v in node["anyOf"]):
            out["description"] += ARGS_AS_TEXT
        return out
    kind = node.get("type")
    if _free_form(node):
        # Any tool's arguments: carried as JSON text, decoded by `parse_reply`.
        if "description" in out:
            out["description"] += ARGS_AS_TEXT
        out["type"] = "string"
    elif kind == "object":
        # Optional fields are already nullable (`X | None = None`); the others have
        # defaults that a model can as well write out (`depends_on: []`).
        closed = {name: _strict(spec, defs) for name, spec in node["properties"].items()}
        out["properties"] = closed
        out["required"] = list(closed)
        out["additionalProperties"] = False
    elif kind == "array":
        out["items"] = _strict(node.get("items", {"type": "string"}), defs)
    return out


def _free_form(node: Mapping[str, Any]) -> bool:
    return node.get("type") == "object" and not node.get("properties")


def parse_reply(schema: type[ModelT], data: Any) -> ModelT:
    """A reply's arguments (or JSON text) as a `schema` object.

    A step's `args` given as JSON text is decoded first; text that is not a JSON object
    is left for validation to refuse. Raises `pydantic.ValidationError`, or
    `json.JSONDecodeError` for text that is not JSON.
    """
    if isinstance(data, str):
        data = json.loads(data)
    if isinstance(data, Mapping) and isinstance(data.get("steps"), list):
        data = {**data, "steps": [_decoded_args(step) for step in data["steps"]]}
    return schema.model_validate(data)


def _decoded_args(step: Any) -> Any:
    if not isinstance(step, Mapping) or not isinstance(step.get("args"), str):
        return step
    text = step["args"].strip()
    if text in ("", "null"):
        return {**step, "args": None}
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        return step
    return {**step, "args": decoded} if isinstance(decoded, dict) else step
