"""The live progress table, interactive plan editing, and `--json` on every command."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from helpers import ARITHMETIC, CLI_MODELS, cli, scripted_models, step
from planexec.cli.live import ProgressView
from planexec.scripted import plan_reply, replan_reply

SERVER = Path(__file__).resolve().parent.parent / "examples" / "mcp_server.py"
CURSOR_UP = "\x1b[1A"
pytestmark = pytest.mark.usefixtures("cli_home")


def event(name: str, **fields: Any) -> dict[str, Any]:
    return {"planexec": 1, "event": name, **fields}


# --- the live table -------------------------------------------------------------------


def test_on_a_terminal_the_steps_table_is_redrawn_in_place() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=150, color_system=None)
    view = ProgressView(console, show_plans=True)  # no review: the view announces plans
    assert view.live
    view.update("planner", {"plan": {"steps": ARITHMETIC}})
    view.handle(event("plan_ready", revision=1, source="planner", steps=2, reason=None))
    view.handle(event("step_started", step="s1", tool="calculator", revision=1))
    assert "running" in buffer.getvalue()
    view.handle(event("step_finished", step="s1", status="done", duration_s=0.25, attempts=1))
    view.handle(event("step_started", step="s2", tool="calculator", revision=1))
    view.handle(
        event("step_finished", step="s2", status="failed", duration_s=1.5, attempts=3,
              error="CalculatorError: boom")
    )  # fmt: skip
    view.update("executor", {"results": {"s1": {"status": "done", "output": 42, "error": None}}})
    view.stop()
    text = buffer.getvalue()
    assert CURSOR_UP in text  # the table was redrawn over itself
    assert "● plan revision 1 from the planner: 2 steps" in text
    final = text[text.rindex("plan revision 1 · ") :]
    assert final.startswith("plan revision 1 · 1/2 done")
    s1 = next(line for line in final.splitlines() if "│ s1" in line)
    assert "✓ done" in s1
    assert "0.25s" in s1
    assert "42" in s1
    s2 = next(line for line in final.splitlines() if "│ s2" in line)
    assert "✗ failed (3 attempts)" in s2
    assert "CalculatorError: boom" in s2


def test_elsewhere_events_are_printed_as_lines() -> None:
    buffer = io.StringIO()
    view = ProgressView(Console(file=buffer, width=150))
    assert not view.live
    view.handle(event("step_started", step="s1", tool="calculator", revision=1))
    view.handle(event("step_finished", step="s1", status="done", duration_s=0.25, attempts=1))
    view.stop()
    assert CURSOR_UP not in buffer.getvalue()
    assert buffer.getvalue().splitlines() == [
        "  ▶ s1    calculator   started",
        "  ✓ s1    calculator   done     0.25s",
    ]


def test_run_on_a_terminal_shows_the_live_table_and_approval_waits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def terminal_console(stream: Any = None) -> Console:
        return Console(file=stream or sys.stdout, force_terminal=True, width=200, color_system=None)

    monkeypatch.setattr("planexec.cli.make_console", terminal_console)
    config = tmp_path / "mcp.json"
    shop = {"command": sys.executable, "args": [str(SERVER)], "requires_approval": ["add_to_cart"]}
    config.write_text(json.dumps({"mcpServers": {"shop": shop}}))
    plan = [
        step("s1", "lookup_price", {"item": "pear"}),
        step("s2", "add_to_cart", {"item": "pear", "qty": 2}, ["s1"]),
        step("s3", "cart_total", {}, ["s2"]),
    ]
    scripted_models(
        monkeypatch, planner=[plan_reply(plan)], replanner=[replan_reply("finish", answer="1.5")]
    )
    code, out, _ = cli(capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(tmp_path / "c"),
                       "--yes", "--review", "never", "--mcp-config", str(config))  # fmt: skip
    assert code == 0
    assert "▶" not in out  # no event lines on a terminal
    assert CURSOR_UP in out
    # The table stopped for the approval question, then went on.
    paused = out.index("Steps waiting for your approval")
    assert "awaiting approval" in out[:paused]
    assert "plan revision 1 · 3/3 done" in out[paused:]
    assert "2 pear" in out[paused:]
    assert out.rindex("plan revision 1 ·") < out.index("status: completed")


# --- interactive plan editing ---------------------------------------------------------


EDITOR = """\
import json, pathlib, sys
log, path = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
seen = json.loads(log.read_text()) if log.exists() else []
seen.append(path.read_text())
log.write_text(json.dumps(seen))
if len(seen) == 1:
    path.write_text('{"steps": [\\n  {"id": "s1",, "tool": "calculator"}\\n]}\\n')
elif len(seen) == 2:
    plan = {"steps": [{"id": "s1", "description": "d", "tool": "abacus", "args": {},
                       "depends_on": []}]}
    path.write_text(json.dumps(plan))
else:
    plan = json.loads(path.read_text())
    plan["steps"][0].update(tool="calculator", args={"expression": "2**10"})
    path.write_text(json.dumps(plan))
"""


def run_editing_three_times(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answers: list[str],
    tmp_path: Path,
    *options: str,
) -> tuple[int, str, list[str]]:
    """`planexec run` edited three times with EDITOR above: code, stdout, texts seen."""
    editor, log = tmp_path / "editor.py", tmp_path / "seen.json"
    editor.write_text(EDITOR)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor} {log}")
    scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="1024")],
    )
    answers += ["e", "e", "y", "e", "y"]  # an edit that parses is confirmed after its diff
    code, out, _ = cli(capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(tmp_path / "c"),
                       *options)  # fmt: skip
    seen: list[str] = json.loads(log.read_text())
    return code, out, seen


def test_a_refused_edit_is_explained_and_reopened_as_the_person_wrote_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answers: list[str],
    tmp_path: Path,
) -> None:
    code, out, seen = run_editing_three_times(monkeypatch, capsys, answers, tmp_path, "--json")
    assert code == 0, out
    assert json.loads(seen[0])["steps"][1]["id"] == "s2"  # first: the plan under review
    assert seen[1].startswith('{"steps": [\n  {"id": "s1",,')  # then the text that did not parse
    assert json.loads(seen[2])["steps"][0]["tool"] == "abacus"  # then the edit that was refused
    assert json.loads(out)["results"]["s1"]["output"] == 1024


def test_editing_errors_are_explained_on_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answers: list[str],
    tmp_path: Path,
) -> None:
    code, out, _ = run_editing_three_times(monkeypatch, capsys, answers, tmp_path)
    assert code == 0
    lines = out.splitlines()
    where = next(i for i, line in enumerate(lines) if "is not valid JSON" in line)
    assert "line 2, column 15: Expecting property name enclosed in double quotes" in lines[where]
    assert lines[where + 1] == '    {"id": "s1",, "tool": "calculator"}'
    assert lines[where + 2] == "  " + " " * 14 + "^"
    assert "the next edit starts from your text" in lines[where + 3]
    assert "step s1: unknown tool 'abacus' (available:" in out
    assert "Your edit was not run. Choose e to fix it (the editor opens with your version)" in out
    assert "status: completed" in out


# --- --json everywhere ----------------------------------------------------------------


def test_every_command_prints_one_json_document_on_stdout_with_progress_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    ck = ["--checkpoint", str(tmp_path / "c.sqlite")]

    code, out, err = cli(capsys, "run", "g", *CLI_MODELS, *ck, "--thread", "t", "--json")
    assert (code, json.loads(out)["paused"]) == (0, "plan_review")
    assert "Plan revision 1" in err

    code, out, err = cli(capsys, "resume", "t", *ck, "--approve", "--json")
    assert (code, json.loads(out)["answer"]) == (0, "43")
    assert "s2" in err

    code, out, _ = cli(capsys, "show", "t", *ck, "--json")
    assert json.loads(out)["results"]["s2"]["output"] == 43

    code, out, err = cli(capsys, "demo", "--yes", *ck, "--thread", "d", "--json",
                         "--workspace", str(tmp_path / "ws"))  # fmt: skip
    document = json.loads(out)
    assert (code, document["status"], document["thread_id"]) == (0, "completed", "d")
    assert "scripted" in err

    code, out, _ = cli(capsys, "threads", *ck, "--json")
    threads = json.loads(out)["threads"]
    assert [(t["thread_id"], t["status"], t["demo"]) for t in threads] == [
        ("d", "completed", True),
        ("t", "completed", False),
    ]
