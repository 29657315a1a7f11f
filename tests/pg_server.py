"""A real, throwaway PostgreSQL server for tests (and the benchmark).

`postgres_server()` runs `initdb` in a new temporary directory and starts `postgres` on
127.0.0.1 at a free port, its socket in the same directory, fsync off; on exit it
stops the server and deletes the directory. It uses the Debian binaries
(`/usr/lib/postgresql/<version>/bin`, from `apt-get install postgresql`) or those on
PATH. initdb refuses to run as root, so as root the server runs as the `postgres`
user (through `runuser`).

Fixtures (registered through `pytest_plugins` in conftest.py):
- `pg_server`, session-scoped: the server, started on first use; tests skip with the
  reason when there is none to start.
- `pg_url`: a URL to a new, empty database on it, one per test.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

SUPERUSER = "postgres"
START_ATTEMPTS = 3
"""A free port may be taken between finding it and the server binding it: retry."""


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server; connect as the `postgres` superuser, no password."""

    host: str
    port: int

    def url(self, database: str = "postgres") -> str:
        """The connection URL of `database`."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database `name`; its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def find_binaries() -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`.

    Raises:
        PostgresUnavailable: They are not installed, or initdb could not run here.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb and no initdb "
            "on PATH): apt-get install postgresql"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root, and there is no '{SUPERUSER}' user to run initdb as "
                "(initdb refuses root); the postgresql package creates it"
            ) from None
    return Path(initdb).parent


def _version(path: str) -> int:
    match = re.search(r"/postgresql/(\d+)/", path)
    return int(match.group(1)) if match else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it and delete its files on exit.

    Raises:
        PostgresUnavailable: No server can be started here.
    """
    binaries = find_binaries()
    as_user = ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="planexec-pg-"))
    data = root / "data"
    try:
        if as_user:
            shutil.chown(root, SUPERUSER, SUPERUSER)
        _run(
            [
                *as_user,
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            "initdb",
        )
        port = _start(as_user, binaries, root, data)
        try:
            yield PostgresServer("127.0.0.1", port)
        finally:
            subprocess.run(
                [*_pg_ctl(as_user, binaries, data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                check=False,
                timeout=60,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _pg_ctl(as_user: list[str], binaries: Path, data: Path) -> list[str]:
    return [*as_user, str(binaries / "pg_ctl"), "-D", str(data)]


def _start(as_user: list[str], binaries: Path, root: Path, data: Path) -> int:
    log = root / "server.log"
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {root} -F -c max_connections=200"
        command = [*_pg_ctl(as_user, binaries, data), "-l", str(log), "-w", "-t", "60"]
        started = subprocess.run(
            [*command, "-o", options, "start"],
            capture_output=True,
            text=True,
            check=False,
            timeout=90,
        )
        if started.returncode == 0:
            return port
        if attempt == START_ATTEMPTS - 1:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise PostgresUnavailable(
                f"pg_ctl start failed: {started.stderr.strip()}\n{server_log[-2000:]}"
            )
    raise AssertionError("unreachable")


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({done.returncode}): {done.stderr.strip()}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session; skips the test if none can run."""
    try:
        find_binaries()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with postgres_server() as server:
        yield server


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty database for this test."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    return pg_server.create_database(f"t{next(_databases)}_{slug}")
