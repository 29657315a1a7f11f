"""`planexec threads`, and shell completion (`planexec completion`, `planexec __complete`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.errors import GraphRecursionError

from helpers import ARITHMETIC, cli
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.cli import build_parser, main
from planexec.cli.completion import bash_script, command_specs, fish_script, zsh_script
from planexec.cli.threads import list_threads, thread_ids
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import calculator

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"

pytestmark = pytest.mark.usefixtures("cli_home")


async def make_threads(path: Path) -> list[str]:
    """Five threads in five states, oldest first."""
    created = []
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:

        async def run(thread: str, context: Context, **models: Any) -> None:
            graph = build_graph(tools=[calculator], checkpointer=saver, **models)
            config: Any = {"configurable": {"thread_id": thread}}
            if thread == "stopped":
                config["recursion_limit"] = 1
            goal = f"goal of {thread}"
            with contextlib.suppress(GraphRecursionError):
                await graph.ainvoke({"goal": goal}, config, context=context)
            created.append(thread)

        never = Context(review="never", approval_tools=["calculator"])
        await run(
            "done",
            Context(review="never"),
            planner=ScriptedChatModel(
                [plan_reply(ARITHMETIC), replan_reply("finish", answer="43")]
            ),
        )
        await run("review", Context(), planner=ScriptedChatModel([plan_reply(ARITHMETIC)]))
        await run("approval", never, planner=ScriptedChatModel([plan_reply(ARITHMETIC)]))
        await run("broken", Context(), planner=ScriptedChatModel([RuntimeError("down")]))
        await run("stopped", Context(), planner=ScriptedChatModel([plan_reply(ARITHMETIC)]))
    return created


@pytest.fixture
async def ck(tmp_path: Path) -> Path:
    path = tmp_path / "ck.sqlite"
    await make_threads(path)
    return path


def test_threads_json_lists_every_thread_newest_first_with_its_status(
    ck: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "threads", "--checkpoint", str(ck), "--json")
    assert code == 0
    document = json.loads(out)
    assert document["checkpoint"] == str(ck)
    rows = [(t["thread_id"], t["status"], t["goal"]) for t in document["threads"]]
    assert rows == [
        ("stopped", "interrupted", "goal of stopped"),
        ("broken", "failed", "goal of broken"),
        ("approval", "awaiting_approval", "goal of approval"),
        ("review", "paused_for_review", "goal of review"),
        ("done", "completed", "goal of done"),
    ]
    times = [t["updated_at"] for t in document["threads"]]
    assert times == sorted(times, reverse=True)
    by_id = {t["thread_id"]: t for t in document["threads"]}
    assert by_id["done"]["revision"] == 1
    assert by_id["broken"]["revision"] is None
    assert not by_id["done"]["demo"]

    code, out, _ = cli(capsys, "threads", "--checkpoint", str(ck), "--json", "--limit", "2")
    assert [t["thread_id"] for t in json.loads(out)["threads"]] == ["stopped", "broken"]


def test_threads_table_reads_as_words(ck: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "threads", "--checkpoint", str(ck))
    assert code == 0
    lines = [line for line in out.splitlines() if "goal of" in line]
    assert ["paused for review" in line for line in lines] == [False, False, False, True, False]
    assert "awaiting approval" in lines[2]
    assert "completed" in lines[4]
    assert " UTC " in lines[0]


async def test_a_page_of_threads_is_one_query_whatever_the_number_of_threads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ck.sqlite"
    await make_threads(path)
    statements: list[str] = []
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        await saver.conn.set_trace_callback(statements.append)
        summaries = await list_threads(saver, limit=3)
        everything = await list_threads(saver)
        assert await thread_ids(saver) == ["stopped", "broken", "approval", "review", "done"]
    assert [(s.thread_id, s.status) for s in summaries] == [
        ("stopped", "interrupted"),
        ("broken", "failed"),
        ("approval", "awaiting_approval"),
    ]
    assert [s.thread_id for s in everything] == ["stopped", "broken", "approval", "review", "done"]
    reads = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(reads) == 3  # one per page (3 threads, then 5) and one for the ids


def test_no_database_yet_or_an_empty_one_means_no_threads_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_home: Path
) -> None:
    missing = tmp_path / "none.sqlite"
    for argv in (["threads"], ["threads", "--checkpoint", str(missing)]):
        code, out, err = cli(capsys, *argv)
        assert (code, err) == (0, "")
        assert out.startswith("no threads yet in ")
        assert json.loads(cli(capsys, *argv, "--json")[1])["threads"] == []
    assert not missing.exists()
    assert not cli_home.exists()  # reading made nothing
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    assert cli(capsys, "threads", "--checkpoint", str(empty))[1].startswith("no threads yet in")
    assert empty.read_bytes() == b""
    with pytest.raises(SystemExit):
        main(["threads", "--limit", "0"])


def test_hidden_complete_prints_thread_ids_and_nothing_on_errors(
    ck: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = cli(capsys, "__complete", "threads", "--checkpoint", str(ck))
    assert (code, out) == (0, "stopped\nbroken\napproval\nreview\ndone\n")
    assert cli(capsys, "__complete", "threads") == (0, "", "")  # no default database yet
    broken = tmp_path / "junk.sqlite"
    broken.write_text("not a database")
    assert cli(capsys, "__complete", "threads", "--checkpoint", str(broken)) == (0, "", "")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "__complete" not in capsys.readouterr().out


# --- completion scripts ---------------------------------------------------------------


def visible_commands() -> list[str]:
    return [c.name for c in command_specs(build_parser())[1]]


def test_every_visible_command_and_option_is_in_each_script() -> None:
    commands = visible_commands()
    assert {"run", "resume", "show", "demo", "threads", "completion"} <= set(commands)
    assert "__complete" not in commands
    parser = build_parser()
    for script in (bash_script(parser), zsh_script(parser), fish_script(parser)):
        for spec in command_specs(parser)[1]:
            assert spec.name in script
            for option in spec.options:
                long_flag = option.flags[-1] if option.flags[-1].startswith("--") else None
                if long_flag:
                    assert long_flag[2:] in script


def test_completion_command_prints_a_valid_bash_script(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = cli(capsys, "completion", "bash")
    assert code == 0
    script = tmp_path / "planexec.bash"
    script.write_text(out)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "complete -F _planexec planexec" in out


BASH_PROBE = """\
source "$1"
probe() {
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
    _planexec
    if ((${#COMPREPLY[@]})); then printf '%s|' "${COMPREPLY[@]}"; fi; echo
}
"""

CASES = [
    (["planexec", "re"], "resume|"),
    (["planexec", "run", "--rev"], "--review|"),
    (["planexec", "run", "--review", ""], "always|never|"),
    (["planexec", "completion", ""], "bash|zsh|fish|"),
    (["planexec", "threads", "--l"], "--limit|"),
    (["planexec", "resume", ""], "stopped|broken|approval|review|done|"),
    (["planexec", "show", "--json", "b"], "broken|"),
    (["planexec", "resume", "done", ""], ""),  # the thread is given
    (["planexec", "run", "goal", ""], ""),
]


def run_bash_probe(script: Path, words: list[str], env: dict[str, str]) -> str:
    args = " ".join(f"'{w}'" for w in words)
    probe = BASH_PROBE + f"probe {args}\n"
    done = subprocess.run(
        ["bash", "-c", probe, "probe", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip("\n")


@pytest.mark.slow
def test_bash_completion_completes_commands_options_and_thread_ids(
    ck: Path, tmp_path: Path, cli_home: Path
) -> None:
    cli_home.mkdir()
    shutil.copy(ck, cli_home / "checkpoints.sqlite")
    script = tmp_path / "planexec.bash"
    script.write_text(bash_script(build_parser()))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for words, expected in CASES:
        assert run_bash_probe(script, words, env) == expected, words
    # Thread ids come from the --checkpoint typed on the line.
    (cli_home / "checkpoints.sqlite").unlink()
    assert run_bash_probe(script, ["planexec", "show", ""], env) == ""
    words = ["planexec", "show", "--checkpoint", str(ck), "d"]
    assert run_bash_probe(script, words, env) == "done|"


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_parses_and_loads(tmp_path: Path) -> None:
    folder = tmp_path / "functions"
    folder.mkdir()
    (folder / "_planexec").write_text(zsh_script(build_parser()))
    assert subprocess.run(["zsh", "-n", str(folder / "_planexec")], check=False).returncode == 0
    load = f"fpath=({folder} $fpath); autoload -U compinit; compinit -u -D; echo $_comps[planexec]"
    done = subprocess.run(
        ["zsh", "-f", "-c", load], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "_planexec", done.stderr


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_script_completes_thread_ids(ck: Path, tmp_path: Path, cli_home: Path) -> None:
    cli_home.mkdir()
    shutil.copy(ck, cli_home / "checkpoints.sqlite")
    script = tmp_path / "planexec.fish"
    script.write_text(fish_script(build_parser()))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path)}
    probe = f"source {script}; complete -C 'planexec resume '; complete -C 'planexec run --rev'"
    done = subprocess.run(
        ["fish", "--no-config", "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == ["stopped", "broken", "approval", "review", "done"]
    assert lines[5].startswith("--review\t")


@pytest.mark.integration
def test_threads_on_postgresql(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def make() -> None:
        async with open_checkpointer(pg_url) as saver:
            for thread in ("first", "second"):
                planner = ScriptedChatModel([plan_reply(ARITHMETIC)])
                graph = build_graph(tools=[calculator], checkpointer=saver, planner=planner)
                config: Any = {"configurable": {"thread_id": thread}}
                await graph.ainvoke({"goal": f"goal of {thread}"}, config, context=Context())

    asyncio.run(make())
    code, out, _ = cli(capsys, "threads", "--checkpoint", pg_url, "--json")
    assert code == 0
    rows = [(t["thread_id"], t["status"]) for t in json.loads(out)["threads"]]
    assert rows == [("second", "paused_for_review"), ("first", "paused_for_review")]
    code, out, _ = cli(capsys, "__complete", "threads", "--checkpoint", pg_url)
    assert out == "second\nfirst\n"
