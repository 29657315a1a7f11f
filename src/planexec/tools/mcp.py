"""Tools from MCP servers, through `langchain-mcp-adapters` (the `mcp` extra).

Servers are named in a JSON file of the shape most MCP clients use, with planexec's
own additions: `requires_approval` (the tools whose every call waits for a person's
approval: a list of the server's tool names, `true` for all, `false` for none), `tools`
(settings per tool), `startup_timeout` and `max_tools`::

    {"mcpServers": {
        "shop": {"command": "python", "args": ["mcp_server.py"], "env": {"SHOP": "demo"},
                 "requires_approval": ["add_to_cart"],
                 "tools": {"pay": {"idempotent": false},
                           "empty_cart": {"requires_approval": false, "name": "clear"}}},
        "docs": {"url": "http://127.0.0.1:8000/mcp", "startup_timeout": 60}
    }}

A server with `command` runs as a subprocess speaking MCP over stdio, in the config
file's folder unless `cwd` says otherwise; `env` adds to a small safe subset of the
environment (`${NAME}` in a value is taken from the environment). Its stderr is passed
on to ours line by line, each line prefixed with the server's name and with control,
format and other invisible characters shown as escapes. A server with `url` is reached
over streamable HTTP, or SSE with `"transport": "sse"`; `headers` are sent with each
request. `"disabled": true` skips a server.

Starting a server, initializing its session and listing its tools must finish within
`startup_timeout` seconds (default 30), and a server may declare at most `max_tools`
tools (default 256) over at most `MAX_PAGES` pages of `tools/list`; past any of these
the server is refused with an `MCPError` that names it.

What a server declares about a tool is mapped onto planexec's own protections:

- `destructiveHint: true` (and not `readOnlyHint: true`): each call waits for a
  person's approval, as if the tool were listed in `requires_approval`;
- `idempotentHint: false` (and not `readOnlyHint: true`): the tool must not run twice
  (`planexec.uncertain`): a call cut short by a crash or a timeout waits for a person
  instead of being made again.

A hint the server leaves out adds nothing (the MCP defaults would make every tool
destructive). The config wins over the hints: `requires_approval` (`true`, `false`, or
a list, which adds to the hints) and, above it, a tool's own `requires_approval` and
`idempotent` in `tools`.

Two ways to get the tools, both async:

    async with open_mcp_tools("mcp.json") as tools:     # one session per server,
        graph = build_graph(tools=[*default_tools(), *tools], ...)   # open for the block
        ...

    tools = await load_mcp_tools_from_config("mcp.json")  # each call opens a session

Tool names are what model APIs accept and stay unique. A name that is not 1 to 64
ASCII letters, digits, `_` or `-` is offered as `<server>_<name>`, every other
character replaced by `_` (accents and invisible characters dropped); a name that
another server's tool, or a name in `reserved`, also has is renamed `<server>_<tool>`.
A name still taken after that, or one with nothing left of it, refuses the server; a
tool's `name` in `tools` gives it a name of your choosing. Calls reach the server under
the tool's own name. A tool whose input schema is not valid JSON Schema refuses the
server too; arguments are checked against the schema before any call
(`planexec.arguments`).

A tool's output is plain data: its structured content when the server gives one
(unwrapped from `{"result": ...}` for tools that return a single value), else its text.
A tool that reports an error raises `ToolException`, so the step fails with the
server's message.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import re
import shlex
import sys
import threading
import unicodedata
from collections import Counter, deque
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TextIO
from uuid import uuid4

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool

from planexec.arguments import schema_problem
from planexec.errors import PlanexecError
from planexec.inert import visible
from planexec.tools import TOOL_NAME, TOOL_NAME_RULE

if TYPE_CHECKING:
    from langchain_mcp_adapters.sessions import Connection
    from mcp import ClientSession
    from mcp.types import Tool as MCPTool

__all__ = [
    "MAX_PAGES",
    "MAX_TOOLS",
    "STARTUP_TIMEOUT",
    "MCPError",
    "MCPServer",
    "MCPSource",
    "ToolSettings",
    "load_mcp_tools_from_config",
    "open_mcp_tools",
    "parse_mcp_config",
    "parse_server_spec",
    "read_mcp_config",
]

Transport = Literal["stdio", "streamable_http", "sse"]
INSTALL_HINT = "pip install 'planexec[mcp]'"
STARTUP_TIMEOUT = 30.0
"""Seconds a server may take to start, initialize its session and list its tools."""
MAX_TOOLS = 256
"""The most tools one server may declare, unless its config sets `max_tools`."""
MAX_PAGES = 100
"""The most pages of `tools/list` read from one server."""

_TRANSPORTS: dict[str, Transport] = {
    "stdio": "stdio",
    "streamable_http": "streamable_http",
    "streamable-http": "streamable_http",
    "http": "streamable_http",
    "sse": "sse",
}
_OWN_KEYS = ("requires_approval", "tools", "startup_timeout", "max_tools")
"""planexec's additions to a server's entry: a key close to one of these is a typo."""
_KNOWN_KEYS = (
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "transport",
    "type",
    "headers",
    "disabled",
    *_OWN_KEYS,
)
_TOOL_KEYS = ("name", "requires_approval", "idempotent")


class MCPError(PlanexecError):
    """An MCP config that cannot be used, a server that does not start, or no `mcp` extra."""


@dataclass(frozen=True)
class ToolSettings:
    """What the config says about one of a server's tools; None leaves it to the defaults."""

    name: str | None = None
    """The name the tool is offered under, instead of the server's."""
    requires_approval: bool | None = None
    """Whether each call waits for a person's approval, whatever the server's hints say."""
    idempotent: bool | None = None
    """False: the tool must not run twice (see `planexec.uncertain`); True: it may."""


@dataclass(frozen=True)
class MCPServer:
    """How to reach one MCP server, and what planexec makes of its tools."""

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
    """Tool names (the server's own) whose calls need approval besides those its hints
    mark destructive; or True for all tools, or False for none whatever the hints say."""
    tools: Mapping[str, ToolSettings] = field(default_factory=dict)
    """Settings of single tools, by the server's name for them; they win over the rest."""
    startup_timeout: float | None = None
    """Seconds to start and list tools; None: the caller's `startup_timeout`."""
    max_tools: int | None = None
    """The most tools accepted from the server; None: `MAX_TOOLS`."""

    def needs_approval(self, tool: str, hints: Mapping[str, Any] | None = None) -> bool:
        """Whether calls of the server's tool `tool` wait for a person's approval.

        `hints` are the tool's MCP annotations (`destructiveHint`, ...), as declared.
        """
        own = self.tools.get(tool)
        if own is not None and own.requires_approval is not None:
            return own.requires_approval
        if isinstance(self.requires_approval, bool):
            return self.requires_approval
        if tool in self.requires_approval:
            return True
        hints = hints or {}
        return hints.get("destructiveHint") is True and hints.get("readOnlyHint") is not True

    def is_idempotent(self, tool: str, hints: Mapping[str, Any] | None = None) -> bool:
        """Whether a step may call the server's tool `tool` again after a crash or timeout."""
        own = self.tools.get(tool)
        if own is not None and own.idempotent is not None:
            return own.idempotent
        hints = hints or {}
        return not (hints.get("idempotentHint") is False and hints.get("readOnlyHint") is not True)

    def describe(self) -> str:
        """The server as a person would recognise it: its name and command or URL."""
        where = self.url or shlex.join([self.command or "", *self.args])
        return f"{self.name!r} ({visible(where)})"

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
        where = f"{origin}: server {str(name)!a}"
        if not isinstance(entry, Mapping):
            raise MCPError(f"{where}: expected an object with a command or a url")
        if entry.get("disabled") is True:
            continue
        parsed.append(_server(str(name), entry, folder, where))
    return parsed


def _server(name: str, entry: Mapping[str, Any], folder: Path | None, where: str) -> MCPServer:
    if not TOOL_NAME.fullmatch(name):
        raise MCPError(f"{where}: a server name is {TOOL_NAME_RULE}")
    for key in entry:
        close = difflib.get_close_matches(str(key), _OWN_KEYS, n=1)
        if key not in _KNOWN_KEYS and close:
            raise MCPError(f"{where}: unknown key {key!r}; did you mean {close[0]!r}?")
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
        tools=_tool_settings(entry.get("tools", {}), where),
        startup_timeout=_positive(entry, "startup_timeout", float, where),
        max_tools=_positive(entry, "max_tools", int, where),
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
    raise MCPError(f"{where}: requires_approval must be a list of tool names, true or false")


def _tool_settings(value: Any, where: str) -> dict[str, ToolSettings]:
    if not isinstance(value, Mapping):
        raise MCPError(f'{where}: tools must map tool names to settings, {{"<tool>": {{...}}}}')
    settings: dict[str, ToolSettings] = {}
    for tool, entry in value.items():
        at = f"{where}: tools: {str(tool)!a}"
        if not isinstance(entry, Mapping):
            raise MCPError(f"{at}: expected an object with {', '.join(_TOOL_KEYS)}")
        unknown = sorted(str(k) for k in entry if k not in _TOOL_KEYS)
        if unknown:
            raise MCPError(f"{at}: unknown key {unknown[0]!r} (known: {', '.join(_TOOL_KEYS)})")
        name = entry.get("name")
        if name is not None and not (isinstance(name, str) and TOOL_NAME.fullmatch(name)):
            raise MCPError(f"{at}: name must be {TOOL_NAME_RULE}")
        for flag in ("requires_approval", "idempotent"):
            if flag in entry and not isinstance(entry[flag], bool):
                raise MCPError(f"{at}: {flag} must be true or false")
        settings[str(tool)] = ToolSettings(
            name=name,
            requires_approval=entry.get("requires_approval"),
            idempotent=entry.get("idempotent"),
        )
    return settings


def _positive(entry: Mapping[str, Any], key: str, kind: type[float] | type[int], where: str) -> Any:
    value = entry.get(key)
    if value is None:
        return None
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric or value <= 0 or (kind is int and not isinstance(value, int)):
        noun = "a whole number" if kind is int else "a number"
        raise MCPError(f"{where}: {key} must be {noun} above 0")
    return kind(value)


def parse_server_spec(spec: str, *, cwd: str | os.PathLike[str] | None = None) -> MCPServer:
    """A stdio server from `"name=command args..."` (split like a shell would).

    Example:
        ```python
        parse_server_spec("shop=python examples/mcp_server.py")
        ```
    """
    name, sep, command_line = spec.partition("=")
    name = name.strip()
    if not sep or not TOOL_NAME.fullmatch(name):
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
    counts = Counter(s.name for s in servers)
    repeated = sorted(name for name, n in counts.items() if n > 1)
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
        startup_timeout: Seconds each server may take to start, initialize its session
            and list its tools, unless its config sets its own `startup_timeout`.

    Raises:
        MCPError: The config is not usable, a server did not start or list its tools
            in time, declared too many tools or tools that cannot be offered, or the
            `mcp` extra is not installed.

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
            session, found = await _start(stack, server, startup_timeout, listing=True)
            listed.append((server, found, _Caller(server, session)))
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
            _, found = await _start(stack, server, startup_timeout, listing=True)
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


async def _start(
    stack: AsyncExitStack, server: MCPServer, default_timeout: float, *, listing: bool
) -> tuple[ClientSession, list[MCPTool]]:
    """An initialized session on `server`, closed when `stack` closes, and its tools.

    Starting, initializing and (with `listing`) listing the tools share one deadline.
    """
    seconds = server.startup_timeout or default_timeout
    log = _ServerLog(server.name) if server.transport == "stdio" else None
    doing = "start"
    try:
        async with asyncio.timeout(seconds):
            session = await _open(stack, server, log)
            await session.initialize()
            doing = "list its tools"
            found = await _list_tools(session, server) if listing else []
    except TimeoutError as exc:
        said = await _last_line(log, wait=0.0)
        last = f" (the last line of its stderr: {said})" if said else ""
        raise MCPError(
            f"the MCP server {server.describe()} did not {doing} within {seconds:g}s{last}"
        ) from exc
    except MCPError:
        raise
    except Exception as exc:  # a server may fail in many ways, each reported alike
        # What the server said before it went away is the cause a person needs; the
        # client only saw the connection close.
        said = await _last_line(log, wait=1.0)
        cause = _cause(exc)
        detail = f"{said} (the last line of its stderr; then {cause})" if said else cause
        raise MCPError(f"the MCP server {server.describe()} did not {doing}: {detail}") from exc
    return session, found


async def _open(stack: AsyncExitStack, server: MCPServer, log: _ServerLog | None) -> ClientSession:
    from langchain_mcp_adapters.sessions import create_session
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    if log is None:
        return await stack.enter_async_context(create_session(server.connection()))
    # Not the adapter's stdio session: it sends the server's stderr to the sys.stderr of
    # the moment `mcp` was imported, which need not be a real file (Jupyter, pytest),
    # and passes it on raw.
    env = {k: _expand(v) for k, v in server.env.items()} if server.env is not None else None
    params = StdioServerParameters(
        command=server.command or "", args=list(server.args), env=env, cwd=server.cwd
    )
    try:
        read, write = await stack.enter_async_context(stdio_client(params, errlog=log.writer))
    finally:
        # The server has its own copy of the pipe now (or never will): closing ours lets
        # the reader see the end of the server's stderr when the server exits.
        log.writer.close()
    return await stack.enter_async_context(ClientSession(read, write))


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: str) -> str:
    """`${NAME}` replaced by the environment's NAME; kept as it is when NAME is unset."""
    return _VARIABLE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), value)


class _ServerLog:
    """A stdio server's stderr: passed on to ours line by line, made inert; the last kept.

    A thread reads the pipe, so the server never blocks on a full one, whatever the
    event loop is doing.
    """

    LINE_BYTES = 4096
    """A longer line is passed on in pieces."""

    def __init__(self, server: str) -> None:
        read_fd, write_fd = os.pipe()
        self.server = server
        self.writer: TextIO = os.fdopen(write_fd, "w", encoding="utf-8")
        self._reader: BinaryIO = os.fdopen(read_fd, "rb")
        self.lines: deque[str] = deque(maxlen=3)
        self._thread = threading.Thread(target=self._pump, name=f"mcp-stderr-{server}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        with self._reader:
            for raw in iter(lambda: self._reader.readline(self.LINE_BYTES), b""):
                line = visible(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if line.strip():
                    self.lines.append(line)
                try:
                    sys.stderr.write(f"[{self.server}] {line}\n")
                    sys.stderr.flush()
                except (OSError, ValueError, AttributeError):
                    # Our stderr is gone (closed, or a capture that ended): keep reading,
                    # so the server never blocks on the pipe.
                    continue

    def last_line(self, wait: float) -> str | None:
        """The last non-blank line the server wrote, after waiting up to `wait` s for its end."""
        self._thread.join(wait)
        return self.lines[-1] if self.lines else None


async def _last_line(log: _ServerLog | None, *, wait: float) -> str | None:
    """The last line a stdio server wrote to stderr, waiting up to `wait` s for its end."""
    if log is None:
        return None
    line = await asyncio.to_thread(log.last_line, wait)
    return _cut(line, 300) if line else None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cause(exc: BaseException) -> str:
    """The innermost useful message of an exception (task groups wrap them in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = _cut(visible(str(exc).strip()), 300)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _list_tools(session: ClientSession, server: MCPServer) -> list[MCPTool]:
    """Every tool the server declares, over at most `MAX_PAGES` pages and `max_tools` tools."""
    from mcp.types import PaginatedRequestParams

    limit = server.max_tools or MAX_TOOLS
    found: list[MCPTool] = []
    cursors: set[str] = set()
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        try:
            params = PaginatedRequestParams(cursor=cursor) if cursor is not None else None
            page = await session.list_tools(params=params)
        except Exception as exc:
            raise MCPError(
                f"the MCP server {server.describe()} did not list its tools: {_cause(exc)}"
            ) from exc
        found.extend(page.tools)
        if len(found) > limit:
            raise MCPError(
                f"the MCP server {server.describe()} declares more than {limit} tools; "
                f'set "max_tools" in its config to accept more'
            )
        cursor = page.nextCursor
        if not cursor:
            return found
        if cursor in cursors:
            raise MCPError(
                f"the MCP server {server.describe()} sent a page cursor it had sent before; "
                "its list of tools never ends"
            )
        cursors.add(cursor)
    raise MCPError(
        f"the MCP server {server.describe()} listed its tools over more than {MAX_PAGES} "
        "pages; planexec reads no more"
    )


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
            session, _ = await _start(stack, self.server, self.startup_timeout, listing=False)
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


_OTHER = re.compile(r"[^A-Za-z0-9_-]+")


def _proper_name(name: str) -> str:
    """`name` cut down to what model APIs accept; it may be left empty.

    Accents and invisible characters are dropped, and every run of other characters
    outside the rule becomes one `_`.
    """
    ascii_only = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return _OTHER.sub("_", ascii_only).strip("_")


def _finish(
    listed: Sequence[tuple[MCPServer, list[MCPTool], _Caller]], reserved: Collection[str]
) -> list[BaseTool]:
    """The listed tools under names that model APIs accept and that no other tool has."""
    for server, found, _ in listed:
        _check_settings(server, found)
    # First the name each tool asks for: the config's choice or the server's own name
    # (either may still be prefixed), or, for a name no API accepts, a prefixed one.
    wanted: list[tuple[MCPServer, MCPTool, _Caller, str, bool]] = []
    for server, found, caller in listed:
        for spec in found:
            own = server.tools.get(spec.name)
            if own is not None and own.name is not None:
                wanted.append((server, spec, caller, own.name, False))
            elif TOOL_NAME.fullmatch(spec.name):
                wanted.append((server, spec, caller, spec.name, True))
            else:
                wanted.append((server, spec, caller, _renamed(server, spec.name), False))
    counts = Counter(name for *_, name, _ in wanted)
    counts.update(set(reserved))
    tools: list[BaseTool] = []
    for server, spec, caller, name, may_prefix in wanted:
        if may_prefix and counts[name] > 1:
            name = f"{server.name}_{name}"[:64]
        tools.append(_wrap(spec, caller, name))
    _refuse_clashes(tools, reserved)
    return tools


def _renamed(server: MCPServer, name: str) -> str:
    proper = _proper_name(name)
    if not proper:
        raise MCPError(
            f"MCP server {server.name!r} offers a tool named {name!a}, with nothing in it "
            f"that model APIs accept ({TOOL_NAME_RULE}); give it a name in the config: "
            f'"tools": {{{json.dumps(name)}: {{"name": "..."}}}}'
        )
    return f"{server.name}_{proper}"[:64]


def _check_settings(server: MCPServer, found: Sequence[MCPTool]) -> None:
    """Refuse settings for tools the server does not offer, and unusable input schemas."""
    offered = {spec.name for spec in found}
    named = set(server.tools)
    if not isinstance(server.requires_approval, bool):
        named |= server.requires_approval
    unknown = sorted(named - offered)
    if unknown:
        listed = ", ".join(ascii(n) for n in sorted(offered)) or "none"
        raise MCPError(
            f"MCP server {server.name!r}: the config names {', '.join(ascii(n) for n in unknown)}, "
            f"which it does not offer (it offers: {_cut(listed, 2000)})"
        )
    for spec in found:
        problem = schema_problem(dict(spec.inputSchema))
        if problem is not None:
            raise MCPError(f"MCP server {server.name!r}: tool {spec.name!a}: {problem}")


def _refuse_clashes(tools: Sequence[BaseTool], reserved: Collection[str]) -> None:
    by_name: dict[str, list[BaseTool]] = {}
    for tool in tools:
        by_name.setdefault(tool.name, []).append(tool)
    for name, same in by_name.items():
        if len(same) > 1 or name in reserved:
            owners = ", ".join(
                f"{t.metadata['mcp_tool']!a} of MCP server {t.metadata['mcp_server']!r}"
                for t in same
                if t.metadata
            )
            also = " and a tool of the graph's own" if name in reserved else ""
            raise MCPError(
                f"the tool name {name!r} is taken twice even after renaming: {owners}{also}; "
                f'rename one in the config: "tools": {{"<tool>": {{"name": "..."}}}}'
            )


def _wrap(spec: MCPTool, caller: _Caller, name: str) -> BaseTool:
    """A LangChain tool for the MCP tool `spec`: renamed, marked, giving plain data."""
    unwrap = _wraps_result(spec.outputSchema)

    async def call(**arguments: Any) -> Any:
        return _output(await caller.call(spec, arguments), unwrap=unwrap)

    server = caller.server
    annotations = spec.annotations.model_dump(exclude_none=True) if spec.annotations else {}
    metadata: dict[str, Any] = {
        **annotations,
        "mcp_server": server.name,
        "mcp_tool": spec.name,
    }
    if server.needs_approval(spec.name, annotations):
        metadata["requires_approval"] = True
    if not server.is_idempotent(spec.name, annotations):
        metadata["idempotent"] = False
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
