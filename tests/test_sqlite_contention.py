"""Many processes, many connections, one SQLite file: nobody fails with "database is locked".

Each process runs several leased runs at once, every run on its own connection from
`open_checkpointer` (as separate processes would have), all started together on a new
file. A writer that finds the file busy must wait its turn (WAL and a busy timeout on
every connection planexec opens), not fail where another process would have waited.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest

PROCESSES = 6
RUNS_PER_PROCESS = 5

WORKER = """
import asyncio, json, sys, time
from pathlib import Path
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.lease import thread_lease
from planexec.scripted import plan_reply, replan_reply

db, go, me, runs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def plan(n):
    return [
        {"id": "s1", "description": "times 7", "tool": "calculator",
         "args": {"expression": f"{n} * 7"}, "depends_on": []},
        {"id": "s2", "description": "plus 1", "tool": "calculator",
         "args": {"expression": "{{s1}} + 1"}, "depends_on": ["s1"]},
        {"id": "s3", "description": "plus 2", "tool": "calculator",
         "args": {"expression": "{{s2}} + 2"}, "depends_on": ["s2"]},
    ]

async def one(n):
    thread = f"p{me}-r{n}"
    model = ScriptedChatModel([plan_reply(plan(n)),
                               replan_reply("finish", answer=str(n * 7 + 3))])
    try:
        async with open_checkpointer(db) as saver:
            graph = build_graph(checkpointer=saver, planner=model)
            async with thread_lease(saver, thread):
                out = await graph.ainvoke({"goal": thread},
                                          {"configurable": {"thread_id": thread}},
                                          context=Context(review="never"))
        return {"thread": thread, "answer": out.get("answer"), "want": str(n * 7 + 3),
                "error": None}
    except Exception as exc:
        return {"thread": thread, "error": f"{type(exc).__name__}: {exc}"}

async def main():
    while not go.exists():
        await asyncio.sleep(0.005)
    results = await asyncio.gather(*(one(me * 100 + n) for n in range(runs)))
    print(json.dumps(results))

asyncio.run(main())
"""


@pytest.mark.slow
def test_many_processes_with_many_connections_share_one_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    go = tmp_path / "go"
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(db), str(go), str(i), str(RUNS_PER_PROCESS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    time.sleep(2)  # every worker imported and waiting: they start at once on a new file
    go.touch()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        results.extend(json.loads(out.splitlines()[-1]))
    failures = [r for r in results if r["error"]]
    assert failures == []
    assert len(results) == PROCESSES * RUNS_PER_PROCESS
    assert all(r["answer"] == r["want"] for r in results)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        threads = conn.execute("SELECT COUNT(DISTINCT thread_id) FROM checkpoints").fetchone()[0]
        leases = conn.execute("SELECT COUNT(*) FROM planexec_leases").fetchone()[0]
    assert threads == PROCESSES * RUNS_PER_PROCESS
    assert leases == 0  # every lease was released
