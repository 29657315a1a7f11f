"""Every prompt planexec sends, and nothing else.

Prompts are `string.Template`s with named `$placeholders`. Data goes inside tagged
sections (`<goal>`, `<step_results>`...) so that instructions and data never blur,
and text produced by tools is marked as data, not instructions.
"""

from __future__ import annotations

from string import Template

__all__ = ["fill", "render"]


def render(template: Template, **values: object) -> str:
    """Fill `template`; a missing or unexpected placeholder raises `KeyError`/`ValueError`."""
    expected = set(template.get_identifiers())
    if set(values) != expected:
        raise ValueError(f"template expects {sorted(expected)}, was given {sorted(values)}")
    return template.substitute({key: str(value) for key, value in values.items()})


def fill(template: Template, **values: object) -> str:
    """Fill `template` from `values`, which may hold more than it uses.

    A custom prompt may leave optional placeholders out; one it uses but is not given
    raises `KeyError`.
    """
    return template.substitute({key: str(value) for key, value in values.items()})
