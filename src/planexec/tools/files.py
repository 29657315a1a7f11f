"""File tools confined to a workspace directory.

Every path is resolved (symlinks followed) before use, and refused unless the real
path lies inside the workspace. The workspace is the run's `Context.workspace`, or a
directory fixed when the tools are made with `file_tools(workspace)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, ToolException, tool
from langgraph.prebuilt import ToolRuntime

MAX_READ_BYTES = 1_000_000
MAX_WRITE_BYTES = 1_000_000
MAX_LISTED = 1000


class WorkspaceError(ToolException):
    """A path is outside the workspace, or cannot be used there."""


def workspace_root(runtime: ToolRuntime[Any, Any] | None, fixed: Path | None = None) -> Path:
    """The workspace a file tool works in: a fixed one, else the run's context's."""
    if fixed is not None:
        return fixed.resolve()
    context = runtime.context if runtime is not None else None
    if isinstance(context, dict):
        configured = context.get("workspace")
    else:
        configured = getattr(context, "workspace", None)
    return Path(configured or ".").resolve()


def resolve_inside(root: Path, path: str) -> Path:
    """The real path of `path` under `root`, or `WorkspaceError` if it leaves `root`.

    Relative paths are taken from `root`; absolute paths are allowed only when they
    lie inside it. Symlinks are followed before the check, so a link that points out
    of the workspace is refused.
    """
    if not isinstance(path, str) or not path.strip():
        raise WorkspaceError("the path is empty")
    if "\x00" in path:
        raise WorkspaceError("the path contains a NUL character")
    if "\\" in path:
        raise WorkspaceError(f"{path!r}: use '/' to separate directories")
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise WorkspaceError(f"{path!r} is outside the workspace")
    return target


def file_tools(workspace: str | Path | None = None) -> list[BaseTool]:
    """`read_file`, `write_file` and `list_files`, confined to a workspace.

    Args:
        workspace: The directory they work in. None means the run's `Context.workspace`.
    """
    fixed = Path(workspace) if workspace is not None else None

    @tool
    def read_file(path: str, runtime: ToolRuntime[Any, Any]) -> str:
        """Read a UTF-8 text file from the workspace and return its content."""
        root = workspace_root(runtime, fixed)
        target = resolve_inside(root, path)
        if not target.is_file():
            raise WorkspaceError(f"{path!r} is not a file in the workspace")
        if target.stat().st_size > MAX_READ_BYTES:
            raise WorkspaceError(f"{path!r} is larger than {MAX_READ_BYTES} bytes")
        try:
            return target.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise WorkspaceError(f"{path!r} is not UTF-8 text") from exc

    @tool(extras={"idempotent": True})
    def write_file(path: str, content: str, runtime: ToolRuntime[Any, Any]) -> str:
        """Write text to a file in the workspace, creating or replacing it.

        Missing parent directories are created. Returns a short confirmation.
        """
        root = workspace_root(runtime, fixed)
        target = resolve_inside(root, path)
        data = content.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise WorkspaceError(f"the content is larger than {MAX_WRITE_BYTES} bytes")
        if target == root or target.is_dir():
            raise WorkspaceError(f"{path!r} is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        # The parent was checked after resolving; O_NOFOLLOW refuses a symlink put in
        # place of the file itself since.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(target, flags, 0o644)
        except OSError as exc:
            raise WorkspaceError(f"cannot write {path!r}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return f"wrote {len(data)} bytes to {target.relative_to(root).as_posix()}"

    @tool
    def list_files(
        runtime: ToolRuntime[Any, Any], path: str = ".", recursive: bool = False
    ) -> list[str]:
        """List the files and directories under a workspace directory.

        Paths are relative to the workspace; directories end with "/".
        """
        root = workspace_root(runtime, fixed)
        target = resolve_inside(root, path)
        if not target.is_dir():
            raise WorkspaceError(f"{path!r} is not a directory in the workspace")
        entries = sorted(target.rglob("*") if recursive else target.iterdir())
        listed: list[str] = []
        for entry in entries[:MAX_LISTED]:
            name = entry.relative_to(root).as_posix()
            listed.append(name + "/" if entry.is_dir() and not entry.is_symlink() else name)
        return listed

    return [read_file, write_file, list_files]
