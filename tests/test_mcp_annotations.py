"""What an MCP server declares about its tools maps onto planexec's protections.

`destructiveHint: true` means step approval and `idempotentHint: false` means the
uncertain-step protection (unless `readOnlyHint: true`); `mcp.json` overrides both,
per server and per tool. Checked as a truth table, on tools from a real server, and
through whole runs: the server's own call log shows what reached it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from helpers import CLI_MODELS, Harness, cli, context, interrupt_of, scripted_models, step
from mcp_fixtures import calls_made, fixture_server
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import requires_approval
from planexec.tools.mcp import MCPError, MCPServer, ToolSettings, open_mcp_tools, parse_mcp_config
from planexec.uncertain import is_idempotent

HINT_VALUES = [None, True, False]


def hints(
    read_only: bool | None, destructive: bool | None, idempotent: bool | None
) -> dict[str, Any]:
    declared = {
        "readOnlyHint": read_only,
        "destructiveHint": destructive,
        "idempotentHint": idempotent,
    }
    return {k: v for k, v in declared.items() if v is not None}


@pytest.mark.parametrize(
    ("read_only", "destructive", "idempotent"),
    list(itertools.product(HINT_VALUES, repeat=3)),
)
def test_the_hints_alone(read_only: Any, destructive: Any, idempotent: Any) -> None:
    server = MCPServer(name="s", command="x")
    declared = hints(read_only, destructive, idempotent)
    # Only a hint that is declared counts, and a read-only tool changes nothing.
    assert server.needs_approval("t", declared) == (destructive is True and read_only is not True)
    assert server.is_idempotent("t", declared) == (idempotent is not False or read_only is True)


@pytest.mark.parametrize("destructive", [None, True])
@pytest.mark.parametrize(
    ("requires", "own", "listed", "expected"),
    [
        ([], None, False, None),  # the hint decides
        (["t"], None, True, True),
        (["other"], None, False, None),  # a list adds to the hints; it removes nothing
        (True, None, True, True),
        (False, None, False, False),  # false: none, whatever the hints say
        (True, False, False, False),  # the tool's own setting wins over the server's
        (False, True, True, True),
        (["t"], False, True, False),
    ],
)
def test_the_config_overrides_the_destructive_hint(
    destructive: Any, requires: Any, own: Any, listed: bool, expected: Any
) -> None:
    server = MCPServer(
        name="s",
        command="x",
        requires_approval=requires if isinstance(requires, bool) else frozenset(requires),
        tools={"t": ToolSettings(requires_approval=own)},
    )
    result = server.needs_approval("t", hints(None, destructive, None))
    assert result == (destructive is True if expected is None else expected)


@pytest.mark.parametrize(("hint", "own"), list(itertools.product([None, True, False], repeat=2)))
def test_the_config_overrides_the_idempotent_hint(hint: Any, own: Any) -> None:
    server = MCPServer(name="s", command="x", tools={"t": ToolSettings(idempotent=own)})
    expected = own if own is not None else hint is not False
    assert server.is_idempotent("t", hints(None, None, hint)) == expected


def test_tool_settings_come_from_the_config() -> None:
    config = {
        "mcpServers": {
            "s": {
                "command": "x",
                "requires_approval": False,
                "tools": {"pay": {"idempotent": False, "requires_approval": True, "name": "p"}},
            }
        }
    }
    (server,) = parse_mcp_config(config)
    assert server.tools == {"pay": ToolSettings(name="p", requires_approval=True, idempotent=False)}
    assert server.requires_approval is False


DECLARED = [
    {"name": "delete_all", "annotations": {"destructiveHint": True}},
    {"name": "pay", "annotations": {"idempotentHint": False, "destructiveHint": False}},
    {"name": "look", "annotations": {"readOnlyHint": True, "destructiveHint": True}},
    {"name": "plain"},
    {"name": "both", "annotations": {"destructiveHint": True, "idempotentHint": False}},
]


async def test_tools_from_a_real_server_carry_the_mapping(tmp_path: Path) -> None:
    config = {"mcpServers": {"s": fixture_server(tmp_path, tools=DECLARED)}}
    async with open_mcp_tools(config) as tools:
        found = {t.name: t for t in tools}
    marks = {n: (requires_approval(t), t.metadata.get("idempotent") is not False)
             for n, t in found.items() if t.metadata}  # fmt: skip
    assert marks == {
        "delete_all": (True, True),
        "pay": (False, False),
        "look": (False, True),
        "plain": (False, True),
        "both": (True, False),
    }
    # The executor's own rule reads the mark.
    assert not is_idempotent(found["pay"], context())
    assert found["delete_all"].metadata["destructiveHint"] is True


async def test_settings_for_a_tool_the_server_does_not_offer_are_refused(tmp_path: Path) -> None:
    entry = {**fixture_server(tmp_path, tools=DECLARED), "tools": {"pai": {"idempotent": False}}}
    with pytest.raises(MCPError, match=r"the config names 'pai', which it does not offer"):
        async with open_mcp_tools({"mcpServers": {"s": entry}}):
            pass


# --- through whole runs ---------------------------------------------------------------


async def test_a_destructive_tool_waits_for_approval_before_the_server_sees_a_call(
    tmp_path: Path,
) -> None:
    log = tmp_path / "calls.jsonl"
    config = {"mcpServers": {"s": fixture_server(tmp_path, tools=DECLARED, calls=str(log))}}
    async with open_mcp_tools(config) as mcp:
        h = Harness(
            planner=[plan_reply([step("a", "plain", {}), step("b", "delete_all", {}, ["a"])])],
            replanner=[replan_reply("finish", answer="gone")],
            tools=mcp,
        )
        request = interrupt_of(await h.run({"goal": "g"}, context()))
        assert request["type"] == "step_approval"
        assert request["steps"] == ["b"]
        assert [c["name"] for c in calls_made(log)] == ["plain"]
        out = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), context())
    assert out["status"] == "completed"
    assert [c["name"] for c in calls_made(log)] == ["plain", "delete_all"]


async def test_the_config_can_let_a_destructive_tool_run_unasked(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    entry = {
        **fixture_server(tmp_path, tools=DECLARED, calls=str(log)),
        "tools": {"delete_all": {"requires_approval": False}},
    }
    async with open_mcp_tools({"mcpServers": {"s": entry}}) as mcp:
        h = Harness(
            planner=[plan_reply([step("b", "delete_all", {})])],
            replanner=[replan_reply("finish", answer="gone")],
            tools=mcp,
        )
        out = await h.run({"goal": "g"}, context())
    assert out["status"] == "completed"
    assert [c["name"] for c in calls_made(log)] == ["delete_all"]


@pytest.mark.parametrize(
    ("tool", "settings", "protected"),
    [
        ("pay", {}, True),  # idempotentHint: false
        ("plain", {}, False),
        ("plain", {"plain": {"idempotent": False}}, True),  # the config marks it
        ("pay", {"pay": {"idempotent": True}}, False),  # the config clears the hint
    ],
)
async def test_a_non_idempotent_tool_that_times_out_waits_for_a_person(
    tmp_path: Path, tool: str, settings: dict[str, Any], protected: bool
) -> None:
    log = tmp_path / "calls.jsonl"
    entry = {
        **fixture_server(tmp_path, tools=DECLARED, calls=str(log), hang_first=[tool]),
        "tools": settings,
    }
    async with open_mcp_tools({"mcpServers": {"s": entry}}) as mcp:
        h = Harness(
            planner=[plan_reply([step("a", tool, {"n": 1})])],
            replanner=[replan_reply("finish", answer="paid")],
            tools=mcp,
        )
        out = await h.run({"goal": "g"}, context(tool_timeouts={tool: 1.0}))
        if protected:
            request = interrupt_of(out)
            assert request["type"] == "uncertain_step"
            assert request["tool"] == tool
            # One call reached the server: it was not made again after the timeout.
            assert len(calls_made(log)) == 1
            out = await h.run(Command(resume={"type": "rerun"}), context())
            assert out["results"]["a"]["output"] == {"tool": tool, "args": {"n": 1}}
        else:
            assert out["status"] == "completed"
            assert out["results"]["a"]["attempts"] == 2
    assert len(calls_made(log)) == 2


def test_the_command_line_asks_before_a_destructive_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLANEXEC_HOME", str(tmp_path / "home"))
    log = tmp_path / "calls.jsonl"
    config = tmp_path / "mcp.json"
    entry = fixture_server(tmp_path, tools=DECLARED, calls=str(log))
    config.write_text(json.dumps({"mcpServers": {"s": entry}}))
    scripted_models(
        monkeypatch,
        planner=[plan_reply([step("b", "delete_all", {})])],
        replanner=[replan_reply("finish", answer="gone")],
    )
    ck = ["--checkpoint", str(tmp_path / "c.sqlite")]
    code, _, _ = cli(capsys, "run", "g", *CLI_MODELS, *ck, "--thread", "t",
                     "--mcp-config", str(config))  # fmt: skip
    assert code == 0
    code, out, _ = cli(capsys, "resume", "t", *ck, "--approve")
    assert code == 0
    assert "paused for step approval" in out
    assert "delete_all" in out
    assert calls_made(log) == []
    code, out, _ = cli(capsys, "resume", "t", *ck, "--approve", "--json")
    assert code == 0
    assert json.loads(out)["status"] == "completed"
    assert [c["name"] for c in calls_made(log)] == ["delete_all"]


async def test_the_run_context_adds_to_whatever_the_config_says(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    entry = {
        **fixture_server(tmp_path, tools=DECLARED, calls=str(log)),
        "requires_approval": False,
        "tools": {"pay": {"idempotent": True}},
    }
    async with open_mcp_tools({"mcpServers": {"s": entry}}) as mcp:
        found = {t.name: t for t in mcp}
        assert not requires_approval(found["delete_all"])
        assert is_idempotent(found["pay"], context())
        assert not is_idempotent(found["pay"], context(non_idempotent_tools=["pay"]))
        h = Harness(
            planner=[plan_reply([step("b", "delete_all", {})])],
            replanner=[replan_reply("finish", answer="gone")],
            tools=mcp,
        )
        request = interrupt_of(await h.run({"goal": "g"}, context(approval_tools=["delete_all"])))
        assert request["type"] == "step_approval"
    assert calls_made(log) == []
