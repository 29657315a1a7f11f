"""Servers for the MCP tests: tests/mcp_fixture_server.py run with a spec of one's own."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SERVER = Path(__file__).resolve().parent / "mcp_fixture_server.py"


def fixture_server(folder: Path, label: str = "spec", **spec: Any) -> dict[str, Any]:
    """A config entry for the fixture server behaving as `spec` says (see its docstring)."""
    path = folder / f"{label}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return {"command": sys.executable, "args": [str(SERVER), str(path)]}


def calls_made(path: Path) -> list[dict[str, Any]]:
    """The tools/call requests a fixture server with `calls=path` received."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
