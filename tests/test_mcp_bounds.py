"""MCP servers cannot hang planexec, and a server that fails says why in its own words.

Servers that never answer `initialize` or `tools/list`, page forever, repeat a cursor,
or declare thousands of tools, through `open_mcp_tools`, `load_mcp_tools_from_config`,
`planexec run` and `planexec resume`. Each test runs under `asyncio.timeout` or a
subprocess timeout far above the bound it checks, so a regression fails, not hangs.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import ARITHMETIC, CLI_MODELS, cli, scripted_models
from mcp_fixtures import fixture_server
from planexec.scripted import plan_reply, replan_reply
from planexec.tools.mcp import (
    MAX_PAGES,
    MAX_TOOLS,
    MCPError,
    load_mcp_tools_from_config,
    open_mcp_tools,
)

pytestmark = pytest.mark.usefixtures("cli_home")

BOUND = 5.0
"""The startup timeout the tests give: well above a normal start on a busy machine."""
GUARD = 60.0
"""Far above any bound: a test that reaches it has found a hang."""


async def refused(config: dict[str, Any], **options: Any) -> str:
    """The message of the `MCPError` that opening `config`'s servers raises."""
    with pytest.raises(MCPError) as raised:
        async with asyncio.timeout(GUARD), open_mcp_tools(config, **options):
            pass
    return str(raised.value)


def one(entry: dict[str, Any]) -> dict[str, Any]:
    return {"mcpServers": {"slow": entry}}


async def test_a_server_that_never_lists_its_tools_is_refused_in_time(tmp_path: Path) -> None:
    message = await refused(one(fixture_server(tmp_path, listing="hang")), startup_timeout=BOUND)
    assert message.startswith("the MCP server 'slow' (")
    assert message.endswith(f"did not list its tools within {BOUND:g}s")


async def test_a_server_that_never_initializes_is_refused_in_time(tmp_path: Path) -> None:
    message = await refused(
        one(fixture_server(tmp_path, hang_initialize=True)), startup_timeout=BOUND
    )
    assert message.endswith(f"did not start within {BOUND:g}s")


async def test_the_servers_own_startup_timeout_wins(tmp_path: Path) -> None:
    entry = {**fixture_server(tmp_path, listing="hang"), "startup_timeout": BOUND}
    message = await refused(one(entry), startup_timeout=3600)
    assert message.endswith(f"did not list its tools within {BOUND:g}s")


async def test_tools_loaded_for_calls_one_by_one_are_bounded_too(tmp_path: Path) -> None:
    config = one(fixture_server(tmp_path, listing="hang"))
    with pytest.raises(MCPError, match=f"did not list its tools within {BOUND:g}s"):
        async with asyncio.timeout(GUARD):
            await load_mcp_tools_from_config(config, startup_timeout=BOUND)


async def test_a_listing_that_pages_forever_stops_at_the_page_bound(tmp_path: Path) -> None:
    message = await refused(one(fixture_server(tmp_path, listing="forever")))
    assert message.endswith(
        f"listed its tools over more than {MAX_PAGES} pages; planexec reads no more"
    )


async def test_a_cursor_sent_twice_ends_the_listing(tmp_path: Path) -> None:
    message = await refused(one(fixture_server(tmp_path, listing="loop")))
    assert message.endswith("sent a page cursor it had sent before; its list of tools never ends")


@pytest.mark.parametrize("page_size", [MAX_TOOLS + 1, 100])
async def test_thousands_of_tools_are_refused_unless_the_config_allows_them(
    tmp_path: Path, page_size: int
) -> None:
    entry = fixture_server(tmp_path, generate=3000, page_size=page_size)
    message = await refused(one(entry))
    assert message.endswith(
        f'declares more than {MAX_TOOLS} tools; set "max_tools" in its config to accept more'
    )
    async with asyncio.timeout(GUARD), open_mcp_tools(one({**entry, "max_tools": 3000})) as tools:
        assert len(tools) == 3000
        assert [t.name for t in tools[:2]] == ["t0", "t1"]
    assert "max_tools" in await refused(one({**entry, "max_tools": 2999}))


async def test_a_listing_over_several_pages_is_read_whole(tmp_path: Path) -> None:
    entry = fixture_server(tmp_path, generate=10, page_size=3)
    async with open_mcp_tools(one(entry)) as tools:
        assert [t.name for t in tools] == [f"t{i}" for i in range(10)]


# --- a server that fails: its own words, made inert -----------------------------------

CRASH = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'shopdb'\n"


async def test_a_server_that_exits_is_reported_with_the_last_line_it_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = await refused(one(fixture_server(tmp_path, stderr=CRASH, exit=1)))
    assert message.endswith(
        "did not start: ModuleNotFoundError: No module named 'shopdb' "
        "(the last line of its stderr; then McpError: Connection closed)"
    )
    # Its stderr was passed on, each line marked with the server's name.
    assert capsys.readouterr().err.splitlines() == [
        "[slow] Traceback (most recent call last):",
        "[slow] ModuleNotFoundError: No module named 'shopdb'",
    ]


async def test_a_server_that_exits_silently_says_what_the_client_saw(tmp_path: Path) -> None:
    message = await refused(one(fixture_server(tmp_path, exit=3)))
    assert message.endswith("did not start: McpError: Connection closed")


HOSTILE = (
    "\x1b]52;c;ZWNobyBvd25lZA==\x07copied\n"  # OSC 52: a clipboard write
    "\x1b[2J\x1b[Hcleared\n"  # erase the screen, cursor home
    "\u202etxt.exe\n"  # right-to-left override
    "zero\u200bwidth\x1b[8m hidden\n"
)


async def test_what_a_server_writes_reaches_the_terminal_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = await refused(one(fixture_server(tmp_path, stderr=HOSTILE, exit=1)))
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "[slow] \\x1b]52;c;ZWNobyBvd25lZA==\\x07copied",
        "[slow] \\x1b[2J\\x1b[Hcleared",
        "[slow] <U+202E>txt.exe",
        "[slow] zero<U+200B>width\\x1b[8m hidden",
    ]
    assert message.isprintable()
    assert "zero<U+200B>width\\x1b[8m hidden (the last line of its stderr" in message


async def test_a_torrent_on_stderr_neither_blocks_the_server_nor_floods_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Far more than a pipe holds: a server whose stderr nobody read would block on it.
    flood = ("x" * 10_000 + "\n") * 50
    message = await refused(one(fixture_server(tmp_path, stderr=flood + "the end\n", exit=1)))
    assert message.endswith("did not start: the end (the last line of its stderr; then "
                            "McpError: Connection closed)")  # fmt: skip
    assert len(message) < 500
    assert capsys.readouterr().err.count("\n") > 50


# --- the command line -----------------------------------------------------------------


def write_config(path: Path, entry: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"mcpServers": {"slow": entry}}))
    return path


@pytest.mark.parametrize(
    ("spec", "ending"),
    [
        ({"listing": "hang"}, f"did not list its tools within {BOUND:g}s"),
        ({"listing": "forever"}, f"over more than {MAX_PAGES} pages; planexec reads no more"),
        ({"stderr": CRASH, "exit": 1}, "No module named 'shopdb' (the last line of its stderr; "
                                       "then McpError: Connection closed)"),
    ],
)  # fmt: skip
def test_run_says_so_in_one_line_with_exit_code_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spec: dict[str, Any],
    ending: str,
) -> None:
    models = scripted_models(monkeypatch)
    entry = {**fixture_server(tmp_path, **spec), "startup_timeout": BOUND}
    config = write_config(tmp_path / "mcp.json", entry)
    code, _, err = cli(capsys, "run", "g", *CLI_MODELS, "--checkpoint",
                       str(tmp_path / "c.sqlite"), "--mcp-config", str(config))  # fmt: skip
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("planexec: error: the MCP server 'slow' (")
    assert last.endswith(ending)
    assert [line for line in err.splitlines() if not line.startswith("[slow] ")] == [last]
    assert models["planner"].calls == []


def test_resume_is_bounded_by_the_same_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    config = write_config(tmp_path / "mcp.json", fixture_server(tmp_path, "good", generate=1))
    ck = ["--checkpoint", str(tmp_path / "c.sqlite")]
    code, out, _ = cli(capsys, "run", "g", *CLI_MODELS, *ck, "--thread", "t",
                       "--mcp-config", str(config))  # fmt: skip
    assert code == 0
    assert "paused for review" in out
    # The server the thread was run with now never lists its tools.
    write_config(config, {**fixture_server(tmp_path, listing="hang"), "startup_timeout": BOUND})
    code, _, err = cli(capsys, "resume", "t", *ck, "--approve")
    assert code == 2
    assert err.strip().splitlines()[-1].endswith(f"did not list its tools within {BOUND:g}s")
    # Nothing was lost: with a server that works, the thread resumes to its end.
    write_config(config, fixture_server(tmp_path, "good", generate=1))
    code, out, _ = cli(capsys, "resume", "t", *ck, "--approve", "--json")
    assert code == 0
    assert json.loads(out)["answer"] == "43"


def test_an_installed_planexec_is_bounded_too(tmp_path: Path) -> None:
    """The real command, as a person runs it: the hang ends with one line and rc 2."""
    import subprocess

    config = write_config(
        tmp_path / "mcp.json", {**fixture_server(tmp_path, listing="hang"), "startup_timeout": 3}
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "planexec"), "run", "g", "--mcp-config", str(config),
         "--checkpoint", str(tmp_path / "c.sqlite")],
        capture_output=True, text=True, timeout=GUARD, check=False, stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
             "PLANEXEC_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("did not list its tools within 3s")
