"""Cold starts: a new process for each command, and a new graph for each run.

Three tables:

- **Start-up**: each command in a new process, its median wall-clock over a bare
  `python -c pass`. Targets: `planexec --help`, `completion bash|zsh|fish` and the TAB
  helper (`__complete threads`) at most 0.3 s more; `threads` and `show` at most 0.6 s;
  `import planexec` at most 0.5 s.
- **Listings at scale**: `planexec threads` on a SQLite file of `MANY_THREADS` threads
  (each with its whole history: six checkpoints and their writes), in new processes.
  Target: the default page at most 2 s; `--all --json` and the `--all` table are
  reported without a target.
- **New graph per run**: the latency workloads, each run on a saver opened and a graph
  built for it (both timed, as a command line or a short-lived worker does), in a process
  that has already imported everything. Target: wall-clock at most 1.10x the critical path.
  The framework rows run a 4-step chain with no latency at all, so that everything they
  measure is framework time: a new graph's first run (saver open and `build_graph`
  included) at most 30 ms, the second run on the same graph at most 15 ms.
- **New process per run**: `planexec run GOAL --yes --json` against the bench's model
  server, a calculator chain. Its wall-clock includes Python's start and every import;
  the row shows how far that is over the critical path, and what importing LangGraph
  alone costs on this machine (the floor no change to planexec can go under).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from bench.runner import Bench, RunStats, open_saver
from bench.server import ModelServer
from bench.suite import WALL_FACTOR
from bench.workloads import MODEL_LATENCY_S, PER_TOKEN_S, Workload, chain, chain4, fanout
from planexec import Context, ScriptedChatModel, build_graph, run_config
from planexec.checkpoints import open_checkpointer
from planexec.scripted import plan_reply, replan_reply

STARTS = 7
"""New processes per start-up command (the median is reported)."""
RUNS = 5
"""Cold runs per workload (the median is reported)."""
FIRST_RUN_MS = 30.0
"""Target: a new graph's first run of a 4-step chain, framework time only."""
WARM_RUN_MS = 15.0
"""Target: the same graph's next run."""
HELP_S = 0.3
LISTING_S = 0.6
IMPORT_S = 0.5
THREADS = 20
"""Threads in the database that `threads`, `show` and the TAB helper read."""
MANY_THREADS = 10_000
"""Threads in the database of the listing rows."""
PAGE_S = 2.0
"""Target: the default page of `planexec threads` among `MANY_THREADS` threads."""


@dataclass
class StartRow:
    """One command, started in a new process `STARTS` times."""

    command: str
    median_s: float
    over_python_s: float
    target_s: float
    cpu_s: float = 0.0
    """Median CPU time (user and system) of the process."""

    @property
    def passed(self) -> bool:
        """Whether the time over a bare Python start is within the target."""
        return self.over_python_s <= self.target_s


@dataclass
class ListingRow:
    """`planexec threads ...` on a file of many threads, started in a new process."""

    command: str
    threads: int
    median_s: float
    target_s: float | None
    """None: reported, with no target."""
    cpu_s: float = 0.0
    """Median CPU time (user and system) of the process."""

    @property
    def passed(self) -> bool:
        """Whether the median is within the target (always, without one)."""
        return self.target_s is None or self.median_s <= self.target_s


@dataclass
class ColdRow:
    """A workload run `RUNS` times, each on a new saver and a new graph."""

    workload: str
    wall_s: float
    bound_s: float
    build_ms: float
    """Opening the saver and building the graph, part of `wall_s`."""
    statuses: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Wall-clock over the critical path."""
        return self.wall_s / self.bound_s if self.bound_s else float("inf")

    @property
    def passed(self) -> bool:
        """Every run completed, within `WALL_FACTOR` of the critical path."""
        return all(s == "completed" for s in self.statuses) and self.ratio <= WALL_FACTOR


@dataclass
class FrameworkRow:
    """Framework time of a zero-latency 4-step chain, in milliseconds."""

    case: str
    median_ms: float
    target_ms: float

    @property
    def passed(self) -> bool:
        """Whether the median is within the target."""
        return self.median_ms <= self.target_ms


@dataclass
class ProcessRow:
    """`planexec run` in a new process, `RUNS` times."""

    workload: str
    wall_s: float
    bound_s: float
    langgraph_import_s: float
    """`python -c "import langgraph.graph"` over a bare start, on this machine."""
    statuses: list[str] = field(default_factory=list)

    @property
    def over_bound_s(self) -> float:
        """Seconds over the critical path: Python's start, imports and framework."""
        return self.wall_s - self.bound_s

    @property
    def ratio(self) -> float:
        """Wall-clock over the critical path."""
        return self.wall_s / self.bound_s if self.bound_s else float("inf")

    @property
    def passed(self) -> bool:
        """Every run completed, within `WALL_FACTOR` of the critical path (the target
        every workload has, warm or cold)."""
        return all(s == "completed" for s in self.statuses) and self.ratio <= WALL_FACTOR


@dataclass
class ColdReport:
    """Everything this module measures."""

    starts: list[StartRow]
    runs: list[ColdRow]
    framework: list[FrameworkRow]
    processes: list[ProcessRow]
    listings: list[ListingRow] = field(default_factory=list)

    def verdicts(self) -> list[tuple[str, bool]]:
        """Each row's name and whether it met its target, tables in order."""
        return [
            *((f"start: {s.command}", s.passed) for s in self.starts),
            *((f"new graph per run: {r.workload}", r.passed) for r in self.runs),
            *((f"framework: {f.case}", f.passed) for f in self.framework),
            *((f"new process per run: {p.workload}", p.passed) for p in self.processes),
            *(
                (f"listing: {row.command} among {row.threads:,} threads", row.passed)
                for row in self.listings
                if row.target_s is not None
            ),
        ]

    def summary(self) -> str:
        """One line: how many rows met their targets, and which did not."""
        verdicts = self.verdicts()
        missed = [name for name, passed in verdicts if not passed]
        line = f"cold summary: {len(verdicts) - len(missed)}/{len(verdicts)} rows pass"
        return line + (f"; missed: {'; '.join(missed)}" if missed else "")

    def as_json(self) -> dict[str, Any]:
        """The report as JSON data, with each row's verdict."""

        def rows(items: Sequence[Any]) -> list[dict[str, Any]]:
            out = []
            for item in items:
                data = asdict(item)
                for name in ("passed", "ratio", "over_bound_s"):
                    if hasattr(item, name):
                        data[name] = getattr(item, name)
                out.append(data)
            return out

        return {
            "starts": rows(self.starts),
            "runs": rows(self.runs),
            "framework": rows(self.framework),
            "processes": rows(self.processes),
            "listings": rows(self.listings),
            "summary": self.summary(),
        }


class Waits(BaseCallbackHandler):
    """When model calls and tool calls were running: what framework time leaves out.

    A model call counts from LangChain's chat-model start to its end, so the model
    client's own work (the SDK, HTTP) is a wait, as it is for a user's program; a tool
    call from its start to its end. Overlapping calls count once.
    """

    run_inline = True  # timestamps when things happen, not when a worker thread gets to them

    def __init__(self) -> None:
        self.started: dict[UUID, float] = {}
        self.intervals: list[tuple[float, float]] = []

    def reset(self) -> None:
        """Forget what was recorded."""
        self.started.clear()
        self.intervals.clear()

    def _start(self, run_id: UUID) -> None:
        self.started[run_id] = time.perf_counter()

    def _end(self, run_id: UUID) -> None:
        began = self.started.pop(run_id, None)
        if began is not None:
            self.intervals.append((began, time.perf_counter()))

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **_: Any
    ) -> None:
        self._start(run_id)

    def on_llm_end(self, response: Any, *, run_id: UUID, **_: Any) -> None:
        self._end(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **_: Any) -> None:
        self._end(run_id)

    def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID, **_: Any) -> None:
        self._start(run_id)

    def on_tool_end(self, output: Any, *, run_id: UUID, **_: Any) -> None:
        self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **_: Any) -> None:
        self._end(run_id)

    def waited_s(self) -> float:
        """Seconds during which at least one model or tool call was running."""
        total, end = 0.0, float("-inf")
        for began, finished in sorted(self.intervals):
            if finished <= end:
                continue
            total += finished - max(began, end)
            end = finished
        return total


def _median_start(argv: Sequence[str], env: dict[str, str], starts: int) -> float:
    return _median_start_and_cpu(argv, env, starts)[0]


def _median_start_and_cpu(
    argv: Sequence[str], env: dict[str, str], starts: int
) -> tuple[float, float]:
    """The median wall-clock of `starts` new processes running `argv`, and of their CPU
    time (user and system), which a busy machine inflates far less than the wall-clock."""
    times, cpus = [], []
    for _ in range(starts):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=600, check=False)
        times.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return statistics.median(times), statistics.median(cpus)


async def _make_threads(path: Path, count: int) -> str:
    """A checkpoint file with `count` finished threads; the id of the newest."""
    thread = ""
    async with open_checkpointer(path) as saver:
        for n in range(count):
            steps = [
                {
                    "id": "s1",
                    "description": "12 * 4",
                    "tool": "calculator",
                    "args": {"expression": "12 * 4"},
                    "depends_on": [],
                },
            ]
            graph = build_graph(
                checkpointer=saver,
                planner=ScriptedChatModel([plan_reply(steps)]),
                executor=ScriptedChatModel([]),
                replanner=ScriptedChatModel([replan_reply("finish", answer="48")]),
            )
            thread = f"thread-{n:05d}"
            context = Context(review="never")
            await graph.ainvoke(
                {"goal": "What is 12 * 4?"}, run_config(thread, context), context=context
            )
    return thread


def measure_starts(folder: Path, starts: int = STARTS) -> list[StartRow]:
    """Each command's start-up, in new processes, over a bare Python start."""
    python = sys.executable
    program = str(Path(python).with_name("planexec"))
    database = folder / "checkpoints.sqlite"
    newest = asyncio.run(_make_threads(database, THREADS))
    env = {**os.environ, "PLANEXEC_HOME": str(folder), "LANGSMITH_TRACING": "false"}
    bare = _median_start([python, "-c", "pass"], env, starts)
    commands: list[tuple[str, list[str], float]] = [
        ("import planexec", [python, "-c", "import planexec"], IMPORT_S),
        ("planexec --help", [program, "--help"], HELP_S),
        *(
            (f"planexec completion {shell}", [program, "completion", shell], HELP_S)
            for shell in ("bash", "zsh", "fish")
        ),
        ("TAB: planexec __complete threads", [program, "__complete", "threads"], HELP_S),
        ("planexec threads", [program, "threads"], LISTING_S),
        ("planexec show THREAD", [program, "show", newest], LISTING_S),
    ]
    rows = []
    for name, argv, target in commands:
        median, cpu = _median_start_and_cpu(argv, env, starts)
        rows.append(StartRow(name, median, median - bare, target, cpu))
    return rows


def copy_threads(path: Path, count: int) -> None:
    """Make the one thread in the SQLite file at `path` into `count` threads.

    Each copy has the whole history of the first (checkpoints and writes), under its
    own thread id, and checkpoint ids that sort after the original's, copy by copy, so
    that the newest-first order is the copies' order. Far faster than `count` runs.
    """
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for table in ("checkpoints", "writes"):
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            copied = {
                "thread_id": "printf('thread-%05d', n)",
                "checkpoint_id": "checkpoint_id || printf('-%05d', n)",
                "parent_checkpoint_id": "parent_checkpoint_id || printf('-%05d', n)",
            }
            values = ", ".join(copied.get(c, c) for c in columns)
            conn.execute(
                f"WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers "
                f"WHERE n < ?) INSERT INTO {table} ({', '.join(columns)}) "
                f"SELECT {values} FROM numbers, {table} WHERE thread_id = 'thread-00000'",
                (count - 1,),
            )
        conn.commit()


def measure_listings(
    folder: Path, starts: int = STARTS, threads: int = MANY_THREADS
) -> list[ListingRow]:
    """`planexec threads` on a file of `threads` threads: a page, `--all --json`, `--all`."""
    program = str(Path(sys.executable).with_name("planexec"))
    database = folder / "checkpoints.sqlite"
    asyncio.run(_make_threads(database, 1))
    copy_threads(database, threads)
    env = {**os.environ, "PLANEXEC_HOME": str(folder), "LANGSMITH_TRACING": "false"}
    commands: list[tuple[str, list[str], float | None]] = [
        ("planexec threads", [program, "threads"], PAGE_S),
        ("planexec threads --all --json", [program, "threads", "--all", "--json"], None),
        ("planexec threads --all", [program, "threads", "--all"], None),
    ]
    rows = []
    for name, argv, target in commands:
        # The whole table takes long to draw: one start for it is enough to see how long.
        runs = 1 if argv[-1] == "--all" else starts
        median, cpu = _median_start_and_cpu(argv, env, runs)
        rows.append(ListingRow(name, threads, median, target, cpu))
    return rows


def latency_workloads() -> list[Workload]:
    """The issue's four: a chain, a fan-out with sum and write, a wide fan-out, a failure."""
    return [chain4(), fanout(4), fanout(8), fanout(4, flaky=True)]


async def _cold_runs(
    workload: Workload, server: ModelServer, directory: Path, runs: int
) -> tuple[list[float], list[RunStats], list[float], list[float]]:
    """`runs` runs of `workload`, each on a newly opened saver and a newly built graph.

    The saver opens the same file each time, as each `planexec` command opens the
    checkpoint file; the tools are made once, as a program defines its tools once. A
    first run, untimed, pays for the process's first imports and connections. Returns
    each run's wall-clock (open, build and run, up to its last event), its stats, its
    open + build time in ms, and its framework time in ms (wall-clock less the model
    and tool waits).
    """
    await asyncio.to_thread(directory.mkdir, parents=True)
    waits = Waits()
    async with open_saver("sqlite", directory) as saver:
        bench = Bench(workload, "parallel", "sqlite", saver, server, directory)
        bench.callbacks = [waits]
        await bench.run()
    walls, stats, builds, framework = [], [], [], []
    for _ in range(runs):
        waits.reset()
        began = time.perf_counter()
        async with open_saver("sqlite", directory) as saver:
            bench.rebuild(saver)
            built = time.perf_counter() - began
            run = await bench.run()  # its wall_s leaves out reading the state afterwards
        stats.append(run)
        walls.append(built + run.wall_s)
        builds.append(built * 1000)
        framework.append((built + run.wall_s - waits.waited_s()) * 1000)
    return walls, stats, builds, framework


async def measure_cold_runs(server: ModelServer, folder: Path, runs: int = RUNS) -> list[ColdRow]:
    """Each workload on a new saver and a new graph per run."""
    rows = []
    for workload in latency_workloads():
        walls, stats, builds, _ = await _cold_runs(workload, server, folder / workload.name, runs)
        rows.append(
            ColdRow(
                workload.name,
                statistics.median(walls),
                statistics.median(s.bound_s for s in stats),
                statistics.median(builds),
                [str(s.status) for s in stats],
            )
        )
    return rows


async def measure_framework(
    server: ModelServer, folder: Path, runs: int = RUNS
) -> list[FrameworkRow]:
    """A zero-latency 4-step chain: a new graph's first run, and a warm graph's run.

    Framework time is the wall-clock less the time model and tool calls were running.
    """
    workload = chain4().zero_latency()
    _, _, _, cold = await _cold_runs(workload, server, folder / "cold", runs)
    directory = folder / "warm"
    await asyncio.to_thread(directory.mkdir, parents=True)
    waits = Waits()
    warm = []
    async with open_saver("sqlite", directory) as saver:
        bench = Bench(workload, "parallel", "sqlite", saver, server, directory)
        bench.callbacks = [waits]
        await bench.run()
        for _ in range(runs):
            waits.reset()
            run = await bench.run()
            warm.append((run.wall_s - waits.waited_s()) * 1000)
    return [
        FrameworkRow(
            "new saver and graph, first run (open + build + run)",
            statistics.median(cold),
            FIRST_RUN_MS,
        ),
        FrameworkRow("warm graph, a run", statistics.median(warm), WARM_RUN_MS),
    ]


def measure_processes(server: ModelServer, folder: Path, runs: int = RUNS) -> list[ProcessRow]:
    """`planexec run ... --yes --json` in a new process per run."""
    workload = replace(chain(4), model_latency=MODEL_LATENCY_S, per_token=PER_TOKEN_S)
    python = sys.executable
    program = str(Path(python).with_name("planexec"))
    env = {
        **os.environ,
        "OPENAI_BASE_URL": server.url,
        "OPENAI_API_KEY": "bench",
        "PLANEXEC_HOME": str(folder),
        "LANGSMITH_TRACING": "false",
    }
    bare = _median_start([python, "-c", "pass"], env, STARTS)
    floor = _median_start([python, "-c", "import langgraph.graph"], env, STARTS) - bare
    walls, bounds, statuses = [], [], []
    for n in range(runs):
        server.configure(
            workload.steps, "Counted to 5.", workload.model_latency, workload.per_token
        )
        before = len(server.calls)
        argv = [
            program,
            "run",
            workload.goal,
            "--yes",
            "--json",
            "--thread",
            f"process-{n}",
            "--planner-model",
            "openai:gpt-4.1",
            "--executor-model",
            "openai:gpt-4.1-mini",
        ]
        began = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=300, check=False)
        walls.append(time.perf_counter() - began)
        calls = server.calls[before:]
        planning = sum(c.latency_s for c in calls if c.role == "planner")
        finishing = sum(c.latency_s for c in calls if c.role == "replanner")
        bounds.append(planning + finishing)
        try:
            statuses.append(str(json.loads(done.stdout)["status"]))
        except (ValueError, KeyError, TypeError):
            statuses.append(f"exit {done.returncode}: {done.stderr.decode()[-200:]}")
    return [
        ProcessRow(
            f"{workload.name} via planexec run",
            statistics.median(walls),
            statistics.median(bounds),
            floor,
            statuses,
        )
    ]


def measure_all(*, quick: bool = False) -> ColdReport:
    """Every cold measurement; `quick` makes fewer runs."""
    runs = 2 if quick else RUNS
    starts = 3 if quick else STARTS
    with tempfile.TemporaryDirectory(prefix="planexec-cold-") as tmp:
        root = Path(tmp)
        (root / "starts").mkdir()
        start_rows = measure_starts(root / "starts", starts)
        (root / "listings").mkdir()
        listing_rows = measure_listings(root / "listings", starts)
        server = ModelServer().start()
        saved = {k: os.environ.get(k) for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
        os.environ["OPENAI_BASE_URL"] = server.url
        os.environ["OPENAI_API_KEY"] = "bench"
        try:
            runs_rows = asyncio.run(measure_cold_runs(server, root / "runs", runs))
            framework = asyncio.run(measure_framework(server, root / "framework", runs))
            processes = measure_processes(server, root / "processes", runs)
        finally:
            server.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return ColdReport(start_rows, runs_rows, framework, processes, listing_rows)


def _verdict(passed: bool) -> str:
    return "pass" if passed else "**miss**"


def markdown(report: ColdReport) -> str:
    """The report as Markdown tables."""
    lines = [
        "### Cold start",
        "",
        "Start-up: a new process per command, median of the starts, over a bare "
        "`python -c pass`; CPU is the process's own user and system time.",
        "",
        "| command | median (s) | over bare Python (s) | CPU (s) | target (s) | |",
        "|---|---|---|---|---|---|",
    ]
    for s in report.starts:
        lines.append(
            f"| `{s.command}` | {s.median_s:.3f} | {s.over_python_s:.3f} | {s.cpu_s:.3f} | "
            f"≤ {s.target_s:g} | {_verdict(s.passed)} |"
        )
    if report.listings:
        lines += [
            "",
            f"Listings: `planexec threads` among {report.listings[0].threads:,} threads "
            "(a new process per start, median).",
            "",
            "| command | median (s) | CPU (s) | target (s) | |",
            "|---|---|---|---|---|",
        ]
        for row in report.listings:
            target = f"≤ {row.target_s:g}" if row.target_s is not None else "—"
            verdict = _verdict(row.passed) if row.target_s is not None else "reported"
            lines.append(
                f"| `{row.command}` | {row.median_s:.3f} | {row.cpu_s:.3f} | {target} | {verdict} |"
            )
    lines += [
        "",
        "New saver and new graph per run (open and build timed with the run):",
        "",
        "| workload | wall (s) | critical path (s) | wall/path | open + build (ms) | |",
        "|---|---|---|---|---|---|",
    ]
    for r in report.runs:
        lines.append(
            f"| {r.workload} | {r.wall_s:.3f} | {r.bound_s:.3f} | {r.ratio:.3f} | "
            f"{r.build_ms:.1f} | {_verdict(r.passed)} (≤ {WALL_FACTOR}) |"
        )
    lines += [
        "",
        "Framework time: wall-clock less the time model and tool calls were running "
        "(the model client's own work counts as the model's).",
        "",
        "| zero-latency 4-step chain | framework (ms) | target (ms) | |",
        "|---|---|---|---|",
    ]
    for f in report.framework:
        lines.append(f"| {f.case} | {f.median_ms:.1f} | ≤ {f.target_ms:g} | {_verdict(f.passed)} |")
    lines += [
        "",
        "New process per run (`planexec run GOAL --yes --json`):",
        "",
        "| workload | wall (s) | critical path (s) | over the path (s) | wall/path "
        "| `import langgraph.graph` alone (s) | statuses | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in report.processes:
        lines.append(
            f"| {p.workload} | {p.wall_s:.3f} | {p.bound_s:.3f} | {p.over_bound_s:.3f} | "
            f"{p.ratio:.2f} | {p.langgraph_import_s:.3f} | {', '.join(sorted(set(p.statuses)))} "
            f"| {_verdict(p.passed)} (≤ {WALL_FACTOR}) |"
        )
    lines += ["", report.summary()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.cold [--quick]`: print the report; always 0."""
    args = sys.argv[1:] if argv is None else argv
    report = measure_all(quick="--quick" in args)
    print(markdown(report))
    if "--json" in args:
        print(json.dumps(report.as_json(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
