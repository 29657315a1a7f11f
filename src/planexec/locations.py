"""Where a database lives: a SQLite file path, or a PostgreSQL URL.

Kept apart from `planexec.database` so that code which only needs to tell the two apart
(the command line's argument handling, shell completion) imports no database driver.
"""

from __future__ import annotations

import os

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str | os.PathLike[str]) -> bool:
    """Whether `location` is a PostgreSQL URL rather than a SQLite file path."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


__all__ = ["POSTGRES_SCHEMES", "is_postgres"]
