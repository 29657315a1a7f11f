"""Concurrent runs: many threads at once in one process, on SQLite and on PostgreSQL.

`python -m bench.concurrency [--runs 100] [--latency 0.02] [--postgres URL]` starts the
fake OpenAI server (`tests/fake_openai.py`) with a fixed latency per request, in a
process of its own as a provider's server would be (`RemoteServer`), then for each
checkpointer starts `--runs` runs at once (`asyncio.gather`), each on its own thread,
through the real graph, `ChatOpenAI` clients and calculator tool. Every run plans three
steps for its own number (two calculator steps and one the executor model answers in
text) and finishes with an answer built from its own results, so a run that saw
another's data would end with the wrong answer; such runs are counted as wrong, not as
completed.

It reports throughput (runs finished per second of wall-clock), the run latency
percentiles, and the CPU each run took in this process and in its event loop's thread
alone: every node, LangGraph's loop and the model client run on that one thread, so
one process can finish at most 1 / (loop CPU per run) runs a second, whatever the
latencies. PostgreSQL is measured in this process, then with the runs split over 2 and
over 4 processes started together (`measure_processes`; a row's wall-clock is its
slowest process's). PostgreSQL is the server at `--postgres`, else a throwaway one started
like the tests' (`tests/pg_server.py`); without either it is reported as skipped.
The exit code is 0 whatever the numbers: this is a report.

From other code: `await main(argv)` prints the report and returns the exit code;
`await measure_all(...)` returns the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# `tests` is not a package: its helpers are imported as top-level modules, as the
# tests themselves import them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from langchain_core.language_models import BaseChatModel

from fake_openai import FakeOpenAI, prompt_of, tool_names
from helpers import step
from pg_server import PostgresUnavailable, postgres_server
from planexec import Context, build_graph, run_config
from planexec.checkpoints import open_checkpointer
from planexec.models import chat_model
from planexec.scripted import plan_reply, replan_reply

RUNS = 100
TARGET_RUNS_PER_S = 45.0
"""Target for SQLite (issue 20): completed runs per second in one process on 2 cores."""
LATENCY_S = 0.02
"""Seconds the fake server waits before each reply: a fast, nearby model server."""

_GOAL = re.compile(r"\[run (\d+)\]")
_RESULT = re.compile(r'<result step="(s\d)"[^>]*>\n(.*?)\n</result>', re.S)


@dataclass
class Row:
    """One checkpointer's figures."""

    checkpointer: str
    runs: int
    completed: int = 0
    """Runs that ended "completed" with the answer their own results give."""
    wrong: int = 0
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    model_requests: int = 0
    cpu_s: float = 0.0
    """CPU time of this process during the runs, every thread's (the model server runs
    in a process of its own, so none of it is the server's)."""
    loop_cpu_s: float = 0.0
    """CPU time of the event loop's thread alone: every node, LangGraph's loop and the
    model client run there, so its CPU per run is what bounds one process's runs/s."""
    skipped: str | None = None

    @property
    def throughput(self) -> float:
        """Completed runs per second of wall-clock."""
        return self.completed / self.wall_s if self.wall_s else 0.0

    @property
    def loop_ms_per_run(self) -> float:
        """The event loop's CPU milliseconds per completed run."""
        return self.loop_cpu_s / self.completed * 1000 if self.completed else 0.0

    @property
    def ceiling(self) -> float:
        """Runs/s if the event loop's thread had a core to itself and never waited."""
        return 1000 / self.loop_ms_per_run if self.loop_ms_per_run else 0.0

    def percentile(self, p: float) -> float:
        """The `p`th percentile run latency (nearest rank)."""
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def as_json(self) -> dict[str, Any]:
        """The figures as JSON data, latencies summarised."""
        data = asdict(self)
        del data["latencies_s"]
        data.update(
            throughput_runs_per_s=round(self.throughput, 2),
            p50_s=round(self.percentile(50), 4),
            p95_s=round(self.percentile(95), 4),
            max_s=round(self.percentile(100), 4),
            loop_ms_per_run=round(self.loop_ms_per_run, 2),
            ceiling_runs_per_s=round(self.ceiling, 1),
        )
        return data


def respond(body: dict[str, Any]) -> dict[str, Any] | None:
    """The model's reply to a request, computed from what the request says."""
    prompt = prompt_of(body)
    found = _GOAL.search(prompt)
    if found is None:
        return None
    n = int(found.group(1))
    tools = tool_names(body)
    results = dict(_RESULT.findall(prompt))
    if "Plan" in tools:
        return plan_reply(
            [
                step("s1", "calculator", {"expression": f"{n} * 7"}),
                step("s2", "calculator", {"expression": "{{s1}} + 1"}, ["s1"]),
                step("s3", None, None, ["s2"]),
            ]
        )
    if "Replan" in tools:
        answer = f"run {n}: {results.get('s2')} ({results.get('s3')})"
        return replan_reply("finish", answer=answer, reason="done")
    return {"content": f"the result is {results.get('s2')}"}


def expected_answer(n: int) -> str:
    """What run `n` must answer."""
    return f"run {n}: {n * 7 + 1} (the result is {n * 7 + 1})"


async def measure(
    name: str,
    location: str | Path,
    server: FakeOpenAI | RemoteServer | _ServerAt,
    runs: int,
    go: Callable[[], Awaitable[None]] | None = None,
) -> Row:
    """Start `runs` runs at once on the checkpointer at `location`; wait for all.

    `go`, when given, is awaited once the graph is built, before the runs start.
    """
    context = Context(review="never", model_timeout=120.0, model_max_retries=0)

    def models(spec: str, ctx: Context) -> BaseChatModel:
        return chat_model(spec, timeout=120.0, max_retries=0, api_key="bench", base_url=server.url)

    row = Row(name, runs)
    before = len(server.requests)
    async with open_checkpointer(location) as saver:
        graph = build_graph(checkpointer=saver, model_factory=models)
        prefix = f"{name}-{time.monotonic_ns()}"

        async def one(n: int) -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            config = run_config(f"{prefix}-{n}", context)
            goal = {"goal": f"Compute [run {n}] times 7, plus 1, and say it"}
            out: dict[str, Any] = await graph.ainvoke(goal, config, context=context)
            return time.perf_counter() - started, out

        if go is not None:
            await go()
        started = time.perf_counter()
        cpu, loop_cpu = time.process_time(), time.thread_time()
        outcomes = await asyncio.gather(*(one(n) for n in range(runs)), return_exceptions=True)
        row.wall_s = time.perf_counter() - started
        row.cpu_s = time.process_time() - cpu
        row.loop_cpu_s = time.thread_time() - loop_cpu
    for n, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            row.errors.append(f"run {n}: {type(outcome).__name__}: {outcome}")
            continue
        latency, out = outcome
        if out.get("status") == "completed" and out.get("answer") == expected_answer(n):
            row.completed += 1
            row.latencies_s.append(latency)
        else:
            row.wrong += 1
    row.model_requests = len(server.requests) - before
    return row


class RemoteServer:
    """The fake model server in a process of its own: what `measure` needs of a server.

    A provider's server does not share the client's interpreter. In this process its
    threads would take the GIL from the event loop for every request they parse and
    answer, and on 2 cores that, not planexec, would bound the runs per second.
    """

    def __init__(self, latency: float) -> None:
        self._latency = latency
        self._child: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> RemoteServer:
        code = "import sys; from bench.concurrency import serve; serve(float(sys.argv[1]))"
        self._child = subprocess.Popen(
            [sys.executable, "-c", code, str(self._latency)],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self._ask("")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._child is not None:
            self._child.communicate("stop\n", timeout=30)
        self._child = None

    def _ask(self, line: str) -> str:
        if self._child is None or self._child.stdin is None or self._child.stdout is None:
            raise RuntimeError("the server is not running")
        if line:
            self._child.stdin.write(line + "\n")
            self._child.stdin.flush()
        return self._child.stdout.readline().strip()

    @property
    def requests(self) -> list[None]:
        """As many entries as requests the server has answered (their bodies stay there)."""
        return [None] * int(self._ask("count"))


def serve(latency: float) -> None:
    """The server's process: print its URL, answer "count" lines, end at "stop" or EOF."""
    with FakeOpenAI(responder=respond, latency=latency) as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            if line.strip() != "count":
                break
            print(len(server.requests), flush=True)


@dataclass
class _ServerAt:
    """A model server known by its URL only (in a child process of `measure_processes`)."""

    url: str
    requests: list[None] = field(default_factory=list)


def child(url: str, location: str, runs: int, name: str) -> None:
    """A process of `measure_processes`: a warm-up run, "ready", then its runs at "go".

    Prints its row as one line of JSON.
    """

    async def main() -> Row:
        server = _ServerAt(url)
        await measure(f"{name}-warmup", location, server, 1)

        async def go() -> None:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)

        return await measure(name, location, server, runs, go=go)

    row = asyncio.run(main())
    print(json.dumps(asdict(row)), flush=True)


def measure_processes(name: str, location: str, server: RemoteServer, runs: int, n: int) -> Row:
    """`runs` runs split over `n` processes on the checkpointer at `location`, started together.

    The row's wall-clock is the slowest process's; its CPU figures are every process's.
    """
    code = (
        "import sys; from bench.concurrency import child; "
        "child(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, server.url, location, str(runs // n), f"{name}-{i}"],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    rows = []
    for process in children:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("a benchmark process did not start")
    before = len(server.requests)  # after the processes' warm-up runs
    for process in children:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in children:
        out, _ = process.communicate(timeout=600)
        rows.append(Row(**json.loads(out.strip().splitlines()[-1])))
    total = Row(name, sum(r.runs for r in rows))
    for r in rows:
        total.completed += r.completed
        total.wrong += r.wrong
        total.errors += r.errors
        total.latencies_s += r.latencies_s
        total.cpu_s += r.cpu_s
        total.loop_cpu_s += r.loop_cpu_s
    total.wall_s = max(r.wall_s for r in rows)
    total.model_requests = len(server.requests) - before
    return total


@contextmanager
def _postgres(url: str | None) -> Iterator[str | None]:
    """`url`, else a throwaway server's URL, else None (no server can be started)."""
    if url:
        yield url
        return
    try:
        with postgres_server() as server:
            yield server.create_database("bench_concurrency")
    except PostgresUnavailable as exc:
        print(f"bench: PostgreSQL skipped: {exc}", file=sys.stderr)
        yield None


async def measure_all(
    runs: int = RUNS,
    latency: float = LATENCY_S,
    postgres: str | None = None,
    sqlite_only: bool = False,
) -> list[Row]:
    """Measure SQLite, then PostgreSQL (unless `sqlite_only`)."""
    rows = []
    with RemoteServer(latency) as server:
        with tempfile.TemporaryDirectory(prefix="planexec-bench-") as tmp:
            # Warm up imports, clients and connections: one untimed run.
            await measure("warmup", Path(tmp) / "warmup.sqlite", server, 1)
            rows.append(await measure("sqlite", Path(tmp) / "checkpoints.sqlite", server, runs))
        if not sqlite_only:
            with _postgres(postgres) as url:
                if url is None:
                    rows.append(Row("postgres", runs, skipped="no PostgreSQL server"))
                else:
                    rows.append(await measure("postgres", url, server, runs))
                    for n in (2, 4):
                        rows.append(
                            await asyncio.to_thread(
                                measure_processes, f"postgres, {n} processes", url, server, runs, n
                            )
                        )
    return rows


def markdown(rows: list[Row], runs: int, latency: float) -> str:
    """The report as a Markdown table."""
    lines = [
        f"### {runs} concurrent runs, in one process unless the row says otherwise "
        f"(model latency {latency * 1000:g} ms)",
        "",
        "| checkpointer | completed | wrong | errors | wall (s) | throughput (runs/s) "
        "| target (runs/s) | p50 (s) | p95 (s) | model requests | process CPU ms/run "
        "| event-loop CPU ms/run | 1 / loop CPU (runs/s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.checkpointer} | skipped: {row.skipped} |||||||||||| ")
            continue
        target = (
            ""
            if row.checkpointer != "sqlite"
            else f"≥ {TARGET_RUNS_PER_S:g}: "
            + ("pass" if row.throughput >= TARGET_RUNS_PER_S else "miss")
        )
        cpu_ms = row.cpu_s / row.completed * 1000 if row.completed else 0.0
        lines.append(
            f"| {row.checkpointer} | {row.completed}/{row.runs} | {row.wrong} "
            f"| {len(row.errors)} | {row.wall_s:.2f} | {row.throughput:.1f} | {target} "
            f"| {row.percentile(50):.3f} | {row.percentile(95):.3f} | {row.model_requests} "
            f"| {cpu_ms:.1f} | {row.loop_ms_per_run:.1f} | {row.ceiling:.1f} |"
        )
    errors = [error for row in rows for error in row.errors[:3]]
    if errors:
        lines += ["", "First errors:", *(f"- {error}" for error in errors)]
    return "\n".join(lines) + "\n"


async def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report (and JSON with `--json`); always 0."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.concurrency",
        description="Concurrent runs on SQLite and PostgreSQL against a local fake model.",
    )
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs at once (default {RUNS})")
    parser.add_argument(
        "--latency", type=float, default=LATENCY_S, help="seconds per model request"
    )
    parser.add_argument("--postgres", metavar="URL", help="an existing database to use")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON as well")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # A benchmark run sends nothing anywhere but to its own local servers.
    os.environ["LANGSMITH_TRACING"] = "false"
    os.environ["LANGCHAIN_TRACING_V2"] = "false"
    rows = await measure_all(args.runs, args.latency, args.postgres, args.sqlite_only)
    print(markdown(rows, args.runs, args.latency))
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=1))
    return 0


def run(argv: list[str] | None = None) -> int:
    """`main` for synchronous callers."""
    return asyncio.run(main(argv))


if __name__ == "__main__":
    sys.exit(run())
