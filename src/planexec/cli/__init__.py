"""The `planexec` command line.

    planexec run GOAL       plan, review, execute, replan; prints the answer
    planexec resume THREAD  answer a paused review, or continue an interrupted run
    planexec show THREAD    the goal, plan, step results and revision history
    planexec audit THREAD   the audit trail as JSON Lines
    planexec demo           a bundled scenario, offline, with scripted model replies
    planexec threads        every thread in the checkpoint database, newest first
    planexec completion SH  a completion script for bash, zsh or fish
    planexec eval           run the evaluation suite; compare configurations
    planexec plans ACTION   list, show, delete, export or import saved plans

The environment is read here, once: OPENAI_API_KEY and OPENAI_BASE_URL for the models,
PLANEXEC_HOME (default `${XDG_DATA_HOME:-~/.local/share}/planexec`) for the default
checkpoint file `$PLANEXEC_HOME/checkpoints.sqlite`, VISUAL/EDITOR for editing plans,
PLANEXEC_CHECKPOINT_KEY, a secret that encrypts and authenticates the checkpoints, and
PLANEXEC_EMBEDDINGS, a model that finds saved plans by meaning.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from planexec.cli.environment import Environment, Output, UserError, make_console
from planexec.cli.parser import EPILOG, build_complete_parser, build_parser
from planexec.errors import PlanexecError, ThreadBusyError

__all__ = ["EPILOG", "build_parser", "main"]

Command = Callable[[argparse.Namespace, Environment, Output], int]

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("planexec.cli.commands", "run"),
    "resume": ("planexec.cli.commands", "resume"),
    "show": ("planexec.cli.show", "show"),
    "demo": ("planexec.cli.commands", "demo"),
    "audit": ("planexec.cli.audit", "audit"),
    "threads": ("planexec.cli.threads", "threads"),
    "completion": ("planexec.cli.completion", "completion"),
    "__complete": ("planexec.cli.complete", "complete"),
    "eval": ("planexec.cli.evaluate", "evaluate"),
    "plans": ("planexec.cli.plans", "plans"),
}
"""Each command's module and function. A module loads when its command runs, so that a
command pays only for what it uses (LangGraph, a database driver, the evaluation suite)."""


def command(name: str) -> Command:
    """The function that carries out the command `name`."""
    module, function = COMMANDS[name]
    found: Command = getattr(import_module(module), function)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # A TAB runs the hidden `__complete`: its own few arguments parse faster than all.
    parser = build_complete_parser() if argv[:1] == ["__complete"] else build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error("a COMMAND is required: run, resume, show, threads, audit, demo, ...")
    json_mode = bool(getattr(args, "json", False))
    # Looked up here when first used, so that a caller may replace `make_console`.
    out = Output(json_mode=json_mode, make=lambda stream: make_console(stream))
    env = Environment.read(os.environ, interactive=sys.stdin.isatty())
    try:
        return command(args.command)(args, env, out)
    except ThreadBusyError as exc:
        sys.stderr.write(f"planexec: error: {exc}\n")
        return 3
    except (UserError, PlanexecError) as exc:
        sys.stderr.write(f"planexec: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
