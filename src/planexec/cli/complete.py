"""`planexec __complete threads`: the thread ids a shell offers on TAB.

A shell runs this on every TAB, so it reads the ids straight from the checkpoint tables
with `sqlite3` (or `psycopg` for a PostgreSQL URL): no LangGraph, no serializer, and no
checkpoint key, since thread ids are stored in the clear.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from planexec.cli.environment import (
    Environment,
    Output,
    checkpoint_location,
    reading_checkpoint,
)
from planexec.cli.sqlitefiles import read_only_uri
from planexec.inert import is_visible

NEWEST_FIRST = (
    "SELECT thread_id, MAX(checkpoint_id) AS latest FROM checkpoints "
    "WHERE checkpoint_ns = '' GROUP BY thread_id ORDER BY latest DESC"
)
"""Thread ids and their latest checkpoint, newest first: checkpoint ids are UUIDv6,
which sort by time. Every listing, completion included, starts from it."""

_CONNECT_TIMEOUT_S = 5
"""How long a TAB waits for a PostgreSQL server before offering nothing."""


def sqlite_thread_ids(path: Path) -> list[str]:
    """The thread ids in the SQLite file at `path`, newest first, read without writing."""
    # Read-only: a TAB never creates, migrates or locks the file for writing.
    conn = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        return [str(row[0]) for row in conn.execute(NEWEST_FIRST)]
    finally:
        conn.close()


def postgres_thread_ids(url: str) -> list[str]:
    """The thread ids in the PostgreSQL database at `url`, newest first."""
    import psycopg  # here: only a PostgreSQL checkpoint pays for the driver

    with psycopg.connect(url, connect_timeout=_CONNECT_TIMEOUT_S, autocommit=True) as conn:
        return [str(row[0]) for row in conn.execute(NEWEST_FIRST)]


def complete(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """Print the thread ids, one per line, for shell completion.

    Only ids made of visible characters are offered, so that a completion never puts a
    control or invisible character on a command line (`planexec threads` shows the others,
    escaped, and any unique prefix of them names them). Prints nothing, and succeeds,
    when there is no checkpoint database to read or it cannot be read.
    """
    try:
        location = checkpoint_location(args.checkpoint, env)
        if not reading_checkpoint(location):
            return 0
        if isinstance(location, Path):
            ids = sqlite_thread_ids(location)
        else:
            ids = postgres_thread_ids(location)
    except Exception:  # a completion helper prints no traceback into the shell
        return 0
    sys.stdout.write("".join(f"{thread}\n" for thread in ids if is_visible(thread)))
    return 0


__all__ = ["NEWEST_FIRST", "complete", "postgres_thread_ids", "sqlite_thread_ids"]
