"""Configurations under evaluation: which model plays each role.

On the command line a configuration is `NAME=PLANNER[,EXECUTOR[,REPLANNER]]`, for
example `strong=openai:gpt-4.1` (every role) or
`cheap=openai:gpt-4.1,openai:gpt-4.1-mini` (a strong planner, a cheap executor).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planexec.context import Context


class ConfigError(ValueError):
    """A configuration that cannot be used."""


class EvalConfig(BaseModel):
    """One configuration: a name, a model per role, and other `Context` settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    planner_model: str = "openai:gpt-4.1"
    executor_model: str = "openai:gpt-4.1-mini"
    replanner_model: str | None = None
    """The planner's model when unset."""
    context: dict[str, Any] = Field(default_factory=dict)
    """Other `Context` settings for every task (prices, model_timeout...)."""

    @property
    def label(self) -> str:
        """The models per role, short: "gpt-4.1 / gpt-4.1-mini"."""
        names = [self.planner_model, self.executor_model]
        if self.replanner_model and self.replanner_model != self.planner_model:
            names.append(self.replanner_model)
        return " / ".join(name.partition(":")[2] or name for name in names)


def parse_config(text: str) -> EvalConfig:
    """A configuration from `NAME=PLANNER[,EXECUTOR[,REPLANNER]]`."""
    name, sep, models = text.partition("=")
    parts = [part.strip() for part in models.split(",")] if sep else []
    if not sep or not name.strip() or not 1 <= len(parts) <= 3 or not all(parts):
        raise ConfigError(
            f"configuration {text!r} is not NAME=PLANNER[,EXECUTOR[,REPLANNER]] "
            "(for example cheap=openai:gpt-4.1,openai:gpt-4.1-mini)"
        )
    settings: dict[str, Any] = {"name": name.strip(), "planner_model": parts[0]}
    settings["executor_model"] = parts[1] if len(parts) > 1 else parts[0]
    if len(parts) > 2:
        settings["replanner_model"] = parts[2]
    try:
        config = EvalConfig(**settings)
        Context(
            planner_model=config.planner_model,
            executor_model=config.executor_model,
            replanner_model=config.replanner_model,
        )
    except ValidationError as exc:
        raise ConfigError(f"configuration {text!r}: {exc.errors()[0]['msg']}") from exc
    return config
