"""`--mcp-config FILE` and `--mcp 'NAME=COMMAND ARGS...'`: tools from MCP servers.

What a run was given is kept in its checkpoint metadata (`MCP_KEY`): the config files'
absolute paths, not their contents, so a secret in a server's `env` is never written
to the checkpoint; and each `--mcp` server with the folder it was started from.
`resume` starts the same servers again, reading the config files anew, unless it is
given `--mcp-config` or `--mcp` itself.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from planexec.cli.environment import UserError
from planexec.tools import default_tools
from planexec.tools.mcp import (
    MCPError,
    MCPServer,
    open_mcp_tools,
    parse_server_spec,
    read_mcp_config,
    unique_servers,
)

MCP_KEY = "planexec_mcp"
"""Checkpoint metadata key: the run's MCP servers as JSON (see the module docstring)."""


@dataclass(frozen=True)
class MCPSettings:
    """The MCP servers of a run: config files, and servers given with `--mcp`."""

    configs: tuple[str, ...] = ()
    """Absolute paths of the config files."""
    inline: tuple[MCPServer, ...] = ()

    def servers(self) -> list[MCPServer]:
        """Every server, the config files' first; a config that cannot be read raises."""
        from_files = [server for path in self.configs for server in read_mcp_config(path)]
        return unique_servers([*from_files, *self.inline])

    def to_json(self) -> str:
        """These settings as the JSON kept in checkpoint metadata."""
        inline = [
            {"name": s.name, "command": s.command, "args": list(s.args), "cwd": s.cwd}
            for s in self.inline
        ]
        return json.dumps({"configs": list(self.configs), "servers": inline}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MCPSettings:
        """Settings kept by `to_json`."""
        data = json.loads(text)
        inline = tuple(
            MCPServer(name=s["name"], command=s["command"], args=tuple(s["args"]), cwd=s["cwd"])
            for s in data.get("servers", [])
        )
        return cls(configs=tuple(data.get("configs", [])), inline=inline)


def from_args(args: argparse.Namespace) -> MCPSettings | None:
    """The MCP settings given on the command line, checked now; None if none were."""
    configs = getattr(args, "mcp_config", None) or []
    specs = getattr(args, "mcp", None) or []
    if not configs and not specs:
        return None
    try:
        settings = MCPSettings(
            configs=tuple(str(Path(c).expanduser().resolve()) for c in configs),
            inline=tuple(parse_server_spec(spec) for spec in specs),
        )
        settings.servers()
    except MCPError as exc:
        raise UserError(str(exc)) from exc
    return settings


def for_resume(args: argparse.Namespace, metadata: Mapping[str, Any] | None) -> MCPSettings | None:
    """The command line's MCP settings, else those the thread was run with."""
    given = from_args(args)
    if given is not None:
        return given
    text = (metadata or {}).get(MCP_KEY)
    return MCPSettings.from_json(text) if isinstance(text, str) else None


def with_metadata(config: RunnableConfig, settings: MCPSettings | None) -> RunnableConfig:
    """`config` with the MCP settings added to the metadata of every checkpoint."""
    if settings is None:
        return config
    metadata = {**config.get("metadata", {}), MCP_KEY: settings.to_json()}
    return {**config, "metadata": metadata}


@asynccontextmanager
async def graph_tools(settings: MCPSettings | None) -> AsyncIterator[list[BaseTool] | None]:
    """The built-in tools and the MCP servers' tools, sessions open for the block.

    None (the graph's default tools) when there are no MCP settings.
    """
    if settings is None:
        yield None
        return
    builtin = default_tools()
    try:
        servers = settings.servers()
    except MCPError as exc:
        hint = "" if not settings.configs else " (pass --mcp-config to use another file)"
        raise UserError(f"{exc}{hint}") from exc
    async with open_mcp_tools(servers, reserved=[t.name for t in builtin]) as tools:
        yield [*builtin, *tools]
