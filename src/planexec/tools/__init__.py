"""Built-in tools, and how the executor reads what a tool's metadata says about it."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from langchain_core.tools import BaseTool

from planexec.arguments import schema_problem
from planexec.plan import args_schema
from planexec.tools.calculator import calculator
from planexec.tools.files import file_tools

__all__ = [
    "TOOL_NAME",
    "TOOL_NAME_RULE",
    "calculator",
    "check_tools",
    "default_tools",
    "file_tools",
    "requires_approval",
]

TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What model APIs accept as a tool name (OpenAI's rule, the strictest in common use)."""

TOOL_NAME_RULE = "1 to 64 ASCII letters, digits, '_' or '-'"
"""`TOOL_NAME` in words, for error messages."""


def default_tools() -> list[BaseTool]:
    """The tools a graph gets when none are given: calculator and the file tools."""
    return [calculator, *file_tools()]


def requires_approval(tool: BaseTool) -> bool:
    """Whether the tool's metadata asks for a person's approval before each call."""
    return bool((tool.metadata or {}).get("requires_approval"))


def check_tools(tools: Sequence[BaseTool]) -> None:
    """Raise `ValueError` for a tool that no model API would accept, or a repeated name.

    Each name must fit `TOOL_NAME`, and a JSON-schema tool's schema must be valid JSON
    Schema. Names are shown with `ascii()`, so an invisible or look-alike character in one is
    seen in the message.
    """
    for tool in tools:
        if not isinstance(tool.name, str) or not TOOL_NAME.fullmatch(tool.name):
            raise ValueError(
                f"the tool name {tool.name!a} is not one that model APIs accept: "
                f"a tool name is {TOOL_NAME_RULE}"
            )
        schema = args_schema(tool)
        problem = schema_problem(schema) if isinstance(schema, dict) else None
        if problem is not None:
            raise ValueError(f"tool {tool.name!r}: {problem}")
    duplicates = sorted(name for name, n in Counter(t.name for t in tools).items() if n > 1)
    if duplicates:
        raise ValueError(f"tool names must be unique; repeated: {', '.join(duplicates)}")
