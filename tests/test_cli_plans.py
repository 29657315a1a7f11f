"""`planexec plans` and `planexec run --reuse`, with the real SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from helpers import ARITHMETIC, CLI_MODELS, cli, scripted_models, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.library import PlanLibrary
from planexec.scripted import plan_reply, replan_reply
from planexec.stores import library_path, open_store

pytestmark = pytest.mark.usefixtures("cli_home")
GOAL = "What is 6*7+1?"


@pytest.fixture
def ck(tmp_path: Path) -> Path:
    return tmp_path / "ck.sqlite"


def run(capsys: pytest.CaptureFixture[str], ck: Path, *extra: str) -> dict[str, Any]:
    code, out, err = cli(
        capsys, "run", GOAL, "--yes", "--json", "--checkpoint", str(ck), *CLI_MODELS, *extra
    )
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def listing(capsys: pytest.CaptureFixture[str], ck: Path) -> list[dict[str, Any]]:
    code, out, err = cli(capsys, "plans", "list", "--json", "--checkpoint", str(ck))
    assert code == 0, err
    entries: list[dict[str, Any]] = json.loads(out)
    return entries


def test_run_saves_beside_the_checkpoint_and_reuse_replay_skips_the_planner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    finish = replan_reply("finish", answer="43")
    models = scripted_models(
        monkeypatch, planner=[plan_reply(ARITHMETIC)], replanner=[finish, finish]
    )
    assert run(capsys, ck)["status"] == "completed"
    assert library_path(ck) == ck.with_name("ck.plans.sqlite")
    assert library_path(ck).is_file()
    with sqlite3.connect(library_path(ck)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"store", "store_migrations"} <= tables
    [entry] = listing(capsys, ck)
    assert (entry["goal"], entry["uses"], entry["tools"]) == (GOAL, 1, ["calculator"])
    second = run(capsys, ck, "--reuse", "replay")
    assert second["status"] == "completed"
    assert len(models["planner"].calls) == 1
    assert {r["output"] for r in second["results"].values()} == {42, 43}
    [entry] = listing(capsys, ck)
    assert (entry["uses"], entry["successes"]) == (2, 2)


def test_a_replayed_plan_under_review_says_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    finish = replan_reply("finish", answer="43")
    scripted_models(monkeypatch, planner=[plan_reply(ARITHMETIC)], replanner=[finish])
    run(capsys, ck)
    [entry] = listing(capsys, ck)
    code, out, err = cli(
        capsys, "run", GOAL, "--checkpoint", str(ck), "--reuse", "replay", *CLI_MODELS
    )
    assert code == 0, err
    text = out + err
    assert "from the library" in text
    assert f"replayed from saved plan {entry['id']}: used 1 time(s), success rate 100%" in text
    assert "last edited never" in text


def test_show_delete_export_and_import(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path, tmp_path: Path
) -> None:
    scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    run(capsys, ck)
    [entry] = listing(capsys, ck)
    code, out, _ = cli(capsys, "plans", "show", entry["id"], "--json", "--checkpoint", str(ck))
    assert code == 0
    shown = json.loads(out)
    assert shown["plan"] == {"steps": ARITHMETIC}
    assert shown["stats"]["uses"] == 1
    exported = tmp_path / "plans.json"
    code, _, _ = cli(capsys, "plans", "export", "-o", str(exported), "--checkpoint", str(ck))
    assert code == 0
    code, out, _ = cli(capsys, "plans", "export", "--checkpoint", str(ck))
    assert json.loads(out) == json.loads(exported.read_text())
    code, out, _ = cli(capsys, "plans", "delete", entry["id"], "--checkpoint", str(ck))
    assert code == 0
    assert listing(capsys, ck) == []
    code, _, err = cli(capsys, "plans", "delete", entry["id"], "--checkpoint", str(ck))
    assert code == 2
    assert "no saved plan" in err
    code, out, err = cli(
        capsys, "plans", "import", str(exported), "--json", "--checkpoint", str(ck)
    )
    assert code == 0, err
    assert json.loads(out) == {"imported": [entry["id"]]}
    assert [e["id"] for e in listing(capsys, ck)] == [entry["id"]]


def test_an_import_with_invalid_plans_is_refused_whole_with_every_error(
    capsys: pytest.CaptureFixture[str], ck: Path, tmp_path: Path
) -> None:
    good = {
        "id": "good1",
        "goal": "add",
        "plan": {"steps": [step("s1", args={"expression": "1+1"})]},
        "tools": {},
        "stats": {"saved_at": "2026-11-01T00:00:00+00:00"},
    }
    bad = {**good, "id": "bad1", "plan": {"steps": [step("s1", tool="nope", args={})]}}
    source = tmp_path / "in.json"
    source.write_text(json.dumps({"format": "planexec-plans/1", "plans": [good, bad]}))
    code, _, err = cli(capsys, "plans", "import", str(source), "--checkpoint", str(ck))
    assert code == 2
    assert "nothing was imported" in err
    assert "plan #1 (good1): tool 'calculator' is used but its schema digest was not saved" in err
    assert "plan #2 (bad1): tool 'nope' is used" in err
    assert "unknown tool 'nope'" in err
    assert listing(capsys, ck) == []
    source.write_text("{not json")
    code, _, err = cli(capsys, "plans", "import", str(source), "--checkpoint", str(ck))
    assert (code, "is not JSON" in err) == (2, True)


def test_text_from_the_library_is_printed_inert(
    capsys: pytest.CaptureFixture[str], ck: Path, tmp_path: Path
) -> None:
    hostile = "add \x1b[2J\x1b]0;owned\x07 numbers [bold]loud[/bold] \u202etxt"
    from planexec.tools import calculator

    document = {
        "format": "planexec-plans/1",
        "plans": [
            {
                "id": "h1",
                "goal": hostile,
                "goals": [hostile],
                "plan": {"steps": [step("s1", args={"expression": "1+1"})]},
                "tools": {
                    "calculator": __import__("planexec.library").library.schema_hash(calculator)
                },
                "stats": {"saved_at": "2026-11-01T00:00:00+00:00"},
            }
        ],
    }
    source = tmp_path / "in.json"
    source.write_text(json.dumps(document))
    assert cli(capsys, "plans", "import", str(source), "--checkpoint", str(ck))[0] == 0
    for action in (["list"], ["show", "h1"]):
        code, out, err = cli(capsys, "plans", *action, "--checkpoint", str(ck))
        assert code == 0, err
        assert "\x1b" not in out
        assert "\x07" not in out
        assert "\u202e" not in out
        assert "\\x1b[2J" in out
        assert "<U+202E>" in out
        assert "[bold]loud[/bold]" in out


def test_embeddings_on_a_sqlite_that_cannot_load_extensions_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        pytest.skip("this Python's sqlite3 can load extensions")
    monkeypatch.setenv("PLANEXEC_EMBEDDINGS", "openai:text-embedding-3-small")
    code, _, err = cli(capsys, "plans", "list", "--checkpoint", str(ck))
    assert code == 2
    assert "sqlite-vec" in err
    assert "Traceback" not in err


async def test_the_sqlite_store_keeps_plans_across_processes_worth_of_opens(tmp_path: Path) -> None:
    ck = tmp_path / "x.sqlite"
    for attempt in range(2):
        async with open_store(ck) as store:
            planner = ScriptedChatModel([plan_reply(ARITHMETIC)] if attempt == 0 else [])
            graph = build_graph(
                checkpointer=InMemorySaver(),
                store=store,
                planner=planner,
                executor=planner,
                replanner=ScriptedChatModel([replan_reply("finish", answer="43")]),
            )
            context = Context(review="never", reuse_plans="replay")
            out = await graph.ainvoke(
                {"goal": GOAL}, {"configurable": {"thread_id": "t"}}, context=context
            )
            assert out["status"] == "completed"
            assert len(planner.calls) == 1 - attempt
    async with open_store(ck) as store:
        [entry] = await PlanLibrary(store).alist()
    assert (entry.stats.uses, entry.stats.replays) == (2, 1)


@pytest.mark.integration
async def test_postgres_keeps_the_library_in_the_checkpoints_database(pg_url: str) -> None:
    from planexec.checkpoints import open_checkpointer

    async with open_checkpointer(pg_url) as saver, open_store(pg_url) as store:
        for thread, replies in (("a", [plan_reply(ARITHMETIC)]), ("b", [])):
            planner = ScriptedChatModel(replies)
            graph = build_graph(
                checkpointer=saver,
                store=store,
                planner=planner,
                executor=planner,
                replanner=ScriptedChatModel([replan_reply("finish", answer="43")]),
            )
            context = Context(review="never", reuse_plans="replay")
            out = await graph.ainvoke(
                {"goal": GOAL}, {"configurable": {"thread_id": thread}}, context=context
            )
            assert out["status"] == "completed"
        [entry] = await PlanLibrary(store).alist()
        assert await PlanLibrary(store).afind("what is 6*7+1 again", graph_tools()) != []
    assert (entry.stats.uses, entry.stats.replays) == (2, 1)
    with psycopg.connect(pg_url) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables")}
    assert {"store", "store_migrations", "checkpoints"} <= tables


def graph_tools() -> dict[str, Any]:
    from planexec.tools import default_tools

    return {t.name: t for t in default_tools()}


def test_a_run_paused_for_review_saves_its_plan_when_resumed_to_completion(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ck: Path
) -> None:
    finish = replan_reply("finish", answer="43")
    scripted_models(monkeypatch, planner=[plan_reply(ARITHMETIC)], replanner=[finish])
    code, out, err = cli(
        capsys, "run", GOAL, "--json", "--thread", "t1", "--checkpoint", str(ck), *CLI_MODELS
    )
    assert code == 0, err
    assert json.loads(out)["paused"] == "plan_review"
    assert listing(capsys, ck) == []
    code, out, err = cli(capsys, "resume", "t1", "--approve", "--json", "--checkpoint", str(ck))
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"
    [entry] = listing(capsys, ck)
    assert (entry["goal"], entry["uses"]) == (GOAL, 1)
