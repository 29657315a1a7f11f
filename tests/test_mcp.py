"""Tools from MCP servers: the real stdio server in examples/, through the real graph and CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool, ToolException
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from fake_openai import FakeOpenAI
from helpers import CLI_MODELS, Harness, cli, scripted_models, step
from mcp_fixtures import calls_made, fixture_server
from planexec import Context
from planexec.cli.mcp_servers import MCP_KEY
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.tools import calculator, requires_approval
from planexec.tools.mcp import (
    MAX_PAGES,
    MAX_TOOLS,
    STARTUP_TIMEOUT,
    MCPError,
    MCPServer,
    load_mcp_tools_from_config,
    open_mcp_tools,
    parse_mcp_config,
    parse_server_spec,
    read_mcp_config,
)

pytestmark = pytest.mark.usefixtures("cli_home")

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "examples" / "mcp_server.py"
PLANEXEC = ROOT / ".venv" / "bin" / "planexec"


def shop(**extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(SERVER)], **extra}


SHOP = {"mcpServers": {"shop": shop(requires_approval=["add_to_cart"])}}


@pytest.fixture
def shop_config(tmp_path: Path) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(SHOP))
    return path


def by_name(tools: list[BaseTool]) -> dict[str, BaseTool]:
    return {t.name: t for t in tools}


SHOPPING = [
    step("s1", "lookup_price", {"item": "apple"}, description="Price of an apple"),
    step("s2", "add_to_cart", {"item": "apple", "qty": 3}, ["s1"], "Put 3 apples in the cart"),
    step("s3", "cart_total", {}, ["s2"], "What the cart costs"),
]


# --- loading from the real server -----------------------------------------------------


async def test_tools_come_from_the_server_with_schemas_approval_and_plain_outputs(
    shop_config: Path,
) -> None:
    async with open_mcp_tools(shop_config) as tools:
        found = by_name(tools)
        assert sorted(found) == ["add_to_cart", "cart_total", "lookup_price"]
        assert found["add_to_cart"].tool_call_schema["required"] == ["item", "qty"]
        assert requires_approval(found["add_to_cart"])
        assert not requires_approval(found["lookup_price"])
        assert found["add_to_cart"].metadata["mcp_server"] == "shop"
        # Structured content comes back as data: a float stays a float.
        assert await found["lookup_price"].ainvoke({"item": "pears"}) == 0.75
        # One session for the block: the server keeps its cart between calls.
        assert await found["add_to_cart"].ainvoke({"item": "apple", "qty": 2}) == "2 apple"
        assert await found["add_to_cart"].ainvoke({"item": "milk", "qty": 1}) == "2 apple, 1 milk"
        assert await found["cart_total"].ainvoke({}) == 2.1
        with pytest.raises(ToolException, match="no such item: 'caviar'"):
            await found["lookup_price"].ainvoke({"item": "caviar"})


async def test_each_call_opens_its_own_session_without_a_block(shop_config: Path) -> None:
    found = by_name(await load_mcp_tools_from_config(shop_config))
    assert requires_approval(found["add_to_cart"])
    assert await found["add_to_cart"].ainvoke({"item": "bread", "qty": 2}) == "2 bread"
    # A new server process per call: nothing is left in the cart.
    assert await found["cart_total"].ainvoke({}) == 0.0


async def test_clashing_names_get_the_server_prefix() -> None:
    config = {"mcpServers": {"north": shop(), "south": shop(requires_approval=True)}}
    async with open_mcp_tools(config, reserved=["calculator", "lookup_price"]) as tools:
        found = by_name(tools)
    assert sorted(found) == [
        "north_add_to_cart",
        "north_cart_total",
        "north_lookup_price",
        "south_add_to_cart",
        "south_cart_total",
        "south_lookup_price",
    ]
    assert [requires_approval(found[f"south_{n}"]) for n in ("add_to_cart", "cart_total")] == [
        True,
        True,
    ]
    assert not requires_approval(found["north_add_to_cart"])
    assert found["south_cart_total"].metadata["mcp_tool"] == "cart_total"


async def test_a_reserved_name_alone_is_prefixed() -> None:
    async with open_mcp_tools({"mcpServers": {"shop": shop()}}, reserved=["cart_total"]) as tools:
        assert sorted(by_name(tools)) == ["add_to_cart", "lookup_price", "shop_cart_total"]
        assert await by_name(tools)["shop_cart_total"].ainvoke({}) == 0.0


ENV_SERVER = """\
import os
from mcp.server.fastmcp import FastMCP

server = FastMCP("envy", log_level="WARNING")


@server.tool()
def getenv(name: str) -> str:
    \"\"\"The server's environment variable, or "(unset)".\"\"\"
    return os.environ.get(name, "(unset)")


server.run()
"""


async def test_a_stdio_server_gets_its_env_with_variables_and_no_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "env_server.py"
    script.write_text(ENV_SERVER)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary")
    monkeypatch.setenv("PLANEXEC_TEST_GREETING", "hello")
    monkeypatch.delenv("PLANEXEC_TEST_UNSET", raising=False)
    env = {"GREETING": "${PLANEXEC_TEST_GREETING}!", "LEFT": "${PLANEXEC_TEST_UNSET}"}
    config = {
        "mcpServers": {"envy": {"command": sys.executable, "args": [str(script)], "env": env}}
    }
    async with open_mcp_tools(config) as tools:
        getenv = by_name(tools)["getenv"]
        assert await getenv.ainvoke({"name": "GREETING"}) == "hello!"
        assert await getenv.ainvoke({"name": "LEFT"}) == "${PLANEXEC_TEST_UNSET}"
        # Only a small safe part of the environment is passed on: no provider key.
        assert await getenv.ainvoke({"name": "OPENAI_API_KEY"}) == "(unset)"
        assert await getenv.ainvoke({"name": "PATH"}) != "(unset)"


async def test_requires_approval_must_name_tools_the_server_offers() -> None:
    config = {"mcpServers": {"shop": shop(requires_approval=["add_to_kart"])}}
    with pytest.raises(MCPError, match="the config names 'add_to_kart', which it does not"):
        async with open_mcp_tools(config):
            pass


async def test_a_server_that_does_not_start_is_named_in_the_error(tmp_path: Path) -> None:
    missing = {"mcpServers": {"gone": {"command": str(tmp_path / "no-such-program")}}}
    with pytest.raises(
        MCPError, match=r"the MCP server 'gone' \(.*no-such-program\) did not start"
    ):
        async with open_mcp_tools(missing):
            pass
    crashing = {"mcpServers": {"dies": {"command": sys.executable, "args": ["-c", "pass"]}}}
    with pytest.raises(MCPError, match=r"the MCP server 'dies'.*did not start"):
        await load_mcp_tools_from_config(crashing)


async def test_without_the_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "langchain_mcp_adapters.tools", None)
    with pytest.raises(MCPError, match=r"pip install 'planexec\[mcp\]'"):
        async with open_mcp_tools(SHOP):
            pass


# --- the config file ------------------------------------------------------------------


def test_config_paths_are_taken_from_the_config_file_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "mcp.json"
    config = {
        "mcpServers": {
            "a": {"command": "python", "args": ["server.py"], "env": {"K": "v"}},
            "b": {"command": "node", "cwd": "sub"},
            "c": {"url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "k"}},
            "d": {"url": "http://127.0.0.1:9/sse", "type": "sse"},
            "off": {"command": "x", "disabled": True},
        }
    }
    path.write_text(json.dumps(config))
    a, b, c, d = read_mcp_config(path)
    assert (a.cwd, b.cwd) == (str(folder), str(folder / "sub"))
    assert a.connection() == {
        "transport": "stdio",
        "command": "python",
        "args": ["server.py"],
        "env": {"K": "v"},
        "cwd": str(folder),
    }
    assert c.connection() == {
        "transport": "streamable_http",
        "url": "http://127.0.0.1:9/mcp",
        "headers": {"X-Key": "k"},
    }
    assert d.transport == "sse"


def test_the_shipped_example_config_marks_add_to_cart() -> None:
    (server,) = read_mcp_config(ROOT / "examples" / "mcp.json")
    assert server.name == "shop"
    assert server.cwd == str(ROOT / "examples")
    assert server.args == ("mcp_server.py",)
    assert server.needs_approval("add_to_cart")
    assert not server.needs_approval("lookup_price")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"servers": {}}, '{"mcpServers": {"<name>": {...}, ...}}'),
        ({"mcpServers": {"a": "python"}}, "server 'a': expected an object"),
        ({"mcpServers": {"a": {}}}, "give either a command (stdio) or a url"),
        ({"mcpServers": {"a": {"command": "x", "url": "y"}}}, "give either a command"),
        ({"mcpServers": {"a b": {"command": "x"}}}, "a server name is 1 to 64 ASCII letters"),
        ({"mcpServers": {"a\n": {"command": "x"}}}, "server 'a\\n': a server name is 1 to 64"),
        ({"mcpServers": {"a": {"command": "x", "args": "y"}}}, "args must be a list of strings"),
        ({"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}, "env must map names to"),
        ({"mcpServers": {"a": {"command": " "}}}, "command must be a non-empty string"),
        ({"mcpServers": {"a": {"url": "u", "transport": "stdio"}}}, "does not fit a server"),
        (
            {"mcpServers": {"a": {"command": "x", "require_approval": ["t"]}}},
            "did you mean 'requires_approval'",
        ),
        (
            {"mcpServers": {"a": {"command": "x", "requires_approval": "t"}}},
            "requires_approval must be a list of tool names, true or false",
        ),
        ({"mcpServers": {"a": {"command": "x", "tool": {}}}}, "did you mean 'tools'"),
        ({"mcpServers": {"a": {"command": "x", "tools": []}}}, "tools must map tool names to"),
        ({"mcpServers": {"a": {"command": "x", "tools": {"t": 1}}}}, "tools: 't': expected an"),
        (
            {"mcpServers": {"a": {"command": "x", "tools": {"t": {"idempotnt": False}}}}},
            "tools: 't': unknown key 'idempotnt'",
        ),
        (
            {"mcpServers": {"a": {"command": "x", "tools": {"t": {"idempotent": "no"}}}}},
            "tools: 't': idempotent must be true or false",
        ),
        (
            {"mcpServers": {"a": {"command": "x", "tools": {"t": {"name": "a b"}}}}},
            "tools: 't': name must be 1 to 64 ASCII letters",
        ),
        (
            {"mcpServers": {"a": {"command": "x", "startup_timeout": 0}}},
            "startup_timeout must be a number above 0",
        ),
        (
            {"mcpServers": {"a": {"command": "x", "max_tools": 2.5}}},
            "max_tools must be a whole number above 0",
        ),
        (
            {"mcpServers": {"a": {"command": "x", "max_tools": True}}},
            "max_tools must be a whole number above 0",
        ),
        ({"mcpServers": {"a": {"command": "x", "startup_timout": 5}}}, "did you mean 'startup_t"),
    ],
)
def test_config_errors_name_the_server_and_the_fault(config: Any, message: str) -> None:
    with pytest.raises(MCPError) as raised:
        parse_mcp_config(config)
    assert message in str(raised.value)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MCPError, match="cannot read the MCP config"):
        read_mcp_config(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": ')
    with pytest.raises(MCPError, match="is not valid JSON: line 1"):
        read_mcp_config(bad)


def test_server_specs_from_the_command_line(tmp_path: Path) -> None:
    server = parse_server_spec("shop=python 'my server.py' --flag", cwd=tmp_path)
    assert server == MCPServer(
        name="shop", command="python", args=("my server.py", "--flag"), cwd=str(tmp_path)
    )
    for bad in ("python server.py", "=python", "shop=", "shop=python 'unclosed"):
        with pytest.raises(MCPError, match="--mcp"):
            parse_server_spec(bad)


# --- through the real graph -----------------------------------------------------------


async def test_planner_sees_the_schemas_and_the_approval_tool_waits_for_a_person(
    shop_config: Path,
) -> None:
    plan = [
        *SHOPPING,
        step("s4", "lookup_price", None, description="Price of a pear"),
    ]
    async with open_mcp_tools(shop_config, reserved=["calculator"]) as mcp:
        h = Harness(
            planner=[plan_reply(plan)],
            executor=[tool_call_reply("lookup_price", {"item": "pear"})],
            replanner=[replan_reply("finish", answer="3 apples cost 1.5")],
            tools=[calculator, *mcp],
        )
        context = Context(review="never")
        paused = await h.run({"goal": "Put 3 apples in the cart"}, context)

        prompt = h.planner.calls[0].prompt
        assert '"name": "add_to_cart"' in prompt
        assert '"qty": {"title": "Qty", "type": "integer"}' in prompt
        assert "The price in euros of one unit of an item" in prompt
        # The executor model was offered that MCP tool only, with its JSON schema.
        assert h.executor.calls[0].tools == ["lookup_price"]
        wire = convert_to_openai_tool(by_name(mcp)["lookup_price"])["function"]
        assert wire["parameters"]["properties"]["item"]["type"] == "string"

        (interrupt,) = paused["__interrupt__"]
        assert interrupt.value["type"] == "step_approval"
        assert interrupt.value["steps"] == ["s2"]
        assert interrupt.value["action_requests"][0]["name"] == "add_to_cart"
        assert interrupt.value["action_requests"][0]["args"] == {"item": "apple", "qty": 3}
        state = await h.state()
        assert state["results"]["s1"]["output"] == 0.5
        assert state["results"]["s4"]["output"] == 0.75
        assert "s2" not in state["results"]
        assert await by_name(mcp)["cart_total"].ainvoke({}) == 0.0  # nothing added yet

        done = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), context)
    assert done["status"] == "completed"
    assert done["results"]["s2"]["output"] == "3 apple"
    assert done["results"]["s3"]["output"] == 1.5
    assert done["answer"] == "3 apples cost 1.5"


async def test_a_rejected_call_never_reaches_the_server_and_tool_errors_fail_the_step(
    shop_config: Path,
) -> None:
    plan = [*SHOPPING, step("s4", "lookup_price", {"item": "caviar"})]
    async with open_mcp_tools(shop_config) as mcp:
        h = Harness(
            planner=[plan_reply(plan)],
            replanner=[replan_reply("finish", answer="no cart")],
            tools=mcp,
        )
        context = Context(review="never")
        await h.run({"goal": "g"}, context)
        decision = {"decisions": [{"type": "reject", "message": "not today"}]}
        done = await h.run(Command(resume=decision), context)
        assert await by_name(mcp)["cart_total"].ainvoke({}) == 0.0
    assert done["results"]["s2"]["status"] == "skipped"
    assert done["results"]["s2"]["error"] == "rejected by the reviewer: not today"
    assert done["results"]["s3"]["status"] == "skipped"
    assert done["results"]["s4"]["status"] == "failed"
    assert "no such item: 'caviar'" in done["results"]["s4"]["error"]
    assert "no such item: 'caviar'" in h.replanner.calls[0].prompt


# --- the command line -----------------------------------------------------------------


def stored_metadata(path: Path, thread: str) -> dict[str, Any]:
    with sqlite3.connect(path, check_same_thread=False) as conn:
        found = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": thread}})
    assert found is not None
    return dict(found.metadata)


def test_resume_starts_the_servers_the_thread_was_run_with(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    shop_config: Path,
    tmp_path: Path,
) -> None:
    models = scripted_models(
        monkeypatch,
        planner=[plan_reply(SHOPPING)],
        replanner=[replan_reply("finish", answer="1.5 euros")],
    )
    ck = str(tmp_path / "ck.sqlite")
    base = ["--checkpoint", ck]
    code, out, _ = cli(capsys, "run", "shop", *CLI_MODELS, *base, "--thread", "t",
                       "--mcp-config", str(shop_config))  # fmt: skip
    assert code == 0
    assert "paused for review" in out
    assert '"name": "lookup_price"' in models["planner"].calls[0].prompt
    stored = json.loads(stored_metadata(Path(ck), "t")[MCP_KEY])
    assert stored == {"configs": [str(shop_config.resolve())], "servers": []}

    code, out, _ = cli(capsys, "resume", "t", *base, "--approve")
    assert code == 0, out
    assert "paused for step approval" in out
    assert "add_to_cart" in out

    code, out, _ = cli(capsys, "resume", "t", *base, "--approve", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["status"] == "completed"
    assert document["results"]["s2"]["output"] == "3 apple"
    assert document["results"]["s3"]["output"] == 1.5


def test_inline_servers_are_kept_for_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scripted_models(
        monkeypatch,
        planner=[plan_reply([step("s1", "shop_lookup_price", {"item": "coffee"})])],
        replanner=[replan_reply("finish", answer="7.9")],
    )
    ck = tmp_path / "ck.sqlite"
    spec = f"shop={sys.executable} {SERVER}"
    code, _, _ = cli(capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(ck), "--thread", "t",
                     "--mcp", spec, "--mcp", f"more={sys.executable} {SERVER}")  # fmt: skip
    assert code == 0
    stored = json.loads(stored_metadata(ck, "t")[MCP_KEY])
    assert [s["name"] for s in stored["servers"]] == ["shop", "more"]
    assert stored["servers"][0]["args"] == [str(SERVER)]
    assert stored["servers"][0]["cwd"] == str(Path.cwd())
    code, out, _ = cli(capsys, "resume", "t", "--checkpoint", str(ck), "--approve", "--json")
    assert code == 0
    assert json.loads(out)["results"]["s1"]["output"] == 7.9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mcp-config", "/no/such/mcp.json"], "cannot read the MCP config /no/such/mcp.json"),
        (["--mcp", "python server.py"], "expected NAME=COMMAND"),
        (["--mcp", "gone=/no/such/program"], "the MCP server 'gone' (/no/such/program) did not"),
    ],
)
def test_mcp_errors_are_one_line_with_exit_code_2(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    scripted_models(monkeypatch)
    code, _, err = cli(capsys, "run", "g", *CLI_MODELS, "--checkpoint", str(tmp_path / "c"), *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.integration
def test_run_yes_with_the_example_config_against_a_local_openai_server(tmp_path: Path) -> None:
    plan = {"name": "Plan", "arguments": {"steps": SHOPPING}}
    replies = [
        {"match": "You are the planner", "tool_calls": [plan]},
        {
            "match": "You are the replanner",
            "tool_calls": [
                {
                    "name": "Replan",
                    "arguments": {
                        "action": "finish",
                        "answer": "Three apples, 1.50 euros, are in the cart.",
                        "steps": None,
                        "reason": "done",
                    },
                }
            ],
        },
    ]  # fmt: skip
    env = {
        **os.environ,
        # The example config runs `python`: the one with the mcp package.
        "PATH": f"{PLANEXEC.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "220",
    }
    with FakeOpenAI(replies) as server:
        env["OPENAI_BASE_URL"] = server.url
        done = subprocess.run(
            [str(PLANEXEC), "run", "Put 3 apples in the cart", "--yes", "--json",
             "--mcp-config", str(ROOT / "examples" / "mcp.json"),
             "--checkpoint", str(tmp_path / "c.sqlite")],
            capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip
        server.assert_done()
        planner_request = json.dumps(server.requests[0])
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "completed"
    assert document["answer"] == "Three apples, 1.50 euros, are in the cart."
    assert [document["results"][s]["output"] for s in ("s1", "s2", "s3")] == [0.5, "3 apple", 1.5]
    assert done.stderr.count("approved (--yes)") == 2  # the plan, then the add_to_cart call
    assert "add_to_cart" in planner_request


def test_errors_raised_while_servers_are_open_come_out_unwrapped(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    shop_config: Path,
    tmp_path: Path,
) -> None:
    scripted_models(monkeypatch, planner=[plan_reply(SHOPPING)])
    argv = ["run", "g", *CLI_MODELS, "--checkpoint", str(tmp_path / "c"), "--thread", "t",
            "--mcp-config", str(shop_config)]  # fmt: skip
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    # The second run finds the thread while the MCP session is open: a plain UserError.
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert err.startswith("planexec: error: thread t already exists")
    assert len(err.strip().splitlines()) == 1


def test_resume_says_so_when_the_config_file_is_gone(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    shop_config: Path,
    tmp_path: Path,
) -> None:
    scripted_models(monkeypatch, planner=[plan_reply(SHOPPING)])
    ck = ["--checkpoint", str(tmp_path / "c")]
    cli(capsys, "run", "g", *CLI_MODELS, *ck, "--thread", "t", "--mcp-config", str(shop_config))
    shop_config.unlink()
    code, _, err = cli(capsys, "resume", "t", *ck, "--approve")
    assert code == 2
    assert f"cannot read the MCP config {shop_config}" in err
    assert err.rstrip().endswith("(pass --mcp-config to use another file)")
    # Given another config, resume uses it (and keeps it for the next resume).
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(SHOP))
    code, out, _ = cli(capsys, "resume", "t", *ck, "--approve", "--mcp-config", str(moved))
    assert code == 0
    assert "paused for step approval" in out
    stored = json.loads(stored_metadata(tmp_path / "c", "t")[MCP_KEY])
    assert stored["configs"] == [str(moved)]


# --- what a server declares about arguments -------------------------------------------

STRICT = {
    "type": "object",
    "properties": {
        "item": {"type": "string", "enum": ["apple", "pear"]},
        "qty": {"type": "integer", "minimum": 1, "maximum": 9},
        "notes": {"type": "array", "items": {"type": "string", "maxLength": 20}},
    },
    "required": ["item", "qty"],
    "additionalProperties": False,
}


async def test_arguments_outside_a_servers_schema_never_reach_it(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    declared = [{"name": "order", "inputSchema": STRICT}]
    config = {"mcpServers": {"s": fixture_server(tmp_path, tools=declared, calls=str(log))}}
    async with open_mcp_tools(config) as mcp:
        h = Harness(
            planner=[
                plan_reply([step("a", "order", {"item": "kiwi", "qty": 3})]),
                plan_reply([step("a", "order", {"item": "pear", "qty": 3, "notes": ["x" * 21]})]),
                plan_reply([step("a", "order", {"item": "pear", "qty": 3}), step("b", "order")]),
            ],
            executor=[tool_call_reply("order", {"item": "pear", "qty": 10})] * 2,
            replanner=[replan_reply("finish", answer="one order")],
            tools=mcp,
        )
        out = await h.run({"goal": "order pears"}, Context(review="never", step_attempts=2,
                                                           retry_initial_interval=0))  # fmt: skip
    retries = [call.prompt for call in h.planner.calls[1:]]
    assert "argument 'item' of tool 'order': 'kiwi' is not one of ['apple', 'pear']" in retries[0]
    assert "argument 'notes.0' of tool 'order': " in retries[1]
    assert out["results"]["a"]["status"] == "done"
    assert out["results"]["b"]["status"] == "failed"
    assert (
        "argument 'qty' of tool 'order': 10 is greater than the maximum of 9"
        in (out["results"]["b"]["error"])
    )
    # Only the call that fits reached the server.
    assert calls_made(log) == [{"name": "order", "arguments": {"item": "pear", "qty": 3}}]


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"n": {"type": "int"}}}, "not valid JSON Schema at"),
        ({"type": "object", "required": "n"}, "not valid JSON Schema at required"),
        ({"type": "string"}, "does not describe an object"),
    ],
)
async def test_a_tool_with_an_invalid_schema_refuses_the_server(
    tmp_path: Path, schema: dict[str, Any], problem: str
) -> None:
    declared = [{"name": "ok"}, {"name": "odd\u200b", "inputSchema": schema}]
    config = {"mcpServers": {"s": fixture_server(tmp_path, tools=declared)}}
    with pytest.raises(MCPError) as raised:
        async with open_mcp_tools(config):
            pass
    assert str(raised.value).startswith("MCP server 's': tool 'odd\\u200b': its argument schema")
    assert problem in str(raised.value)


def test_the_bounds_are_those_the_readme_gives() -> None:
    assert (STARTUP_TIMEOUT, MAX_TOOLS, MAX_PAGES) == (30.0, 256, 100)
    readme = (ROOT / "README.md").read_text()
    assert "within `startup_timeout` seconds (default 30" in readme
    assert "at most `max_tools` tools (default 256) over at most 100 pages" in readme
