"""The `planexec` command line: run, resume, show, demo; in-process and as a real command."""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from fake_openai import FakeOpenAI
from helpers import ARITHMETIC, CLI_MODELS, cli, scripted_models, step
from planexec import ScriptedChatModel
from planexec.cli import commands, main
from planexec.cli.environment import Environment, default_home
from planexec.cli.opening import CONTEXT_KEY
from planexec.demo import load_scenario
from planexec.scripted import plan_reply, replan_reply

ROOT = Path(__file__).resolve().parent.parent
PLANEXEC = ROOT / ".venv" / "bin" / "planexec"
FIXED_S7 = "{{s4}} + {{s5}} + {{s6}}"
pytestmark = pytest.mark.usefixtures("cli_home")


@pytest.fixture
def ck(tmp_path: Path) -> Path:
    return tmp_path / "ck.sqlite"


def run_cmd(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLANEXEC), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {}), "COLUMNS": "220"},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def stored_context(path: Path, thread: str) -> dict[str, Any]:
    with sqlite3.connect(path, check_same_thread=False) as conn:
        found = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": thread}})
    assert found is not None
    context: dict[str, Any] = json.loads(found.metadata[CONTEXT_KEY])
    return context


def revenue_totals(workspace: Path) -> dict[str, int]:
    totals = {}
    for region in ("north", "south", "west"):
        with (workspace / "sales" / f"{region}.csv").open() as handle:
            totals[region] = sum(int(row["revenue"]) for row in csv.DictReader(handle))
    return totals


# --- the demo -------------------------------------------------------------------------


def test_demo_console_script_runs_offline_and_show_tells_the_story(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace, checkpoint = tmp_path / "ws", tmp_path / "demo.sqlite"
    done = run_cmd("demo", "--yes", "--checkpoint", str(checkpoint), "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert "scripted" in first
    assert "no model is called" in done.stdout
    assert "SQLite checkpoint are real" in done.stdout
    assert "CalculatorError: unknown function 'sum'" in done.stdout
    assert "status: completed" in done.stdout
    assert "Traceback" not in done.stderr

    totals = revenue_totals(workspace)
    report = (workspace / "report.md").read_text()
    for region, total in totals.items():
        assert f"| {region.title()} | {total} |" in report
    assert f"| **Total** | **{sum(totals.values())}** |" in report
    assert sum(totals.values()) == 118400

    thread = re.search(r"^thread\s+(\S+)$", done.stdout, re.M)
    assert thread is not None
    code, out, _ = cli(capsys, "show", thread.group(1), "--checkpoint", str(checkpoint))
    assert code == 0
    assert "plan revisions" in out
    assert "added s10, s11, s12; removed s7, s8, s9" in out
    assert "steps of earlier revisions" in out
    assert "CalculatorError: unknown function 'sum'" in out
    assert "scripted replies" in out

    code, out, _ = cli(capsys, "show", thread.group(1), "--checkpoint", str(checkpoint), "--json")
    values = json.loads(out)
    assert [r["source"] for r in values["revisions"]] == ["planner", "replanner"]
    assert values["results"]["s10"]["output"] == 118400
    assert values["results"]["s7"]["status"] == "failed"


def test_demo_without_a_terminal_approves_automatically_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(
        capsys, "demo", "--checkpoint", str(tmp_path / "c.sqlite"), "--workspace", str(tmp_path)
    )
    assert code == 0
    assert out.count("approved (automatically: stdin is not a terminal)") == 3
    assert (tmp_path / "report.md").is_file()


def test_demo_bundles_its_workspace_and_script() -> None:
    scenario = load_scenario()
    assert "report.md" in scenario.goal
    assert len(scenario.replies["planner"]) == 11  # ten feedback replies ("times": 10)
    assert all(r.get("match") for role in scenario.replies.values() for r in role)


def test_demo_reject_gets_the_planner_to_fix_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answers: list[str], ck: Path
) -> None:
    answers += ["r", "the calculator has no sum()", "a", "a"]
    code, out, _ = cli(
        capsys, "demo", "--checkpoint", str(ck), "--workspace", str(tmp_path), "--thread", "t"
    )
    assert code == 0, out
    assert "Approve it to watch s7 fail" in out  # the hint, shown only interactively
    code, out, _ = cli(capsys, "show", "t", "--checkpoint", str(ck), "--json")
    values = json.loads(out)
    assert [r["source"] for r in values["revisions"]] == ["planner", "planner"]
    assert [(r["decision"], r["message"]) for r in values["reviews"]] == [
        ("reject", "the calculator has no sum()"),
        ("approve", None),
    ]
    assert values["results"]["s7"]["output"] == 118400
    assert "118400" in (tmp_path / "report.md").read_text()


EDITOR = """\
import json, pathlib, sys
count, path = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
calls = int(count.read_text()) if count.exists() else 0
count.write_text(str(calls + 1))
plan = json.loads(path.read_text())
s7 = next(s for s in plan["steps"] if s["id"] == "s7")
if calls == 0:
    s7["tool"] = "abacus"
else:
    s7["tool"] = "calculator"
    s7["args"] = {"expression": "{{s4}} + {{s5}} + {{s6}}"}
path.write_text(json.dumps(plan))
"""


def test_demo_edit_in_editor_shows_refusals_and_asks_again(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answers: list[str],
    monkeypatch: pytest.MonkeyPatch,
    ck: Path,
) -> None:
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor} {tmp_path / 'count'}")
    answers += ["e", "y", "e", "y", "a"]  # each edit is shown as a diff and confirmed
    ws = tmp_path / "ws"
    code, out, _ = cli(
        capsys, "demo", "--checkpoint", str(ck), "--workspace", str(ws), "--thread", "t"
    )
    assert code == 0, out
    assert "The decision was not accepted" in out
    assert "unknown tool 'abacus'" in out
    assert '+      "tool": "abacus",' in out  # the diff against the proposal
    values = json.loads(cli(capsys, "show", "t", "--checkpoint", str(ck), "--json")[1])
    assert [r["source"] for r in values["revisions"]] == ["planner", "human"]
    assert values["plan"]["steps"][6]["args"] == {"expression": FIXED_S7}
    assert values["results"]["s7"]["output"] == 118400
    assert "118400" in (ws / "report.md").read_text()


def test_paused_demo_resumes_in_another_process_with_an_edited_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answers: list[str], ck: Path
) -> None:
    answers += ["a", "a"]  # both plan reviews; then Ctrl-D at the step approval
    code, out, _ = cli(
        capsys, "demo", "--checkpoint", str(ck), "--workspace", str(tmp_path), "--thread", "t"
    )
    assert code == 0
    assert "paused for step approval; resume with: planexec resume t --checkpoint" in out
    assert not (tmp_path / "report.md").exists()

    args = tmp_path / "args.json"
    args.write_text(json.dumps({"path": "custom.md", "content": "edited by a person"}))
    done = run_cmd("resume", "t", "--checkpoint", str(ck), "--edit", str(args))
    assert done.returncode == 0, done.stderr
    assert "status: completed" in done.stdout
    assert (tmp_path / "custom.md").read_text() == "edited by a person"
    assert not (tmp_path / "report.md").exists()


# --- run and resume -------------------------------------------------------------------


def test_run_without_a_terminal_pauses_then_resume_approves(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path, tmp_path: Path
) -> None:
    models = scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="The answer is 43.")],
    )
    code, out, _ = cli(
        capsys, "run", "compute", "6*7+1", *CLI_MODELS, "--checkpoint", str(ck), "--thread", "t1"
    )
    assert code == 0
    assert out.splitlines()[0] == "thread t1"
    assert "Plan revision 1 from the planner" in out
    assert '{"expression": "{{s1}} + 1"}' in out
    assert (
        "paused for review; resume with: planexec resume t1 --checkpoint "
        f"{ck} [--approve | --reject MSG | --edit FILE]"
    ) in out
    assert len(models["replanner"].calls) == 0

    code, out, _ = cli(capsys, "resume", "t1", "--checkpoint", str(ck), "--approve")
    assert code == 0
    assert re.search(r"✓ s2\s+calculator\s+done", out)
    assert "status: completed" in out
    assert "The answer is 43." in out
    assert f"planexec show t1 --checkpoint {ck}" in out
    assert "replanner" in out  # the model-use table
    assert models["planner"].calls[0].prompt.count("compute 6*7+1") == 1


def test_run_yes_json_prints_one_document_on_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    code, out, err = cli(
        capsys, "run", "6*7+1", *CLI_MODELS, "--checkpoint", str(ck), "--yes", "--json"
    )
    assert code == 0
    document = json.loads(out)
    assert document["status"] == "completed"
    assert document["answer"] == "43"
    assert document["paused"] is None
    assert document["results"]["s2"]["output"] == 43
    assert document["usage"]["planner"]["calls"] == 1
    assert "approved (--yes)" in err


def test_run_json_paused_names_the_interrupt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    scripted_models(monkeypatch, planner=[plan_reply(ARITHMETIC)])
    code, out, _ = cli(
        capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(ck), "--json", "--thread", "j"
    )
    assert code == 0
    document = json.loads(out)
    assert document["thread_id"] == "j"
    assert document["paused"] == "plan_review"
    assert document["interrupt"]["plan"]["steps"][0]["id"] == "s1"
    assert document["status"] is None


def test_run_without_review_shows_the_plan_and_exits_1_when_it_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    scripted_models(monkeypatch, planner=[plan_reply([step("s1", args={"expression": "1/0"})])])
    code, out, _ = cli(
        capsys, "run", "divide", *CLI_MODELS, "--checkpoint", str(ck), "--review", "never",
        "--max-replans", "0",
    )  # fmt: skip
    assert code == 1
    assert '{"expression": "1/0"}' in out  # the plan, printed although nobody reviews it
    assert "division by zero" in out
    assert "status: budget_exhausted" in out
    assert "replan budget (max_replans=0)" in out


def test_reject_sends_feedback_to_the_planner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    models = scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC), plan_reply(ARITHMETIC[:1])],
        replanner=[replan_reply("finish", answer="42")],
    )
    cli(capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(ck), "--thread", "t")
    code, out, _ = cli(capsys, "resume", "t", "--checkpoint", str(ck), "--reject", "one step only")
    assert code == 0
    assert "Plan revision 2 from the planner" in out
    assert "paused for review" in out
    assert "<feedback>\none step only\n</feedback>" in models["planner"].calls[1].prompt
    code, out, _ = cli(capsys, "resume", "t", "--checkpoint", str(ck), "--cancel")
    assert code == 1
    assert "status: cancelled" in out


def test_interactive_review_approves_and_asks_again_on_a_bad_answer(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answers: list[str],
    ck: Path,
) -> None:
    scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    answers += ["x", "approve"]
    code, out, _ = cli(capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(ck))
    assert code == 0
    assert "please answer one of: a, v, e, r, c" in out
    assert "status: completed" in out


def test_resume_keeps_the_run_settings_and_lets_options_override_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path, tmp_path: Path
) -> None:
    scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    args = ["--checkpoint", str(ck), "--max-replans", "1", "--workspace", str(tmp_path)]
    cli(capsys, "run", "g", *CLI_MODELS, *args, "--thread", "t")
    before = stored_context(ck, "t")
    assert (before["max_replans"], before["workspace"]) == (1, str(tmp_path))
    assert before["executor_model"] == "openai:executor"

    code, _, _ = cli(
        capsys, "resume", "t", "--checkpoint", str(ck), "--approve", "--max-replans", "2"
    )
    assert code == 0
    after = stored_context(ck, "t")
    assert after == {**before, "max_replans": 2}

    code, out, _ = cli(capsys, "show", "t", "--checkpoint", str(ck))
    assert "executor openai:executor" in out
    assert f"workspace: {tmp_path}" in out


def test_a_failed_model_call_ends_the_run_failed_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    scripted_models(monkeypatch, planner=[RuntimeError("connection reset")])
    code, out, _ = cli(
        capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(ck), "--thread", "t", "--yes"
    )
    assert code == 1
    assert "status: failed" in out
    assert "the planner model call failed: RuntimeError: connection reset" in out


def test_resume_continues_a_run_that_stopped_on_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    models = scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    made: list[str] = []

    def flaky_factory(env: object) -> object:
        def make(spec: str, ctx: object) -> ScriptedChatModel:
            made.append(spec)
            # The CLI first makes one model per role to check its settings; the next
            # one is made inside the graph.
            if len(made) == 4:
                raise RuntimeError("connection reset")
            return models[spec.split(":")[1]]

        return make

    # A failure outside any model call (here, making the client) escapes the graph.
    monkeypatch.setattr(commands, "model_factory", flaky_factory)
    with pytest.raises(RuntimeError, match="connection reset"):
        main(["run", "g", *CLI_MODELS, "--checkpoint", str(ck), "--thread", "t", "--yes"])
    out = capsys.readouterr().out
    assert f"Continue with: planexec resume t --checkpoint {ck}" in out
    assert "interrupted before planner" in cli(capsys, "show", "t", "--checkpoint", str(ck))[1]

    code, out, _ = cli(capsys, "resume", "t", "--checkpoint", str(ck), "--yes")
    assert code == 0
    assert "status: completed" in out
    assert len(models["planner"].calls) == 1


def test_default_checkpoint_lives_in_planexec_home(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scripted_models(monkeypatch, planner=[plan_reply(ARITHMETIC)])
    code, out, _ = cli(capsys, "run", "g", *CLI_MODELS, "--thread", "h")
    assert code == 0
    assert (tmp_path / "home" / "checkpoints.sqlite").is_file()
    assert "resume with: planexec resume h [--approve" in out  # no --checkpoint needed
    assert "paused for plan review (revision 1)" in cli(capsys, "show", "h")[1]


def test_home_follows_planexec_home_then_xdg() -> None:
    assert default_home({"PLANEXEC_HOME": "/p"}) == Path("/p")
    assert default_home({"XDG_DATA_HOME": "/x"}) == Path("/x/planexec")
    assert default_home({}) == Path("~/.local/share/planexec").expanduser()
    env = Environment.read({"OPENAI_BASE_URL": "http://h/v1"}, interactive=False)
    assert (env.api_key, env.base_url, env.editor) == (None, "http://h/v1", "vi")


# --- user errors: one line, exit code 2 ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", " "], "the goal is empty"),
        (["run", "g", "--planner-model", "gpt-4.1"], "not of the form '<provider>:<model name>'"),
        (["run", "g", "--planner-model", "acme:big"], "unknown model provider 'acme'"),
        (["run", "g"], "no credentials for model 'openai:gpt-4.1': set OPENAI_API_KEY"),
        (["run", "g", "--max-replans", "-1"], "invalid setting max_replans"),
        (["run", "g", "--workspace", "/no/such/dir"], "is not a directory"),
        (["show", "nope"], "no checkpoint file at"),
        (["resume", "nope"], "no checkpoint file at"),
        (["run"], "the following arguments are required: GOAL"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(str(exc.code))
    out, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_thread_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path, tmp_path: Path
) -> None:
    scripted_models(monkeypatch, planner=[plan_reply(ARITHMETIC)])
    cli(capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(ck), "--thread", "t")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"steps": [step("s1", tool="abacus", args={})]}))
    cases = [
        (["show", "nope", "--checkpoint", str(ck)], f"unknown thread nope in {ck}"),
        (["resume", "nope", "--checkpoint", str(ck)], "unknown thread nope"),
        (["run", "g", *CLI_MODELS, "--checkpoint", str(ck), "--thread", "t"], "already exists"),
        (["resume", "t", "--checkpoint", str(ck), "--edit", str(bad_json)], "is not valid JSON"),
        (["resume", "t", "--checkpoint", str(ck), "--edit", str(invalid)], "unknown tool 'abacus'"),
        (["resume", "t", "--checkpoint", str(ck), "--reject", " "], "--reject needs a message"),
    ]
    for argv, message in cases:
        code, _, err = cli(capsys, *argv)
        assert code == 2, argv
        assert message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1
        assert "Traceback" not in err
    # The refused edit left the thread paused at the same review.
    assert (
        "paused for plan review (revision 1)"
        in cli(capsys, "show", "t", "--checkpoint", str(ck))[1]
    )


def test_missing_credentials_from_the_real_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run(
        [str(PLANEXEC), "run", "add 2 and 2", "--checkpoint", str(tmp_path / "c.sqlite")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("planexec: error: no credentials for model 'openai:gpt-4.1'")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "c.sqlite").exists()


# --- a real model client against a local OpenAI-compatible server ---------------------

PLANNER = "You are the planner"
REPLANNER = "You are the replanner"
SERVER_PLAN = [
    step("s1", args={"expression": "12*4"}, description="Multiply 12 by 4"),
    step("s2", args={"expression": "{{s1}} + 5"}, depends_on=["s1"], description="Add 5"),
    step("s3", tool=None, depends_on=["s2"], description="Say the result in one sentence"),
]


def server_replies() -> list[dict[str, Any]]:
    return [
        {"match": PLANNER, "tool_calls": [{"name": "Plan", "arguments": {"steps": SERVER_PLAN}}]},
        {"match": '<step id="s3">', "content": "Twelve fours and five make 53."},
        {
            "match": REPLANNER,
            "tool_calls": [
                {
                    "name": "Replan",
                    "arguments": {
                        "action": "finish",
                        "answer": "12 * 4 + 5 = 53",
                        "steps": None,
                        "reason": "all steps done",
                    },
                }
            ],
        },
    ]


@pytest.mark.integration
def test_run_yes_against_a_local_openai_server(tmp_path: Path) -> None:
    with FakeOpenAI(server_replies()) as server:
        done = run_cmd(
            "run", "What is 12 * 4 + 5?", "--yes", "--checkpoint", str(tmp_path / "c.sqlite"),
            "--planner-model", "openai:big-planner", "--executor-model", "openai:small-exec",
            env={"OPENAI_BASE_URL": server.url},
        )  # fmt: skip
        server.assert_done()
    assert done.returncode == 0, done.stderr
    assert re.search(r"✓ s2\s+calculator\s+done", done.stdout)
    assert re.search(r"✓ s3\s+\(model\)\s+done", done.stdout)
    assert "status: completed" in done.stdout
    assert "12 * 4 + 5 = 53" in done.stdout
    models = [(body["model"], prompt_of_first_system(body)) for body in server.requests]
    assert models == [
        ("big-planner", PLANNER),
        ("small-exec", "You carry out one step"),
        ("big-planner", REPLANNER),  # the replanner defaults to the planner's model
    ]


def prompt_of_first_system(body: dict[str, Any]) -> str:
    text = str(body["messages"][0]["content"])
    for prefix in (PLANNER, REPLANNER, "You carry out one step"):
        if text.startswith(prefix):
            return prefix
    return text[:40]


@pytest.mark.integration
def test_paused_run_resumes_in_another_process_from_the_same_sqlite_file(
    tmp_path: Path,
) -> None:
    checkpoint = str(tmp_path / "c.sqlite")
    with FakeOpenAI(server_replies()) as server:
        env = {"OPENAI_BASE_URL": server.url}
        paused = run_cmd("run", "What is 12 * 4 + 5?", "--checkpoint", checkpoint,
                         "--thread", "x1", "--json", env=env)  # fmt: skip
        assert paused.returncode == 0, paused.stderr
        assert json.loads(paused.stdout)["paused"] == "plan_review"
        assert "paused for review; resume with: planexec resume x1" in paused.stderr
        assert len(server.requests) == 1  # only the planner: nothing ran before review

        done = run_cmd("resume", "x1", "--checkpoint", checkpoint, "--approve", env=env)
        server.assert_done()
    assert done.returncode == 0, done.stderr
    assert "status: completed" in done.stdout
    assert "12 * 4 + 5 = 53" in done.stdout
