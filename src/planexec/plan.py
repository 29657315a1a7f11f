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
from typing import Any, Literal

from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs it before 3.12

from planexec.arguments import json_schema_problems

REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_-]+)\s*\}\}")
"""`{{<id>}}` inside an argument string: replaced by that step's result before the call."""

_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


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


def parse_plan(data: object) -> tuple[Plan | None, list[PlanError]]:
    """Turn JSON-like data into a `Plan`, or say why it is not one."""
    try:
        return Plan.model_validate(data), []
    except ValidationError as exc:
        return None, [_from_pydantic(error, data) for error in exc.errors()]


def _from_pydantic(error: Any, data: object) -> PlanError:
    loc = tuple(error["loc"])
    step: str | None = None
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        step = _step_id_at(data, loc[1])
        loc = loc[2:]
    where = ".".join(str(part) for part in loc)
    return PlanError(step, f"{where}: {error['msg']}" if where else str(error["msg"]))


def _step_id_at(data: object, index: int) -> str:
    steps = data.get("steps") if isinstance(data, Mapping) else None
    if isinstance(steps, list) and index < len(steps):
        item = steps[index]
        if isinstance(item, Mapping) and isinstance(item.get("id"), str) and item["id"]:
            return str(item["id"])
    return f"#{index + 1}"


def references(value: object) -> Iterator[str]:
    """Every step id referenced as `{{id}}` anywhere inside `value`."""
    if isinstance(value, str):
        yield from REFERENCE.findall(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from references(item)


def validate_plan(
    plan: Plan,
    tools: Mapping[str, BaseTool],
    *,
    max_steps: int,
    done: Mapping[str, StepDict] | None = None,
    retired: Collection[str] = (),
    max_args_chars: int | None = None,
) -> list[PlanError]:
    """Every reason `plan` cannot run, or an empty list.

    Args:
        plan: The plan to check.
        tools: The tools that steps may name.
        max_steps: The most steps the plan may have still to run.
        max_args_chars: The longest a step's `args` may be, as JSON text.
        done: Steps that have finished, as they ran: each must be in the plan, unchanged.
        retired: Ids of earlier steps that failed or were skipped; new steps may not reuse them.
    """
    done = done or {}
    errors: list[PlanError] = []
    ids = [step.id for step in plan.steps]
    known = set(ids)
    if not plan.steps:
        errors.append(PlanError(None, "the plan has no steps"))
    seen: set[str] = set()
    for step_id in ids:
        if step_id in seen:
            errors.append(PlanError(step_id, "the id is used by more than one step"))
        seen.add(step_id)
    to_run = [step for step in plan.steps if step.id not in done]
    if len(to_run) > max_steps:
        errors.append(
            PlanError(
                None, f"the plan has {len(to_run)} steps to run; the most allowed is {max_steps}"
            )
        )
    for step_id, ran in done.items():
        current = next((s for s in plan.steps if s.id == step_id), None)
        if current is None:
            errors.append(PlanError(step_id, "the step has finished; it cannot be removed"))
        elif current.to_dict() != ran:
            errors.append(PlanError(step_id, "the step has finished; it cannot be changed"))
    for step in to_run:
        if step.id in retired:
            errors.append(
                PlanError(
                    step.id,
                    "the id belongs to an earlier step that failed or was skipped; "
                    "give the new step a new id",
                )
            )
        errors.extend(_check_step(step, known, tools))
        size = args_size(step.args)
        if max_args_chars is not None and size > max_args_chars:
            errors.append(
                PlanError(
                    step.id,
                    f"args are {size} characters of JSON; the most allowed is {max_args_chars}",
                )
            )
    errors.extend(_check_cycles(plan.steps))
    return errors


def _check_step(step: Step, known: set[str], tools: Mapping[str, BaseTool]) -> list[PlanError]:
    errors: list[PlanError] = []
    for dep in step.depends_on:
        if dep == step.id:
            errors.append(PlanError(step.id, "the step depends on itself"))
        elif dep not in known:
            errors.append(PlanError(step.id, f"depends on '{dep}', which is not in the plan"))
    if len(set(step.depends_on)) != len(step.depends_on):
        errors.append(PlanError(step.id, "depends_on lists a step more than once"))
    for ref in dict.fromkeys(references(step.args)):
        if ref not in step.depends_on:
            errors.append(
                PlanError(step.id, f"args use {{{{{ref}}}}} but depends_on does not list '{ref}'")
            )
    if step.tool is None:
        if step.args is not None:
            errors.append(PlanError(step.id, "args are given but tool is null"))
        return errors
    tool = tools.get(step.tool)
    if tool is None:
        available = ", ".join(sorted(tools)) or "none"
        errors.append(PlanError(step.id, f"unknown tool '{step.tool}' (available: {available})"))
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
    deps = {step.id: [d for d in step.depends_on if d != step.id] for step in steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    errors: list[PlanError] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in deps.get(node, []):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep] if dep in path else [node, dep]
                errors.append(PlanError(node, "dependency cycle: " + " -> ".join(cycle)))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for step in steps:
        if step.id not in state:
            visit(step.id, [step.id])
    return errors


def topological_order(steps: Sequence[StepDict]) -> list[StepDict]:
    """The steps ordered so that each comes after its dependencies; ties keep plan order.

    The plan must be acyclic (as `validate_plan` ensures); dependencies on steps not in
    `steps` are ignored.
    """
    ids = {step["id"] for step in steps}
    placed: set[str] = set()
    ordered: list[StepDict] = []
    remaining = list(steps)
    while remaining:
        ready = [s for s in remaining if all(d in placed or d not in ids for d in s["depends_on"])]
        if not ready:
            raise ValueError("the plan has a dependency cycle")
        for step in ready:
            placed.add(step["id"])
            ordered.append(step)
        remaining = [s for s in remaining if s["id"] not in placed]
    return ordered


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


def as_text(value: Any) -> str:
    """A step output as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


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


def args_size(args: object) -> int:
    """The length of a step's arguments as JSON text: what `max_args_chars` bounds."""
    return len(json.dumps(args, ensure_ascii=False, default=str))


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
