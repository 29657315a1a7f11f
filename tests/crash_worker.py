"""Crash tests: runs killed with SIGKILL at every checkpoint write, resumed, and checked.

The tests and `bench.chaos` launch this module as a program. That process only
orchestrates: it imports planexec once, then forks a child for each part of a case, so a
run costs a fork rather than a Python start-up. It never runs an event loop or a thread
itself, which keeps forking safe. Each case, in its own directory:

1. child A starts the scenario's run on a fresh SQLite file (`durability="sync"`) and
   kills itself with SIGKILL right after the checkpointer's Nth write completes (a
   checkpoint or a task's saved writes: every boundary where the saved state changes),
   or inside a tool right after the tool's side effect;
2. child B reads what A left saved, then resumes the thread to its end, answering each
   interrupt as a person would: approving plans by their hash, and settling an
   uncertain step by looking at the effects ledger (the "receipt");
3. the orchestrator checks the invariants against a fault-free run of the same
   scenario: the same final state (status, answer, each step's status, output and
   error, every revision's plan, every review's decision), each side effect done once
   (the ledger has one entry per idempotency key), and no result A had saved run again
   or changed.

    crash_worker.py matrix --root DIR [--scenario NAME]... [--points all|smoke|N,N...]
                           [--reps R] [--jobs J]
    crash_worker.py chaos --root DIR --runs N [--fault-rate F] [--seed S] [--jobs J]

`chaos` uses the real `ChatOpenAI` client against `fake_openai.FakeOpenAI` (run in a
process of its own) whose replies fail at the given rate (429 with Retry-After, 500,
a body that is not JSON, tool arguments that are not JSON or do not validate), and a
random kill point per run. Both print one JSON document on stdout: the summary, with
every violation found.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langgraph.types import Command

from helpers import step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.models import chat_model
from planexec.scripted import plan_reply, replan_reply, tool_call_reply

HERE = Path(__file__).resolve().parent
GOAL = "Exercise crash recovery: {scenario}"
THREAD = "crash-thread"
CHILD_DEADLINE_S = 120.0
MAX_ROUNDS = 20
"""Interrupts a resumed run may raise before the worker gives up on it."""
TERMINAL = ("completed", "failed", "budget_exhausted", "cancelled")


# --- scenarios ----------------------------------------------------------------------------


def _effect(id: str, depends_on: list[str], tool: str = "effect") -> dict[str, Any]:
    after = "".join(f"{{{{{dep}}}}}," for dep in depends_on)
    return step(id, tool, {"name": id, "after": after}, depends_on)


@dataclass(frozen=True)
class Scenario:
    """A plan (and what the models say about it) whose run the crash tests kill."""

    name: str
    steps: list[dict[str, Any]]
    review: str = "never"
    replans: list[dict[str, Any]] = field(default_factory=list)
    """Replanner replies with a `match`, most specific first; the last one finishes."""
    executor: list[dict[str, Any]] = field(default_factory=list)
    """Executor replies (with a `match`) for steps whose arguments the model writes."""

    def replanner_replies(self) -> list[dict[str, Any]]:
        return [*self.replans, replan_reply("finish", answer=f"{self.name} done")]


SCENARIOS = {
    # A chain; s2's arguments are written by the executor model.
    "chain": Scenario(
        "chain",
        [
            _effect("s1", []),
            step("s2", "effect", None, ["s1"]),
            _effect("s3", ["s2"]),
            _effect("s4", ["s3"]),
        ],
        executor=[tool_call_reply("effect", {"name": "s2", "after": "s1,"}, match='id="s2"')],
    ),
    # A parallel fan-out and a join.
    "fanout": Scenario(
        "fanout",
        [
            _effect("s1", []),
            _effect("s2", []),
            _effect("s3", []),
            _effect("s4", []),
            _effect("s5", ["s1", "s2", "s3", "s4"]),
        ],
    ),
    # Reviewed plans: s2 fails, s3 is skipped, the replanner revises, the revision is
    # reviewed again, runs, and the replanner finishes.
    "replan": Scenario(
        "replan",
        [
            _effect("s1", []),
            step("s2", "fail", {"name": "s2"}, ["s1"]),
            _effect("s3", ["s2"]),
        ],
        review="always",
        replans=[
            replan_reply("finish", answer="replan done", match='step="s4" status="done"'),
            replan_reply("replan", steps=[_effect("s4", ["s1"])], match='status="failed"'),
        ],
    ),
    # A tool that must not run twice (`charge`) between two that deduplicate.
    "uncertain": Scenario(
        "uncertain",
        [_effect("s1", []), _effect("s2", ["s1"], tool="charge"), _effect("s3", ["s2"])],
    ),
}
EFFECT_STEPS = {
    "chain": ["s1", "s2", "s3", "s4"],
    "fanout": ["s1", "s2", "s3", "s4", "s5"],
    "replan": ["s1", "s4"],
    "uncertain": ["s1", "s2", "s3"],
}
"""The steps whose tool has a side effect, per scenario (where a kill in a tool lands)."""


# --- tools: effects on a ledger -------------------------------------------------------------


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


def _lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split(" ", 4) for line in path.read_text(encoding="utf-8").splitlines() if line]


def ledger(case: Path) -> list[dict[str, str]]:
    """The side effects done, in order: `{"key", "name", "pid", "output"}`."""
    return [
        {"key": parts[1], "name": parts[2], "pid": parts[3], "output": parts[4]}
        for parts in _lines(case / "effects.txt")
        if parts[0] == "effect"
    ]


def calls(case: Path) -> list[dict[str, str]]:
    """Every tool call: `{"name", "pid", "key"}`."""
    return [
        {"name": parts[1], "pid": parts[2], "key": parts[3]}
        for parts in _lines(case / "calls.txt")
        if parts[0] == "call"
    ]


def make_tools(case: Path, kill_in: str | None) -> list[BaseTool]:
    """`effect` (deduplicates by key), `charge` (must not run twice), `fail` (always fails)."""
    effects, log = case / "effects.txt", case / "calls.txt"

    def apply(name: str, after: str, key: str, dedupe: bool) -> str:
        _append(log, f"call {name} {os.getpid()} {key}")
        if dedupe:
            for done in ledger(case):
                if done["key"] == key:
                    return done["output"]
        output = f"{after}{name}"
        _append(effects, f"effect {key} {name} {os.getpid()} {output}")
        if name == kill_in:
            os.kill(os.getpid(), signal.SIGKILL)
        return output

    @tool
    async def effect(
        name: str, tool_call_id: Annotated[str, InjectedToolCallId], after: str = ""
    ) -> str:
        """Apply the side effect `name` once per idempotency key, returning its output."""
        return apply(name, after, tool_call_id, dedupe=True)

    @tool
    async def charge(
        name: str, tool_call_id: Annotated[str, InjectedToolCallId], after: str = ""
    ) -> str:
        """Apply the side effect `name` on every call: it cannot deduplicate."""
        return apply(name, after, tool_call_id, dedupe=False)

    charge.metadata = {"idempotent": False}

    @tool
    async def fail(name: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Always fail, without a side effect."""
        _append(log, f"call {name} {os.getpid()} {tool_call_id}")
        raise ValueError("declined")

    return [effect, charge, fail]


# --- one child: a run, or its resume ----------------------------------------------------------


@dataclass
class Child:
    """What one forked child does."""

    case: str
    scenario: str
    start: bool
    kill_at: int | None = None
    """SIGKILL right after the checkpointer's Nth write completes."""
    kill_in: str | None = None
    """SIGKILL inside this step's tool, right after its side effect."""
    model_url: str | None = None
    """A FakeOpenAI server's URL: use ChatOpenAI there instead of scripted models."""
    report: str = ""


class _Killer:
    """Counts the checkpointer's completed writes; kills the process at the Nth."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.count = 0

    def wrap(self, saver: Any) -> None:
        for name in ("aput", "aput_writes"):
            setattr(saver, name, self._counted(getattr(saver, name)))

    def _counted(self, write: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            result = await write(*args, **kwargs)
            self.count += 1
            if self.count == self.at:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return counted


def _context(scenario: Scenario, chaos: bool) -> Context:
    return Context(
        planner_model="openai:planner",
        executor_model="openai:executor",
        replanner_model="openai:replanner",
        review="always" if scenario.review == "always" else "never",
        retry_initial_interval=0.0,
        max_concurrency=4,
        model_timeout=2.0 if chaos else 60.0,
        model_max_retries=2,
        max_replans=3,
    )


def _models(scenario: Scenario, url: str | None) -> dict[str, Any]:
    if url is not None:

        def factory(spec: str, context: Context) -> BaseChatModel:
            return chat_model(
                spec,
                timeout=context.model_timeout,
                max_retries=context.model_max_retries,
                base_url=url,
                api_key="sk-chaos",
            )

        return {"model_factory": factory}
    return {
        "planner": ScriptedChatModel([plan_reply(scenario.steps)], name_="planner"),
        "executor": ScriptedChatModel(list(scenario.executor), name_="executor"),
        "replanner": ScriptedChatModel(scenario.replanner_replies(), name_="replanner"),
    }


def answer(request: dict[str, Any], case: Path) -> Any:
    """What a careful person answers to an interrupt."""
    kind = request.get("type")
    if kind == "plan_review":
        return {"type": "approve", "plan_hash": request["plan_hash"]}
    if kind == "uncertain_step":
        # The person checks the receipt: did the call happen?
        done = [e for e in ledger(case) if e["key"] == request["key"]]
        if done:
            return {"type": "done", "output": done[-1]["output"], "key": request["key"]}
        return {"type": "rerun", "key": request["key"]}
    return {
        "decisions": [{"type": "approve"}] * len(request.get("action_requests") or []),
        "request_hash": request.get("request_hash"),
    }


async def _saved_results(saver: Any, graph: Any, config: Any) -> dict[str, Any]:
    """Step results the checkpointer holds: in the state, and in saved task writes."""
    snapshot = await graph.aget_state(config)
    found: dict[str, Any] = {}
    for step_id, result in (snapshot.values.get("results") or {}).items():
        found[step_id] = [result["status"], result.get("output")]
    saved = await saver.aget_tuple(config)
    for _task, channel, value in (saved.pending_writes or []) if saved else []:
        args = value.get("args") if isinstance(value, dict) else None
        if channel == "__return__" and "status" in value and isinstance(args, dict):
            found.setdefault(str(args.get("name")), [value["status"], value.get("output")])
    return found


async def run_child(child: Child) -> dict[str, Any]:
    case = Path(child.case)
    scenario = SCENARIOS[child.scenario]
    context = _context(scenario, chaos=child.model_url is not None)
    config: Any = {"configurable": {"thread_id": THREAD}, "recursion_limit": 200}
    killer = _Killer(child.kill_at)
    report: dict[str, Any] = {"pid": os.getpid()}
    async with open_checkpointer(case / "checkpoints.sqlite") as saver:
        killer.wrap(saver)
        graph = build_graph(
            tools=make_tools(case, child.kill_in),
            checkpointer=saver,
            **_models(scenario, child.model_url),
        )
        report["saved_before"] = {} if child.start else await _saved_results(saver, graph, config)
        value: Any = {"goal": GOAL.format(scenario=child.scenario)} if child.start else None
        rounds = 0
        interrupts: list[dict[str, Any]] = []
        while True:
            out = await graph.ainvoke(value, config, context=context, durability="sync")
            pending = out.get("__interrupt__") or []
            if not pending or rounds >= MAX_ROUNDS:
                break
            rounds += 1
            interrupts.extend(i.value for i in pending)
            value = Command(resume={i.id: answer(i.value, case) for i in pending})
        snapshot = await graph.aget_state(config)
        report["final"] = snapshot.values
        report["paused"] = [i.value for i in snapshot.interrupts]
        report["interrupts"] = interrupts
        report["writes"] = killer.count
    return report


def _fork(child: Child) -> int:
    pid = os.fork()
    if pid == 0:  # the child: run, write the report, and leave without cleanup
        code = 0
        try:
            report = asyncio.run(run_child(child))
            Path(child.report).write_text(json.dumps(report, default=str), encoding="utf-8")
        except BaseException as exc:  # reported, not raised: the orchestrator reads it
            Path(child.report + ".error").write_text(f"{type(exc).__name__}: {exc}")
            code = 1
        finally:
            os._exit(code)
    return pid


# --- the orchestrator --------------------------------------------------------------------------


def project(values: dict[str, Any]) -> dict[str, Any]:
    """What a run's final state must agree on, whatever crashed on the way."""
    return {
        "status": values.get("status"),
        "answer": values.get("answer"),
        "results": {
            k: [r["status"], r.get("output"), r.get("error")]
            for k, r in sorted((values.get("results") or {}).items())
        },
        "revisions": [r["plan"] for r in values.get("revisions") or []],
        "reviews": [
            [r["revision"], r["decision"], r["plan_hash"]] for r in values.get("reviews") or []
        ],
    }


@dataclass
class Case:
    """One crash case: where it kills, what it found."""

    scenario: str
    kill_at: int | None = None
    kill_in: str | None = None
    model_url: str | None = None
    compare: str = "all"
    """Against the fault-free run: "all" of the final state, or the "outputs" of the
    steps both did (model faults may change which steps run)."""
    directory: str = ""
    killed: bool = False
    """Whether child A died of SIGKILL (a kill point past the run's last write is not)."""
    violations: list[str] = field(default_factory=list)
    uncertain: int = 0
    """Uncertain-step interrupts child B answered."""
    deduplicated: int = 0
    """Idempotency keys whose tool was called more than once but took effect once."""
    status: str | None = None
    reason: str | None = None
    """Why the resumed run ended as it did, when it did not complete."""


def _wait(pid: int) -> int:
    """Wait for a child; its wait status. A child past the deadline is killed."""
    deadline = time.monotonic() + CHILD_DEADLINE_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1
        time.sleep(0.005)


def reference(root: Path, scenario: str, model_url: str | None = None) -> dict[str, Any]:
    """The fault-free run of `scenario`: its report and the ledger it left."""
    case = root / f"reference-{scenario}"
    case.mkdir(parents=True)
    report = case / "report.json"
    status = _wait(_fork(Child(str(case), scenario, True, model_url=model_url, report=str(report))))
    if status != 0:
        raise RuntimeError(f"the fault-free {scenario} run failed ({status}): {_error(report)}")
    data: dict[str, Any] = json.loads(report.read_text())
    data["ledger"] = ledger(case)
    return data


def run_case(case: Case, root: Path, index: int, ref: dict[str, Any] | None) -> Case:
    """Kill, resume and check one case (`ref`: the fault-free run to compare with)."""
    directory = root / f"{case.scenario}-{index:04d}"
    directory.mkdir(parents=True)
    case.directory = str(directory)
    first = directory / "a.json"
    status = _wait(
        _fork(
            Child(
                str(directory),
                case.scenario,
                True,
                kill_at=case.kill_at,
                kill_in=case.kill_in,
                model_url=case.model_url,
                report=str(first),
            )
        )
    )
    case.killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if status == -1:
        case.violations.append("the first run hung")
        return case
    if not case.killed and status != 0:
        case.violations.append(f"the first run crashed: {_error(first)}")
        return case
    second = directory / "b.json"
    if (
        _wait(
            _fork(
                Child(
                    str(directory),
                    case.scenario,
                    False,
                    model_url=case.model_url,
                    report=str(second),
                )
            )
        )
        != 0
    ):
        case.violations.append(f"the resumed run did not finish cleanly: {_error(second)}")
        return case
    check(case, json.loads(second.read_text()), ref)
    return case


def _error(report: Path) -> str:
    error = Path(str(report) + ".error")
    return error.read_text() if error.exists() else "no report"


def check(case: Case, resumed: dict[str, Any], ref: dict[str, Any] | None) -> None:
    """The invariants, each broken one added to `case.violations`."""
    directory = Path(case.directory)
    final = resumed["final"]
    case.status = final.get("status")
    if case.status != "completed":
        case.reason = str(final.get("reason"))[:300]
    case.uncertain = sum(1 for i in resumed["interrupts"] if i.get("type") == "uncertain_step")
    problems = case.violations
    if resumed["paused"] or final.get("status") not in TERMINAL:
        problems.append(f"the resumed run did not end: {final.get('status')} {resumed['paused']}")
    effects = Counter(e["key"] for e in ledger(directory))
    repeated = sorted(key for key, n in effects.items() if n > 1)
    called = Counter(c["key"] for c in calls(directory))
    case.deduplicated = sum(1 for key, n in called.items() if n > 1 and effects[key] == 1)
    if repeated:
        problems.append(f"side effects repeated: {repeated}")
    pid = str(resumed["pid"])
    results = final.get("results") or {}
    for step_id, (status, output) in resumed["saved_before"].items():
        again = [c for c in calls(directory) if c["name"] == step_id and c["pid"] == pid]
        if again:
            problems.append(f"step {step_id} ran again although its result was saved")
        kept = results.get(step_id)
        if kept is None or [kept["status"], kept.get("output")] != [status, output]:
            problems.append(f"step {step_id}'s saved result was lost or changed: {kept}")
    # Under model faults the run may end, or replan, before the tool is ever called.
    if case.kill_in is not None and not case.killed and case.model_url is None:
        problems.append(f"the kill inside {case.kill_in}'s tool did not happen")
    if ref is not None:
        _compare(case, final, effects, ref)


def _compare(case: Case, final: dict[str, Any], effects: Counter[str], ref: dict[str, Any]) -> None:
    """The checks against the fault-free run."""
    problems = case.violations
    results = final.get("results") or {}
    if case.compare == "outputs":
        expected = ref["final"].get("results") or {}
        for step_id, result in results.items():
            other = expected.get(step_id) or {}
            done = result["status"] == other.get("status") == "done"
            if done and result.get("output") != other.get("output"):
                problems.append(f"step {step_id}'s output differs from the fault-free run's")
        return
    if project(final) != project(ref["final"]):
        problems.append(
            "the final state differs from the fault-free run's: "
            + json.dumps([project(final), project(ref["final"])], default=str)[:2000]
        )
    expected = sorted(e["key"] for e in ref["ledger"])
    if sorted(effects) != expected:
        problems.append(f"side effects {sorted(effects)} instead of {expected}")


def matrix_cases(args: argparse.Namespace, refs: dict[str, dict[str, Any]]) -> list[Case]:
    cases: list[Case] = []
    for name in args.scenario:
        total = int(refs[name]["writes"])
        if args.points == "all":
            points = list(range(1, total + 1))
        elif args.points == "smoke":
            points = sorted({1, total // 3, total // 2, (2 * total) // 3, total - 1} - {0})
        else:
            points = [int(p) for p in args.points.split(",")]
        in_tools = EFFECT_STEPS[name] if args.points != "smoke" else EFFECT_STEPS[name][-2:]
        for _ in range(args.reps):
            cases.extend(Case(name, kill_at=point) for point in points)
            cases.extend(Case(name, kill_in=step) for step in in_tools)
    return cases


def _run_all(cases: list[Case], root: Path, refs: dict[str, Any], jobs: int) -> None:
    """Run the cases, `jobs` at a time, each in a forked orchestrator of its own."""
    running: dict[int, tuple[int, Path]] = {}
    for index, case in enumerate(cases):
        while len(running) >= jobs:
            _reap(running, cases)
        out = root / f"case-{index:04d}.json"
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                done = run_case(case, root, index, refs.get(case.scenario))
                out.write_text(json.dumps(asdict(done)))
            except BaseException as exc:
                out.write_text(json.dumps({**asdict(case), "violations": [repr(exc)]}))
                code = 1
            finally:
                os._exit(code)
        running[pid] = (index, out)
    while running:
        _reap(running, cases)


def _reap(running: dict[int, tuple[int, Path]], cases: list[Case]) -> None:
    pid, _status = os.waitpid(-1, 0)
    if pid not in running:
        return
    index, out = running.pop(pid)
    if out.exists():
        cases[index] = Case(**json.loads(out.read_text()))
    else:
        cases[index].violations.append("the case's orchestrator died")


def summary(cases: list[Case], **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "cases": len(cases),
        "killed": sum(c.killed for c in cases),
        "kills_in_tools": sum(1 for c in cases if c.kill_in is not None and c.killed),
        "uncertain_pauses": sum(c.uncertain for c in cases),
        "calls_deduplicated": sum(c.deduplicated for c in cases),
        "statuses": dict(Counter(str(c.status) for c in cases)),
        "not_completed": [
            {"scenario": c.scenario, "status": c.status, "reason": c.reason}
            for c in cases
            if c.status != "completed"
        ],
        "violations": [
            {
                "scenario": c.scenario,
                "kill_at": c.kill_at,
                "kill_in": c.kill_in,
                "problems": c.violations,
            }
            for c in cases
            if c.violations
        ],
    }


# --- chaos: random kills and model faults --------------------------------------------------------


class ChaosReplies:
    """A FakeOpenAI responder for the scenarios that fails `rate` of the requests."""

    FAULTS = ("rate_limited", "server_error", "not_json", "bad_arguments", "invalid_arguments")

    def __init__(self, rate: float, seed: int, stats: Path) -> None:
        self.rate = rate
        self.chance = random.Random(seed)
        self.stats = stats
        self.counts: Counter[str] = Counter()

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        from fake_openai import prompt_of

        prompt = prompt_of(body)
        name = next((n for n in SCENARIOS if GOAL.format(scenario=n) in prompt), "chain")
        scenario = SCENARIOS[name]
        role = (
            "planner"
            if "You are the planner" in prompt
            else "replanner"
            if "You are the replanner" in prompt
            else "executor"
        )
        self.counts["requests"] += 1
        if self.chance.random() < self.rate:
            fault = self.chance.choice(self.FAULTS)
            self.counts["faults"] += 1
            self.counts[fault] += 1
            self._save()
            return self._fault(fault, role)
        self._save()
        if role == "planner":
            return plan_reply(scenario.steps)
        options = scenario.replanner_replies() if role == "replanner" else scenario.executor
        for option in options:
            if option.get("match") is None or option["match"] in prompt:
                return {k: v for k, v in option.items() if k != "match"}
        return {"content": "done"}

    def _fault(self, fault: str, role: str) -> dict[str, Any]:
        schema = {"planner": "Plan", "replanner": "Replan", "executor": "effect"}[role]
        if fault == "rate_limited":
            return {"status": 429, "headers": {"Retry-After": "0.01"}}
        if fault == "server_error":
            return {"status": 500, "headers": {"retry-after-ms": "10"}}
        if fault == "not_json":
            return {"raw": "<html>bad gateway</html>"}
        if fault == "bad_arguments":
            return {"tool_calls": [{"name": schema, "arguments": '{"steps": [{"id"'}]}
        return {"tool_calls": [{"name": schema, "arguments": {"unexpected": 1}}]}

    def _save(self) -> None:
        self.stats.write_text(json.dumps(dict(self.counts)))


def serve_openai(root: Path, rate: float, seed: int) -> None:
    """Serve the scenarios' model replies, failing `rate` of the requests, until stopped."""
    sys.path.insert(0, str(HERE))
    from fake_openai import FakeOpenAI

    replies = ChaosReplies(rate, seed, root / "openai.stats")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    with FakeOpenAI(responder=replies.reply) as server:
        (root / "openai.url").write_text(server.url)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


def _chaos(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root)
    port_file = root / "openai.url"
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", str(root), str(args.fault_rate), str(args.seed)],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake model server did not start")
            time.sleep(0.05)
        url = port_file.read_text()
        chance = random.Random(args.seed)
        names = ["chain", "fanout", "replan", "uncertain"]
        refs = {name: reference(root, name, model_url=None) for name in names}
        cases = []
        for _ in range(args.runs):
            name = chance.choice(names)
            total = int(refs[name]["writes"])
            kill: dict[str, Any]
            if chance.random() < 0.25:
                kill = {"kill_in": chance.choice(EFFECT_STEPS[name])}
            else:
                kill = {"kill_at": chance.randint(1, total + 5)}
            cases.append(Case(name, model_url=url, compare="outputs", **kill))
        started = time.monotonic()
        _run_all(cases, root, refs, args.jobs)
        stats = _server_stats(root)
        return summary(
            cases,
            mode="chaos",
            runs=args.runs,
            fault_rate=args.fault_rate,
            seed=args.seed,
            seconds=round(time.monotonic() - started, 1),
            model_requests=stats.pop("requests", 0),
            model_faults=stats.pop("faults", 0),
            faults_by_kind=stats,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _server_stats(root: Path) -> dict[str, Any]:
    path = root / "openai.stats"
    return json.loads(path.read_text()) if path.exists() else {}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "serve":
        serve_openai(Path(argv[1]), float(argv[2]), int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(prog="crash_worker.py")
    sub = parser.add_subparsers(dest="mode", required=True)
    matrix = sub.add_parser("matrix")
    matrix.add_argument("--root", required=True)
    matrix.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    matrix.add_argument("--points", default="all")
    matrix.add_argument("--reps", type=int, default=1)
    matrix.add_argument("--jobs", type=int, default=2)
    chaos = sub.add_parser("chaos")
    chaos.add_argument("--root", required=True)
    chaos.add_argument("--runs", type=int, default=200)
    chaos.add_argument("--fault-rate", type=float, default=0.05)
    chaos.add_argument("--seed", type=int, default=7)
    chaos.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ["LANGSMITH_TRACING"] = "false"
    if args.mode == "chaos":
        result = _chaos(args)
    else:
        args.scenario = args.scenario or sorted(SCENARIOS)
        root = Path(args.root)
        started = time.monotonic()
        refs = {name: reference(root, name) for name in args.scenario}
        cases = matrix_cases(args, refs)
        _run_all(cases, root, refs, args.jobs)
        result = summary(
            cases,
            mode="matrix",
            boundaries={name: refs[name]["writes"] for name in args.scenario},
            seconds=round(time.monotonic() - started, 1),
        )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
