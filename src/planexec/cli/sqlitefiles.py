"""Reading a SQLite checkpoint file without writing it, and telling a damaged one apart.

Only `sqlite3` is used here, so that shell completion can read thread ids as fast as a
TAB needs, with the same checks as the commands that open the file through LangGraph.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from planexec.cli.environment import UserError


def read_only_uri(path: Path) -> str:
    """The URI that reads `path` read-only, once its header and schema have been read.

    Raises sqlite3's error for a file that is no database or is cut short (both told
    from the header, before SQLite opens it), and a `UserError` for a SQLite database
    that holds other things than checkpoints.
    """
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if not path.is_file() or not path.stat().st_size:
        return uri
    check_header(path)
    try:
        conn = sqlite3.connect(uri, uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        if not unopenable(exc):
            raise
        # A database in WAL mode on read-only media: SQLite cannot make its
        # shared-memory file there, but can read the file as it stands.
        uri += "&immutable=1"
        conn = sqlite3.connect(uri, uri=True)
    with contextlib.closing(conn):
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    if tables and "checkpoints" not in tables:
        raise UserError(
            f"{path} is a SQLite database, but not a planexec checkpoint file "
            f"(it has {', '.join(sorted(tables)[:5])}); refusing to use it"
        )
    return uri


_MAGIC = b"SQLite format 3\0"


def check_header(path: Path) -> None:
    """sqlite3's error for a file that is not SQLite, or is shorter than its header says."""
    with path.open("rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise sqlite3.DatabaseError("file is not a database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is only valid when the change counter matches "version-valid-for".
    valid = header[24:28] == header[92:96]
    size = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    if valid and pages * page_size > size and not (wal.is_file() and wal.stat().st_size):
        raise sqlite3.DatabaseError(f"truncated: {size:,} bytes of {pages * page_size:,}")


def unopenable(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite could not open a WAL database read-only (no shared-memory file)."""
    return "unable to open" in str(exc) or "readonly" in str(exc)


def sqlite_problem(exc: sqlite3.DatabaseError, where: str, *, writing: bool) -> UserError:
    """What is wrong with the SQLite checkpoint file at `where`, in one line."""
    message = str(exc)
    if "file is not a database" in message:
        return UserError(f"{where} is not a SQLite checkpoint database ({message})")
    if "malformed" in message or "truncated" in message:
        return UserError(f"the checkpoint database {where} is damaged ({message})")
    if "readonly" in message or "read-only" in message or (writing and "unable to open" in message):
        return UserError(
            f"the checkpoint database {where} cannot be written ({message}): run, resume "
            "and demo need to write it (threads, show and audit only read)"
        )
    return UserError(f"cannot use the checkpoint database {where}: {message}")


__all__ = ["check_header", "read_only_uri", "sqlite_problem", "unopenable"]
