"""Tools from MCP servers, through `langchain-mcp-adapters` (the `mcp` extra).

Servers are named in a JSON file of the shape most MCP clients use, with one planexec
addition, `requires_approval`: the tools whose every call waits for a person's approval
(a list of the server's tool names, or `true` for all of them)::

    {"mcpServers": {
        "shop": {"command": "python", "args": ["mcp_server.py"], "env": {"SHOP": "demo"},
                 "requires_approval": ["add_to_cart"]},
        "docs": {"url": "http://127.0.0.1:8000/mcp"}
    }}

A server with `command` runs as a subprocess speaking MCP over stdio, in the config
file's folder unless `cwd` says otherwise; `env` adds to a small safe subset of the
environment (`${NAME}` in a value is taken from the environment). A server with `url`
is reached over streamable HTTP, or SSE with `"transport": "sse"`; `headers` are sent
with each request. `"disabled": true` skips a server.

Two ways to get the tools, both async:

    async with open_mcp_tools("mcp.json") as tools:     # one session per server,
        graph = build_graph(tools=[*default_tools(), *tools], ...)   # open for the block
        ...

    tools = await load_mcp_tools_from_config("mcp.json")  # each call opens a session

Tool names stay unique: a tool whose name another server's tool, or a name in
`reserved`, also has is renamed `<server>_<tool>`. A tool's output is plain data: its
structured content when the server gives one (unwrapped from `{"result": ...}` for
tools that return a single value), else its text. A tool that reports an error raises
`ToolException`, so the step fails with the server's message.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import re
import shlex
import sys
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO
from uuid import uuid4

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool

from planexec.errors import PlanexecError

if TYPE_CHECKING:
    from langchain_mcp_adapters.sessions import Connection
    from mcp import ClientSession
    from mcp.types import Tool as MCPTool

__all__ = [
    "MCPError",
    "MCPServer",
    "MCPSource",
    "load_mcp_tools_from_config",
    "open_mcp_tools",
    "parse_mcp_config",
    "parse_server_spec",
    "read_mcp_config",
]

Transport = Literal["stdio", "streamable_http", "sse"]
INSTALL_HINT = "pip install 'planexec[mcp]'"
STARTUP_TIMEOUT = 30.0
"""Seconds a server may take to start and list its tools."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TRANSPORTS: dict[str, Transport] = {
    "stdio": "stdio",
    "streamable_http": "streamable_http",
    "streamable-http": "streamable_http",
    "http": "streamable_http",
    "sse": "sse",
}
_KNOWN_KEYS = (
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "transport",
    "type",
    "headers",
    "requires_approval",
    "disabled",
)


class MCPError(PlanexecError):
    """An MCP config that cannot be used, a server that does not start, or no `mcp` extra."""


@dataclass(frozen=True)
class MCPServer:
    """How to reach one MCP server, and which of its tools need approval."""

    name: str
    """The server's name in the config; prefixes its tools' names on a collision."""
    command: str | None = None
    """The program to run for a stdio server."""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    """Variables added to the stdio server's environment."""
    cwd: str | None = None
    """The stdio server's working directory."""
    url: str | None = None
    """The endpoint of an HTTP or SSE server."""
    transport: Transport = "stdio"
    headers: Mapping[str, str] | None = None
    requires_approval: bool | frozenset[str] = field(default_factory=frozenset)
    """Tool names (the server's own) whose calls need approval, or True for all."""

    def needs_approval(self, tool: str) -> bool:
        """Whether calls of the server's tool `tool` wait for a person's approval."""
        if isinstance(self.requires_approval, bool):
            return self.requires_approval
        return tool in self.requires_approval

    def describe(self) -> str:
        """The server as a person would recognise it: its name and command or URL."""
        where = self.url or shlex.join([self.command or "", *self.args])
        return f"{self.name!r} ({where})"

    def connection(self) -> Connection:
        """The `langchain-mcp-adapters` connection for this server."""
        if self.transport == "stdio":
            return {
                "transport": "stdio",
                "command": self.command or "",
                "args": list(self.args),
                "env": dict(self.env) if self.env is not None else None,
                "cwd": self.cwd,
            }
        headers = dict(self.headers) if self.headers is not None else None
        if self.transport == "sse":
            return {"transport": "sse", "url": self.url or "", "headers": headers}
        return {"transport": "streamable_http", "url": self.url or "", "headers": headers}


MCPSource = str | os.PathLike[str] | Mapping[str, Any] | Sequence[MCPServer]
"""A config file's path, a config's parsed JSON, or servers already parsed."""


def read_mcp_config(path: str | os.PathLike[str]) -> list[MCPServer]:
    """The servers in the JSON config file at `path` (see the module docstring)."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MCPError(f"cannot read the MCP config {file}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MCPError(
            f"the MCP config {file} is not valid JSON: line {exc.lineno}: {exc.msg}"
        ) from exc
    return parse_mcp_config(data, base=file.resolve().parent, origin=str(file))


def parse_mcp_config(
    data: Any, *, base: str | os.PathLike[str] | None = None, origin: str = "the MCP config"
) -> list[MCPServer]:
    """The servers in a parsed config: `{"mcpServers": {name: {...}}}`.

    Relative `cwd` values, and stdio servers without one, are taken from `base` (the
    config file's folder); without `base`, stdio servers run in the current directory.
    """
    servers = data.get("mcpServers") if isinstance(data, Mapping) else None
    if not isinstance(servers, Mapping):
        raise MCPError(f'{origin}: expected {{"mcpServers": {{"<name>": {{...}}, ...}}}}')
    folder = Path(base).resolve() if base is not None else None
    parsed = []
    for name, entry in servers.items():
        where = f"{origin}: server {name!r}"
        if not isinstance(entry, Mapping):
            raise MCPError(f"{where}: expected an object with a command or a url")
        if entry.get("disabled") is True:
            continue
        parsed.append(_server(str(name), entry, folder, where))
    return parsed


def _server(name: str, entry: Mapping[str, Any], folder: Path | None, where: str) -> MCPServer:
    if not _NAME.match(name):
        raise MCPError(f"{where}: a server name uses only letters, digits, '_' and '-'")
    for key in entry:
        if key not in _KNOWN_KEYS and difflib.get_close_matches(key, ["requires_approval"]):
            raise MCPError(f"{where}: unknown key {key!r}; did you mean 'requires_approval'?")
    command, url = entry.get("command"), entry.get("url")
    if (command is None) == (url is None):
        raise MCPError(f"{where}: give either a command (stdio) or a url (HTTP)")
    key = "command" if command is not None else "url"
    if not isinstance(entry[key], str) or not entry[key].strip():
        raise MCPError(f"{where}: {key} must be a non-empty string")
    kind = entry.get("transport") or entry.get("type") or ("stdio" if command else "http")
    transport = _TRANSPORTS.get(str(kind))
    if transport is None or (transport == "stdio") != (command is not None):
        raise MCPError(f"{where}: transport {kind!r} does not fit a server with a {key}")
    args, env, headers = entry.get("args", []), entry.get("env"), entry.get("headers")
    if not _strings(args) or isinstance(args, str | Mapping):
        raise MCPError(f"{where}: args must be a list of strings")
    for field_name, value in (("env", env), ("headers", headers)):
        if value is not None and not (isinstance(value, Mapping) and _strings(value.values())):
            raise MCPError(f"{where}: {field_name} must map names to strings")
    return MCPServer(
        name=name,
        command=command,
        args=tuple(args),
        env=dict(env) if env is not None else None,
        cwd=_cwd(entry.get("cwd"), folder, where) if command is not None else None,
        url=url,
        transport=transport,
        headers=dict(headers) if headers is not None else None,
        requires_approval=_approval(entry.get("requires_approval", []), where),
    )


def _cwd(value: Any, folder: Path | None, where: str) -> str | None:
    """A stdio server's folder: `cwd` taken from the config's folder, or that folder."""
    if value is None:
        return str(folder) if folder is not None else None
    if not isinstance(value, str):
        raise MCPError(f"{where}: cwd must be a string")
    path = Path(value).expanduser()
    return str(folder / path) if folder is not None else str(path)


def _strings(values: Any) -> bool:
    return isinstance(values, Collection) and all(isinstance(v, str) for v in values)


def _approval(value: Any, where: str) -> bool | frozenset[str]:
    if isinstance(value, bool):
        return value
    if isinstance(value, list) and _strings(value):
        return frozenset(value)
    raise MCPError(f"{where}: requires_approval must be a list of tool names, or true")


def parse_server_spec(spec: str, *, cwd: str | os.PathLike[str] | None = None) -> MCPServer:
    """A stdio server from `"name=command args..."` (split like a shell would).

    Example:
        ```python
        parse_server_spec("shop=python examples/mcp_server.py")
        ```
    """
    name, sep, command_line = spec.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name):
        raise MCPError(f"--mcp {spec!r}: expected NAME=COMMAND [ARGS...], NAME like 'shop'")
    try:
        words = shlex.split(command_line)
    except ValueError as exc:
        raise MCPError(f"--mcp {spec!r}: {exc}") from exc
    if not words:
        raise MCPError(f"--mcp {spec!r}: the command is empty")
    folder = Path(cwd).resolve() if cwd is not None else Path.cwd()
    return MCPServer(name=name, command=words[0], args=tuple(words[1:]), cwd=str(folder))


def _servers(source: MCPSource) -> list[MCPServer]:
    if isinstance(source, str | os.PathLike):
        return read_mcp_config(source)
    if isinstance(source, Mapping):
        return parse_mcp_config(source)
    return unique_servers(source)


def unique_servers(servers: Sequence[MCPServer]) -> list[MCPServer]:
    """`servers` as a list, or `MCPError` if two of them have the same name."""
    names = [s.name for s in servers]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MCPError(f"MCP server names must be unique; repeated: {', '.join(repeated)}")
    return list(servers)


@asynccontextmanager
async def open_mcp_tools(
    source: MCPSource,
    *,
    reserved: Collection[str] = (),
    startup_timeout: float = STARTUP_TIMEOUT,
) -> AsyncIterator[list[BaseTool]]:
    """Start (or connect to) every server and yield their tools as LangChain tools.

    One MCP session per server stays open until the block ends, so a server keeps
    its state between calls; the sessions close, and stdio servers stop, on exit.
    Enter and leave the block in the same task (it holds the sessions' task groups).

    Args:
        source: A config file's path, its parsed JSON, or `MCPServer`s.
        reserved: Names of the other tools the graph gets (the built-in ones, say):
            an MCP tool with one of these names is renamed `<server>_<tool>`.
        startup_timeout: Seconds each server may take to start and list its tools.

    Raises:
        MCPError: The config is not usable, a server did not start, or the `mcp`
            extra is not installed.

    Example:
        ```python
        async with open_mcp_tools("mcp.json", reserved=["calculator"]) as tools:
            graph = build_graph(tools=[calculator, *tools], checkpointer=saver)
            await graph.ainvoke({"goal": "..."}, config)
        ```
    """
    servers = _servers(source)
    _require_extra()
    async with _sessions() as stack:
        listed: list[tuple[MCPServer, list[MCPTool], _Caller]] = []
        for server in servers:
            session = await _start(stack, server, startup_timeout)
            listed.append((server, await _list_tools(session, server), _Caller(server, session)))
        yield _finish(listed, reserved)


async def load_mcp_tools_from_config(
    source: MCPSource,
    *,
    reserved: Collection[str] = (),
    startup_timeout: float = STARTUP_TIMEOUT,
) -> list[BaseTool]:
    """The servers' tools, each call of which opens its own MCP session.

    Nothing stays open between calls (a stdio server starts for every call, so it
    keeps no state between them); use `open_mcp_tools` to hold sessions for a run.
    Arguments and errors as for `open_mcp_tools`.

    Example:
        ```python
        tools = await load_mcp_tools_from_config("examples/mcp.json")
        graph = build_graph(tools=tools, checkpointer=InMemorySaver())
        ```
    """
    servers = _servers(source)
    _require_extra()
    listed: list[tuple[MCPServer, list[MCPTool], _Caller]] = []
    for server in servers:
        async with _sessions() as stack:
            found = await _list_tools(await _start(stack, server, startup_timeout), server)
        listed.append((server, found, _Caller(server, None, startup_timeout)))
    return _finish(listed, reserved)


@asynccontextmanager
async def _sessions() -> AsyncIterator[AsyncExitStack]:
    """A stack for sessions that lets an error raised while they are open out as it is.

    The MCP client's task groups wrap any error that passes through them in an
    exception group; a lone error is taken out of it again, so callers can catch it.
    """
    try:
        async with AsyncExitStack() as stack:
            yield stack
    except BaseExceptionGroup as group:
        single = _single(group)
        if single is None:
            raise
        context = single.__context__
        try:
            raise single
        finally:
            single.__context__ = context


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


def _require_extra() -> None:
    try:
        import langchain_mcp_adapters.tools  # noqa: F401
        import mcp  # noqa: F401
    except ImportError as exc:
        raise MCPError(f"MCP tools need the mcp extra: {INSTALL_HINT}") from exc


async def _start(stack: AsyncExitStack, server: MCPServer, seconds: float) -> ClientSession:
    """Open an initialized session on `server`, closed when `stack` closes."""
    try:
        async with asyncio.timeout(seconds):
            session = await _open(stack, server)
            await session.initialize()
    except TimeoutError as exc:
        raise MCPError(
            f"the MCP server {server.describe()} did not answer within {seconds:g}s"
        ) from exc
    except Exception as exc:  # a server may fail to start in many ways, each reported alike
        raise MCPError(f"the MCP server {server.describe()} did not start: {_cause(exc)}") from exc
    return session


async def _open(stack: AsyncExitStack, server: MCPServer) -> ClientSession:
    from langchain_mcp_adapters.sessions import create_session
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    if server.transport != "stdio":
        return await stack.enter_async_context(create_session(server.connection()))
    # Not the adapter's stdio session: it sends the server's stderr to the sys.stderr of
    # the moment `mcp` was imported, which need not be a real file (Jupyter, pytest).
    env = {k: _expand(v) for k, v in server.env.items()} if server.env is not None else None
    params = StdioServerParameters(
        command=server.command or "", args=list(server.args), env=env, cwd=server.cwd
    )
    read, write = await stack.enter_async_context(stdio_client(params, errlog=_errlog(stack)))
    return await stack.enter_async_context(ClientSession(read, write))


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: str) -> str:
    """`${NAME}` replaced by the environment's NAME; kept as it is when NAME is unset."""
    return _VARIABLE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), value)


def _errlog(stack: AsyncExitStack) -> TextIO:
    """Where a stdio server's stderr goes: this process's stderr, if it is a real file."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (AttributeError, OSError, ValueError):
            continue
    return stack.enter_context(open(os.devnull, "w", encoding="utf-8"))


def _cause(exc: BaseException) -> str:
    """The innermost useful message of an exception (task groups wrap them in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _list_tools(session: ClientSession, server: MCPServer) -> list[MCPTool]:
    found: list[MCPTool] = []
    cursor: str | None = None
    try:
        while True:
            page = await session.list_tools(cursor=cursor)
            found.extend(page.tools)
            cursor = page.nextCursor
            if not cursor:
                return found
    except Exception as exc:
        raise MCPError(
            f"the MCP server {server.describe()} did not list its tools: {_cause(exc)}"
        ) from exc


class _Caller:
    """Calls one server's tools: on its open session, or on a new session for each call."""

    def __init__(
        self,
        server: MCPServer,
        session: ClientSession | None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.server = server
        self.session = session
        self.startup_timeout = startup_timeout

    async def call(self, spec: MCPTool, arguments: dict[str, Any]) -> ToolMessage:
        """Call the tool `spec` with `arguments`; its result as the adapter's message."""
        if self.session is not None:
            return await self._invoke(self.session, spec, arguments)
        async with _sessions() as stack:
            session = await _start(stack, self.server, self.startup_timeout)
            return await self._invoke(session, spec, arguments)

    async def _invoke(
        self, session: ClientSession, spec: MCPTool, arguments: dict[str, Any]
    ) -> ToolMessage:
        from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool

        tool = convert_mcp_tool_to_langchain_tool(
            session,
            spec,
            server_name=self.server.name,
            # A tool's error fails the step (raised), instead of passing as output.
            handle_tool_errors=False,
        )
        call = {"type": "tool_call", "name": spec.name, "args": arguments, "id": uuid4().hex}
        message = await tool.ainvoke(call)
        if not isinstance(message, ToolMessage):
            raise TypeError(f"the MCP adapter returned {type(message).__name__}, not a message")
        return message


def _finish(
    listed: Sequence[tuple[MCPServer, list[MCPTool], _Caller]], reserved: Collection[str]
) -> list[BaseTool]:
    counts = Counter(spec.name for _, found, _ in listed for spec in found)
    counts.update(set(reserved))
    tools: list[BaseTool] = []
    for server, found, caller in listed:
        offered = {spec.name for spec in found}
        if not isinstance(server.requires_approval, bool):
            unknown = sorted(server.requires_approval - offered)
            if unknown:
                raise MCPError(
                    f"MCP server {server.name!r}: requires_approval names {', '.join(unknown)}, "
                    f"which it does not offer (it offers: {', '.join(sorted(offered)) or 'none'})"
                )
        for spec in found:
            name = spec.name if counts[spec.name] == 1 else f"{server.name}_{spec.name}"
            tools.append(_wrap(spec, caller, name))
    names = [tool.name for tool in tools]
    clashes = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(reserved)))
    if clashes:
        raise MCPError(f"MCP tool names still clash after prefixing: {', '.join(clashes)}")
    return tools


def _wrap(spec: MCPTool, caller: _Caller, name: str) -> BaseTool:
    """A LangChain tool for the MCP tool `spec`: renamed, marked, giving plain data."""
    unwrap = _wraps_result(spec.outputSchema)

    async def call(**arguments: Any) -> Any:
        return _output(await caller.call(spec, arguments), unwrap=unwrap)

    annotations = spec.annotations.model_dump(exclude_none=True) if spec.annotations else {}
    metadata: dict[str, Any] = {
        **annotations,
        "mcp_server": caller.server.name,
        "mcp_tool": spec.name,
    }
    if caller.server.needs_approval(spec.name):
        metadata["requires_approval"] = True
    return StructuredTool(
        name=name,
        description=spec.description or "",
        args_schema=dict(spec.inputSchema),
        coroutine=call,
        metadata=metadata,
    )


def _wraps_result(schema: Mapping[str, Any] | None) -> bool:
    """Whether a tool's output schema is a single value wrapped as `{"result": ...}`."""
    properties = (schema or {}).get("properties")
    return isinstance(properties, Mapping) and list(properties) == ["result"]


def _output(message: ToolMessage, *, unwrap: bool) -> Any:
    """A tool result as plain data: structured content, else text, else the blocks."""
    artifact = message.artifact if isinstance(message.artifact, Mapping) else {}
    structured = artifact.get("structured_content")
    if isinstance(structured, Mapping):
        if unwrap and list(structured) == ["result"]:
            return structured["result"]
        return dict(structured)
    content = message.content
    if isinstance(content, str):
        return content
    blocks = [b for b in content if isinstance(b, Mapping)]
    if blocks and all(b.get("type") == "text" for b in blocks):
        return "\n".join(str(b.get("text", "")) for b in blocks)
    return [{k: v for k, v in b.items() if k != "id"} for b in blocks]
