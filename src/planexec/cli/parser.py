"""The arguments of every `planexec` command.

Only the standard library and the command line's light modules are imported here: the
parser is built on every start, for `--help` and for each TAB of shell completion, before
anything knows whether LangGraph will be needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from planexec.cli.completion import SHELLS
from planexec.cli.environment import positive_int

EPILOG = """\
The default checkpoint file is $PLANEXEC_HOME/checkpoints.sqlite, where PLANEXEC_HOME
defaults to ${XDG_DATA_HOME:-~/.local/share}/planexec. Models are "openai:<name>";
OPENAI_API_KEY, or OPENAI_BASE_URL for any OpenAI-compatible server, must be set.
PLANEXEC_CHECKPOINT_KEY, if set, encrypts and authenticates every checkpoint value.
Exit codes: 0 completed (or paused for review), 1 failed, cancelled or out of budget,
2 a usage error, 3 the thread is busy (another client is running it: try again later),
130 Ctrl-C (the thread is saved: resume it).
"""

DEFAULT_LIMIT = 20
"""Threads shown without `--limit` or `--all`."""

AUDIT_DESCRIPTION = """\
Write THREAD's audit trail as JSON Lines, oldest first: the run's start, every plan
revision (source, reason, diff, plan hash), review decision, step approval, each step's
start and finish (arguments after substitution, output, error, attempts, duration,
tokens, model) and the run's end. Built from the checkpoint history; each record has a
"type" and an "at" timestamp (UTC).
"""

BUDGET_FLAGS = {
    "max_model_calls": "--max-model-calls",
    "max_tokens": "--max-tokens",
    "time_budget_s": "--time-budget",
    "max_cost_usd": "--max-cost",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line that name only the commands people can use."""

    def error(self, message: str) -> NoReturn:
        message = message.replace(", '__complete'", "").replace("'__complete', ", "")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for `planexec`."""
    parser = _Parser(
        prog="planexec",
        description="A planner-executor agent: a plan you review, run step by step, "
        "revised when reality disagrees, every step checkpointed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show the version number and exit"
    )
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
    _add_threads(sub)
    _add_completion(sub)
    _add_audit(sub)
    _add_eval(sub)
    _add_plans(sub)
    return parser


class _Version(argparse.Action):
    """`--version`: the installed version, looked up only when asked for.

    Reading package metadata takes tens of milliseconds, which every start (each TAB of
    shell completion included) would otherwise pay.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("planexec")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            found = "unknown"
        sys.stdout.write(f"planexec {found}\n")
        parser.exit()


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
    _add_mcp_options(parser, resuming=resuming)


def _add_mcp_options(parser: argparse.ArgumentParser, *, resuming: bool) -> None:
    """`--mcp-config` and `--mcp`, in their own group of `parser`'s help."""
    group = parser.add_argument_group(
        "MCP tools",
        "Tools from MCP servers, besides the built-in ones"
        + (" (default: the servers the thread was run with)" if resuming else "")
        + ". Needs the mcp extra: pip install 'planexec[mcp]'.",
    )
    group.add_argument(
        "--mcp-config",
        action="append",
        metavar="FILE",
        help='JSON config naming MCP servers: {"mcpServers": {"<name>": {"command": ..., '
        '"args": [...], "env": {...}, "requires_approval": [<tool>, ...], '
        '"tools": {"<tool>": {"idempotent": false}}}}} (repeatable; the README\'s MCP '
        "section has every key)",
    )
    group.add_argument(
        "--mcp",
        action="append",
        metavar="NAME=COMMAND",
        help="an MCP server to start over stdio, e.g. 'shop=python server.py' (repeatable)",
    )


def _add_threads(sub: argparse._SubParsersAction[Any]) -> None:
    """`threads`, and the hidden `__complete` that shell completion calls."""
    threads = sub.add_parser(
        "threads",
        help="list the threads in the checkpoint database, newest first",
        description="List the threads in the checkpoint database, newest first: id, "
        f"status, last update and goal; the {DEFAULT_LIMIT} newest unless told otherwise.",
    )
    _add_checkpoint(threads)
    count = threads.add_mutually_exclusive_group()
    count.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help=f"the N most recently updated (default: {DEFAULT_LIMIT})",
    )
    count.add_argument("--all", action="store_true", help="every thread")
    threads.add_argument("--json", action="store_true", help="print the threads as JSON")
    _add_complete(sub.add_parser("__complete"))  # no help: hidden from the command list


def _add_complete(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("threads",))
    _add_checkpoint(parser)


def build_complete_parser() -> argparse.ArgumentParser:
    """The parser of `planexec __complete ...` alone: what `build_parser` gives it."""
    parser = _Parser(prog="planexec")
    sub = parser.add_subparsers(dest="command")
    _add_complete(sub.add_parser("__complete"))
    return parser


def _add_completion(sub: argparse._SubParsersAction[Any]) -> None:
    """The `completion` command."""
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a completion script for SHELL on stdout. Install it with, e.g.: "
        "planexec completion bash > ~/.local/share/bash-completion/completions/planexec; "
        'planexec completion zsh > "${fpath[1]}/_planexec"; '
        "planexec completion fish > ~/.config/fish/completions/planexec.fish",
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")


def _add_audit(sub: argparse._SubParsersAction[Any]) -> None:
    """The `audit` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "audit",
        help="write a thread's audit trail as JSON Lines",
        description=AUDIT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("thread", metavar="THREAD")
    _add_checkpoint(parser)
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE instead of standard output"
    )
    parser.add_argument(
        "--current-only",
        action="store_true",
        help="leave out work on branches that a later fork left behind",
    )


def _budget_limit(kind: Callable[[str], float | int]) -> Callable[[str], float | int | None]:
    def parse(text: str) -> float | int | None:
        if text.strip().lower() in ("none", "unlimited"):
            return None
        try:
            value = kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'none'") from exc
        if value <= 0:
            raise argparse.ArgumentTypeError("a budget must be positive (or 'none')")
        return value

    return parse


def _add_eval(sub: argparse._SubParsersAction[Any]) -> None:
    """The `eval` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "eval",
        help="evaluate models on the task suite",
        description="Run the evaluation suite (or your own) against one or two configurations, "
        "with budgets and checkpoints; write results.json and report.html.",
        epilog="Exit codes: 0 every task was evaluated (whatever its score), 1 a task could not "
        "be run (see its error), 2 a usage error.",
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--suite", metavar="FILE", help="a suite JSON file (default: the bundled one)"
    )
    what.add_argument("--tasks", metavar="ID,ID", help="only these tasks")
    what.add_argument("--category", metavar="CAT,CAT", help="only these categories")
    what.add_argument("--list", action="store_true", help="list the suite's tasks and exit")
    models = parser.add_argument_group("models")
    models.add_argument(
        "--config",
        action="append",
        metavar="NAME=PLANNER[,EXECUTOR[,REPLANNER]]",
        help="a configuration to evaluate; repeat it to compare two (e.g. --config "
        "strong=openai:gpt-4.1 --config cheap=openai:gpt-4.1,openai:gpt-4.1-mini)",
    )
    models.add_argument("--planner-model", metavar="MODEL", help="without --config: the planner")
    models.add_argument("--executor-model", metavar="MODEL", help="without --config: the executor")
    models.add_argument("--replanner-model", metavar="MODEL", help="without --config")
    models.add_argument(
        "--price",
        action="append",
        metavar="MODEL=IN,OUT",
        help="USD per million input,output tokens for a model without a known price",
    )
    models.add_argument(
        "--replies", metavar="PATH", help="replay recorded replies instead of calling models"
    )
    limits = parser.add_argument_group("per-task budgets (a number, or 'none' for no limit)")
    for name, kind, metavar, default in (
        ("max_model_calls", int, "N", "40"),
        ("max_tokens", int, "N", "250000"),
        ("time_budget_s", float, "SECONDS", "300"),
        ("max_cost_usd", float, "USD", "1.0"),
    ):
        limits.add_argument(
            BUDGET_FLAGS[name],
            dest=name,
            type=_budget_limit(kind),
            metavar=metavar,
            # Absent unless given, so that 'none' (no limit) differs from not saying.
            default=argparse.SUPPRESS,
            help=f"default: {default}, or as the suite says",
        )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--concurrency", type=positive_int, metavar="N", help="tasks at once (default 4)"
    )
    run.add_argument(
        "--reuse",
        choices=("off", "suggest", "replay"),
        help="reuse_plans for the tasks that share a plan library (the repeated category), "
        "over the suite's: 'off' measures them without it",
    )
    run.add_argument("--out", metavar="DIR", help="run directory (default: under $PLANEXEC_HOME)")
    run.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted evaluation")
    run.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two results")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


def _add_plans(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `plans` and its subcommands."""
    plans = sub.add_parser(
        "plans",
        help="list, show, delete, export or import saved plans",
        description="The library of plans that completed runs saved, kept beside the "
        "checkpoints; `run --reuse` decides how runs use it.",
    )
    action = plans.add_subparsers(dest="plans_command", metavar="ACTION", required=True)

    def common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        _add_checkpoint(parser)
        parser.add_argument("--json", action="store_true", help="print JSON on stdout")
        return parser

    listing = common(action.add_parser("list", help="every saved plan, most used first"))
    listing.add_argument("--limit", type=positive_int, metavar="N", help="at most N plans")
    common(action.add_parser("show", help="one saved plan in full")).add_argument(
        "id", metavar="ID"
    )
    common(action.add_parser("delete", help="forget one saved plan")).add_argument(
        "id", metavar="ID"
    )
    export = action.add_parser("export", help="every saved plan as one JSON document")
    _add_checkpoint(export)
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    imported = common(
        action.add_parser(
            "import",
            help="add the plans of an export; refused whole if any is invalid",
            description="Add the plans of FILE (from `planexec plans export`). Every plan "
            "must validate against the tools available now, or nothing is imported.",
        )
    )
    imported.add_argument("file", metavar="FILE")
    _add_mcp_options(imported, resuming=False)


__all__ = [
    "AUDIT_DESCRIPTION",
    "BUDGET_FLAGS",
    "DEFAULT_LIMIT",
    "EPILOG",
    "build_complete_parser",
    "build_parser",
]
