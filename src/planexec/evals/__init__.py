"""Evaluate the planner-executor split on any model: a task suite, a runner, scores, reports.

    import asyncio
    from pathlib import Path
    from planexec.evals import EvalConfig, Evaluation, load_suite

    suite = load_suite()                      # the bundled suite, or load_suite("mine.json")
    configs = [EvalConfig(name="strong", executor_model="openai:gpt-4.1"),
               EvalConfig(name="cheap", executor_model="openai:gpt-4.1-mini")]
    report = asyncio.run(Evaluation.create(Path("eval-run"), suite, configs).run())

`planexec eval` does the same from the command line.
"""

from planexec.evals.checks import CheckResult, Outcome, run_checks
from planexec.evals.config import EvalConfig, parse_config
from planexec.evals.replay import Replies
from planexec.evals.report import compare_reports, load_report, write_report
from planexec.evals.reviewer import ReviewerPolicy
from planexec.evals.runner import Evaluation, RunError, RunSettings
from planexec.evals.scoring import TaskScore, compare, summarize
from planexec.evals.suite import CATEGORIES, Suite, SuiteError, Task, load_suite, parse_suite
from planexec.evals.toolkit import FactoryConfig, ToolFactory, logged
from planexec.evals.tools import FACTORIES, build_tools
from planexec.evals.world import World

__all__ = [
    "CATEGORIES",
    "FACTORIES",
    "CheckResult",
    "EvalConfig",
    "Evaluation",
    "FactoryConfig",
    "Outcome",
    "Replies",
    "ReviewerPolicy",
    "RunError",
    "RunSettings",
    "Suite",
    "SuiteError",
    "Task",
    "TaskScore",
    "ToolFactory",
    "World",
    "build_tools",
    "compare",
    "compare_reports",
    "load_report",
    "load_suite",
    "logged",
    "parse_config",
    "parse_suite",
    "run_checks",
    "summarize",
    "write_report",
]
