"""`planexec plans`: the library of saved plans beside the checkpoint database.

    planexec plans list [--limit N]          every saved plan, most used first
    planexec plans show ID                   one plan: goals, steps, statistics
    planexec plans delete ID                 forget one plan
    planexec plans export [--output FILE]    every plan as one JSON document
    planexec plans import FILE               add the plans of an export (all or none)

The library lives beside the checkpoints (`planexec.stores`): for a SQLite checkpoint
file, in `<name>.plans.sqlite` next to it; for PostgreSQL, in the same database.
Everything in it may have come from another person's runs, so what is printed for
people has its control characters shown as escapes, never acted on by the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from langgraph.store.base import BaseStore
from rich.markup import escape
from rich.table import Table

from planexec.checkpoints import redact
from planexec.cli import mcp_servers
from planexec.cli.environment import Environment, UserError, checkpoint_location
from planexec.cli.opening import prepare_checkpoint
from planexec.cli.render import when
from planexec.errors import PlanexecError
from planexec.inert import visible
from planexec.library import LibraryImportError, PlanLibrary, SavedPlan
from planexec.stores import check_index_support, embeddings_index, open_store
from planexec.tools import default_tools

if TYPE_CHECKING:
    from planexec.cli.environment import Output

EMBEDDINGS_VARIABLE = "PLANEXEC_EMBEDDINGS"
"""An embeddings model ("openai:text-embedding-3-small") for finding saved plans by
meaning; unset, they are matched by their words."""


def plans(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec plans ACTION`."""
    path = prepare_checkpoint(checkpoint_location(args.checkpoint, env), create=True)
    return asyncio.run(_ACTIONS[args.plans_command](args, env, out, path))


@asynccontextmanager
async def open_library(location: Path | str, env: Environment) -> AsyncIterator[BaseStore]:
    """The plan library's store beside the checkpoints at `location`, as the CLI opens it.

    With `PLANEXEC_EMBEDDINGS` set, the store gets an index of that model.
    """
    try:
        index = None
        if env.embeddings:
            check_index_support(location)
            index = embeddings_index(env.embeddings, api_key=env.api_key, base_url=env.base_url)
        async with open_store(location, index=index) as store:
            yield store
    except psycopg.OperationalError as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise UserError(f"cannot open the plan library in {redact(location)}: {lines[-1]}") from exc
    except psycopg.Error as exc:
        raise UserError(f"cannot set up the plan library in {redact(location)}: {exc}") from exc
    except PlanexecError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(str(exc)) from exc


async def _list(args: argparse.Namespace, env: Environment, out: Output, where: Path | str) -> int:
    async with open_library(where, env) as store:
        entries = await PlanLibrary(store).alist(limit=args.limit)
    if out.json_mode:
        _print_json([_summary(entry) for entry in entries])
        return 0
    if not entries:
        out.console.print(f"no saved plans beside {escape(redact(where))}")
        return 0
    table = Table(show_lines=False)
    for column in ("id", "runs", "success", "last used", "steps", "tools", "goal"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        rate = entry.success_rate
        table.add_row(
            entry.id,
            str(entry.stats.uses),
            "-" if rate is None else f"{rate:.0%}",
            when(entry.stats.last_used_at) if entry.stats.last_used_at else "never",
            str(len(entry.plan.get("steps") or [])),
            _shown(", ".join(sorted(entry.tools)), 40),
            _shown(entry.template or entry.goal, 80),
        )
    out.console.print(table)
    return 0


async def _show(args: argparse.Namespace, env: Environment, out: Output, where: Path | str) -> int:
    async with open_library(where, env) as store:
        entry = await PlanLibrary(store).aget(args.id)
    if entry is None:
        raise UserError(f"no saved plan {args.id!r} beside {redact(where)}")
    if out.json_mode:
        _print_json(entry.model_dump(mode="json"))
        return 0
    rate = entry.success_rate
    lines = [
        f"[bold]saved plan[/] {entry.id} ({entry.kind})",
        f"runs: {entry.stats.uses}, succeeded {entry.stats.successes}, failed "
        f"{entry.stats.failures}, replayed {entry.stats.replays}; success rate "
        + ("-" if rate is None else f"{rate:.0%}"),
        f"saved {when(entry.stats.saved_at)}; last used "
        + (when(entry.stats.last_used_at) if entry.stats.last_used_at else "never"),
        f"reviewer edits: {entry.edits.count}"
        + (f", last {when(entry.edits.last_at)}" if entry.edits.last_at else ""),
        "tools: " + _shown(", ".join(f"{k} ({v})" for k, v in sorted(entry.tools.items())), 400),
    ]
    if entry.template:
        lines.append("template: " + _shown(entry.template, 400))
    lines.extend("goal: " + _shown(goal, 400) for goal in (entry.goals or [entry.goal]))
    for line in lines:
        out.console.print(line)
    out.console.print("[bold]plan[/]:")
    out.console.print(_shown(json.dumps(entry.plan, indent=1, ensure_ascii=False), None))
    return 0


async def _delete(
    args: argparse.Namespace, env: Environment, out: Output, where: Path | str
) -> int:
    async with open_library(where, env) as store:
        deleted = await PlanLibrary(store).adelete(args.id)
    if not deleted:
        raise UserError(f"no saved plan {args.id!r} beside {redact(where)}")
    if out.json_mode:
        _print_json({"deleted": args.id})
    else:
        out.console.print(f"deleted saved plan {escape(args.id)}")
    return 0


async def _export(
    args: argparse.Namespace, env: Environment, out: Output, where: Path | str
) -> int:
    async with open_library(where, env) as store:
        document = await PlanLibrary(store).aexport()
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        try:
            await asyncio.to_thread(Path(args.output).write_text, text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc.strerror}") from exc
        out.console.print(f"exported {len(document['plans'])} plan(s) to {escape(args.output)}")
    else:
        sys.stdout.write(text)
    return 0


async def _import(
    args: argparse.Namespace, env: Environment, out: Output, where: Path | str
) -> int:
    try:
        document = json.loads(await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {args.file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise UserError(f"{args.file} is not JSON: {exc}") from exc
    async with (
        mcp_servers.graph_tools(mcp_servers.from_args(args)) as tools,
        open_library(where, env) as store,
    ):
        chosen = tools if tools is not None else default_tools()
        try:
            ids = await PlanLibrary(store).aimport(document, {t.name: t for t in chosen})
        except LibraryImportError as exc:
            listed = "\n".join(f"  - {_shown(error, 300)}" for error in exc.errors)
            raise UserError(
                f"nothing was imported from {args.file}: {len(exc.errors)} problem(s):\n{listed}"
            ) from exc
    if out.json_mode:
        _print_json({"imported": ids})
    else:
        out.console.print(f"imported {len(ids)} plan(s) from {escape(args.file)}")
    return 0


_ACTIONS = {
    "list": _list,
    "show": _show,
    "delete": _delete,
    "export": _export,
    "import": _import,
}


def _summary(entry: SavedPlan) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "goal": entry.goal,
        "template": entry.template,
        "uses": entry.stats.uses,
        "successes": entry.stats.successes,
        "failures": entry.stats.failures,
        "success_rate": entry.success_rate,
        "last_used_at": entry.stats.last_used_at,
        "steps": len(entry.plan.get("steps") or []),
        "tools": sorted(entry.tools),
    }


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _shown(text: str, limit: int | None) -> str:
    """`text` made inert for a terminal (`planexec.inert`), cut to `limit` characters.

    Only uncut text (`limit` None) keeps its newlines.
    """
    shown = visible(text, multiline=limit is None)
    if limit is not None and len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return escape(shown)
