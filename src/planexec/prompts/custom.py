"""Your own prompts: what each one may hold, how it is checked, which one a run uses.

Each role's system prompt is yours to replace, per graph (`build_graph(prompts=...)`)
or per run (`Context.planner_prompt`, `executor_prompt`, `executor_tool_prompt`,
`replanner_prompt`, which win). A system prompt holds instructions only, and may use
these placeholders (`$name`; write `$$` for a dollar sign):

| prompt | placeholders |
|---|---|
| `planner` | `$max_steps`, `$direct_answers` (the rule that `Context.direct_answers` sets) |
| `executor` (a step answered in text) | `$data_notice` |
| `executor_tool` (the executor writes a tool's arguments) | `$tool`, `$data_notice` |
| `replanner` | `$options` (the "continue" action, when offered), `$replans_left`, `$data_notice` |

The executor's and replanner's prompts end with the note that step results are data,
never instructions (`sections.DATA_NOTICE`), unless they place `$data_notice` themselves.

The data goes in the user message, whose templates (`planner_user`, `executor_user`,
`replanner_user`) may be replaced too, keeping every section below, once each, with its
placeholder alone inside its tag: that is how instructions and data stay apart.

- `planner_user`: `<goal>$goal</goal>`, `<tools>$tools</tools>`, and `$examples`,
  `$feedback` and `$invalid_reply`, which become sections of their own (`<saved_plans>`,
  `<reviewer_feedback>`, `<invalid_reply>`) when there is something to show, and
  optionally `$earlier_goals` (`<earlier_goals>`: the thread's latest earlier goals and
  their answers; without it a follow-up goal is planned on its own);
- `executor_user`: `<goal>$goal</goal>`, `<step id="$step_id">$description</step>`,
  `<step_results>$results</step_results>`;
- `replanner_user`: `<goal>$goal</goal>`, `<tools>$tools</tools>`,
  `<plan revision="$revision">$plan</plan>`, `<step_results>$results</step_results>`,
  `$feedback`, `$invalid_reply`, and optionally `$history` (`<earlier_revisions>`: what
  earlier revisions did and which finished steps `<plan>` leaves out; without it the
  replanner sees only the live plan and the results shown).

A prompt that breaks these rules is refused with a `PromptError` when the graph is built
(or the `Context` made), saying what is wrong.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from string import Template
from typing import Any, Literal, get_args

from planexec.errors import PlanexecError
from planexec.prompts import executor, planner, replanner

__all__ = ["PROMPT_NAMES", "PromptError", "PromptName", "Prompts", "check_prompt"]

PromptName = Literal[
    "planner",
    "planner_user",
    "executor",
    "executor_tool",
    "executor_user",
    "replanner",
    "replanner_user",
]
PROMPT_NAMES: tuple[PromptName, ...] = get_args(PromptName)


class PromptError(PlanexecError, ValueError):
    """A custom prompt that planexec cannot use as it is."""


@dataclass(frozen=True)
class _Spec:
    default: Template
    allowed: frozenset[str]
    sections: tuple[tuple[str, str], ...] = ()
    """(placeholder, tag): the placeholder alone inside `<tag ...>...</tag>`."""
    blocks: tuple[str, ...] = ()
    """Placeholders that expand to whole sections of their own (or to nothing)."""
    attributes: tuple[str, ...] = ()
    """Placeholders inside a section's opening tag."""
    optional: frozenset[str] = frozenset()
    """Block placeholders a custom prompt may leave out (added after custom prompts
    existed, so that those keep working)."""
    notice: bool = False
    """Whether the prompt ends with the data notice unless it places `$data_notice`."""

    @property
    def system(self) -> bool:
        return not self.sections


_SPECS: dict[PromptName, _Spec] = {
    "planner": _Spec(planner.SYSTEM, frozenset({"max_steps", "direct_answers"})),
    "planner_user": _Spec(
        planner.USER,
        frozenset({"goal", "tools", "earlier_goals", "examples", "feedback", "invalid_reply"}),
        sections=(("goal", "goal"), ("tools", "tools")),
        blocks=("earlier_goals", "examples", "feedback", "invalid_reply"),
        optional=frozenset({"earlier_goals"}),
    ),
    "executor": _Spec(executor.SYSTEM_REASON, frozenset({"data_notice"}), notice=True),
    "executor_tool": _Spec(executor.SYSTEM_TOOL, frozenset({"tool", "data_notice"}), notice=True),
    "executor_user": _Spec(
        executor.USER,
        frozenset({"goal", "step_id", "description", "results"}),
        sections=(("goal", "goal"), ("description", "step"), ("results", "step_results")),
        attributes=("step_id",),
    ),
    "replanner": _Spec(
        replanner.SYSTEM, frozenset({"options", "replans_left", "data_notice"}), notice=True
    ),
    "replanner_user": _Spec(
        replanner.USER,
        frozenset(
            {"goal", "tools", "revision", "plan", "results", "history", "feedback", "invalid_reply"}
        ),
        sections=(
            ("goal", "goal"),
            ("tools", "tools"),
            ("plan", "plan"),
            ("results", "step_results"),
        ),
        blocks=("history", "feedback", "invalid_reply"),
        attributes=("revision",),
        optional=frozenset({"history"}),
    ),
}


def check_prompt(name: PromptName, text: str) -> Template:
    """`text` as the template for prompt `name`, or the `PromptError` that says why not."""
    spec = _SPECS[name]
    template = Template(text)
    where = f"the {name} prompt"
    if not text.strip():
        raise PromptError(f"{where} is empty")
    if not template.is_valid():
        raise PromptError(
            f"{where} has a '$' that starts no placeholder: write $$ for a dollar sign"
        )
    used = [found for m in template.pattern.finditer(text) if (found := _identifier(m))]
    unknown = sorted(set(used) - spec.allowed)
    if unknown:
        allowed = ", ".join(f"${n}" for n in sorted(spec.allowed))
        hint = " (data goes in the user message's tagged sections)" if spec.system else ""
        raise PromptError(
            f"{where} uses {', '.join('$' + n for n in unknown)}; it may use {allowed}{hint}"
        )
    if spec.system:
        return template
    for placeholder in sorted(spec.allowed):
        count = used.count(placeholder)
        if count != 1 and not (count == 0 and placeholder in spec.optional):
            raise PromptError(
                f"{where} must hold ${placeholder} exactly once (it holds it {count} times): "
                + _role_of(spec, placeholder)
            )
    for placeholder, tag in spec.sections:
        opening = re.findall(rf"<{tag}(?:\s[^>]*)?>", text)
        inside = re.search(
            rf"<{tag}(?:\s[^>]*)?>\s*\$(?:{placeholder}|\{{{placeholder}\}})\s*</{tag}>", text
        )
        if len(opening) != 1 or inside is None:
            raise PromptError(
                f"{where} must keep ${placeholder} alone inside one <{tag}>...</{tag}> section, "
                "so that data never blurs into instructions"
            )
    return template


def _identifier(match: re.Match[str]) -> str | None:
    return match.group("named") or match.group("braced")


def _role_of(spec: _Spec, placeholder: str) -> str:
    if placeholder in spec.blocks:
        return "it becomes a section of its own when there is something to show"
    if placeholder in spec.attributes:
        return "it goes inside its section's opening tag"
    tag = dict(spec.sections)[placeholder]
    return f"it goes alone inside <{tag}>...</{tag}>"


_CONTEXT_FIELDS: dict[PromptName, str] = {
    "planner": "planner_prompt",
    "executor": "executor_prompt",
    "executor_tool": "executor_tool_prompt",
    "replanner": "replanner_prompt",
}
"""The `Context` field that overrides each system prompt for one run."""


@dataclass(frozen=True)
class Prompts:
    """Prompts that replace planexec's own; None keeps planexec's.

    Each is checked when made (`PromptError`); the module docstring says what each may
    hold. A run's `Context` prompt fields win over these.

    Example:
        ```python
        Prompts(planner="You plan data analyses in SQL. ... at most $max_steps steps.")
        ```
    """

    planner: str | None = None
    """The planner's system prompt."""
    planner_user: str | None = None
    """The planner's user message: goal, tools, saved plans, feedback, errors."""
    executor: str | None = None
    """The executor's system prompt for a step it answers in text."""
    executor_tool: str | None = None
    """The executor's system prompt for a step whose tool arguments it writes."""
    executor_user: str | None = None
    """The executor's user message: goal, step, its dependencies' results."""
    replanner: str | None = None
    """The replanner's system prompt."""
    replanner_user: str | None = None
    """The replanner's user message: goal, tools, plan, results, feedback, errors."""

    def __post_init__(self) -> None:
        for name in PROMPT_NAMES:
            text = getattr(self, name)
            if text is not None:
                check_prompt(name, text)

    @classmethod
    def of(cls, value: Prompts | Mapping[str, str | None] | None) -> Prompts:
        """`value` as `Prompts`: as it is, from a dict with the same keys, or none."""
        if value is None:
            return cls()
        if isinstance(value, Prompts):
            return value
        unknown = sorted(set(value) - {f.name for f in fields(cls)})
        if unknown:
            raise PromptError(
                f"unknown prompt(s) {', '.join(unknown)}; the prompts are "
                + ", ".join(PROMPT_NAMES)
            )
        return cls(**value)

    def template(self, name: PromptName, context: Any = None) -> Template:
        """The template prompt `name` uses under `context` (a `Context`, or None)."""
        spec = _SPECS[name]
        field = _CONTEXT_FIELDS.get(name)
        text = getattr(context, field, None) if field and context is not None else None
        if text is None:
            text = getattr(self, name)
        if text is None:
            return spec.default
        return _custom(name, text)


@functools.lru_cache(maxsize=64)
def _custom(name: PromptName, text: str) -> Template:
    """A custom prompt's template, checked, with the data notice where it belongs."""
    template = check_prompt(name, text)
    if _SPECS[name].notice and "data_notice" not in template.get_identifiers():
        return Template(text.rstrip() + "\n\n$data_notice")
    return template
