"""The plan artifact: its models, its validation, and the operations on it.

A plan is a task graph. Whatever produced it (the planner, the replanner, a person
editing it), it is checked by `validate_plan` before anyone sees it or runs it.
Every error names the step it is about.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs it before 3.12

from planexec.arguments import json_schema_problems
from planexec.ordering import as_text as as_text
from planexec.ordering import topological_order as topological_order

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_-]+)\s*\}\}")
"""`{{<id>}}` inside an argument string: replaced by that step's result before the call."""

_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

MAX_ARGS_DEPTH = 32
"""The deepest a step's `args` may nest objects and lists inside one another.

JSON nested deeper than this is refused before anything else reads it: Python's own
JSON and comparison code recurses once per level, and checkpoints refuse 256 levels.
"""

_SIZE_SLACK = 10
"""How far past a size limit a measurement goes, as a multiple of the limit, before it
stops and reports only that the limit was exceeded."""

_MAX_INT_BITS = 14_000
"""Integers longer than this (about 4,200 digits) have no JSON text: Python refuses to
write more than 4,300 digits."""


class StepDict(TypedDict):
    """A step as JSON, the form kept in state and shown to reviewers."""

    id: str
    description: str
    tool: str | None
    args: dict[str, Any] | None
    depends_on: list[str]


class PlanDict(TypedDict):
    """A plan as JSON."""

    steps: list[StepDict]


class Step(BaseModel):
    """One step of the plan."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        pattern=_ID,
        description="Unique id such as s1. Later steps use this step's result as {{s1}}.",
    )
    description: str = Field(
        min_length=1,
        description="What the step does, complete enough to carry out without the rest of "
        "the plan.",
    )
    tool: str | None = Field(
        default=None,
        description="Name of the one tool this step calls, or null for a step answered "
        "in text by reasoning over the results of its dependencies.",
    )
    args: dict[str, Any] | None = Field(
        default=None,
        description="The tool's arguments. Strings may contain {{id}} to insert the result "
        "of a step listed in depends_on. Null lets the executor choose the arguments.",
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="Ids of the steps that must finish before this one starts.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shallow_args(cls, data: Any) -> Any:
        """Refuse args nested too deeply before any code that recurses reads them."""
        if isinstance(data, Mapping):
            problem = nesting_problem(data.get("args"), MAX_ARGS_DEPTH)
            if problem is not None:
                raise ValueError(f"args {problem}")
        return data

    def to_dict(self) -> StepDict:
        """This step as JSON."""
        return {
            "id": self.id,
            "description": self.description,
            "tool": self.tool,
            "args": self.args,
            "depends_on": list(self.depends_on),
        }


class Plan(BaseModel):
    """A plan: steps with the tools they call, their arguments and their dependencies."""

    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(description="The steps, in a sensible reading order.")
    answer: str | None = Field(
        default=None,
        description="Only for a goal that needs no tool and no steps: the answer itself, "
        "with steps empty. Otherwise null.",
    )

    def to_dict(self) -> PlanDict:
        """This plan's steps as JSON (a direct `answer` is not part of the plan artifact)."""
        return {"steps": [step.to_dict() for step in self.steps]}


@dataclass(frozen=True)
class PlanError:
    """One thing wrong with a plan."""

    step: str | None
    """The id of the step at fault, or None when the fault is the plan's as a whole."""

    message: str

    def __str__(self) -> str:
        return f"step {self.step}: {self.message}" if self.step else self.message


def parse_plan(
    data: object, *, max_steps: int | None = None
) -> tuple[Plan | None, list[PlanError]]:
    """Turn JSON-like data into a `Plan`, or say why it is not one. Never raises.

    Data nested deeper than a plan's steps' `args` may be (`MAX_ARGS_DEPTH`) is refused
    before it is read, and so is a plan of more than `max_steps` steps in all, if given.
    """
    steps = data.get("steps") if isinstance(data, Mapping) else None
    if max_steps is not None and isinstance(steps, list) and len(steps) > max_steps:
        return None, [
            PlanError(None, f"the plan has {len(steps)} steps; the most allowed is {max_steps}")
        ]
    too_deep = _nesting_errors(data)
    if too_deep:
        return None, too_deep
    try:
        return Plan.model_validate(data), []
    except ValidationError as exc:
        return None, _capped([_from_pydantic(error, data) for error in exc.errors()])


def _nesting_errors(data: object) -> list[PlanError]:
    """The parts of a plan's data nested deeper than they may be, checked before parsing.

    Only `args` may nest (up to `MAX_ARGS_DEPTH`); anything else deeper than a plan's
    JSON ever is would only be read by code that recurses.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("steps"), list):
        problem = nesting_problem(data, MAX_ARGS_DEPTH + 3)
        return [] if problem is None else [PlanError(None, f"the plan's data {problem}")]
    errors: list[PlanError] = []
    for key, value in data.items():
        if key != "steps":
            problem = nesting_problem(value, MAX_ARGS_DEPTH)
            if problem is not None:
                errors.append(PlanError(None, f"{_clip(str(key))} {problem}"))
    for index, item in enumerate(data["steps"]):
        fields = item.items() if isinstance(item, Mapping) else [("the step", item)]
        for key, value in fields:
            limit = MAX_ARGS_DEPTH if key == "args" else 1
            problem = nesting_problem(value, limit)
            if problem is not None:
                errors.append(PlanError(_step_id_at(data, index), f"{_clip(str(key))} {problem}"))
        if len(errors) > MAX_ERRORS:
            break
    return _capped(errors, complete=False)


def _from_pydantic(error: Any, data: object) -> PlanError:
    loc = tuple(error["loc"])
    step: str | None = None
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        step = _step_id_at(data, loc[1])
        loc = loc[2:]
    where = ".".join(_clip(str(part)) for part in loc)
    return PlanError(step, f"{where}: {error['msg']}" if where else str(error["msg"]))


def _step_id_at(data: object, index: int) -> str:
    steps = data.get("steps") if isinstance(data, Mapping) else None
    if isinstance(steps, list) and index < len(steps):
        item = steps[index]
        if isinstance(item, Mapping) and isinstance(item.get("id"), str) and item["id"]:
            return _clip(str(item["id"]))
    return f"#{index + 1}"


MAX_ERRORS = 20
"""The most errors one validation reports; the rest are counted in one last error."""

_CLIP = 64


def _clip(text: str) -> str:
    """`text` for an error message: names longer than an id may be are cut."""
    return text if len(text) <= _CLIP else text[:_CLIP] + "..."


def _capped(errors: list[PlanError], *, complete: bool = True) -> list[PlanError]:
    """At most `MAX_ERRORS` errors, then one that says how many more (or that it stopped)."""
    if len(errors) <= MAX_ERRORS:
        return errors
    more = len(errors) - MAX_ERRORS
    last = (
        f"and {more} more error(s)"
        if complete
        else "and more: the rest of the plan was not checked; fix these first"
    )
    return [*errors[:MAX_ERRORS], PlanError(None, last)]


def nesting_problem(value: object, max_depth: int) -> str | None:
    """Why `value` nests lists and objects more than `max_depth` levels deep, or None.

    Iterative, and it stops at the first level too deep, so any input is safe to check.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children: Iterator[object]
        if isinstance(item, Mapping):
            children = iter(item.values())
        elif isinstance(item, list | tuple):
            children = iter(item)
        else:
            continue
        if depth >= max_depth:
            return f"nest deeper than {max_depth} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def references(value: object) -> Iterator[str]:
    """Every step id referenced as `{{id}}` anywhere inside `value`, in reading order."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield from REFERENCE.findall(item)
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))


def validate_plan(
    plan: Plan,
    tools: Mapping[str, BaseTool],
    *,
    max_steps: int,
    done: Mapping[str, StepDict] | None = None,
    retired: Collection[str] = (),
    max_args_chars: int | None = None,
    max_text_chars: int | None = None,
) -> list[PlanError]:
    """Every reason `plan` cannot run, or an empty list.

    Takes time in proportion to the plan's steps and dependencies (and their arguments),
    never raises, and reports at most `MAX_ERRORS` errors. A size limit exceeded (steps,
    a step's `args` or description) is the only error reported: the rest is not read.

    Args:
        plan: The plan to check.
        tools: The tools that steps may name.
        max_steps: The most steps the plan may have still to run.
        done: Steps that have finished, as they ran: each must be in the plan, unchanged.
        retired: Ids of earlier steps that failed or were skipped; new steps may not reuse them.
        max_args_chars: The longest a step's `args` may be, as JSON text.
        max_text_chars: The longest a step's description may be, in characters.
    """
    done = done or {}
    to_run = [step for step in plan.steps if step.id not in done]
    if len(to_run) > max_steps:
        return [
            PlanError(
                None, f"the plan has {len(to_run)} steps to run; the most allowed is {max_steps}"
            )
        ]
    for step in to_run:
        too_big = _size_error(step, max_args_chars, max_text_chars)
        if too_big is not None:
            return [too_big]
    first, errors = _check_ids(plan, done)
    for step in to_run:
        if step.id in retired:
            errors.append(
                PlanError(
                    step.id,
                    "the id belongs to an earlier step that failed or was skipped; "
                    "give the new step a new id",
                )
            )
        errors.extend(_check_step(step, first, tools))
        if len(errors) > MAX_ERRORS:
            return _capped(errors, complete=False)
    errors.extend(_check_cycles(plan.steps))
    return _capped(errors)


def _check_ids(plan: Plan, done: Mapping[str, StepDict]) -> tuple[dict[str, Step], list[PlanError]]:
    """Each id's first step, and what is wrong with the ids and the finished steps."""
    errors: list[PlanError] = []
    if not plan.steps:
        errors.append(PlanError(None, "the plan has no steps"))
    first: dict[str, Step] = {}
    for step in plan.steps:
        if step.id in first:
            errors.append(PlanError(step.id, "the id is used by more than one step"))
        else:
            first[step.id] = step
    for step_id, ran in done.items():
        current = first.get(step_id)
        if current is None:
            errors.append(PlanError(step_id, "the step has finished; it cannot be removed"))
        elif current.to_dict() != ran:
            errors.append(PlanError(step_id, "the step has finished; it cannot be changed"))
    return first, errors


def _size_error(
    step: Step, max_args_chars: int | None, max_text_chars: int | None
) -> PlanError | None:
    if max_text_chars is not None and len(step.description) > max_text_chars:
        return PlanError(
            step.id,
            f"the description is {len(step.description)} characters long; "
            f"the most allowed is {max_text_chars}",
        )
    if max_args_chars is None:
        return None
    size = args_size(step.args, max_args_chars)
    if size <= max_args_chars:
        return None
    stop = _SIZE_SLACK * max_args_chars
    measured = f"{size}" if size <= stop else f"over {stop}"
    return PlanError(
        step.id, f"args are {measured} characters of JSON; the most allowed is {max_args_chars}"
    )


def _check_step(
    step: Step, known: Mapping[str, Step], tools: Mapping[str, BaseTool]
) -> list[PlanError]:
    errors: list[PlanError] = []
    for dep in step.depends_on:
        if dep == step.id:
            errors.append(PlanError(step.id, "the step depends on itself"))
        elif dep not in known:
            errors.append(
                PlanError(step.id, f"depends on '{_clip(dep)}', which is not in the plan")
            )
        if len(errors) > MAX_ERRORS:
            return errors
    if len(set(step.depends_on)) != len(step.depends_on):
        errors.append(PlanError(step.id, "depends_on lists a step more than once"))
    listed = set(step.depends_on)
    for ref in dict.fromkeys(references(step.args)):
        if ref not in listed:
            errors.append(
                PlanError(
                    step.id,
                    f"args use {{{{{_clip(ref)}}}}} but depends_on does not list '{_clip(ref)}'",
                )
            )
    if step.tool is None:
        if step.args is not None:
            errors.append(PlanError(step.id, "args are given but tool is null"))
        return errors
    tool = tools.get(step.tool)
    if tool is None:
        available = ", ".join(sorted(tools)) or "none"
        errors.append(
            PlanError(step.id, f"unknown tool '{_clip(step.tool)}' (available: {available})")
        )
    elif step.args is not None:
        errors.extend(PlanError(step.id, msg) for msg in check_args(tool, step.args))
    return errors


def check_args(tool: BaseTool, args: Mapping[str, Any], *, placeholders: bool = True) -> list[str]:
    """Why `args` do not fit `tool`'s argument schema; empty when they do.

    A JSON-schema tool is checked with a JSON Schema validator, a pydantic one by its
    model. With `placeholders` (plan time), a value holding `{{id}}` is only known at
    run time and is checked as far as it can be (`planexec.arguments` says how);
    without it (arguments after substitution, or from a model's reply) every value is
    checked as it is.
    """
    schema = args_schema(tool)
    if isinstance(schema, dict):
        pattern = REFERENCE if placeholders else None
        return json_schema_problems(tool.name, schema, args, placeholder=pattern)
    deferred = (
        {key for key, value in args.items() if any(True for _ in references(value))}
        if placeholders
        else set()
    )
    # Tool schemas usually ignore unknown keys; a plan naming one is still wrong.
    unknown = [
        f"argument '{key}' is not a parameter of tool '{tool.name}'"
        for key in args
        if key not in schema.model_fields
    ]
    try:
        schema.model_validate(dict(args))
    except ValidationError as exc:
        return unknown + [
            _arg_message(tool.name, error)
            for error in exc.errors()
            if error["type"] != "extra_forbidden"
            and not (error["loc"] and error["loc"][0] in deferred)
        ]
    return unknown


def args_schema(tool: BaseTool) -> type[BaseModel] | dict[str, Any]:
    """The arguments a model may give `tool`: a pydantic model, or a JSON schema."""
    schema = tool.tool_call_schema
    if isinstance(schema, dict) or issubclass(schema, BaseModel):
        return schema
    # A pydantic v1 model: check against its JSON schema.
    legacy: dict[str, Any] = schema.schema()
    return legacy


def _arg_message(tool: str, error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"argument '{where}' is required by tool '{tool}'"
    return f"argument '{where}' of tool '{tool}': {error['msg']}"


def _check_cycles(steps: Sequence[Step]) -> list[PlanError]:
    """One error per dependency that closes a cycle, found by an iterative depth-first walk."""
    deps = {step.id: [d for d in step.depends_on if d != step.id] for step in steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    errors: list[PlanError] = []
    for step in steps:
        if step.id in state:
            continue
        path = [step.id]
        position = {step.id: 0}
        state[step.id] = 1
        pending = [iter(deps[step.id])]
        while pending:
            node = path[-1]
            for dep in pending[-1]:
                if dep not in deps:
                    continue
                if state.get(dep) == 1:
                    cycle = [*path[position[dep] :][:_CYCLE_SHOWN], dep]
                    if len(path) - position[dep] > _CYCLE_SHOWN:
                        cycle.insert(-1, "...")
                    errors.append(PlanError(node, "dependency cycle: " + " -> ".join(cycle)))
                elif dep not in state:
                    state[dep] = 1
                    position[dep] = len(path)
                    path.append(dep)
                    pending.append(iter(deps[dep]))
                    break
            else:
                state[node] = 2
                del position[node]
                path.pop()
                pending.pop()
    return errors


_CYCLE_SHOWN = 12
"""The most step ids a cycle error names."""


def resolve_args(
    args: Mapping[str, Any], outputs: Mapping[str, Any], tool: BaseTool | None = None
) -> dict[str, Any]:
    """`args` with every `{{id}}` replaced by that step's output.

    A string that is exactly one reference takes the output as it is (a number stays a
    number), unless `tool` declares that argument a string: then it gets the output as
    text. A reference inside longer text is replaced by the output as text.
    """
    text = text_params(tool) if tool is not None else set()
    resolved = {key: _resolve(value, outputs) for key, value in args.items()}
    return {
        key: as_text(value) if key in text and not isinstance(value, str) else value
        for key, value in resolved.items()
    }


def text_params(tool: BaseTool) -> set[str]:
    """The names of `tool`'s arguments whose schema type is a string."""
    schema = args_schema(tool)
    properties = (schema if isinstance(schema, dict) else schema.model_json_schema()).get(
        "properties"
    ) or {}
    return {name for name, spec in properties.items() if spec.get("type") == "string"}


def _resolve(value: Any, outputs: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value.strip())
        if whole:
            return outputs[whole.group(1)]
        return REFERENCE.sub(lambda m: as_text(outputs[m.group(1)]), value)
    if isinstance(value, Mapping):
        return {key: _resolve(item, outputs) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, outputs) for item in value]
    return value


class PlanDiff(TypedDict):
    """How one plan revision differs from the one before, by step id."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: list[str]


def diff_plans(old: PlanDict | None, new: PlanDict) -> PlanDiff:
    """The step ids added, removed, changed and unchanged from `old` to `new`."""
    before = {step["id"]: step for step in (old or {"steps": []})["steps"]}
    after = {step["id"]: step for step in new["steps"]}
    return {
        "added": [i for i in after if i not in before],
        "removed": [i for i in before if i not in after],
        "changed": [i for i in after if i in before and before[i] != after[i]],
        "unchanged": [i for i in after if i in before and before[i] == after[i]],
    }


def plan_hash(plan: PlanDict) -> str:
    """A stable digest of the plan's content, to tie a review decision to what was shown."""
    return digest(plan)


def step_hash(step: StepDict) -> str:
    """A stable digest of one step, to tie an approval to the step as it was approved."""
    return digest(step)


def args_size(args: object, limit: int | None = None) -> int:
    """The length of a step's arguments as JSON text: what `max_args_chars` bounds.

    Counted without building the text, and never raising. With `limit`, counting stops
    once it passes ten times the limit, returning a number past that.
    """
    stop = None if limit is None else _SIZE_SLACK * limit
    total = 0
    stack: list[object] = [args]
    while stack and (stop is None or total <= stop):
        item = stack.pop()
        if isinstance(item, Mapping):
            # Braces, and ": " after each key and ", " between items, as json.dumps writes.
            total += 4 * len(item) if item else 2
            for key, value in item.items():
                stack.append(value)
                stack.append(key if isinstance(key, str) else _key_text(key))
        elif isinstance(item, list | tuple):
            total += 2 * len(item) if item else 2
            stack.extend(item)
        elif isinstance(item, str) and stop is not None and len(item) + 2 > stop - total:
            total += len(item) + 2  # escapes only add to it: past the stop either way
        else:
            total += _scalar_chars(item)
    return total


def _key_text(key: object) -> str:
    """A non-string object key as json.dumps writes it (as a string)."""
    if isinstance(key, int) and not isinstance(key, bool):
        digits = _scalar_chars(key)
        return str(key) if key.bit_length() <= _MAX_INT_BITS else "9" * digits
    if key is None or isinstance(key, bool | float):
        return json.dumps(key)
    return str(key)


def _scalar_chars(item: object) -> int:
    """The JSON length of `item`, a value that is neither a list nor an object."""
    if item is None or item is True:
        return 4
    if item is False:
        return 5
    if isinstance(item, int):
        if item.bit_length() > _MAX_INT_BITS:
            return int(item.bit_length() * 0.30103) + 1
        return len(str(item))
    if isinstance(item, float):
        return len(json.dumps(item))
    return len(json.dumps(item if isinstance(item, str) else str(item), ensure_ascii=False))


def digest(value: object) -> str:
    """A stable digest of JSON data (key order does not matter)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Replan(BaseModel):
    """The replanner's decision: finish with the answer, or revise the steps still to run."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["finish", "replan", "continue"] = Field(
        description='"finish" with the final answer, "replan" with new steps, or '
        '"continue" to run the next step of the plan unchanged (when offered).'
    )
    answer: str | None = Field(
        default=None, description='The final answer for the goal, when action is "finish".'
    )
    steps: list[Step] | None = Field(
        default=None,
        description='The new steps still to run, when action is "replan". They may depend '
        "on finished steps; never reuse an earlier step's id.",
    )
    reason: str = Field(description="Why, in one sentence.")
