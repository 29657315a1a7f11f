"""What every command receives, read before the command line knows which one runs.

The environment, where output goes, the checkpoint's location and the argument types:
nothing here imports LangGraph or a database driver, so that `planexec --help` and shell
completion start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from planexec.errors import PlanexecError
from planexec.locations import is_postgres

if TYPE_CHECKING:
    from rich.console import Console

CHECKPOINT_KEY_VARIABLE = "PLANEXEC_CHECKPOINT_KEY"


class UserError(PlanexecError):
    """A mistake in how planexec was called; shown as one line, exit code 2."""


class Output:
    """Where output goes: people read `console`; `--json` prints one document on stdout.

    The console is made when first used (on stderr with `--json`), so that a command
    that draws nothing (completion, the TAB helper) does not import `rich`.
    """

    def __init__(
        self,
        *,
        json_mode: bool,
        console: Console | None = None,
        make: Callable[[TextIO | None], Console] | None = None,
    ) -> None:
        self.json_mode = json_mode
        self._console = console
        self._make = make or make_console

    @property
    def console(self) -> Console:
        """The console people read, made by `make` (default `make_console`) on first use."""
        if self._console is None:
            self._console = self._make(sys.stderr if self.json_mode else None)
        return self._console


def make_console(stream: TextIO | None = None) -> Console:
    """A console on `stream` (stdout by default), 120 columns wide when not a terminal."""
    from rich.console import Console  # here: `--help` and completion draw nothing

    file = stream or sys.stdout
    terminal = file.isatty()
    width = None if terminal or os.environ.get("COLUMNS") else 120
    return Console(file=file, width=width, highlight=False, soft_wrap=False)


@dataclass(frozen=True)
class Environment:
    """Everything planexec reads from the environment, read once at start-up."""

    api_key: str | None
    base_url: str | None
    home: Path
    """Where planexec keeps its data: the default checkpoint file lives here."""
    editor: str
    interactive: bool
    """Whether stdin is a terminal, so a person can answer questions."""
    checkpoint_key: str | None = field(default=None, repr=False)
    """`PLANEXEC_CHECKPOINT_KEY`: encrypts and authenticates checkpoints (`planexec.serde`)."""
    embeddings: str | None = None
    """`PLANEXEC_EMBEDDINGS`: the model that finds saved plans by meaning (`planexec.stores`)."""

    @classmethod
    def read(cls, environ: Mapping[str, str], *, interactive: bool) -> Environment:
        """The environment from `environ` (normally `os.environ`)."""
        return cls(
            api_key=environ.get("OPENAI_API_KEY") or None,
            base_url=environ.get("OPENAI_BASE_URL") or None,
            home=default_home(environ),
            editor=environ.get("VISUAL") or environ.get("EDITOR") or "vi",
            interactive=interactive,
            checkpoint_key=environ.get(CHECKPOINT_KEY_VARIABLE) or None,
            embeddings=environ.get("PLANEXEC_EMBEDDINGS") or None,
        )

    @property
    def default_checkpoint(self) -> Path:
        """`$PLANEXEC_HOME/checkpoints.sqlite`."""
        return self.home / "checkpoints.sqlite"


def default_home(environ: Mapping[str, str]) -> Path:
    """`$PLANEXEC_HOME`, else `${XDG_DATA_HOME:-~/.local/share}/planexec`."""
    if environ.get("PLANEXEC_HOME"):
        return Path(environ["PLANEXEC_HOME"]).expanduser()
    data = environ.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return Path(data).expanduser() / "planexec"


def positive_int(text: str) -> int:
    """An argparse `type`: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def checkpoint_location(value: str | None, env: Environment) -> Path | str:
    """What `--checkpoint` names: a PostgreSQL URL, or a SQLite file.

    The default file when `value` is None.
    """
    if value and is_postgres(value):
        return value
    return Path(value).expanduser() if value else env.default_checkpoint


def reading_checkpoint(location: Path | str) -> bool:
    """Whether a command that only reads has a database to read at `location`.

    A SQLite file that does not exist yet holds no threads: that is not an error.
    """
    if isinstance(location, Path):
        try:
            if location.is_dir():
                raise UserError(f"the checkpoint {location} is a directory, not a file")
            return location.is_file()
        except OSError as exc:
            raise UserError(f"cannot read the checkpoint {location}: {exc.strerror}") from exc
    return True


__all__ = [
    "CHECKPOINT_KEY_VARIABLE",
    "Environment",
    "Output",
    "UserError",
    "checkpoint_location",
    "default_home",
    "make_console",
    "positive_int",
    "reading_checkpoint",
]
