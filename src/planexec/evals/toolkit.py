"""What every tool factory is made of: its settings model, its builder, call logging."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict

from planexec.evals.world import World


class ToolSetupError(ValueError):
    """A tool spec names an unknown factory or has settings the factory does not take."""


class FactoryConfig(BaseModel):
    """Settings every factory takes."""

    model_config = ConfigDict(extra="forbid")

    only: list[str] | None = None
    """Names of the factory's tools to keep; all of them when unset."""


@dataclass(frozen=True)
class ToolFactory:
    """Makes a task's tools from its settings: `build(config, world)`."""

    config: type[FactoryConfig]
    build: Callable[[Any, World], list[BaseTool]]


def logged(world: World, function: Callable[..., Any], name: str | None = None) -> BaseTool:
    """`function` as a tool that records each call in `world` before running.

    The tool's name, description and arguments come from the function's name,
    docstring and signature.
    """
    tool_name = name or function.__name__

    @functools.wraps(function)
    def run(**kwargs: Any) -> Any:
        world.log(tool_name, kwargs)
        return function(**kwargs)

    return StructuredTool.from_function(run, name=tool_name)
