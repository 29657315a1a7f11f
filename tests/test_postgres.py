"""PostgreSQL: the persistence scenarios across processes, and the command line.

The persistence tests here are those of `test_persistence.py`, run unchanged with the
worker processes pointed at a new PostgreSQL database (`--db postgresql://...`, which
the worker opens with `planexec.checkpoints`, or as a `PostgresSaver` on the sync API),
and with the recorded step results counted in that database's `checkpoint_writes` table
instead of SQLite's `writes`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from langgraph.checkpoint.base import empty_checkpoint

import test_persistence as on_sqlite
from helpers import ARITHMETIC, CLI_MODELS, cli, scripted_models
from planexec.checkpoints import open_checkpointer, redact
from planexec.cli.environment import UserError
from planexec.cli.opening import open_saver
from planexec.scripted import plan_reply, replan_reply
from test_persistence import worker_api  # noqa: F401 - the fixture, used below

pytestmark = pytest.mark.integration


def recorded_results(url: str) -> int:
    """How many executor tasks have their return value saved in the database."""
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM checkpoint_writes WHERE channel = '__return__'"
            ).fetchone()
    except psycopg.errors.UndefinedTable:  # the worker has not created the tables yet
        return 0
    assert row is not None
    return int(row[0])


def checkpoints(url: str, thread: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def on_postgres(pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """Workers started by `test_persistence`'s helpers use `pg_url`."""
    command = on_sqlite._command
    # argparse keeps the last of a repeated option: this --db replaces the SQLite file.
    monkeypatch.setattr(on_sqlite, "_command", lambda *args: [*command(*args), "--db", pg_url])
    monkeypatch.setattr(on_sqlite, "recorded_results", lambda _: recorded_results(pg_url))
    yield pg_url
    assert not (tmp_path / "checkpoints.sqlite").exists(), "a worker used SQLite"


@pytest.mark.usefixtures("worker_api")
def test_paused_at_review_in_one_process_is_approved_and_finished_in_another(
    on_postgres: str, tmp_path: Path
) -> None:
    on_sqlite.test_paused_at_review_in_one_process_is_approved_and_finished_in_another(tmp_path)
    assert checkpoints(on_postgres, "t-review") > 3


@pytest.mark.parametrize("durability", ["async", "exit"])
@pytest.mark.usefixtures("worker_api")
def test_a_run_killed_while_paused_at_review_loses_nothing(
    on_postgres: str, tmp_path: Path, durability: str
) -> None:
    on_sqlite.test_a_run_killed_while_paused_at_review_loses_nothing(tmp_path, durability)
    assert checkpoints(on_postgres, "t-held") > 0


@pytest.mark.usefixtures("worker_api")
def test_killed_chain_resumes_after_the_last_recorded_step(
    on_postgres: str, tmp_path: Path
) -> None:
    on_sqlite.test_killed_chain_resumes_after_the_last_recorded_step(tmp_path)
    assert checkpoints(on_postgres, "t-chain") > 0


@pytest.mark.usefixtures("worker_api")
def test_killed_parallel_wave_resumes_only_the_unfinished_steps(
    on_postgres: str, tmp_path: Path
) -> None:
    on_sqlite.test_killed_parallel_wave_resumes_only_the_unfinished_steps(tmp_path)
    assert checkpoints(on_postgres, "t-wave") > 0


# --- the saver and the command line ----------------------------------------------------


async def test_open_checkpointer_persists_with_autocommit(pg_url: str) -> None:
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    async with open_checkpointer(pg_url) as saver:
        written = await saver.aput(config, empty_checkpoint(), {"source": "input"}, {})
    # Read from another connection: without autocommit nothing would be there.
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT checkpoint_id FROM checkpoints").fetchone()
    assert row == (written["configurable"]["checkpoint_id"],)


async def test_an_unreachable_server_is_a_one_line_error() -> None:
    url = "postgresql://someone:secret@127.0.0.1:9/nowhere"
    with pytest.raises(UserError) as caught:
        async with open_saver(url):
            pytest.fail("opened")
    message = str(caught.value)
    assert message.startswith(
        "cannot open the checkpoint database postgresql://someone:***@127.0.0.1:9/nowhere: "
    )
    assert "secret" not in message
    assert "\n" not in message


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://u:pw@h:5432/db?sslmode=require&password=x") == (
        "postgresql://u:***@h:5432/db?sslmode=require&password=***"
    )
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact(Path("/tmp/c.sqlite")) == "/tmp/c.sqlite"


def test_the_cli_runs_pauses_resumes_and_shows_a_thread_on_postgres(
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cli_home: Path,
) -> None:
    models = scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="The answer is 43.")],
    )
    code, out, _ = cli(
        capsys, "run", "6*7+1", *CLI_MODELS, "--checkpoint", pg_url, "--thread", "p1"
    )
    assert code == 0
    assert f"resume with: planexec resume p1 --checkpoint {pg_url} [--approve" in out
    assert not cli_home.exists()  # nothing went to the default SQLite file

    code, out, _ = cli(capsys, "resume", "p1", "--checkpoint", pg_url, "--approve")
    assert code == 0, out
    assert "The answer is 43." in out
    assert len(models["replanner"].calls) == 1

    code, out, _ = cli(capsys, "show", "p1", "--checkpoint", pg_url, "--json")
    values = json.loads(out)
    assert values["status"] == "completed"
    assert {k: r["output"] for k, r in values["results"].items()} == {"s1": 42, "s2": 43}
    assert [r["decision"] for r in values["reviews"]] == ["approve"]

    code, _, err = cli(capsys, "show", "nope", "--checkpoint", pg_url)
    assert code == 2
    assert re.search(r"unknown thread nope in postgresql://", err)
