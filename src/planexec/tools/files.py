"""File tools confined to a workspace directory.

Every path is resolved (symlinks followed) before use, and refused unless the real
path lies inside the workspace; it is then opened without following any symlink, so
one swapped in after the check is refused too. The workspace is the run's
`Context.workspace`, or a directory fixed when the tools are made with
`file_tools(workspace)`.

Only regular files are read or written, and only those with a single link: a hard link
inside the workspace may name a file outside it, and nothing in the file says which
of its names is the real one. A FIFO, a socket or a device is refused without waiting
on it (it is opened non-blocking, if at all), and so is a file replaced by one of them
after the check. Each tool's cost is bounded: reads and writes of 1 MB at most, and
listings that stop after scanning 10,000 entries.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.prebuilt import ToolRuntime
from pydantic import BaseModel, ConfigDict

MAX_READ_BYTES = 1_000_000
MAX_WRITE_BYTES = 1_000_000
MAX_LISTED = 1000
"""The most entries `list_files` returns."""
MAX_SCANNED = 10 * MAX_LISTED
"""The most directory entries one `list_files` call looks at, however large the tree."""
LISTING_CUT = "[planexec: more entries than this are not listed; list a subdirectory]"
"""The last entry of a listing that was cut."""
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


class _NotRegular(OSError):
    """The path names something other than a regular file with one link."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


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
    try:
        target = (root / path).resolve()
        # A path the system cannot use (a name too long, a symlink loop) is refused
        # here, as the tools' other errors are, rather than raised as an OSError.
        os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise WorkspaceError(f"{path[:200]!r} cannot be used: {reason}") from exc
    if target != root and root not in target.parents:
        raise WorkspaceError(f"{path!r} is outside the workspace")
    return target


def open_inside(
    root: Path, target: Path, flags: int, *, make_dirs: bool = False, regular: bool = False
) -> int:
    """A file descriptor for `target`, a path `resolve_inside` returned, opened with `flags`.

    Every directory from `root` down is opened relative to the one above it, refusing
    symlinks (`O_NOFOLLOW`): a symlink swapped in for a file or a directory after the
    path was checked makes the open fail with an `OSError` (ELOOP, ENOTDIR) instead of
    being followed out of `root`. With `make_dirs`, missing directories are created on
    the way down. With `regular`, the file is opened only if it is missing (to be made)
    or a regular file with one link, non-blocking, and checked again once open; anything
    else raises an `OSError` before a byte is read or written.
    """
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    if regular:
        flags |= _NONBLOCK
    if os.open not in os.supports_dir_fd:  # pragma: no cover - Windows
        return _checked(os.open(target, flags | nofollow, 0o644), regular)
    parts = target.relative_to(root).parts
    folder = os.open(root, os.O_RDONLY | _DIRECTORY)
    try:
        for part in parts[:-1]:
            if make_dirs:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=folder)
            inner = os.open(part, os.O_RDONLY | _DIRECTORY | nofollow, dir_fd=folder)
            os.close(folder)
            folder = inner
        if not parts:
            return _checked(os.dup(folder), regular)
        if regular:
            try:
                found = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if not stat.S_ISLNK(found.st_mode):  # a symlink: O_NOFOLLOW refuses it
                    _refuse_unless_plain(found)
        return _checked(os.open(parts[-1], flags | nofollow, 0o644, dir_fd=folder), regular)
    finally:
        os.close(folder)


def _checked(fd: int, regular: bool) -> int:
    """`fd`, once it is known to be a plain file if `regular` (closed and refused if not)."""
    if not regular:
        return fd
    try:
        _refuse_unless_plain(os.fstat(fd))
    except OSError:
        os.close(fd)
        raise
    return fd


def _refuse_unless_plain(found: os.stat_result) -> None:
    mode = found.st_mode
    if stat.S_ISREG(mode):
        if found.st_nlink > 1:
            raise _NotRegular(
                f"a file with {found.st_nlink} hard links (one may be outside the workspace)"
            )
        return
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    raise _NotRegular(kind)


class _ReadFileArgs(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    path: str
    runtime: ToolRuntime[Any, Any]


class _WriteFileArgs(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    path: str
    content: str
    runtime: ToolRuntime[Any, Any]


class _ListFilesArgs(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    runtime: ToolRuntime[Any, Any]
    path: str = "."
    recursive: bool = False


# The argument schemas are written out, once, rather than inferred from each new
# function's signature: inferring them built six pydantic models per `file_tools()` call,
# the largest part of building a graph with the default tools.


def file_tools(workspace: str | Path | None = None) -> list[BaseTool]:
    """`read_file`, `write_file` and `list_files`, confined to a workspace.

    Args:
        workspace: The directory they work in. None means the run's `Context.workspace`.
    """
    fixed = Path(workspace) if workspace is not None else None

    def read_file(path: str, runtime: ToolRuntime[Any, Any]) -> str:
        """Read a UTF-8 text file from the workspace and return its content."""
        return read_text(workspace_root(runtime, fixed), path)

    def write_file(path: str, content: str, runtime: ToolRuntime[Any, Any]) -> str:
        """Write text to a file in the workspace, creating or replacing it.

        Missing parent directories are created. Returns a short confirmation.
        """
        return write_text(workspace_root(runtime, fixed), path, content)

    def list_files(
        runtime: ToolRuntime[Any, Any], path: str = ".", recursive: bool = False
    ) -> list[str]:
        """List the files and directories under a workspace directory.

        Paths are relative to the workspace; directories end with "/". At most 1000
        entries; a longer listing ends with a note saying it was cut.
        """
        return list_paths(workspace_root(runtime, fixed), path, recursive=recursive)

    return [
        StructuredTool.from_function(read_file, args_schema=_ReadFileArgs),
        StructuredTool.from_function(
            write_file, args_schema=_WriteFileArgs, extras={"idempotent": True}
        ),
        StructuredTool.from_function(list_files, args_schema=_ListFilesArgs),
    ]


def read_text(root: Path, path: str) -> str:
    """The UTF-8 text of the file at `path` in the workspace `root`: what `read_file` returns."""
    return _read_text(root, resolve_inside(root, path), path)


def write_text(root: Path, path: str, content: str) -> str:
    """Write `content` to `path` in the workspace `root`, as `write_file` does; its confirmation."""
    target = resolve_inside(root, path)
    data = content.encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        raise WorkspaceError(f"the content is larger than {MAX_WRITE_BYTES} bytes")
    if target == root or target.is_dir():
        raise WorkspaceError(f"{path!r} is a directory")
    try:
        # Truncated only once it is known to be a plain file of the workspace's own.
        fd = open_inside(root, target, os.O_WRONLY | os.O_CREAT, make_dirs=True, regular=True)
    except _NotRegular as exc:
        raise WorkspaceError(f"{path!r} is {exc.what}: only regular files are written") from exc
    except OSError as exc:
        raise WorkspaceError(f"cannot write {path!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.truncate(0)
        handle.write(data)
    return f"wrote {len(data)} bytes to {target.relative_to(root).as_posix()}"


def list_paths(root: Path, path: str = ".", *, recursive: bool = False) -> list[str]:
    """The listing of `path` in the workspace `root`, as `list_files` returns it."""
    target = resolve_inside(root, path)
    if not target.is_dir():
        raise WorkspaceError(f"{path!r} is not a directory in the workspace")
    try:
        entries, complete = _entries(root, target, recursive=recursive)
    except OSError as exc:
        raise WorkspaceError(f"cannot list {path!r}: {exc.strerror}") from exc
    names = [name.as_posix() + "/" if is_dir else name.as_posix() for name, is_dir in entries]
    names.sort()
    if complete and len(names) <= MAX_LISTED:
        return names
    return [*names[:MAX_LISTED], LISTING_CUT]


def _entries(root: Path, target: Path, *, recursive: bool) -> tuple[list[tuple[Path, bool]], bool]:
    """`(path from root, is a real directory)` for what is in `target`, links not followed.

    At most `MAX_SCANNED` entries are looked at; the flag says whether that was all.
    Each directory is opened through `open_inside`, from the root down, so a directory
    swapped for a symlink is refused rather than listed, and no more than one
    directory is open at a time however wide the tree.
    """
    found: list[tuple[Path, bool]] = []
    pending = [target.relative_to(root)]
    while pending:
        where = pending.pop()
        fd = open_inside(root, root / where, os.O_RDONLY | _DIRECTORY)
        try:
            with os.scandir(fd) as listing:
                for entry in listing:
                    if len(found) >= MAX_SCANNED:
                        return found, False
                    is_dir = entry.is_dir(follow_symlinks=False)
                    found.append((where / entry.name, is_dir))
                    if recursive and is_dir:
                        pending.append(where / entry.name)
        finally:
            os.close(fd)
    return found, True


def _read_text(root: Path, target: Path, path: str) -> str:
    """The UTF-8 text of `target`, a file `resolve_inside` returned for `path`."""
    if not target.is_file():
        raise WorkspaceError(f"{path!r} is not a file in the workspace")
    try:
        fd = open_inside(root, target, os.O_RDONLY, regular=True)
    except _NotRegular as exc:
        raise WorkspaceError(f"{path!r} is {exc.what}: only regular files are read") from exc
    except OSError as exc:
        raise WorkspaceError(f"cannot read {path!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        found = os.fstat(handle.fileno())
        data = b"" if found.st_size > MAX_READ_BYTES else handle.read(MAX_READ_BYTES + 1)
    if found.st_size > MAX_READ_BYTES or len(data) > MAX_READ_BYTES:
        raise WorkspaceError(f"{path!r} is larger than {MAX_READ_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkspaceError(f"{path!r} is not UTF-8 text") from exc
