"""Where a database lives: a SQLite file path, or a PostgreSQL URL.

Kept apart from `planexec.database` so that code which only needs to tell the two apart
(the command line's argument handling, shell completion) imports no database driver.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str | os.PathLike[str]) -> bool:
    """Whether `location` is a PostgreSQL URL rather than a SQLite file path."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def redact(location: str | os.PathLike[str]) -> str:
    """`location` for display: a URL's password is replaced by `***`."""
    text = os.fspath(location)
    if not is_postgres(text):
        return text
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        if ":" in credentials:
            netloc = f"{credentials.split(':', 1)[0]}:***@{host}"
    query = urlencode(
        [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)], safe="*"
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


__all__ = ["POSTGRES_SCHEMES", "is_postgres", "redact"]
