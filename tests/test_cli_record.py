"""Issue 6, item 1: a run that dies before its first checkpoint is not lost silently.

`planexec run` records the thread (its goal and settings) before the planner is asked,
so a process killed during the first model call leaves a thread that `planexec threads`
lists and `planexec resume` carries on, with the settings it was started with.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from fake_openai import FakeOpenAI, prompt_of
from helpers import cli, step
from planexec.lease import LEASE_TABLE
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
PLANEXEC = ROOT / ".venv" / "bin" / "planexec"
GOAL = "What is 12 * 4 + 5?"
THREAD = "killed-early"
DEADLINE_S = 60.0
STEPS = [
    step("s1", args={"expression": "12*4"}),
    step("s2", args={"expression": "{{s1}} + 5"}, depends_on=["s1"]),
]


def environment(tmp_path: Path, server: FakeOpenAI) -> dict[str, str]:
    return {
        **os.environ,
        "OPENAI_BASE_URL": server.url,
        "PLANEXEC_HOME": str(tmp_path / "home"),
        "COLUMNS": "220",
    }


def planexec(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLANEXEC), *argv],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def start_and_kill_during_the_first_model_call(
    tmp_path: Path, env: dict[str, str], server: FakeOpenAI, *argv: str
) -> int:
    """Start `planexec run`, SIGKILL it once the planner's request has arrived; its pid."""
    stderr = tmp_path / "run.err"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(PLANEXEC), "run", GOAL, "--thread", THREAD, *argv],
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not server.requests:
            if process.poll() is not None:
                pytest.fail(f"planexec run exited ({process.returncode}):\n{stderr.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the planner was never asked:\n{stderr.read_text()}")
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=DEADLINE_S)
    assert process.returncode == -signal.SIGKILL
    return process.pid


def listed(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> dict[str, Any]:
    code, out, err = cli(capsys, "threads", "--checkpoint", str(checkpoint), "--json")
    assert code == 0, err
    [thread] = json.loads(out)["threads"]
    summary: dict[str, Any] = thread
    return summary


def lease_owner(checkpoint: Path, thread: str) -> str:
    with closing(sqlite3.connect(checkpoint)) as conn:
        [(owner,)] = conn.execute(
            f"SELECT owner FROM {LEASE_TABLE} WHERE thread_id = ?", (thread,)
        ).fetchall()
    return str(owner)


def test_a_run_killed_during_its_first_model_call_is_listed_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "c.sqlite"
    where = ("--checkpoint", str(checkpoint))
    with FakeOpenAI([{"hang": DEADLINE_S}]) as server:
        env = environment(tmp_path, server)
        for name in ("OPENAI_BASE_URL", "PLANEXEC_HOME", "COLUMNS"):
            monkeypatch.setenv(name, env[name])
        pid = start_and_kill_during_the_first_model_call(
            tmp_path, env, server, *where, "--review", "never",
            "--planner-model", "openai:planner", "--executor-model", "openai:executor",
        )  # fmt: skip
        [first] = server.requests
        assert first["model"] == "planner"
        assert GOAL in prompt_of(first)

        thread = listed(capsys, checkpoint)
        assert thread["thread_id"] == THREAD
        assert thread["goal"] == GOAL
        assert (thread["status"], thread["revision"], thread["demo"]) == (
            "interrupted",
            None,
            False,
        )
        code, out, err = cli(capsys, "show", THREAD, *where)
        assert code == 0, err
        assert "interrupted before planner" in out
        assert f"planexec resume {THREAD}" in out

        # The dead process's lease names a pid of this host that is gone: resume takes
        # it over at once instead of waiting for it to lapse.
        assert f"planexec run (pid {pid} on" in lease_owner(checkpoint, THREAD)
        server.add(plan_reply(STEPS), replan_reply("finish", answer="12 * 4 + 5 = 53"))
        done = planexec(env, "resume", THREAD, *where, "--json")
        assert done.returncode == 0, done.stderr
        server.assert_done()
    outcome = json.loads(done.stdout)
    # Review was off for this run: the stored setting holds, so nothing pauses.
    assert (outcome["status"], outcome["paused"]) == ("completed", None)
    assert outcome["answer"] == "12 * 4 + 5 = 53"
    assert {k: r["output"] for k, r in outcome["results"].items()} == {"s1": 48, "s2": 53}
    # The planner was asked again, for the stored goal, with the stored model.
    assert [body["model"] for body in server.requests] == ["planner", "planner", "planner"]
    assert GOAL in prompt_of(server.requests[1])
    assert listed(capsys, checkpoint)["status"] == "completed"
