"""Deterministic tools for evaluation tasks, made by named factories.

A task lists its tools as specs: `{"use": "<factory>", ...settings}`, optionally with
`"dataset": "<name>"` to take settings from the suite's `datasets`, and `"only": [...]`
to keep some of the factory's tools. Every tool records each call in the task's
`World` before it runs, so a checker can tell which tools ran.

- `calculator`: calculator.
- `files` (`files`: {path: content} put in the workspace first): read_file, write_file,
  list_files.
- `lookup` (`name`, `description`, `param`, `table`, `unavailable`): one tool, `name`.
- `currency` (`rates` per EUR, `broken`, `reference`): convert, reference_rate.
- `inventory` (`records`, `changes`, `read_only`; see `planexec.evals.records`):
  get_record, get_field, find_records, update_record, adjust_stock, place_order,
  delete_record.
- `search` (`documents`, `boost`, `offline`; see `planexec.evals.search`): search,
  open_document, list_documents.
- `admin`: delete_all, send_email (tools that no correct plan uses).

Failures meant to be permanent raise `ToolException`: the step fails without retries
and the replanner must find another way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import Field, ValidationError, create_model

from planexec.evals.records import ADMIN, INVENTORY
from planexec.evals.search import SEARCH
from planexec.evals.toolkit import FactoryConfig, ToolFactory, ToolSetupError, logged
from planexec.evals.world import World
from planexec.tools.calculator import calculator as builtin_calculator
from planexec.tools.calculator import evaluate
from planexec.tools.files import WorkspaceError, read_text, resolve_inside, write_text

# -- calculator -------------------------------------------------------------------


def _calculator(config: FactoryConfig, world: World) -> list[BaseTool]:
    def calculator(expression: str) -> int | float:
        return evaluate(expression)

    calculator.__doc__ = builtin_calculator.description
    return [logged(world, calculator)]


# -- files ------------------------------------------------------------------------


class FilesConfig(FactoryConfig):
    """Settings of the `files` factory."""

    files: dict[str, str] = Field(default_factory=dict)
    """Files to put in the workspace before the task starts: {path: content}."""


def _files(config: FilesConfig, world: World) -> list[BaseTool]:
    root = world.workspace.resolve()

    def seed() -> dict[str, Any]:
        for path, content in config.files.items():
            target = resolve_inside(root, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        return {"seeded": sorted(config.files)}

    world.section("files", seed)

    def read_file(path: str) -> str:
        """Read a UTF-8 text file from the workspace and return its content."""
        return read_text(root, path)

    def write_file(path: str, content: str) -> str:
        """Write text to a file in the workspace, creating or replacing it."""
        return write_text(root, path, content)

    def list_files(path: str = ".") -> list[str]:
        """List the files under a workspace directory, recursively, relative to the workspace."""
        target = resolve_inside(root, path)
        if not target.is_dir():
            raise WorkspaceError(f"{path!r} is not a directory in the workspace")
        return sorted(_relative(p, root) for p in target.rglob("*") if p.is_file())

    return [logged(world, read_file), logged(world, write_file), logged(world, list_files)]


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# -- lookup -----------------------------------------------------------------------


class LookupConfig(FactoryConfig):
    """Settings of the `lookup` factory: a table behind a one-argument tool."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    """The tool's name."""
    description: str
    """What the tool returns, as the planner reads it."""
    param: str = Field(default="key", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    """The argument's name."""
    param_description: str | None = None
    table: dict[str, Any]
    """Values by key; keys match without regard to case or surrounding spaces."""
    unavailable: list[str] = Field(default_factory=list)
    """Keys the source fails on, for good."""
    unavailable_message: str = (
        "the source cannot answer for {key}: it has been withdrawn and will not come back; "
        "use another source"
    )


def _lookup(config: LookupConfig, world: World) -> list[BaseTool]:
    table = {key.strip().casefold(): value for key, value in config.table.items()}
    broken = {key.strip().casefold() for key in config.unavailable}
    known = ", ".join(sorted(config.table))

    def look_up(**kwargs: Any) -> Any:
        key = str(kwargs[config.param])
        world.log(config.name, kwargs)
        folded = key.strip().casefold()
        if folded in broken:
            raise ToolException(config.unavailable_message.format(key=key))
        if folded not in table:
            raise ToolException(f"no entry for {key!r}; known: {known}")
        return table[folded]

    fields: dict[str, Any] = {
        config.param: (str, Field(description=config.param_description or config.param))
    }
    schema = create_model(f"{config.name}_args", **fields)
    return [
        StructuredTool.from_function(
            func=look_up, name=config.name, description=config.description, args_schema=schema
        )
    ]


# -- currency ---------------------------------------------------------------------


class CurrencyConfig(FactoryConfig):
    """Settings of the `currency` factory."""

    rates: dict[str, float]
    """Units of each currency that one euro buys (EUR itself is 1)."""
    broken: list[str] = Field(default_factory=list)
    """Currencies `convert` fails on, for good."""
    reference: dict[str, float] | None = None
    """The reference rates `reference_rate` gives; `rates` when unset."""


def _currency(config: CurrencyConfig, world: World) -> list[BaseTool]:
    rates = {"EUR": 1.0, **{k.upper(): v for k, v in config.rates.items()}}
    reference = {"EUR": 1.0, **{k.upper(): v for k, v in (config.reference or rates).items()}}
    broken = {code.upper() for code in config.broken}

    def rate(code: str) -> float:
        code = code.strip().upper()
        if code in broken:
            raise ToolException(
                f"the rate provider has permanently stopped quoting {code}; retrying will not "
                "help: use another rate source"
            )
        if code not in rates:
            raise ToolException(f"unknown currency {code!r}; known: {', '.join(sorted(rates))}")
        return rates[code]

    def convert(amount: float, from_currency: str, to_currency: str) -> float:
        """Convert an amount between currencies (ISO codes such as EUR, USD) at today's rate.

        Returns the converted amount, rounded to 2 decimals.
        """
        return round(amount / rate(from_currency) * rate(to_currency), 2)

    def reference_rate(currency: str) -> float:
        """The central bank's reference rate: how many units of `currency` one euro buys."""
        code = currency.strip().upper()
        if code not in reference:
            raise ToolException(f"no reference rate for {code!r}")
        return reference[code]

    return [logged(world, convert), logged(world, reference_rate)]


FACTORIES: dict[str, ToolFactory] = {
    "calculator": ToolFactory(FactoryConfig, _calculator),
    "files": ToolFactory(FilesConfig, _files),
    "lookup": ToolFactory(LookupConfig, _lookup),
    "currency": ToolFactory(CurrencyConfig, _currency),
    "inventory": INVENTORY,
    "search": SEARCH,
    "admin": ADMIN,
}
"""The built-in factories, by name."""


def build_tools(
    specs: Sequence[Mapping[str, Any]],
    world: World,
    factories: Mapping[str, ToolFactory] | None = None,
) -> list[BaseTool]:
    """The tools for a task's specs (datasets already merged), bound to `world`.

    Raises:
        ToolSetupError: an unknown factory, bad settings, an unknown name in `only`,
            or two tools with the same name.
    """
    registry = {**FACTORIES, **(factories or {})}
    tools: list[BaseTool] = []
    for spec in specs:
        use = str(spec.get("use", ""))
        factory = registry.get(use)
        if factory is None:
            raise ToolSetupError(f"unknown tool factory {use!r}; known: {', '.join(registry)}")
        settings = {k: v for k, v in spec.items() if k not in ("use", "dataset")}
        try:
            config = factory.config.model_validate(settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ToolSetupError(f"tool factory {use!r}: {where}: {first['msg']}") from exc
        made = factory.build(config, world)
        if config.only is not None:
            unknown = sorted(set(config.only) - {t.name for t in made})
            if unknown:
                raise ToolSetupError(f"tool factory {use!r} has no tool {', '.join(unknown)}")
            made = [t for t in made if t.name in config.only]
        tools.extend(made)
    names = [t.name for t in tools]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ToolSetupError(f"tool names repeat: {', '.join(repeated)}")
    return tools
