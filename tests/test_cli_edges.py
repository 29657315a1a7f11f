"""The command line's edges, in this process: arguments, prefixes, goals, show --json, the demo."""

from __future__ import annotations

import json
import re
import sqlite3
import tempfile
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from helpers import ARITHMETIC, CLI_MODELS, cli, scripted_models
from planexec.cli import EPILOG, main
from planexec.scripted import plan_reply, replan_reply

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("cli_home")


def argparse_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as raised:
        main(list(argv))
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    return err


def test_argument_errors_name_what_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    err = argparse_error(capsys, "frobnicate")
    assert "invalid choice: 'frobnicate'" in err
    assert "'run'" in err
    assert "__complete" not in err
    assert "unrecognized arguments: --frob" in argparse_error(capsys, "--frob")
    assert "unrecognized arguments: --frob" in argparse_error(capsys, "threads", "--frob")
    assert "a COMMAND is required" in argparse_error(capsys)


def test_skip_takes_no_value_so_the_thread_is_never_swallowed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ck = str(tmp_path / "none.sqlite")
    code, _, err = cli(capsys, "resume", "--skip", "T", "--checkpoint", ck)
    assert code == 2
    assert "unknown thread T" in err  # T is the thread, not the message
    code, _, err = cli(capsys, "resume", "T", "--message", "why", "--checkpoint", ck)
    assert (code, err.strip()) == (2, "planexec: error: --message goes with --skip or --cancel")


def make_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path,
              *threads: str) -> None:  # fmt: skip
    for thread in threads:
        scripted_models(monkeypatch, planner=[plan_reply(ARITHMETIC)])
        code, _, _ = cli(
            capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(ck), "--thread", thread
        )
        assert code == 0


def test_thread_ids_take_any_unique_prefix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ck = tmp_path / "ck.sqlite"
    make_runs(monkeypatch, capsys, ck, "7daf2534-aaaa", "7daf9999-bbbb", "7d", "c0ffee")
    code, out, _ = cli(capsys, "show", "c0f", "--checkpoint", str(ck))
    assert code == 0
    assert out.startswith("thread c0ffee\n")
    code, out, _ = cli(capsys, "show", "7daf2", "--checkpoint", str(ck), "--json")
    assert json.loads(out)["thread_id"] == "7daf2534-aaaa"
    code, out, _ = cli(capsys, "show", "7d", "--checkpoint", str(ck))  # exact beats prefix
    assert out.startswith("thread 7d\n")
    code, _, err = cli(capsys, "show", "7daf", "--checkpoint", str(ck))
    assert code == 2
    assert "7daf is the start of several thread ids" in err
    assert "7daf2534-aaaa, 7daf9999-bbbb" in err
    assert "unknown thread zz" in cli(capsys, "audit", "zz", "--checkpoint", str(ck))[2]
    # resume and audit resolve the same way.
    scripted_models(monkeypatch, replanner=[replan_reply("finish", answer="43")])
    code, out, _ = cli(capsys, "resume", "c0f", "--checkpoint", str(ck), "--approve")
    assert code == 0
    assert "resuming thread c0ffee" in out
    code, out, _ = cli(capsys, "audit", "c0ff", "--checkpoint", str(ck))
    assert json.loads(out.splitlines()[-1])["type"] == "run_finished"


def test_a_refused_goal_leaves_no_thread(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ck = tmp_path / "ck.sqlite"
    models = scripted_models(monkeypatch, planner=[plan_reply(ARITHMETIC)])
    long_goal = "x" * 20_001
    code, _, err = cli(capsys, "run", long_goal, *CLI_MODELS, "--checkpoint", str(ck))
    assert code == 2
    assert "the goal is 20001 characters long; the most allowed is 20000" in err
    assert len(err.strip().splitlines()) == 1
    assert not ck.exists()
    assert models["planner"].calls == []
    make_runs(monkeypatch, capsys, ck, "ok")
    code, _, _ = cli(capsys, "run", long_goal, *CLI_MODELS, "--checkpoint", str(ck))
    assert code == 2
    rows = json.loads(cli(capsys, "threads", "--checkpoint", str(ck), "--json")[1])["threads"]
    assert [t["thread_id"] for t in rows] == ["ok"]


def test_show_json_has_status_thread_and_pending_interrupt_but_no_internals(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ck = tmp_path / "ck.sqlite"
    make_runs(monkeypatch, capsys, ck, "p")
    document = json.loads(cli(capsys, "show", "p", "--checkpoint", str(ck), "--json")[1])
    assert document["thread_id"] == "p"
    assert document["status"] == "paused_for_review"
    assert document["paused"] == "plan_review"
    assert document["interrupt"]["plan"]["steps"][0]["id"] == "s1"
    assert document["goal"] == "g"
    for internal in ("draft", "draft_attempts", "draft_errors", "active_s", "awaiting_approval"):
        assert internal not in document
    listed = json.loads(cli(capsys, "threads", "--checkpoint", str(ck), "--json")[1])
    assert listed["threads"][0]["status"] == document["status"]  # one vocabulary


def test_the_exit_codes_people_read_are_the_ones_the_command_returns() -> None:
    readme = (ROOT / "README.md").read_text()
    sentence = re.search(r"Exit codes: (.+?)\n", readme)
    assert sentence is not None
    text = sentence.group(1)
    for code, words in [
        ("0", "completed or paused"),
        ("1", "failed, cancelled or out of budget"),
        ("2", "a usage error"),
        ("3", "the thread is busy"),
        ("130", "Ctrl-C"),
    ]:
        assert re.search(rf"\b{code} {re.escape(words)}", text), (code, text)
        assert code in EPILOG
    assert "130 Ctrl-C" in EPILOG


def test_demo_rejecting_the_report_step_ends_sensibly(
    capsys: pytest.CaptureFixture[str], answers: list[str], tmp_path: Path
) -> None:
    ck, ws = tmp_path / "ck.sqlite", tmp_path / "ws"
    # Reject the plan twice, approve the third, approve the replanner's, reject the write.
    answers += ["r", "no sum", "r", "still no sum", "a", "r", "not now"]
    code, out, _ = cli(
        capsys, "demo", "--checkpoint", str(ck), "--workspace", str(ws), "--thread", "d"
    )
    assert code == 0, out
    assert "status: completed" in out
    assert "report.md was not written: you rejected the step that writes it" in out
    assert "ScriptExhausted" not in out
    assert not (ws / "report.md").exists()
    values = json.loads(cli(capsys, "show", "d", "--checkpoint", str(ck), "--json")[1])
    assert [r["decision"] for r in values["reviews"]] == ["reject", "reject", "approve"]


def test_a_demo_choice_past_its_script_pauses_and_resumes_with_a_real_model(
    capsys: pytest.CaptureFixture[str],
    answers: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ck, ws = tmp_path / "ck.sqlite", tmp_path / "ws"
    # The script covers ten rejections; the eleventh needs a model to write a plan.
    for n in range(11):
        answers += ["r", f"try again {n}"]
    code, out, _ = cli(
        capsys, "demo", "--checkpoint", str(ck), "--workspace", str(ws), "--thread", "d"
    )
    assert code == 0, out
    assert "the demo's scripted replies do not cover this choice" in out
    assert "paused for a real model; resume with: planexec resume d" in out
    assert "ScriptExhausted" not in out
    shown = json.loads(cli(capsys, "show", "d", "--checkpoint", str(ck), "--json")[1])
    assert (shown["status"], shown["paused"]) == ("awaiting_model", "needs_model"), shown
    assert [r["decision"] for r in shown["reviews"]] == ["reject"] * 11

    # Without a model to ask: one line, nothing changes.
    code, _, err = cli(capsys, "resume", "d", "--checkpoint", str(ck), "--approve")
    assert code == 2
    assert "OPENAI_API_KEY" in err
    assert len(err.strip().splitlines()) == 1
    plan = [{"id": "t1", "description": "Add", "tool": "calculator",
             "args": {"expression": "1 + 1"}, "depends_on": []}]  # fmt: skip
    replies = [
        {"match": "You are the planner", "tool_calls": [{"name": "Plan", "arguments":
            {"steps": plan, "answer": None}}]},
        {"match": "You are the replanner", "tool_calls": [{"name": "Replan", "arguments": {
            "action": "finish", "answer": "two", "steps": None, "reason": "done"}}]},
    ]  # fmt: skip
    with FakeOpenAI(replies) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        code, out, err = cli(capsys, "resume", "d", "--checkpoint", str(ck), "--approve")
        assert code == 0, out + err
        server.assert_done()
    assert "status: completed" in out
    done = json.loads(cli(capsys, "show", "d", "--checkpoint", str(ck), "--json")[1])
    assert (done["status"], done["answer"]) == ("completed", "two")
    assert [r["source"] for r in done["revisions"]][-1] == "planner"


def test_a_refused_demo_leaves_no_temporary_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ck = tmp_path / "ck.sqlite"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code, _, _ = cli(capsys, "demo", "--yes", "--checkpoint", str(ck), "--thread", "d")
    assert code == 0
    first = set(scratch.iterdir())
    assert len(first) == 1  # the run's workspace stays, with its report
    code, _, err = cli(capsys, "demo", "--yes", "--checkpoint", str(ck), "--thread", "d")
    assert code == 2
    assert "thread d already exists" in err
    assert set(scratch.iterdir()) == first


def test_a_direct_answer_says_nobody_reviewed_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    direct = {"tool_calls": [{"name": "Plan", "args": {"steps": [], "answer": "Hello!"}}]}
    scripted_models(monkeypatch, planner=[direct])
    code, out, _ = cli(capsys, "run", "hi", *CLI_MODELS, "--checkpoint", str(tmp_path / "c"))
    assert code == 0
    assert "answered directly by the planner: no plan, so nobody reviewed this answer" in out
    assert "Hello!" in out
    with sqlite3.connect(tmp_path / "c") as conn:
        assert conn.execute("SELECT COUNT(DISTINCT thread_id) FROM checkpoints").fetchone()[0] == 1
