"""Issue 6, item 5: checkpoints encrypted with a key, and read back only if untouched.

A run pauses at plan review with its checkpoints in a real SQLite file; the tests then
read, resume or tamper with that file (editing its rows directly) and check that every
change, wrong key or missing key stops the run with `CheckpointError` before anything
runs: no step, no model call, no new checkpoint.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from fake_openai import FakeOpenAI
from helpers import config, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.cli import main
from planexec.errors import CheckpointError
from planexec.scripted import plan_reply, replan_reply
from planexec.serde import checkpoint_serde
from planexec.tools import calculator

KEY = "correct horse battery staple 0f3a9c"
GOAL = "GOAL-MARKER: total the invoices"
PLAN = [
    step("s1", args={"expression": "12*4"}, description="STEP-MARKER multiply"),
    step("s2", tool="effect", args={"value": "{{s1}}"}, depends_on=["s1"]),
]
APPROVE = Command(resume={"type": "approve"})
THREAD = "t1"


class Run:
    """A graph on `db` opened with `key`, its scripted models, and the effects it caused."""

    def __init__(self, effects: list[str]) -> None:
        self.effects = effects
        self.planner = ScriptedChatModel([plan_reply(PLAN)], name_="planner")
        self.executor = ScriptedChatModel([], name_="executor")
        self.replanner = ScriptedChatModel([replan_reply("finish", answer="48")], name_="rp")

    def tools(self) -> list[BaseTool]:
        effects = self.effects

        @tool
        def effect(value: str) -> str:
            """Record a side effect."""
            effects.append(value)
            return f"recorded {value}"

        return [calculator, effect]

    def graph(self, saver: Any) -> Any:
        return build_graph(
            tools=self.tools(),
            checkpointer=saver,
            planner=self.planner,
            executor=self.executor,
            replanner=self.replanner,
        )

    @property
    def model_calls(self) -> int:
        return len(self.planner.calls) + len(self.executor.calls) + len(self.replanner.calls)


async def pause_at_review(db: Path, key: str | None) -> list[str]:
    """Start a run on `db` and leave it paused at plan review; the effects list."""
    effects: list[str] = []
    run = Run(effects)
    async with open_checkpointer(db, encryption_key=key) as saver:
        out = await run.graph(saver).ainvoke({"goal": GOAL}, config(THREAD), context=Context())
    assert out["__interrupt__"][0].value["type"] == "plan_review"
    assert run.model_calls == 1
    return effects


async def resume(db: Path, key: str | None) -> tuple[Run, dict[str, Any]]:
    run = Run([])
    async with open_checkpointer(db, encryption_key=key) as saver:
        out = await run.graph(saver).ainvoke(APPROVE, config(THREAD), context=Context())
    return run, out


async def assert_refused(db: Path, key: str | None, message: str) -> None:
    """Reading and resuming both raise `CheckpointError`; nothing runs or is written."""
    rows = row_counts(db)
    run = Run([])
    async with open_checkpointer(db, encryption_key=key) as saver:
        graph = run.graph(saver)
        with pytest.raises(CheckpointError, match=message):
            await graph.aget_state(config(THREAD))
        with pytest.raises(CheckpointError, match=message):
            await graph.ainvoke(APPROVE, config(THREAD), context=Context())
    assert run.effects == []
    assert run.model_calls == 0
    assert row_counts(db) == rows


def row_counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        checkpoints = conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
        writes = conn.execute("SELECT count(*) FROM writes").fetchone()[0]
    return checkpoints, writes


def latest(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT checkpoint_id FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1"
        ).fetchone()
    return str(row[0])


def edit_checkpoint(db: Path, change: Callable[[str, bytes], tuple[str, bytes]]) -> None:
    """Replace the latest checkpoint's `(type, blob)` with `change(type, blob)`."""
    checkpoint_id = latest(db)
    with sqlite3.connect(db) as conn:
        kind, blob = conn.execute(
            "SELECT type, checkpoint FROM checkpoints WHERE checkpoint_id = ?", (checkpoint_id,)
        ).fetchone()
        new_kind, new_blob = change(kind, bytes(blob))
        conn.execute(
            "UPDATE checkpoints SET type = ?, checkpoint = ? WHERE checkpoint_id = ?",
            (new_kind, new_blob, checkpoint_id),
        )


def edit_write(db: Path, channel: str, change: Callable[[str, bytes], tuple[str, bytes]]) -> None:
    """Replace the `(type, value)` of the latest checkpoint's pending write to `channel`."""
    checkpoint_id = latest(db)
    with sqlite3.connect(db) as conn:
        kind, blob = conn.execute(
            "SELECT type, value FROM writes WHERE checkpoint_id = ? AND channel = ?",
            (checkpoint_id, channel),
        ).fetchone()
        new_kind, new_blob = change(kind, bytes(blob))
        updated = conn.execute(
            "UPDATE writes SET type = ?, value = ? WHERE checkpoint_id = ? AND channel = ?",
            (new_kind, new_blob, checkpoint_id, channel),
        ).rowcount
    assert updated == 1


def flip(position: int) -> Callable[[str, bytes], tuple[str, bytes]]:
    def change(kind: str, blob: bytes) -> tuple[str, bytes]:
        data = bytearray(blob)
        data[position] ^= 0x01
        return kind, bytes(data)

    return change


def truncate(kind: str, blob: bytes) -> tuple[str, bytes]:
    return kind, blob[: len(blob) // 2]


def decrypted_in_the_clear(kind: str, blob: bytes) -> tuple[str, bytes]:
    """The same value, decrypted and stored unencrypted, as LangGraph would store it."""
    value = checkpoint_serde(KEY).loads_typed((kind, blob))
    return JsonPlusSerializer().dumps_typed(value)


def without_cipher_suffix(kind: str, blob: bytes) -> tuple[str, bytes]:
    return kind.split("+", 1)[0], blob


def typed_null(kind: str, blob: bytes) -> tuple[str, bytes]:
    """The same ciphertext under another type: unbound, it would load as None."""
    return "null+" + kind.rsplit("+", 1)[1], blob


# --- encrypted at rest ----------------------------------------------------------------------


async def test_with_a_key_nothing_in_the_file_is_plaintext(tmp_path: Path) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, KEY)
    data = db.read_bytes()
    assert b"GOAL-MARKER" not in data
    assert b"STEP-MARKER" not in data
    assert KEY.encode() not in data
    with sqlite3.connect(db) as conn:
        types = conn.execute("SELECT type FROM checkpoints UNION SELECT type FROM writes")
        assert {row[0].split("+")[1] for row in types} == {"aesgcm"}


async def test_without_a_key_the_same_run_is_stored_in_the_clear(tmp_path: Path) -> None:
    # The control for the test above: the scan does find plaintext when it is there.
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, None)
    assert b"GOAL-MARKER" in db.read_bytes()


async def test_the_same_key_reads_it_back_and_resumes_in_a_new_saver(tmp_path: Path) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, KEY)
    async with open_checkpointer(db, encryption_key=KEY) as saver:
        state = await build_graph(checkpointer=saver).aget_state(config(THREAD))
    assert state.values["goal"] == GOAL
    assert state.interrupts[0].value["plan"]["steps"][0]["description"] == "STEP-MARKER multiply"
    run, out = await resume(db, KEY)
    assert out["status"] == "completed"
    assert out["answer"] == "48"
    assert run.effects == ["48"]
    assert b"GOAL-MARKER" not in db.read_bytes()


# --- wrong key, missing key, tampering: fail closed ----------------------------------------


async def test_a_wrong_key_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, KEY)
    await assert_refused(db, KEY + "x", "failed its integrity check")


async def test_a_missing_key_is_refused_and_says_a_key_is_needed(tmp_path: Path) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, KEY)
    await assert_refused(db, None, r"encrypted \(msgpack\+aesgcm\), but no checkpoint key is set")


async def test_a_key_given_for_a_checkpoint_written_without_one_is_refused(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, None)
    await assert_refused(db, KEY, "is not encrypted, but a checkpoint key is set")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (flip(0), "failed its integrity check"),  # in the nonce
        (flip(40), "failed its integrity check"),  # in the ciphertext
        (flip(-1), "failed its integrity check"),  # in the tag
        (truncate, "failed its integrity check"),
        (decrypted_in_the_clear, "is not encrypted, but a checkpoint key is set"),
        (without_cipher_suffix, "is not encrypted, but a checkpoint key is set"),
        (typed_null, "failed its integrity check"),
    ],
    ids=[
        "flip-nonce",
        "flip-body",
        "flip-tag",
        "truncate",
        "in-the-clear",
        "type-renamed",
        "type-changed",
    ],
)
async def test_a_tampered_checkpoint_blob_is_refused(
    change: Callable[[str, bytes], tuple[str, bytes]], message: str, tmp_path: Path
) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, KEY)
    edit_checkpoint(db, change)
    await assert_refused(db, KEY, message)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (flip(20), "failed its integrity check"),
        (truncate, "failed its integrity check"),
        (decrypted_in_the_clear, "is not encrypted, but a checkpoint key is set"),
        (typed_null, "failed its integrity check"),
    ],
    ids=["flip", "truncate", "in-the-clear", "type-changed"],
)
async def test_a_tampered_pending_write_is_refused(
    change: Callable[[str, bytes], tuple[str, bytes]], message: str, tmp_path: Path
) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, KEY)
    # The paused review's interrupt: what the approval would answer.
    edit_write(db, "__interrupt__", change)
    await assert_refused(db, KEY, message)


@pytest.mark.parametrize(
    "change",
    [truncate, lambda kind, blob: (kind, b"\xc1\xc1\xc1 not msgpack")],
    ids=["truncate", "garbage"],
)
async def test_without_a_key_an_undecodable_blob_is_refused(
    change: Callable[[str, bytes], tuple[str, bytes]], tmp_path: Path
) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, None)
    edit_checkpoint(db, change)
    await assert_refused(db, None, r"cannot be read: it is corrupt or truncated")


async def test_without_a_key_an_undecodable_pending_write_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, None)
    edit_write(db, "__interrupt__", truncate)
    await assert_refused(db, None, r"cannot be read: it is corrupt or truncated")


# --- the command line: PLANEXEC_CHECKPOINT_KEY -----------------------------------------------

CLI_MODELS = ["--planner-model", "openai:p", "--executor-model", "openai:e"]
CLI_PLAN = [
    step("s1", args={"expression": "12*4"}),
    step("s2", args={"expression": "{{s1}} + 5"}, depends_on=["s1"]),
]


def cli_replies() -> list[dict[str, Any]]:
    return [
        {
            "match": "You are the planner",
            "tool_calls": [{"name": "Plan", "arguments": {"steps": CLI_PLAN}}],
        },
        {
            "match": "You are the replanner",
            "tool_calls": [
                {
                    "name": "Replan",
                    "arguments": {
                        "action": "finish",
                        "answer": "53",
                        "steps": None,
                        "reason": "ok",
                    },
                }
            ],
        },
    ]


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PLANEXEC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("COLUMNS", "200")
    with FakeOpenAI(cli_replies()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        yield server


def cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str | None,
    *argv: str,
) -> tuple[int, str, str]:
    if key is None:
        monkeypatch.delenv("PLANEXEC_CHECKPOINT_KEY", raising=False)
    else:
        monkeypatch.setenv("PLANEXEC_CHECKPOINT_KEY", key)
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_resume_and_show_need_the_key_the_run_was_started_with(
    cli_env: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    where = ["--checkpoint", str(tmp_path / "ck.sqlite")]
    code, out, err = cli(capsys, monkeypatch, KEY, "run", GOAL, "--thread", "k1", *where,
                         *CLI_MODELS)  # fmt: skip
    assert code == 0, err
    assert "paused for review" in out
    assert b"GOAL-MARKER" not in (tmp_path / "ck.sqlite").read_bytes()
    refusals = {
        None: "no checkpoint key is set: give the key it was written with "
        "(PLANEXEC_CHECKPOINT_KEY)",
        "wrong key": "failed its integrity check: it was changed or corrupted, or the key "
        "(PLANEXEC_CHECKPOINT_KEY) is not the one it was written with",
    }
    for key, message in refusals.items():
        for argv in (["resume", "k1", "--approve"], ["show", "k1"], ["show", "k1", "--json"]):
            code, out, err = cli(capsys, monkeypatch, key, *argv, *where)
            assert code == 2, (key, argv)
            assert err.startswith("planexec: error: ")
            assert message in err
            assert len(err.strip().splitlines()) == 1  # one line, no traceback
            assert "GOAL-MARKER" not in out
    assert len(cli_env.requests) == 1  # the planner only: nothing ran on a refused resume
    code, out, err = cli(capsys, monkeypatch, KEY, "resume", "k1", "--approve", *where)
    assert code == 0, err
    assert "status: completed" in out
    assert "53" in out
    cli_env.assert_done()


def test_cli_refuses_run_settings_changed_in_the_unencrypted_metadata(
    cli_env: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "ck.sqlite"
    where = ["--checkpoint", str(db)]
    code, _, err = cli(capsys, monkeypatch, KEY, "run", GOAL, "--thread", "k2", *where,
                       *CLI_MODELS)  # fmt: skip
    assert code == 0, err
    # Point the file tools elsewhere: the metadata column is JSON in the clear.
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT checkpoint_id, metadata FROM checkpoints").fetchall()
        for checkpoint_id, metadata in rows:
            data = json.loads(metadata)
            if "planexec_context" in data:
                settings = json.loads(data["planexec_context"])
                settings["workspace"] = "/elsewhere"
                data["planexec_context"] = json.dumps(settings, sort_keys=True)
            conn.execute(
                "UPDATE checkpoints SET metadata = ? WHERE checkpoint_id = ?",
                (json.dumps(data), checkpoint_id),
            )
    code, _, err = cli(capsys, monkeypatch, KEY, "resume", "k2", "--approve", *where)
    assert code == 2
    assert "not signed with the checkpoint key, or were changed since" in err
    assert len(cli_env.requests) == 1


def test_cli_refuses_a_key_for_a_thread_run_without_one(
    cli_env: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    where = ["--checkpoint", str(tmp_path / "ck.sqlite")]
    code, _, err = cli(capsys, monkeypatch, None, "run", GOAL, "--thread", "k3", *where,
                       *CLI_MODELS)  # fmt: skip
    assert code == 0, err
    code, _, err = cli(capsys, monkeypatch, KEY, "resume", "k3", "--approve", *where)
    assert code == 2
    assert "is not encrypted, but a checkpoint key is set" in err
    assert len(cli_env.requests) == 1


# --- embedders: planexec's serializer in a saver of their own ------------------------------


async def test_checkpoint_serde_encrypts_an_in_memory_saver() -> None:
    saver = InMemorySaver(serde=checkpoint_serde(KEY))
    run = Run([])
    graph = run.graph(saver)
    await graph.ainvoke({"goal": GOAL}, config(THREAD), context=Context())
    out = await graph.ainvoke(APPROVE, config(THREAD), context=Context())
    assert out["status"] == "completed"
    assert run.effects == ["48"]
    stored = [typed for per_ns in saver.storage.values() for ns in per_ns.values()
              for typed, _, _ in ns.values()]  # fmt: skip
    assert stored
    assert all(kind.endswith("+aesgcm") for kind, _ in stored)
    assert not any(b"GOAL-MARKER" in blob for _, blob in stored)


async def test_a_saver_made_by_an_embedder_shares_files_with_open_checkpointer(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ck.sqlite"
    async with aiosqlite.connect(db) as conn:
        saver = AsyncSqliteSaver(conn, serde=checkpoint_serde(KEY))
        out = await Run([]).graph(saver).ainvoke({"goal": GOAL}, config(THREAD), context=Context())
    assert out["__interrupt__"][0].value["type"] == "plan_review"
    assert b"GOAL-MARKER" not in db.read_bytes()
    run, out = await resume(db, KEY)
    assert out["status"] == "completed"
    assert run.effects == ["48"]
    await assert_refused(db, "another key", "failed its integrity check")


async def test_a_sync_saver_with_checkpoint_serde_reads_with_the_key_only(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ck.sqlite"
    await pause_at_review(db, KEY)
    with sqlite3.connect(db, check_same_thread=False) as conn:
        found = SqliteSaver(conn, serde=checkpoint_serde(KEY)).get_tuple(config(THREAD))
        assert found is not None
        assert found.checkpoint["channel_values"]["goal"] == GOAL
        with pytest.raises(CheckpointError, match="failed its integrity check"):
            SqliteSaver(conn, serde=checkpoint_serde("wrong")).get_tuple(config(THREAD))
