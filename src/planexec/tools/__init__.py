"""Built-in tools, and how the executor reads what a tool's metadata says about it."""

from __future__ import annotations

from langchain_core.tools import BaseTool

from planexec.tools.calculator import calculator
from planexec.tools.files import file_tools

__all__ = ["calculator", "default_tools", "file_tools", "requires_approval"]


def default_tools() -> list[BaseTool]:
    """The tools a graph gets when none are given: calculator and the file tools."""
    return [calculator, *file_tools()]


def requires_approval(tool: BaseTool) -> bool:
    """Whether the tool's metadata asks for a person's approval before each call."""
    return bool((tool.metadata or {}).get("requires_approval"))
