"""An MCP server over stdio that behaves as a JSON spec file (argv[1]) says, for tests.

The spec's keys, all optional:
- "tools": tool declarations as MCP sends them ({"name", "description", "inputSchema",
  "annotations"}); "generate": N adds tools t0 ... t(N-1) taking no arguments.
- "listing": "normal" (pages of "page_size" tools), "hang" (never answers tools/list),
  "forever" (a new cursor on every page, with no tools), "loop" (the same cursor again).
- "hang_initialize": true never answers initialize.
- "stderr": text written to stderr at start; "exit": an exit code to stop with then.
- "calls": a file that gets one JSON line per tools/call, {"name": ..., "arguments": ...}.
- "hang_first": names of tools whose first call never answers (later calls do).

A call answers with its name and arguments as structured content. The server never
checks arguments itself, so a test sees exactly what planexec sent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp.server.stdio
from mcp import types
from mcp.server.lowlevel import Server

SPEC: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
NO_ARGS = {"type": "object", "properties": {}}


def declared() -> list[types.Tool]:
    tools = [
        types.Tool.model_validate({"inputSchema": NO_ARGS, **t}) for t in SPEC.get("tools", [])
    ]
    tools += [
        types.Tool(name=f"t{i}", description=f"tool {i}", inputSchema=NO_ARGS)
        for i in range(SPEC.get("generate", 0))
    ]
    return tools


server: Server[Any, Any] = Server("fixture")


@server.list_tools()
async def list_tools(request: types.ListToolsRequest) -> types.ListToolsResult:
    listing = SPEC.get("listing", "normal")
    cursor = request.params.cursor if request.params else None
    if listing == "hang":
        await anyio.sleep_forever()
    if listing == "forever":
        page = int(cursor.removeprefix("page-")) if cursor else 0
        return types.ListToolsResult(tools=[], nextCursor=f"page-{page + 1}")
    if listing == "loop":
        return types.ListToolsResult(tools=[], nextCursor="again")
    tools = declared()
    size = SPEC.get("page_size", len(tools) or 1)
    start = int(cursor or 0)
    following = str(start + size) if start + size < len(tools) else None
    return types.ListToolsResult(tools=tools[start : start + size], nextCursor=following)


CALLED: dict[str, int] = {}


@server.call_tool(validate_input=False)
async def call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if "calls" in SPEC:
        async with await anyio.open_file(SPEC["calls"], "a", encoding="utf-8") as log:
            await log.write(json.dumps({"name": name, "arguments": arguments}) + "\n")
    CALLED[name] = CALLED.get(name, 0) + 1
    if name in SPEC.get("hang_first", []) and CALLED[name] == 1:
        await anyio.sleep_forever()
    return {"tool": name, "args": arguments}


async def main() -> None:
    if "stderr" in SPEC:
        sys.stderr.write(SPEC["stderr"])
        sys.stderr.flush()
    if "exit" in SPEC:
        sys.exit(SPEC["exit"])
    options = server.create_initialization_options()
    async with mcp.server.stdio.stdio_server() as (read, write):
        if SPEC.get("hang_initialize"):
            await anyio.sleep_forever()
        await server.run(read, write, options)


anyio.run(main)
