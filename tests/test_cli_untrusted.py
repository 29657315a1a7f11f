"""Text from models, tools and shared databases stays data in a real terminal and shell.

A corpus of escape sequences, controls and invisible characters goes through every
command that prints it (review table, live table, answer, `show`, `threads`), and thread
ids made of shell syntax go through completion in bash, zsh and fish.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from helpers import step
from planexec.cli.completion import bash_script, fish_script, zsh_script
from planexec.inert import inert_data, is_visible, visible
from terminal import BIN, command_env, open_terminal
from test_cli_terminal import make_threads

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

CORPUS = [
    "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: write the clipboard
    "\x1b[8mhidden\x1b[0m",  # concealed text
    "over\rwrite",  # carriage return
    "\u202etxt.exe",  # right-to-left override
    "zero\u200bwidth",  # zero-width space
    "c1\x9b31m",  # a C1 control sequence introducer
    "del\x7f",
    "tag\U000e0041",  # a tag character
    "\u2066iso\u2069",  # a bidi isolate
    "soft\u00adhyphen",
    "fill\u3164er",  # a Hangul filler draws nothing
]
MARK = "|".join(CORPUS)
SHOWN = visible(MARK)


def test_visible_spells_out_every_control_and_invisible_character() -> None:
    assert SHOWN == (
        "\\x1b[2J\\x1b[H|\\x1b]52;c;cHduZWQ=\\x07|\\x1b[8mhidden\\x1b[0m|over\\rwrite|"
        "<U+202E>txt.exe|zero<U+200B>width|c1\\x9b31m|del\\x7f|tag<U+E0041>|"
        "<U+2066>iso<U+2069>|soft\\xadhyphen|fill<U+3164>er"
    )
    assert is_visible(SHOWN)
    # The class, not the examples: every code point that is not plainly visible.
    for code in [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x200B, 0x200E, 0x2028, 0xFEFF]:
        assert not is_visible(chr(code)), hex(code)
        assert is_visible(visible(chr(code)))
    assert visible("naïve café 東京 ✓ → a b") == "naïve café 東京 ✓ → a b"
    assert visible("two\nlines\tand tab", multiline=True) == "two\nlines\tand tab"
    assert inert_data({"k\x1b": ["v\u202e", 3]}) == {"k\\x1b": ["v<U+202E>", 3]}


@pytest.fixture
def place() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="planexec-untrusted-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_untrusted_text_is_shown_escaped_by_every_command_and_kept_exact_in_json(
    place: Path,
) -> None:
    plan = [
        step("s1", tool="write_file", args={"path": "note.txt", "content": MARK},
             description=f"Write {MARK}"),
        step("s2", tool=None, depends_on=["s1"], description=f"Say {MARK}"),
    ]  # fmt: skip
    replies = [
        {"match": "You are the planner",
         "tool_calls": [{"name": "Plan", "arguments": {"steps": plan}}]},
        {"match": '<step id="s2">', "content": f"model says {MARK}"},
        {"match": "You are the replanner", "tool_calls": [{"name": "Replan", "arguments": {
            "action": "finish", "answer": f"answer {MARK}", "steps": None, "reason": MARK}}]},
    ]  # fmt: skip
    ck = str(place / "ck.sqlite")
    (place / "ws").mkdir()
    with FakeOpenAI(replies) as server:
        env = command_env(place / "home", OPENAI_BASE_URL=server.url, OPENAI_API_KEY="x")
        # The run in a pipe (its line view); show and threads on a terminal.
        ran = subprocess.run(
            [str(BIN / "planexec"), "run", f"goal {MARK}", "--yes", "--thread", "u",
             "--checkpoint", ck, "--workspace", str(place / "ws"), "--planner-model", "openai:p"],
            capture_output=True, text=True, timeout=120, check=False, env=env,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert "\x1b" not in ran.stdout
        assert "\u202e" not in ran.stdout
        screens = [ran.stdout]
        for argv in (
            ["show", "u", "--checkpoint", ck],
            ["threads", "--checkpoint", ck],
        ):  # fmt: skip
            with open_terminal("tmux", width=200, height=80) as term:
                term.start(["planexec", *argv], env)
                assert term.wait_exit(timeout=60) == 0, term.transcript()
                screens.append(term.transcript())
                assert term.buffers() == ""  # no OSC 52 clipboard write got through
        server.assert_done()
    run, show, threads = screens
    assert run.startswith("thread u\n")  # nothing cleared the screen
    assert show.startswith("thread u\n")
    # The answer (a pipe wraps a long word onto the next line).
    assert re.search(r"answer\s+\\x1b\[2J\\x1b\[H\|", run), run
    assert "│ \\x1b[2J\\x1b[H|\\x1b]52;c;" in run  # the descriptions in the review table
    assert '"\\u001b[2J' in run  # the arguments, as JSON
    assert "model says \\x1b[2J" in run or "✓ s2" in run
    assert "\\x1b[2J\\x1b[H|\\x1b]52;c;" in show
    assert f"answer {SHOWN}" in show
    assert "\\x1b[2J" in threads  # the goal, escaped
    for text in screens:
        assert "hidden" in text  # concealed text shows
    done = subprocess.run(
        [str(BIN / "planexec"), "show", "u", "--checkpoint", ck, "--json"],
        capture_output=True, text=True, timeout=60, check=True, env=env,
    )  # fmt: skip
    document = json.loads(done.stdout)
    assert document["answer"] == f"answer {MARK}"  # --json stays exact
    assert document["plan"]["steps"][0]["args"]["content"] == MARK
    assert (place / "ws" / "note.txt").read_bytes().decode() == MARK


# --- completion -------------------------------------------------------------------------

IDS = {
    "c1": "c1-$(touch PWNED)",
    "c2": "c2-`touch PWNED`",
    "c3": "c3-*",
    "c4": "c4-a b",
    "c5": "c5-x;touch PWNED",
    "c6": "c6-'q\"",
    "c7": "c7-$HOME",
    "c8": "c8-{a,b}|tee PWNED",
}
HIDDEN = "c9-\x1b]52;c;cHduZWQ=\x07"


def shell_setup(shell: str, folder: Path) -> tuple[list[str], str]:
    """The shell's command line, and what to type to load planexec's completion."""
    from planexec.cli import build_parser

    parser = build_parser()
    if shell == "bash":
        (folder / "planexec.bash").write_text(bash_script(parser))
        return ["bash", "--norc", "--noprofile", "-i"], f"source {folder}/planexec.bash"
    if shell == "zsh":
        functions = folder / "functions"
        functions.mkdir()
        (functions / "_planexec").write_text(zsh_script(parser))
        return ["zsh", "-f", "-i"], (
            f"fpath=({functions} $fpath); autoload -U compinit; compinit -u -D"
        )
    (folder / "planexec.fish").write_text(fish_script(parser))
    return ["fish", "--no-config", "-i"], f"source {folder}/planexec.fish"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completed_thread_ids_reach_the_shell_as_inert_words(place: Path, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    home = place / "home"
    home.mkdir()
    make_threads(home / "checkpoints.sqlite", {**{i: "g" for i in IDS.values()}, HIDDEN: "g"})
    argv, load = shell_setup(shell, place)
    env = command_env(home, PS1="$ ", SHELL=shutil.which(shell) or shell)
    env["HOME"] = str(place)
    with open_terminal("tmux", width=160, height=50) as term:
        term.start(argv, env, cwd=place)
        term.type(load)
        for prefix, thread in IDS.items():
            term.type(f"planexec show {prefix}", enter=False)
            term.press("Tab")
            term.wait_for(rf"planexec show {prefix}\S")  # the id went onto the line, quoted
            term.press("Enter")
            # show got the id itself: nothing in it was expanded or run.
            term.wait_for(rf"\nthread {_escape(thread)}\n")
        term.type("planexec show c9", enter=False)
        term.press("Tab")
        # A key typed after the TAB reaches the line only once the completion has
        # returned: then C-c goes to the shell, not to the completion still running.
        term.type("x", enter=False)
        term.wait_for(r"planexec show c9x")  # an id with controls is never offered
        term.press("C-c")
        term.type("echo done-marker")
        text = term.wait_for("done-marker", count=2)  # the typed line, then its output
        assert "c9-\\x1b" not in text.split("planexec show c9")[-1].split("\n")[0]
        assert term.buffers() == ""
    assert not (place / "PWNED").exists()
    assert not os.path.exists(Path.cwd() / "PWNED")


def _escape(text: str) -> str:
    import re

    return re.escape(text)
