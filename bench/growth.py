"""Storage and audit growth: what a thread costs as it is revised again and again.

`python -m bench.growth [--quick]` runs the real graph (`build_graph`, scripted planner
and replanner, calculator steps with complete arguments, so no model call per step) on
an `AsyncSqliteSaver` file with `durability="sync"`, through `astream`, on threads that
the replanner revises 10, 50, 100 and 200 times (`tests/helpers.py`'s
`replanning_script`: each revision adds one step, every fifth one that fails, so the
plan grows with the thread), and one thread whose plan a reviewer rejects 60 times.
For each thread it records:

- thread bytes: every stored checkpoint, metadata and write of the thread;
- latest checkpoint bytes: the newest checkpoint row with its metadata;
- ms per revision: the wall-clock of the last 10 revisions, over 10;
- `planexec audit THREAD` in a new process: its wall-clock, and its peak resident
  memory above the same command's on a one-revision thread (the process baseline).

The fit is the exponent k of cost ~ revisions^k between the smallest and the largest
thread (1 is linear). The targets (issue 20): bytes per revision constant, a 200-revision
thread at most 20 MB and its latest checkpoint at most 50 KB; the audit of 200
revisions at most 3 s and 200 MB above the baseline, its time linear in the history.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# `tests` is not a package: its helpers are imported as top-level modules, as the
# tests themselves import them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from langgraph.types import Command

from helpers import REPLANNED_START, replanning_script, step
from planexec import Context, ScriptedChatModel, build_graph, run_config
from planexec.checkpoints import open_checkpointer
from planexec.scripted import plan_reply, replan_reply

REVISIONS = (10, 50, 100, 200)
REJECTIONS = 60
THREAD_MB = 20.0
LATEST_KB = 50.0
AUDIT_S = 3.0
AUDIT_MB = 200.0
LINEAR_K = 1.2
"""A fitted exponent at most this counts as linear."""
TAIL = 10
"""ms per revision is taken over this many last revisions."""


@dataclass
class GrowthRow:
    """One thread's storage and audit costs."""

    kind: str
    """"replans" (the replanner revises) or "rejections" (a reviewer rejects)."""
    revisions: int
    thread_bytes: int
    latest_bytes: int
    ms_per_revision: float
    audit_s: float
    audit_own_s: float
    """`audit_s` less the same command's on a one-revision thread (start-up, imports)."""
    audit_mb: float
    """Peak resident memory of `planexec audit` above the baseline's."""
    audit_records: int
    status: str


def _bytes(path: Path, thread: str) -> tuple[int, int]:
    """The thread's stored bytes, and its latest checkpoint's."""
    with sqlite3.connect(path) as db:
        checkpoints = db.execute(
            "SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) "
            "FROM checkpoints WHERE thread_id = ?",
            (thread,),
        ).fetchone()[0]
        writes = db.execute(
            "SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes WHERE thread_id = ?", (thread,)
        ).fetchone()[0]
        latest = db.execute(
            "SELECT LENGTH(checkpoint) + LENGTH(metadata) FROM checkpoints "
            "WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
            (thread,),
        ).fetchone()[0]
    return int(checkpoints + writes), int(latest)


async def replanned_thread(path: Path | str, thread: str, revisions: int) -> tuple[float, str]:
    """A thread the replanner revises `revisions` times; ms per revision of the last ones."""
    planner = ScriptedChatModel([plan_reply(REPLANNED_START)], name_="planner")
    replanner = ScriptedChatModel(replanning_script(revisions), name_="replanner")
    context = Context(review="never", max_replans=revisions, retry_initial_interval=0.0)
    marks: list[float] = []
    status = "unknown"
    async with open_checkpointer(path) as saver:
        graph = build_graph(checkpointer=saver, planner=planner, replanner=replanner)
        config = run_config(thread, context)
        marks.append(time.perf_counter())
        async for update in graph.astream(
            {"goal": "count up"}, config, context=context, stream_mode="updates", durability="sync"
        ):
            if "replanner" in update:
                marks.append(time.perf_counter())
            for value in update.values():
                if isinstance(value, dict) and value.get("status"):
                    status = str(value["status"])
    return _tail_ms(marks), status


async def rejected_thread(path: Path, thread: str, rejections: int) -> tuple[float, str]:
    """A thread whose plan a reviewer rejects `rejections` times, then approves."""
    plans = [
        plan_reply([step(f"p{n}", args={"expression": f"{n} + 1"})]) for n in range(rejections + 1)
    ]
    planner = ScriptedChatModel(plans, name_="planner")
    replanner = ScriptedChatModel([replan_reply("finish", answer="done")], name_="replanner")
    context = Context(review="always", max_replans=1, retry_initial_interval=0.0)
    marks: list[float] = []
    async with open_checkpointer(path) as saver:
        graph = build_graph(checkpointer=saver, planner=planner, replanner=replanner)
        config = run_config(thread, context)
        value: Any = {"goal": "count up"}
        for n in range(rejections + 1):
            marks.append(time.perf_counter())
            await graph.ainvoke(value, config, context=context, durability="sync")
            decision = {"type": "approve"} if n == rejections else {"type": "reject"}
            value = Command(resume={**decision, "message": f"not plan {n}"})
        out = await graph.ainvoke(value, config, context=context, durability="sync")
    return _tail_ms(marks), str(out.get("status"))


def _tail_ms(marks: list[float]) -> float:
    tail = marks[-(TAIL + 1) :]
    return (tail[-1] - tail[0]) / max(len(tail) - 1, 1) * 1000


def audit(path: Path, thread: str) -> tuple[float, float, int]:
    """`planexec audit` in a new process: seconds, peak resident MB and records written."""
    env = {**os.environ, "LANGSMITH_TRACING": "false"}
    env.pop("PLANEXEC_CHECKPOINT_KEY", None)
    program = str(Path(sys.executable).with_name("planexec"))
    command = [program, "audit", thread, "--checkpoint", str(path)]
    began = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = child.communicate()
    seconds = time.perf_counter() - began
    if child.returncode != 0:
        raise RuntimeError(f"planexec audit failed: {err.decode(errors='replace')}")
    # ru_maxrss of the children waited for so far: the largest, and this one is the
    # newest; so measure each audit in a process of its own (see `_measured`).
    peak_kb = _child_peak_kb()
    return seconds, peak_kb / 1024, out.count(b"\n")


def _child_peak_kb() -> float:
    import resource

    return float(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def _measured(path: Path, thread: str) -> tuple[float, float, int]:
    """`audit` run from a fresh Python, so that the peak memory is this audit's own."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from bench.growth import audit; "
        "print(*audit(__import__('pathlib').Path(sys.argv[2]), sys.argv[3]))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", code, root, str(path), thread],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, mb, records = done.stdout.split()
    return float(seconds), float(mb), int(records)


async def measure(
    revisions: tuple[int, ...] = REVISIONS, rejections: int = REJECTIONS
) -> list[GrowthRow]:
    """A row per thread: the replanned ones, then the rejected one (if `rejections`)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="planexec-bench-growth-") as tmp:
        folder = Path(tmp)
        base = folder / "baseline.sqlite"
        await replanned_thread(base, "baseline", 1)
        baseline_s, baseline_mb, _ = _measured(base, "baseline")
        plan: list[tuple[str, int]] = [("replans", n) for n in revisions]
        if rejections:
            plan.append(("rejections", rejections))
        for kind, n in plan:
            path = folder / f"{kind}-{n}.sqlite"
            thread = f"{kind}-{n}"
            make = replanned_thread if kind == "replans" else rejected_thread
            ms, status = await make(path, thread, n)
            thread_bytes, latest = _bytes(path, thread)
            seconds, mb, records = _measured(path, thread)
            rows.append(
                GrowthRow(
                    kind=kind,
                    revisions=n,
                    thread_bytes=thread_bytes,
                    latest_bytes=latest,
                    ms_per_revision=ms,
                    audit_s=seconds,
                    audit_own_s=max(seconds - baseline_s, 0.0),
                    audit_mb=mb - baseline_mb,
                    audit_records=records,
                    status=status,
                )
            )
    return rows


@dataclass
class PostgresRow:
    """A replanned thread's bytes in PostgreSQL."""

    revisions: int
    thread_bytes: int
    latest_bytes: int
    """The newest checkpoint row with the blobs of the channel versions it names."""


_PG_THREAD = """
SELECT
  (SELECT COALESCE(SUM(pg_column_size(checkpoint) + pg_column_size(metadata)), 0)
     FROM checkpoints WHERE thread_id = %(t)s)
  + (SELECT COALESCE(SUM(octet_length(blob)), 0) FROM checkpoint_blobs WHERE thread_id = %(t)s)
  + (SELECT COALESCE(SUM(octet_length(blob)), 0) FROM checkpoint_writes WHERE thread_id = %(t)s)
"""
_PG_LATEST = """
SELECT pg_column_size(c.checkpoint) + pg_column_size(c.metadata) + COALESCE(
  (SELECT SUM(octet_length(b.blob))
     FROM checkpoint_blobs b, jsonb_each_text(c.checkpoint -> 'channel_versions') v
     WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
       AND b.channel = v.key AND b.version = v.value), 0)
FROM checkpoints c WHERE c.thread_id = %(t)s AND c.checkpoint_ns = ''
ORDER BY c.checkpoint_id DESC LIMIT 1
"""


async def measure_postgres(revisions: tuple[int, ...] = (50, 200)) -> list[PostgresRow]:
    """The replanned threads on a throwaway PostgreSQL server (`tests/pg_server.py`)."""
    import psycopg

    from pg_server import postgres_server

    rows = []
    with postgres_server() as server:
        for n in revisions:
            url = server.create_database(f"growth{n}")
            await replanned_thread(url, "t", n)
            with psycopg.connect(url) as db:
                thread = db.execute(_PG_THREAD, {"t": "t"}).fetchone()
                latest = db.execute(_PG_LATEST, {"t": "t"}).fetchone()
            assert thread is not None
            assert latest is not None
            rows.append(PostgresRow(n, int(thread[0]), int(latest[0])))
    return rows


def postgres_markdown(rows: list[PostgresRow]) -> str:
    """The PostgreSQL rows as a Markdown table."""
    lines = [
        "| revisions | PostgreSQL thread MB | latest checkpoint KB |",
        "|---|---|---|",
        *(
            f"| {r.revisions} | {r.thread_bytes / 1e6:.2f} | {r.latest_bytes / 1e3:.1f} |"
            for r in rows
        ),
    ]
    return "\n".join(lines) + "\n"


def exponent(rows: list[GrowthRow], pick: str) -> float:
    """k in cost ~ revisions^k, fitted from the smallest to the largest replanned thread."""
    replans = [r for r in rows if r.kind == "replans"]
    small, large = replans[0], replans[-1]
    if large.revisions == small.revisions:
        return math.nan
    a, b = float(getattr(small, pick)), float(getattr(large, pick))
    return math.log(max(b, 1e-9) / max(a, 1e-9)) / math.log(large.revisions / small.revisions)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def summary(rows: list[GrowthRow]) -> list[str]:
    """The fits, and one line per target saying whether it holds."""
    replans = [r for r in rows if r.kind == "replans"]
    last = replans[-1]
    k_thread = exponent(rows, "thread_bytes")
    k_latest = exponent(rows, "latest_bytes")
    k_audit = exponent(rows, "audit_own_s")
    lines = [
        f"fit, revisions {replans[0].revisions} to {last.revisions}: "
        f"thread bytes ~ R^{k_thread:.2f}, latest checkpoint ~ R^{k_latest:.2f}, "
        f"the audit's own time ~ R^{k_audit:.2f}",
        f"thread bytes per revision at {last.revisions}: "
        f"{last.thread_bytes / last.revisions / 1024:.1f} KB",
    ]
    if last.revisions >= 200:
        lines += [
            f"{last.revisions} revisions: thread {last.thread_bytes / 1e6:.1f} MB, at most "
            f"{THREAD_MB:.0f} MB ({_verdict(last.thread_bytes / 1e6 <= THREAD_MB)})",
            f"{last.revisions} revisions: latest checkpoint {last.latest_bytes / 1e3:.1f} KB, at "
            f"most {LATEST_KB:.0f} KB ({_verdict(last.latest_bytes / 1e3 <= LATEST_KB)})",
            f"{last.revisions} revisions: audit {last.audit_s:.2f} s, at most {AUDIT_S:.0f} s "
            f"({_verdict(last.audit_s <= AUDIT_S)}), {last.audit_own_s:.2f} s over its "
            f"start-up; {last.audit_mb:.0f} MB above the "
            f"baseline, at most {AUDIT_MB:.0f} MB ({_verdict(last.audit_mb <= AUDIT_MB)})",
        ]
    lines.append(
        f"bytes per revision constant: thread bytes ~ R^{k_thread:.2f}, at most "
        f"R^{LINEAR_K} ({_verdict(k_thread <= LINEAR_K)})"
    )
    return lines


def markdown(rows: list[GrowthRow]) -> str:
    """The report as a Markdown table, with the fits and the targets' verdicts."""
    lines = [
        "### Storage and audit growth: one thread revised again and again",
        "",
        '`AsyncSqliteSaver`, `durability="sync"`, calculator steps with complete arguments; '
        "audit = `planexec audit THREAD` in a new process; over start-up and MB: less the "
        "same command on a one-revision thread.",
        "",
        "| thread | revisions | thread MB | latest checkpoint KB | ms/revision (last 10) "
        "| audit s | over start-up | audit MB | records | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.kind} | {r.revisions} | {r.thread_bytes / 1e6:.2f} | {r.latest_bytes / 1e3:.1f} "
        f"| {r.ms_per_revision:.0f} | {r.audit_s:.2f} | {r.audit_own_s:.2f} | {r.audit_mb:.0f} "
        f"| {r.audit_records:,} "
        f"| {r.status} |"
        for r in rows
    ]
    lines += ["", *(f"- {line}" for line in summary(rows))]
    return "\n".join(lines) + "\n"


def as_json(rows: list[GrowthRow]) -> dict[str, Any]:
    """The figures as JSON data."""
    return {"rows": [asdict(r) for r in rows], "summary": summary(rows)}


async def measure_for(quick: bool) -> list[GrowthRow]:
    """`measure`: every size, or with `quick` 10 and 50 revisions and 10 rejections."""
    return await (measure((10, 50), 10) if quick else measure())


def section(rows: list[GrowthRow]) -> str:
    """The report's section for `python -m bench`: nothing if the rows were not measured."""
    return "\n" + markdown(rows) if rows else ""


def json_part(rows: list[GrowthRow]) -> dict[str, Any]:
    """The `growth` entry of results.json, if the rows were measured."""
    return {"growth": as_json(rows)} if rows else {}


def main(argv: list[str] | None = None) -> int:
    """Print the report; always 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 and 50 revisions only")
    parser.add_argument(
        "--postgres", action="store_true", help="also the bytes of 50 and 200 on PostgreSQL"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rows = asyncio.run(measure_for(args.quick))
    print(markdown(rows))
    if args.postgres:
        print(postgres_markdown(asyncio.run(measure_postgres())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
