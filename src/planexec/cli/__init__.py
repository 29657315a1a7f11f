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
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from planexec.cli import audit, commands, completion, evaluate, mcp_servers, plans, threads
from planexec.cli.render import make_console
from planexec.cli.session import Environment, UserError
from planexec.errors import PlanexecError, ThreadBusyError

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace, Environment, commands.Output], int]

EPILOG = """\
The default checkpoint file is $PLANEXEC_HOME/checkpoints.sqlite, where PLANEXEC_HOME
defaults to ${XDG_DATA_HOME:-~/.local/share}/planexec. Models are "openai:<name>";
OPENAI_API_KEY, or OPENAI_BASE_URL for any OpenAI-compatible server, must be set.
PLANEXEC_CHECKPOINT_KEY, if set, encrypts and authenticates every checkpoint value.
Exit codes: 0 completed (or paused for review), 1 failed, cancelled or out of budget,
2 a usage error, 3 the thread is busy (another client is running it: try again later),
130 Ctrl-C (the thread is saved: resume it).
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line that name only the commands people can use."""

    def error(self, message: str) -> NoReturn:
        message = message.replace(", '__complete'", "").replace("'__complete', ", "")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    try:
        return version("planexec")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _add_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        metavar="PATH|URL",
        help="SQLite checkpoint file, or a postgresql:// URL "
        "(default: $PLANEXEC_HOME/checkpoints.sqlite)",
    )


def _add_run_options(parser: argparse.ArgumentParser, *, resuming: bool) -> None:
    def default(value: str) -> str:
        return " (default: as the thread was run)" if resuming else f" (default: {value})"

    group = parser.add_argument_group("run settings")
    group.add_argument(
        "--planner-model", metavar="MODEL", help="the planner's model" + default("openai:gpt-4.1")
    )
    group.add_argument(
        "--executor-model",
        metavar="MODEL",
        help="the executor's model" + default("openai:gpt-4.1-mini"),
    )
    group.add_argument(
        "--replanner-model",
        metavar="MODEL",
        help="the replanner's model" + default("the planner's"),
    )
    group.add_argument(
        "--review",
        choices=("always", "never"),
        help="pause for plan review before each plan runs" + default("always"),
    )
    group.add_argument(
        "--max-replans", type=int, metavar="N", help="plan revisions allowed" + default("3")
    )
    group.add_argument(
        "--reuse",
        dest="reuse_plans",
        choices=("off", "suggest", "replay"),
        help="saved plans: show similar ones to the planner (suggest), also run an exact "
        "fit with no planner call (replay), or neither" + default("suggest"),
    )
    group.add_argument(
        "--workspace",
        metavar="DIR",
        help="directory the file tools may use" + default("the current directory"),
    )
    _add_checkpoint(parser)
    parser.add_argument("--yes", "-y", action="store_true", help="approve every plan and step")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the outcome as JSON on stdout (progress on stderr)",
    )
    mcp_servers.add_options(parser, resuming=resuming)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for `planexec`."""
    parser = _Parser(
        prog="planexec",
        description="A planner-executor agent: a plan you review, run step by step, "
        "revised when reality disagrees, every step checkpointed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"planexec {_version()}")
    # Not required here: `main` says which is missing, after unknown options are named.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run", help="plan and carry out a goal", description="Plan and carry out GOAL."
    )
    run.add_argument("goal", nargs="+", metavar="GOAL", help="what to achieve, in plain words")
    run.add_argument("--thread", metavar="ID", help="thread id (default: a new uuid)")
    _add_run_options(run, resuming=False)

    resume = sub.add_parser(
        "resume",
        help="answer a paused review or continue an interrupted run",
        description="Continue THREAD: answer the decision it waits for (interactively, or "
        "with one of the options below), or carry on a run that was interrupted.",
    )
    resume.add_argument("thread", metavar="THREAD")
    decision = resume.add_argument_group("decision").add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="approve the plan or the steps")
    decision.add_argument("--reject", metavar="MSG", help="reject, saying what to change")
    decision.add_argument(
        "--edit",
        metavar="FILE",
        help="run the plan in FILE (JSON); for a step approval, the new arguments",
    )
    decision.add_argument("--cancel", action="store_true", help="end the run at this review")
    decision.add_argument(
        "--rerun",
        action="store_true",
        help="an uncertain step (a crash during a call that must not run twice): call it again",
    )
    decision.add_argument(
        "--mark-done",
        metavar="OUTPUT",
        help="an uncertain step: its call did happen; record it as done with OUTPUT (JSON or text)",
    )
    decision.add_argument(
        "--skip",
        action="store_true",
        help="an uncertain step: skip it (and the steps that depend on it)",
    )
    resume.add_argument(
        "--message",
        metavar="MSG",
        help="with --skip or --cancel: why, recorded with the decision",
    )
    _add_run_options(resume, resuming=True)

    show = sub.add_parser("show", help="show a thread's plan, results and history")
    show.add_argument("thread", metavar="THREAD")
    _add_checkpoint(show)
    show.add_argument("--json", action="store_true", help="print the state values as JSON")

    demo = sub.add_parser(
        "demo",
        help="run a bundled scenario offline (scripted model replies)",
        description="Run a bundled scenario through the real graph, tools and SQLite "
        "checkpoint, with scripted model replies: no model is called.",
    )
    demo.add_argument(
        "--workspace", metavar="DIR", help="copy the demo files here (default: a new temp dir)"
    )
    _add_checkpoint(demo)
    demo.add_argument("--thread", metavar="ID", help="thread id (default: a new uuid)")
    demo.add_argument("--review", choices=("always", "never"), help="default: always")
    demo.add_argument("--yes", "-y", action="store_true", help="approve every plan and step")
    demo.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    threads.add_parsers(sub, _add_checkpoint)
    completion.add_parser(sub)
    audit.add_parser(sub, _add_checkpoint)
    evaluate.add_parser(sub)
    plans.add_parser(sub, _add_checkpoint)
    return parser


COMMANDS: dict[str, Command] = {
    "run": commands.run,
    "resume": commands.resume,
    "show": commands.show,
    "demo": commands.demo,
    "audit": audit.audit,
    "threads": threads.threads,
    "completion": completion.completion,
    "__complete": threads.complete,
    "eval": evaluate.evaluate,
    "plans": plans.plans,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error("a COMMAND is required: run, resume, show, threads, audit, demo, ...")
    json_mode = bool(getattr(args, "json", False))
    out = commands.Output(
        console=make_console(sys.stderr if json_mode else None), json_mode=json_mode
    )
    env = Environment.read(os.environ, interactive=sys.stdin.isatty())
    try:
        return COMMANDS[args.command](args, env, out)
    except ThreadBusyError as exc:
        sys.stderr.write(f"planexec: error: {exc}\n")
        return 3
    except (UserError, PlanexecError) as exc:
        sys.stderr.write(f"planexec: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
