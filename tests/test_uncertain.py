"""Tools that must not run twice: an uncertain call pauses for a person.

In one process, the uncertainty comes from an attempt cancelled by its timeout in the
middle of the call (a crash between the saved begin mark and the saved finish is the
crash matrix's `uncertain` scenario, in `test_crash_matrix.py`). The person re-runs
the call, marks it done with its output, or skips the step, from Python or from
`planexec resume`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langgraph.types import Command

from helpers import Harness, step
from planexec import Context, ScriptedChatModel, TransientError, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.cli import commands, main
from planexec.cli.session import thread_config
from planexec.scripted import plan_reply, replan_reply

pytestmark = pytest.mark.usefixtures("both_apis")

CHARGE_THEN = [
    step("s1", tool="charge", args={"amount": 5}, description="Charge 5"),
    step("s2", tool=None, depends_on=["s1"], description="Report the receipt {{s1}}"),
]
FINISH = replan_reply("finish", answer="charged")


def charge_tool(calls: list[str], *, hang_first: bool = True, marked: bool = True) -> BaseTool:
    """A tool with a side effect per call; its first call hangs until cancelled."""

    @tool
    async def charge(amount: int, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Charge a card; every call charges again."""
        calls.append(tool_call_id)
        if hang_first and len(calls) == 1:
            await asyncio.sleep(30)
        return f"receipt-{amount}-{len(calls)}"

    if marked:
        charge.metadata = {"idempotent": False}
    return charge


def context(**overrides: Any) -> Context:
    settings: dict[str, Any] = {
        "review": "never",
        "retry_initial_interval": 0.0,
        "tool_timeouts": {"charge": 0.3},
    }
    return Context(**{**settings, **overrides})


async def paused(harness: Harness, ctx: Context) -> dict[str, Any]:
    out = await harness.run({"goal": "charge 5"}, ctx)
    (pending,) = out["__interrupt__"]
    value: dict[str, Any] = pending.value
    return value


async def test_a_call_cancelled_mid_way_pauses_instead_of_calling_again() -> None:
    calls: list[str] = []
    h = Harness(planner=[plan_reply(CHARGE_THEN)], tools=[charge_tool(calls)])
    request = await paused(h, context())
    assert request == {
        "type": "uncertain_step",
        "step": "s1",
        "revision": 1,
        "tool": "charge",
        "args": {"amount": 5},
        "key": "t1:r1:s1",
        "description": "Charge 5",
        "message": request["message"],
        "allowed_decisions": ["rerun", "done", "skip"],
    }
    assert "timed out in the middle of the call" in request["message"]
    # The timed-out call was not retried blindly: one call, and s2 waits.
    assert calls == ["t1:r1:s1"]
    state = await h.state()
    assert state["results"] == {}
    assert h.executor.calls == []


async def test_marked_done_records_the_persons_output_and_runs_on() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply(CHARGE_THEN)],
        executor=["Receipt receipt-5-1."],
        replanner=[FINISH],
        tools=[charge_tool(calls)],
    )
    ctx = context()
    request = await paused(h, ctx)
    decision = {"type": "done", "output": "receipt-5-1", "key": request["key"]}
    out = await h.run(Command(resume=decision), ctx)
    assert out["status"] == "completed"
    s1 = out["results"]["s1"]
    assert (s1["status"], s1["output"], s1["resolution"]) == (
        "done",
        "receipt-5-1",
        "marked done by a person",
    )
    assert calls == ["t1:r1:s1"]
    assert "receipt-5-1" in h.executor.calls[0].prompt


async def test_rerun_calls_the_tool_again_with_the_same_key() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply(CHARGE_THEN)],
        executor=["ok"],
        replanner=[FINISH],
        tools=[charge_tool(calls)],
    )
    ctx = context()
    await paused(h, ctx)
    out = await h.run(Command(resume={"type": "rerun"}), ctx)
    assert out["results"]["s1"]["output"] == "receipt-5-2"
    assert "resolution" not in out["results"]["s1"]
    assert calls == ["t1:r1:s1", "t1:r1:s1"]


async def test_skip_skips_the_step_and_its_dependents_and_tells_the_replanner() -> None:
    calls: list[str] = []
    h = Harness(planner=[plan_reply(CHARGE_THEN)], replanner=[FINISH], tools=[charge_tool(calls)])
    ctx = context()
    await paused(h, ctx)
    out = await h.run(Command(resume={"type": "skip", "message": "charged by hand"}), ctx)
    assert out["results"]["s1"]["status"] == "skipped"
    assert out["results"]["s1"]["error"] == (
        "skipped by a person after an uncertain call: charged by hand"
    )
    assert out["results"]["s2"]["status"] == "skipped"
    assert calls == ["t1:r1:s1"]
    assert "charged by hand" in h.replanner.calls[0].prompt


@pytest.mark.parametrize(
    ("decision", "error"),
    [
        ({"type": "approve"}, "unknown decision type 'approve'"),
        ({"type": "done"}, 'a "done" decision needs the call\'s "output"'),
        ({"type": "rerun", "key": "t1:r9:s1"}, "the uncertain call is t1:r1:s1"),
        ("rerun", "a decision must be an object"),
    ],
)
async def test_a_malformed_or_stale_decision_pauses_again_with_the_reason(
    decision: Any, error: str
) -> None:
    calls: list[str] = []
    h = Harness(planner=[plan_reply(CHARGE_THEN)], tools=[charge_tool(calls)])
    ctx = context()
    await paused(h, ctx)
    out = await h.run(Command(resume=decision), ctx)
    (pending,) = out["__interrupt__"]
    assert pending.value["type"] == "uncertain_step"
    assert any(error in e for e in pending.value["errors"])
    assert calls == ["t1:r1:s1"]


async def test_a_tool_that_can_deduplicate_is_retried_after_a_timeout() -> None:
    calls: list[str] = []
    h = Harness(
        planner=[plan_reply(CHARGE_THEN)],
        executor=["ok"],
        replanner=[FINISH],
        tools=[charge_tool(calls, marked=False)],
    )
    out = await h.run({"goal": "charge 5"}, context())
    assert out["status"] == "completed"
    # Called twice with one key: a tool that takes the key can deduplicate.
    assert calls == ["t1:r1:s1", "t1:r1:s1"]
    assert out["results"]["s1"]["attempts"] == 2


async def test_the_context_can_mark_a_tool_that_must_not_run_twice() -> None:
    calls: list[str] = []
    h = Harness(planner=[plan_reply(CHARGE_THEN)], tools=[charge_tool(calls, marked=False)])
    request = await paused(h, context(non_idempotent_tools=["charge"]))
    assert request["step"] == "s1"
    assert calls == ["t1:r1:s1"]


async def test_a_call_that_raised_is_retried_as_usual() -> None:
    attempts: list[int] = []

    @tool
    def send(text: str) -> str:
        """Send a message; fails once."""
        attempts.append(1)
        if len(attempts) == 1:
            raise TransientError("try again")
        return "sent"

    send.metadata = {"idempotent": False}
    plan = [step("s1", tool="send", args={"text": "hi"})]
    h = Harness(planner=[plan_reply(plan)], replanner=[FINISH], tools=[send])
    out = await h.run({"goal": "send"}, context())
    assert out["status"] == "completed"
    assert (out["results"]["s1"]["output"], len(attempts)) == ("sent", 2)


# --- from the command line ---------------------------------------------------------------


def make_paused_thread(tmp_path: Path) -> tuple[Path, Path, str]:
    """A thread on a SQLite file, paused at an uncertain write_file call, as the CLI keeps it."""
    db, workspace = tmp_path / "ck.sqlite", tmp_path / "ws"
    workspace.mkdir()
    calls: list[str] = []

    @tool
    async def write_file(
        path: str, content: str, tool_call_id: Annotated[str, InjectedToolCallId]
    ) -> str:
        """Stands in for the built-in write_file: its call never returns."""
        calls.append(tool_call_id)
        await asyncio.sleep(30)
        return "never"

    ctx = Context(
        planner_model="openai:planner",
        executor_model="openai:executor",
        replanner_model="openai:replanner",
        review="never",
        retry_initial_interval=0.0,
        tool_timeouts={"write_file": 0.3},
        non_idempotent_tools=["write_file"],
        workspace=str(workspace),
    )
    plan = [step("s1", tool="write_file", args={"path": "out.txt", "content": "hello"})]

    async def go() -> None:
        async with open_checkpointer(db) as saver:
            graph = build_graph(
                tools=[write_file],
                checkpointer=saver,
                planner=ScriptedChatModel([plan_reply(plan)]),
            )
            run = thread_config("t-cli", ctx, "write the file")
            out = await graph.ainvoke({"goal": "write the file"}, run, context=ctx)
            assert out["__interrupt__"][0].value["type"] == "uncertain_step"

    asyncio.run(go())
    assert calls == ["t-cli:r1:s1"]
    return db, workspace, "t-cli"


@pytest.fixture
def scripted_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLANEXEC_HOME", str(tmp_path / "home"))
    models = {"replanner": ScriptedChatModel([replan_reply("finish", answer="written")])}
    monkeypatch.setattr(
        commands, "model_factory", lambda env: lambda spec, ctx: models.get(spec.split(":")[1])
    )


def test_resume_mark_done_settles_the_step_without_calling_the_tool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scripted_models: None
) -> None:
    db, workspace, thread = make_paused_thread(tmp_path)
    assert main(["threads", "--checkpoint", str(db), "--json"]) == 0
    assert '"status": "uncertain_step"' in capsys.readouterr().out
    assert main(["show", thread, "--checkpoint", str(db)]) == 0
    assert "paused for a decision on an uncertain step" in capsys.readouterr().out

    # Neither --yes nor a plan decision answers it.
    assert main(["resume", thread, "--checkpoint", str(db), "--yes"]) == 0
    assert "paused for a decision on an uncertain step" in capsys.readouterr().out
    assert main(["resume", thread, "--checkpoint", str(db), "--approve"]) == 2
    assert "answer with --rerun, --mark-done OUTPUT or --skip" in capsys.readouterr().err

    code = main(["resume", thread, "--checkpoint", str(db), "--mark-done", '"wrote it"', "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["status"] == "completed"
    assert document["results"]["s1"]["output"] == "wrote it"
    assert document["results"]["s1"]["resolution"] == "marked done by a person"
    assert not (workspace / "out.txt").exists()


def test_resume_rerun_calls_the_real_tool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scripted_models: None
) -> None:
    db, workspace, thread = make_paused_thread(tmp_path)
    assert main(["resume", thread, "--checkpoint", str(db), "--rerun"]) == 0
    assert (workspace / "out.txt").read_text() == "hello"
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] > 0


def test_resume_skip_skips_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scripted_models: None
) -> None:
    db, workspace, thread = make_paused_thread(tmp_path)
    assert (
        main(["resume", thread, "--checkpoint", str(db), "--skip", "--message", "done by hand"])
        == 0
    )
    capsys.readouterr()
    assert main(["show", thread, "--checkpoint", str(db), "--json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert values["results"]["s1"]["status"] == "skipped"
    assert "done by hand" in values["results"]["s1"]["error"]
    assert not (workspace / "out.txt").exists()


async def test_a_rerun_that_times_out_again_pauses_again_instead_of_reusing_the_answer() -> None:
    calls: list[str] = []

    @tool
    async def charge(amount: int, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Charge a card; the first two calls hang until cancelled."""
        calls.append(tool_call_id)
        if len(calls) <= 2:
            await asyncio.sleep(30)
        return f"receipt-{amount}-{len(calls)}"

    charge.metadata = {"idempotent": False}
    h = Harness(
        planner=[plan_reply(CHARGE_THEN)], executor=["ok"], replanner=[FINISH], tools=[charge]
    )
    ctx = context()
    await paused(h, ctx)
    out = await h.run(Command(resume={"type": "rerun"}), ctx)
    # The re-run hung too: the earlier "rerun" answers the first pause only.
    (pending,) = out["__interrupt__"]
    assert (pending.value["type"], pending.value["step"]) == ("uncertain_step", "s1")
    assert "errors" not in pending.value
    assert len(calls) == 2
    out = await h.run(Command(resume={"type": "rerun"}), ctx)
    assert out["status"] == "completed"
    assert out["results"]["s1"]["output"] == "receipt-5-3"
    assert calls == ["t1:r1:s1"] * 3
