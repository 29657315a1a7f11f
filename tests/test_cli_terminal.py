"""The real `planexec` command in a real terminal (tmux, or a pty), at 80 and 120 columns.

Each test types keys, presses Ctrl-C, uses `$EDITOR`, and asserts on what the screen
shows; see `tests/terminal.py`. The models are the demo's scripted replies, or the real
`ChatOpenAI` client against `tests/fake_openai.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_openai import FakeOpenAI
from helpers import step
from planexec import build_graph
from planexec.checkpoints import open_checkpointer
from planexec.context import Context
from terminal import BIN, backends, command_env, open_terminal

pytestmark = pytest.mark.skipif(not backends(), reason="neither tmux nor pyte is available")
BACKEND = backends()[0] if backends() else "tmux"
PLANNER, REPLANNER = "You are the planner", "You are the replanner"


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder that an unprivileged user may enter too (the read-only tests need one)."""
    folder = Path(tempfile.mkdtemp(prefix="planexec-term-"))
    os.chmod(folder, 0o755)
    yield folder
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(folder, ignore_errors=True)


def demo_argv(place: Path, *extra: str) -> list[str]:
    return [
        "planexec", "demo", "--workspace", str(place / "ws"),
        "--checkpoint", str(place / "ck.sqlite"), "--thread", "d", *extra,
    ]  # fmt: skip


# --- review -----------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_review_views_a_step_in_full_and_an_unchanged_edit_runs_nothing(
    place: Path, width: int
) -> None:
    editor = place / "editor.py"
    editor.write_text(
        "import json, sys\n"
        "path = sys.argv[1]\n"
        "plan = json.load(open(path))\n"
        "count = open(sys.argv[0] + '.n', 'a+')\n"
        "count.seek(0)\n"
        "if count.read():\n"
        "    s7 = next(s for s in plan['steps'] if s['id'] == 's7')\n"
        "    s7['args'] = {'expression': '{{s4}} + {{s5}} + {{s6}}'}\n"
        "    json.dump(plan, open(path, 'w'))\n"
        "count.write('x')\n"
    )
    env = command_env(place / "home", EDITOR=f"{sys.executable} {editor}")
    with open_terminal(BACKEND, width=width, height=50) as term:
        term.start(demo_argv(place), env)
        term.wait_for(r"\[a\]pprove / \[v\]iew / \[e\]dit")
        screen = term.screen()
        assert all(len(line) <= width for line in screen.splitlines())
        assert "…" in screen  # the table cuts write_file's content...
        term.type("v")
        term.wait_for("which step")
        term.type("s9")
        shown = term.wait_for(r"│ \| North \| \{\{s4\}\} \|")  # ...the view shows it all
        assert "│ # Third-quarter revenue by region" in shown
        term.type("e")  # the editor leaves the plan as it was
        term.wait_for("no change: the plan is as it was")
        term.type("e")  # now it fixes s7: the diff, then a question
        diff = term.wait_for(r"run it with this change\?")
        assert '-        "expression": "sum({{s4}}, {{s5}}, {{s6}})"' in diff
        assert '+        "expression": "{{s4}} + {{s5}} + {{s6}}"' in diff
        term.type("n")  # back to the review: nothing sent
        term.wait_for(r"\[a\]pprove / \[v\]iew", count=4)
        term.press("C-c")
        assert term.wait_exit() == 130
    reviews = json.loads(show_json(place, "d"))["reviews"]
    assert reviews == []  # neither the unchanged edit nor the declined one was a decision


def show_json(place: Path, thread: str) -> str:
    done = subprocess.run(
        [str(BIN / "planexec"), "show", thread, "--checkpoint", str(place / "ck.sqlite"), "--json"],
        capture_output=True, text=True, timeout=60, check=True,
        env=command_env(place / "home"),
    )  # fmt: skip
    return done.stdout


@pytest.mark.parametrize("backend", backends())
def test_ctrl_c_at_the_review_prompt_leaves_at_once_with_the_resume_command(
    place: Path, backend: str
) -> None:
    with open_terminal(backend, width=80) as term:
        term.start(demo_argv(place), command_env(place / "home"))
        term.wait_for(r"\[a\]pprove")
        term.press("C-c")  # once: no second press, no line typed
        assert term.wait_exit(timeout=10) == 130
        text = term.transcript()
    assert "interrupted: the thread is saved. Continue it with: planexec resume" in text
    assert "Traceback" not in text
    document = json.loads(show_json(place, "d"))
    assert document["status"] == "paused_for_review"


def run_argv(place: Path, goal: str, *extra: str) -> list[str]:
    return [
        "planexec", "run", goal, "--checkpoint", str(place / "ck.sqlite"),
        "--planner-model", "openai:p", "--executor-model", "openai:e", *extra,
    ]  # fmt: skip


def test_ctrl_c_mid_run_then_show_lists_the_finished_steps_with_their_results(
    place: Path,
) -> None:
    plan = [
        step("s1", args={"expression": "6*7"}),
        step("s2", tool=None, depends_on=["s1"], description="Wait for a slow model"),
    ]
    replies = [
        {"match": PLANNER, "tool_calls": [{"name": "Plan", "arguments": {"steps": plan}}]},
        {"match": '<step id="s2">', "hang": 120, "content": "late"},
    ]
    with FakeOpenAI(replies) as server, open_terminal(BACKEND, width=100) as term:
        env = command_env(place / "home", OPENAI_BASE_URL=server.url, OPENAI_API_KEY="x")
        term.start(run_argv(place, "slow", "--yes", "--thread", "slow"), env)
        term.wait_for(r"s1 .*✓ done")
        term.wait_for(r"s2 .*running")
        term.press("C-c")
        assert term.wait_exit() == 130
        term.close()
    with open_terminal(BACKEND, width=100) as term:
        term.start(["planexec", "show", "slow", "--checkpoint", str(place / "ck.sqlite")], env)
        assert term.wait_exit() == 0
        text = term.transcript()
    s1 = next(line for line in text.splitlines() if re.match(r"[│┃] s1 ", line))
    assert "✓ done" in s1
    assert "42" in s1
    assert "1 step finished before the run stopped (s1): saved, and not run again" in text


# --- tables that fit ----------------------------------------------------------------------


def test_the_live_table_keeps_step_status_and_time_at_80_columns(place: Path) -> None:
    with open_terminal(BACKEND, width=80, height=60) as term:
        term.start(demo_argv(place, "--yes"), command_env(place / "home"))
        assert term.wait_exit(timeout=60) == 0
        text = term.transcript()
    table = text[text.rindex("plan revision 2 ·") :]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"│ (s\d+) .*│", table)}
    for step_id in ("s1", "s4", "s10", "s12"):
        row = rows[step_id]
        assert "✓ done" in row, row
        assert re.search(r"\d+\.\d\ds │", row), row  # the time, in full
        assert len(row) <= 80
    assert "status: completed" in text


def test_in_a_pipe_a_step_finishes_before_its_dependents_start(place: Path) -> None:
    done = subprocess.run(
        demo_argv(place, "--yes"),
        capture_output=True, text=True, timeout=120, check=False,
        env=command_env(place / "home", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = re.findall(r"^  (▶|✓|✗|○) (s\d+)", done.stdout, re.M)
    started = {sid: i for i, (mark, sid) in enumerate(events) if mark == "▶"}
    finished = {sid: i for i, (mark, sid) in enumerate(events) if mark != "▶"}
    pairs = [("s4", "s1"), ("s5", "s2"), ("s6", "s3"), ("s7", "s4"), ("s10", "s6"), ("s12", "s11")]
    for later, earlier in pairs:
        assert finished[earlier] < started[later], (earlier, later, events)
    assert done.stdout.count("Plan revision 1 from the planner") == 1  # headers once


def make_threads(path: Path, threads: dict[str, str]) -> None:
    """Threads (id: goal) saved as a run leaves them before its planner."""

    async def make() -> None:
        async with open_checkpointer(path) as saver:
            graph = build_graph(checkpointer=saver)
            for thread, goal in threads.items():
                config: Any = {"configurable": {"thread_id": thread}}
                async for _ in graph.astream(
                    {"goal": goal}, config, context=Context(), interrupt_before=["planner"]
                ):
                    pass

    asyncio.run(make())


@pytest.mark.parametrize("width", [80, 120])
def test_threads_shows_ids_and_statuses_in_full_and_cuts_goals(place: Path, width: int) -> None:
    ids = [f"7daf2534-467d-4c09-be38-00000000000{n}" for n in range(3)]
    make_threads(place / "ck.sqlite", {t: f"a very long goal {'x' * 200} {t}" for t in ids})
    with open_terminal(BACKEND, width=width) as term:
        term.start(["planexec", "threads", "--checkpoint", str(place / "ck.sqlite")],
                   command_env(place / "home"))  # fmt: skip
        assert term.wait_exit() == 0
        text = term.transcript()
    for thread in ids:
        row = next(line for line in text.splitlines() if thread in line)
        assert "interrupted" in row
        assert "…" in row  # the goal was cut
        assert len(row) <= width
    piped = subprocess.run(
        [str(BIN / "planexec"), "threads", "--checkpoint", str(place / "ck.sqlite")],
        capture_output=True, text=True, timeout=60, check=True, env=command_env(place / "home"),
    ).stdout  # fmt: skip
    assert all(any(t in line and "interrupted" in line for line in piped.splitlines()) for t in ids)


# --- bad checkpoint files -------------------------------------------------------------------


def corrupt_one_row(path: Path, thread: str) -> None:
    with sqlite3.connect(path) as conn:
        (blob,) = conn.execute(
            "SELECT checkpoint FROM checkpoints WHERE thread_id = ? "
            "ORDER BY checkpoint_id DESC LIMIT 1",
            (thread,),
        ).fetchone()
        broken = bytes(blob[:10]) + b"\xc1" + bytes(blob[11:])
        conn.execute("UPDATE checkpoints SET checkpoint = ? WHERE thread_id = ?", (broken, thread))


def planexec_cmd(place: Path, *argv: str, user: list[str] | None = None,
                 key: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    # Credentials for `run`, and a closed port: a bad checkpoint stops it before any call.
    models = {"OPENAI_API_KEY": "x", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    env = command_env(place / "home", **models, **({"PLANEXEC_CHECKPOINT_KEY": key} if key else {}))
    return subprocess.run(
        [*(user or []), str(BIN / "planexec"), *argv],
        capture_output=True, text=True, timeout=60, check=False, env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


COMMANDS = [["threads"], ["show", "t1"], ["audit", "t1"], ["resume", "t1", "--approve"],
            ["run", "a goal", "--executor-model", "openai:e"]]  # fmt: skip


def one_line_rc2(done: subprocess.CompletedProcess[str], text: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("planexec: error: ")
    assert text in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_bad_checkpoint_files_give_one_line_rc_2_and_are_not_written(place: Path) -> None:
    good = place / "good.sqlite"
    make_threads(good, {"t1": "g1", "t2": "g2"})
    junk = place / "junk.sqlite"
    junk.write_bytes(b"this is not a database, it is a note\n" * 20)
    truncated = place / "truncated.sqlite"
    truncated.write_bytes(good.read_bytes()[:6000])
    other = place / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    cases = [
        (junk, "is not a SQLite checkpoint database"),
        (truncated, "is damaged ("),
        (other, "is a SQLite database, but not a planexec checkpoint file"),
    ]
    for path, message in cases:
        before = path.read_bytes()
        for argv in COMMANDS:
            done = planexec_cmd(place, *argv, "--checkpoint", str(path))
            one_line_rc2(done, message)
            assert path.read_bytes() == before, (path, argv)  # nothing written
            assert not path.with_name(path.name + "-wal").exists()


def test_one_unreadable_thread_is_listed_as_such_and_the_others_still_read(
    place: Path,
) -> None:
    path = place / "ck.sqlite"
    make_threads(path, {"t1": "first goal", "t2": "second goal", "t3": "third goal"})
    corrupt_one_row(path, "t2")
    done = planexec_cmd(place, "threads", "--checkpoint", str(path), "--json")
    assert done.returncode == 0, done.stderr
    rows = {t["thread_id"]: t for t in json.loads(done.stdout)["threads"]}
    assert rows["t1"]["status"] == rows["t3"]["status"] == "interrupted"
    assert rows["t2"]["status"] == "unreadable"
    assert "cannot be read" in rows["t2"]["problem"]
    table = planexec_cmd(place, "threads", "--checkpoint", str(path)).stdout
    assert "t2 is unreadable: a checkpoint value" in table
    one_line_rc2(planexec_cmd(place, "show", "t2", "--checkpoint", str(path)), "cannot be read")


def test_threads_encrypted_with_a_key_are_unreadable_without_it(place: Path) -> None:
    path = place / "ck.sqlite"
    env_key = "k" * 32
    done = planexec_cmd(place, "demo", "--yes", "--checkpoint", str(path), "--workspace",
                        str(place / "ws"), "--thread", "secret", key=env_key)  # fmt: skip
    assert done.returncode == 0, done.stderr
    make_threads(path, {"plain": "an unencrypted goal"})
    listed = json.loads(planexec_cmd(place, "threads", "--checkpoint", str(path), "--json").stdout)
    rows = {t["thread_id"]: t for t in listed["threads"]}
    assert rows["plain"]["status"] == "interrupted"
    assert rows["secret"]["status"] == "unreadable"
    assert "no checkpoint key is set" in rows["secret"]["problem"]
    one_line_rc2(planexec_cmd(place, "show", "secret", "--checkpoint", str(path)),
                 "no checkpoint key is set")  # fmt: skip


def unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="no setpriv")
def test_a_read_only_folder_is_read_by_readers_and_refused_by_writers(place: Path) -> None:
    folder = place / "ro"
    folder.mkdir()
    path = folder / "ck.sqlite"
    make_threads(path, {"t1": "g1"})
    os.chmod(path, 0o444)
    os.chmod(folder, 0o555)
    before = path.read_bytes()
    user = unprivileged()
    (place / "home").mkdir(mode=0o777)
    os.chmod(place / "home", 0o777)
    listed = planexec_cmd(place, "threads", "--checkpoint", str(path), "--json", user=user)
    assert listed.returncode == 0, listed.stderr
    assert [t["thread_id"] for t in json.loads(listed.stdout)["threads"]] == ["t1"]
    assert planexec_cmd(place, "show", "t1", "--checkpoint", str(path), user=user).returncode == 0
    assert planexec_cmd(place, "audit", "t1", "--checkpoint", str(path), user=user).returncode == 0
    for argv in (["resume", "t1", "--approve"], ["demo", "--yes", "--workspace", str(place / "w")]):
        done = planexec_cmd(place, *argv, "--checkpoint", str(path), user=user)
        one_line_rc2(done, "cannot be written")
    new = planexec_cmd(place, "run", "g", "--executor-model", "openai:e", "--checkpoint",
                       str(folder / "new.sqlite"), user=user)  # fmt: skip
    assert new.returncode == 2
    assert path.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["ck.sqlite"]


def test_a_read_only_mount_is_read_by_readers_and_refused_by_writers(place: Path) -> None:
    source, mount = place / "src", place / "mnt"
    source.mkdir()
    mount.mkdir()
    make_threads(source / "ck.sqlite", {"t1": "g1"})
    bound = subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True,
                           check=False)  # fmt: skip
    if bound.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        path = mount / "ck.sqlite"
        listed = planexec_cmd(place, "threads", "--checkpoint", str(path), "--json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["threads"][0]["thread_id"] == "t1"
        assert planexec_cmd(place, "show", "t1", "--checkpoint", str(path)).returncode == 0
        one_line_rc2(planexec_cmd(place, "resume", "t1", "--approve", "--checkpoint", str(path)),
                     "cannot be written")  # fmt: skip
    finally:
        subprocess.run(["umount", str(mount)], check=False)
