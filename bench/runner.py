"""Running one workload through the real graph and measuring what happened.

The graph is `planexec.build_graph` with the default model factory, so the models are
real `ChatOpenAI` clients that find the fake server through `OPENAI_BASE_URL`. Runs
use `durability="sync"`: every checkpoint is written before the next step starts.
A run uses the async API (`astream`, planexec's `AsyncSqliteSaver`) or, for the
`invoke` rows, the sync one (`stream` from a worker thread, a `SqliteSaver` with the
same serializer), which planexec drives on its own event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Checkpointer

from bench.server import Call, ModelServer
from bench.tools import Ledger, bench_tools
from bench.workloads import RETRY_INTERVAL_S, Workload
from planexec import Context, build_graph, run_config
from planexec.checkpoints import open_checkpointer
from planexec.events import is_event
from planexec.graph import PlanexecGraph
from planexec.serde import checkpoint_serde
from planexec.state import ROLES

Config = Literal["parallel", "sequential"]
SaverKind = Literal["sqlite", "memory", "sqlite-sync"]
Api = Literal["ainvoke", "invoke"]
NODES = frozenset({"planner", "review", "executor", "approval", "replanner"})
"""The graph's nodes; other names in the "updates" stream are the executor's step tasks."""
MAX_CONCURRENCY = 8
"""The parallel configuration's `max_concurrency`: the widest fan-out's width."""


@dataclass
class RunStats:
    """What one run did and how long it took."""

    workload: str
    config: Config
    checkpointer: SaverKind
    thread: str
    status: str | None
    steps: int
    wall_s: float
    executor_s: float
    """Time inside executor passes: from the update before each pass to the pass's own."""
    calls: dict[str, int]
    """Model calls by role, from the final state's usage."""
    input_tokens: int
    output_tokens: int
    cost_usd: float
    server_calls: dict[str, int]
    """Model requests by role, as the server saw them."""
    server_tokens: tuple[int, int]
    """Prompt and completion tokens of those requests, as the server counted them."""
    executor_prompt_tokens: int
    revisions: int
    bound_s: float
    duplicates: int
    """Tool effects beyond one per step."""
    missing: list[str]
    """Steps reported done with no effect recorded."""
    retried: dict[str, int]
    """Steps that took more than one attempt: attempts by step."""
    wrong: list[str]
    """Steps whose output, and workspace files whose text, are not what a correct run gives."""
    checkpoint_bytes: int | None = None
    checkpoints: int | None = None
    writes: int | None = None
    events: dict[str, int] = field(default_factory=dict)


def context_for(workload: Workload, config: Config, workspace: Path) -> Context:
    """The run settings: review off; sequential = one step at a time, replan after each."""
    settings: dict[str, Any] = {
        "review": "never",
        "max_concurrency": MAX_CONCURRENCY,
        "max_plan_steps": max(20, len(workload.steps)),
        "retry_initial_interval": RETRY_INTERVAL_S,
        "model_timeout": 60.0,
        "model_max_retries": 0,
        "workspace": str(workspace),
    }
    if config == "sequential":
        settings.update(max_concurrency=1, max_tool_concurrency=1, replan_policy="after_each_step")
    return Context(**settings)


def database(directory: Path) -> Path:
    """The SQLite file of a benchmark directory."""
    return directory / "checkpoints.sqlite"


@asynccontextmanager
async def open_saver(kind: SaverKind, directory: Path) -> AsyncIterator[Checkpointer]:
    """planexec's SQLite saver on the directory's database file, or an `InMemorySaver`.

    "sqlite-sync" is LangGraph's sync `SqliteSaver` on the file, for the sync API.
    """
    if kind == "memory":
        yield InMemorySaver()
        return
    if kind == "sqlite-sync":
        with closing(sqlite3.connect(database(directory), check_same_thread=False)) as conn:
            yield SqliteSaver(conn, serde=checkpoint_serde(None))
        return
    async with open_checkpointer(database(directory)) as saver:
        yield saver


class Bench:
    """One compiled graph for a workload and configuration, run as many times as asked."""

    def __init__(
        self,
        workload: Workload,
        config: Config,
        saver_kind: SaverKind,
        saver: Checkpointer,
        server: ModelServer,
        directory: Path,
        api: Api = "ainvoke",
    ) -> None:
        self.api = api
        self.workload = workload
        self.config = config
        self.saver_kind = saver_kind
        self.server = server
        self.db = database(directory)
        self.workspace = directory / "workspace"
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(dict(workload.tool_latency), workload.flaky)
        self.context = context_for(workload, config, self.workspace)
        self.tools = bench_tools(self.ledger, self.workspace)
        self.graph: PlanexecGraph = build_graph(tools=self.tools, checkpointer=saver)
        self.runs = 0
        self.callbacks: list[BaseCallbackHandler] = []
        """Handlers given to each run's config (the cold bench times model and tool waits)."""

    def rebuild(self, saver: Checkpointer) -> None:
        """A new graph on `saver`, with the same tools: what a new command line run builds."""
        self.graph = build_graph(tools=self.tools, checkpointer=saver)

    async def run(self) -> RunStats:
        """One run on a new thread."""
        workload = self.workload
        self.server.configure(
            workload.steps,
            f"All {len(workload.steps)} steps of {workload.name} are done.",
            workload.model_latency,
            workload.per_token,
        )
        for name in workload.files:
            (self.workspace / name).unlink(missing_ok=True)
        self.runs += 1
        thread = f"{workload.name}-{self.config}-{self.saver_kind}-{self.runs}"
        config = run_config(thread, self.context)
        if self.callbacks:
            config["callbacks"] = list(self.callbacks)
        first = len(self.server.calls)
        updates: list[tuple[float, str]] = []
        events: Counter[str] = Counter()
        options: dict[str, Any] = {
            "context": self.context,
            "stream_mode": ["updates", "custom"],
            "durability": "sync",
        }

        def record(mode: str, chunk: Any) -> None:
            now = time.perf_counter()
            if mode == "updates":
                updates.extend((now, node) for node in chunk if node in NODES)
            elif isinstance(chunk, dict) and is_event(chunk):
                events[str(chunk["event"])] += 1

        def run_sync() -> None:
            for mode, chunk in self.graph.stream({"goal": workload.goal}, config, **options):
                record(mode, chunk)

        started = time.perf_counter()
        updates.append((started, "__start__"))
        if self.api == "invoke":
            await asyncio.to_thread(run_sync)
        else:
            async for mode, chunk in self.graph.astream({"goal": workload.goal}, config, **options):
                record(mode, chunk)
        wall = time.perf_counter() - started
        if self.api == "invoke":
            state = dict(self.graph.get_state(config).values)
        else:
            state = dict((await self.graph.aget_state(config)).values)
        calls = self.server.calls[first:]
        stats = self._stats(thread, state, calls, wall, updates)
        stats.events = dict(events)
        if self.saver_kind in ("sqlite", "sqlite-sync"):
            stats.checkpoints, stats.writes, stats.checkpoint_bytes = checkpoint_size(
                self.db, thread
            )
        return stats

    def _stats(
        self,
        thread: str,
        state: dict[str, Any],
        calls: list[Call],
        wall: float,
        updates: list[tuple[float, str]],
    ) -> RunStats:
        usage = state.get("usage") or {}
        results = state.get("results") or {}
        effects = self.ledger.effects_of(thread)
        attempts = self.ledger.attempts_of(thread)
        done = [i for i, r in results.items() if r["status"] == "done"]
        tool_steps = {s["id"] for s in self.workload.steps if s["tool"] is not None}
        return RunStats(
            workload=self.workload.name,
            config=self.config,
            checkpointer=self.saver_kind,
            thread=thread,
            status=state.get("status"),
            steps=len(self.workload.steps),
            wall_s=wall,
            executor_s=executor_time(updates),
            calls={role: usage.get(role, {}).get("calls", 0) for role in ROLES},
            input_tokens=sum(u["input_tokens"] for u in usage.values()),
            output_tokens=sum(u["output_tokens"] for u in usage.values()),
            cost_usd=round(sum(u["cost_usd"] for u in usage.values()), 6),
            server_calls={role: sum(1 for c in calls if c.role == role) for role in ROLES},
            server_tokens=(
                sum(c.prompt_tokens for c in calls),
                sum(c.completion_tokens for c in calls),
            ),
            executor_prompt_tokens=sum(c.prompt_tokens for c in calls if c.role == "executor"),
            revisions=len(state.get("revisions") or []),
            bound_s=critical_path_bound(self.workload, calls),
            duplicates=sum(n - 1 for n in effects.values() if n > 1),
            missing=sorted(i for i in done if i in tool_steps and effects[i] == 0),
            retried={step: n for step, n in sorted(attempts.items()) if n > 1},
            wrong=self._wrong(results),
        )

    def _wrong(self, results: dict[str, Any]) -> list[str]:
        wrong = [
            step
            for step, output in self.workload.outputs.items()
            if results.get(step, {}).get("output") != output
        ]
        for name, text in self.workload.files.items():
            path = self.workspace / name
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                wrong.append(f"file {name}")
        return wrong


def executor_time(updates: list[tuple[float, str]]) -> float:
    """Seconds spent in executor passes, each from the update before it to its own."""
    total = 0.0
    for (before, _), (at, node) in itertools.pairwise(updates):
        if node == "executor":
            total += at - before
    return total


def critical_path_bound(workload: Workload, calls: list[Call]) -> float:
    """The least wall-clock the run could take with unlimited parallelism and no overhead.

    The longest chain of step latencies (a tool's latency for each attempt, plus the
    retry wait for a step planned to fail once; the executor model's latency for a text
    step), plus the planning call and the final replanner call, as the server timed them.
    """
    planning = next((c.latency_s for c in calls if c.role == "planner"), 0.0)
    finishing = next(
        (c.latency_s for c in reversed(calls) if c.role == "replanner" and c.action == "finish"),
        0.0,
    )
    model = {c.step: c.latency_s for c in calls if c.role == "executor" and c.step}
    longest: dict[str, float] = {}
    for step in workload.steps:  # workloads list a step after its dependencies
        own = model.get(step["id"], 0.0)
        if step["tool"] is not None:
            own = workload.tool_latency.get(step["id"], 0.0)
            if step["id"] in workload.flaky:
                own = 2 * own + RETRY_INTERVAL_S
        before = max((longest[d] for d in step["depends_on"]), default=0.0)
        longest[step["id"]] = before + own
    return planning + max(longest.values(), default=0.0) + finishing


def checkpoint_size(db: Path, thread: str) -> tuple[int, int, int]:
    """Checkpoints, pending writes and the bytes of both, for one thread of a SQLite saver."""
    with closing(sqlite3.connect(db)) as conn:
        checkpoints, checkpoint_bytes = conn.execute(
            "SELECT count(*), coalesce(sum(length(checkpoint) + length(metadata)), 0) "
            "FROM checkpoints WHERE thread_id = ?",
            (thread,),
        ).fetchone()
        writes, write_bytes = conn.execute(
            "SELECT count(*), coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = ?",
            (thread,),
        ).fetchone()
    return int(checkpoints), int(writes), int(checkpoint_bytes) + int(write_bytes)
