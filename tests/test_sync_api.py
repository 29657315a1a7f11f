"""LangGraph's sync API on planexec's async graph: invoke, stream, state calls, savers, loops.

`planexec.runtime` runs the async graph for `invoke` and `stream` on a loop of its own;
these tests drive every entry point a LangGraph user reaches for, with each kind of saver,
from plain sync code, from threads, from inside a running loop, and over successive
`asyncio.run()` calls.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from fake_openai import FakeOpenAI
from helpers import config, step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.audit import audit_trail, audit_trail_sync
from planexec.events import is_event
from planexec.runtime import SaverMismatchError
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import calculator

REVIEW = Context(retry_initial_interval=0.0)
NEVER = Context(review="never", retry_initial_interval=0.0)
STEPS = [
    step("s1", args={"expression": "12*4"}),
    step("s2", args={"expression": "{{s1}} + 5"}, depends_on=["s1"]),
    step("s3", tool=None, depends_on=["s2"], description="Say the result in a sentence"),
]
APPROVE = Command(resume={"type": "approve"})
VOLATILE = {"at", "started_at", "duration_s", "active_s", "seal"}
"""Fields that differ between two otherwise identical runs: clock readings, and the
seals of approvals (each database keeps its own key)."""


def models(steps: list[dict[str, Any]] = STEPS) -> dict[str, ScriptedChatModel]:
    return {
        "planner": ScriptedChatModel([plan_reply(steps)], name_="planner-model"),
        "executor": ScriptedChatModel(["The result is 53."], name_="executor-model"),
        "replanner": ScriptedChatModel(
            [replan_reply("finish", answer="12 * 4 + 5 = 53")], name_="replanner-model"
        ),
    }


def graph_on(saver: Any, scripted: dict[str, ScriptedChatModel], **kwargs: Any) -> Any:
    return build_graph(
        tools=kwargs.pop("tools", [calculator]),
        checkpointer=saver,
        planner=scripted["planner"],
        executor=scripted["executor"],
        replanner=scripted["replanner"],
        **kwargs,
    )


def stable(value: Any) -> Any:
    """`value` without clock readings, for comparing two runs."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


@contextmanager
def sqlite_saver(path: Path) -> Iterator[SqliteSaver]:
    with closing(sqlite3.connect(path, check_same_thread=False)) as conn:
        yield SqliteSaver(conn)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def sync_saver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each kind of saver a sync LangGraph program pairs with `invoke`."""
    if request.param == "memory":
        yield InMemorySaver()
    elif request.param == "sqlite":
        with sqlite_saver(tmp_path / "checkpoints.sqlite") as saver:
            yield saver
    else:
        url = request.getfixturevalue("pg_url")
        with PostgresSaver.from_conn_string(url) as saver:
            saver.setup()
            yield saver


# --- the sync API, end to end --------------------------------------------------------


def test_invoke_reviews_runs_and_records_with_each_sync_saver(sync_saver: Any) -> None:
    scripted = models()
    graph = graph_on(sync_saver, scripted)
    cfg = config(f"sync-{type(sync_saver).__name__}")

    paused = graph.invoke({"goal": "What is 12 * 4 + 5?"}, cfg, context=REVIEW)
    [pending] = paused["__interrupt__"]
    assert pending.value["type"] == "plan_review"
    assert graph.get_state(cfg).next == ("review",)

    done = graph.invoke(APPROVE, cfg, context=REVIEW)
    assert (done["status"], done["answer"]) == ("completed", "12 * 4 + 5 = 53")
    assert {k: r["output"] for k, r in done["results"].items()} == {
        "s1": 48,
        "s2": 53,
        "s3": "The result is 53.",
    }
    assert {role: u["calls"] for role, u in done["usage"].items()} == {
        "planner": 1,
        "executor": 1,
        "replanner": 1,
    }
    assert [len(m.calls) for m in scripted.values()] == [1, 1, 1]
    assert graph.get_state(cfg).values["status"] == "completed"
    trail = audit_trail_sync(graph, cfg["configurable"]["thread_id"])
    kinds = [record["type"] for record in trail]
    assert kinds.count("step_finished") == 3
    assert [r["decision"] for r in trail if r["type"] == "review_decision"] == ["approve"]


async def test_the_sync_and_async_apis_give_the_same_run(tmp_path: Path) -> None:
    """Same plan on SqliteSaver + invoke and on AsyncSqliteSaver + ainvoke."""

    def stamper(keys: list[str]) -> BaseTool:
        @tool
        def stamp(text: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
            """Stamp a text."""
            keys.append(tool_call_id)
            return f"[{text}]"

        return stamp

    plan = [
        *STEPS,
        step("s4", tool="stamp", args={"text": "{{s2}}"}, depends_on=["s2"]),
    ]
    sync_keys: list[str] = []
    async_keys: list[str] = []

    def run_sync() -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
        scripted = models(plan)
        with sqlite_saver(tmp_path / "sync.sqlite") as saver:
            graph = graph_on(saver, scripted, tools=[calculator, stamper(sync_keys)])
            events = [
                part
                for value in ({"goal": "g"}, APPROVE)
                for mode, part in graph.stream(
                    value, config("t"), context=REVIEW, stream_mode=["custom", "updates"]
                )
                if mode == "custom"
            ]
            state = graph.get_state(config("t")).values
            trail = audit_trail_sync(graph, "t")
        return state, events, trail

    sync_state, sync_events, sync_trail = await asyncio.to_thread(run_sync)

    scripted = models(plan)
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "async.sqlite")) as saver:
        graph = graph_on(saver, scripted, tools=[calculator, stamper(async_keys)])
        async_events = [
            part
            for value in ({"goal": "g"}, APPROVE)
            async for mode, part in graph.astream(
                value, config("t"), context=REVIEW, stream_mode=["custom", "updates"]
            )
            if mode == "custom"
        ]
        async_state = (await graph.aget_state(config("t"))).values
        async_trail = await audit_trail(graph, "t")

    assert sync_state["status"] == "completed"
    assert sync_state["results"]["s4"]["output"] == "[53]"
    assert stable(sync_state) == stable(async_state)
    assert sync_keys == async_keys == ["t:r1:s4"]
    assert all(is_event(e) for e in sync_events)
    assert stable(sync_events) == stable(async_events)
    # Steps that finish in the same superstep may be listed in either order.
    assert sorted((r["type"], r.get("step") or "") for r in sync_trail) == sorted(
        (r["type"], r.get("step") or "") for r in async_trail
    )
    assert len(sync_trail) > 8


@pytest.mark.parametrize(
    ("mode", "project"),
    [
        ("values", lambda part: sorted(part)),
        ("updates", lambda part: sorted(part)),
        ("custom", lambda part: part["event"]),
        ("messages", lambda part: part[1]["langgraph_node"]),
        ("tasks", lambda part: (part["name"], "result" in part)),
        ("checkpoints", lambda part: list(part["next"])),
        ("debug", lambda part: part["type"]),
    ],
)
async def test_every_stream_mode_gives_the_same_parts_on_both_apis(
    mode: str, project: Callable[[Any], Any]
) -> None:
    async def parts(sync: bool) -> list[Any]:
        graph = graph_on(InMemorySaver(), models())
        if sync:
            got = list(graph.stream({"goal": "g"}, config(), context=NEVER, stream_mode=mode))
        else:
            got = [
                p
                async for p in graph.astream(
                    {"goal": "g"}, config(), context=NEVER, stream_mode=mode
                )
            ]
        return [project(p) for p in got]

    sync_parts, async_parts = await parts(sync=True), await parts(sync=False)
    assert sync_parts
    assert sync_parts == async_parts


def test_stream_v2_and_subgraphs_reach_a_subagents_namespace() -> None:
    from test_subagents import World, researcher

    world = World()
    agent, _ = researcher(
        world, [{"tool_calls": [{"name": "lookup", "args": {"city": "Oslo"}}]}, "1000"]
    )
    scripted = models([step("s1", tool="researcher", args={"request": "Population of Oslo"})])
    graph = graph_on(InMemorySaver(), scripted, tools=[agent])
    inside: list[tuple[str, str]] = []
    for part in graph.stream(
        {"goal": "Oslo"},
        config(),
        context=NEVER,
        stream_mode=["updates", "custom"],
        subgraphs=True,
        version="v2",
    ):
        assert part["type"] in ("updates", "custom")
        if part["type"] == "updates" and len(part["ns"]) == 2:
            inside.extend((part["ns"][-1].split(":")[0], node) for node in part["data"])
    # The sub-agent's own nodes, under the step's namespace.
    assert inside == [("step-s1", "agent"), ("step-s1", "tools"), ("step-s1", "agent")]
    assert world.lookups == ["Oslo"]
    assert graph.get_state(config()).values["results"]["s1"]["output"] == "1000"


# --- parallelism and blocking -----------------------------------------------------------


def fan_out(tool_name: str, n: int = 4) -> list[dict[str, Any]]:
    return [step(f"s{i}", tool=tool_name, args={"label": f"s{i}"}) for i in range(1, n + 1)]


def test_under_invoke_independent_sync_tool_steps_run_at_the_same_time() -> None:
    # Each call waits until all four are inside the tool: only concurrent calls pass.
    together = threading.Barrier(4, timeout=10)

    @tool
    def meet(label: str) -> str:
        """Wait for the other three."""
        together.wait()
        return label

    scripted = models(fan_out("meet"))
    graph = graph_on(InMemorySaver(), scripted, tools=[meet])
    out = graph.invoke({"goal": "meet"}, config(), context=NEVER)
    assert {k: (r["status"], r["output"]) for k, r in out["results"].items()} == {
        f"s{i}": ("done", f"s{i}") for i in range(1, 5)
    }


def test_under_invoke_independent_async_tool_steps_run_at_the_same_time() -> None:
    together = asyncio.Barrier(4)

    @tool
    async def meet(label: str) -> str:
        """Wait for the other three."""
        async with asyncio.timeout(10):
            await together.wait()
        return label

    graph = graph_on(InMemorySaver(), models(fan_out("meet")), tools=[meet])
    out = graph.invoke({"goal": "meet"}, config(), context=NEVER)
    assert all(r["status"] == "done" for r in out["results"].values()), out["results"]


@pytest.mark.usefixtures("both_apis")
async def test_a_blocking_sync_tool_does_not_stall_its_async_sibling() -> None:
    from helpers import invoke

    released = threading.Event()

    @tool
    def blocker(label: str) -> str:
        """Block this thread until the sibling step has run."""
        if not released.wait(10):
            raise RuntimeError("the sibling never ran: the event loop was blocked")
        return label

    @tool
    async def releaser(label: str) -> str:
        """Let the blocker go."""
        await asyncio.sleep(0.05)
        released.set()
        return label

    plan = [
        step("s1", tool="blocker", args={"label": "blocked"}),
        step("s2", tool="releaser", args={"label": "released"}),
    ]
    graph = graph_on(InMemorySaver(), models(plan), tools=[blocker, releaser])
    out = await invoke(graph, {"goal": "both"}, config(), context=NEVER)
    assert {k: r["status"] for k, r in out["results"].items()} == {"s1": "done", "s2": "done"}


# --- savers that cannot serve the API called -----------------------------------------


async def test_a_sync_only_saver_under_the_async_api_is_refused_before_any_model_call(
    tmp_path: Path,
) -> None:
    with sqlite_saver(tmp_path / "c.sqlite") as saver:
        scripted = models()
        graph = graph_on(saver, scripted)
        calls = {
            "ainvoke": lambda: graph.ainvoke({"goal": "g"}, config()),
            "aget_state": lambda: graph.aget_state(config()),
            "aupdate_state": lambda: graph.aupdate_state(config(), {"goal": "x"}),
            "abulk_update_state": lambda: graph.abulk_update_state(config(), []),
        }
        for name, call in calls.items():
            with pytest.raises(SaverMismatchError) as raised:
                await call()
            message = str(raised.value)
            assert "\n" not in message
            assert f"graph.{name}()" in message
            assert "AsyncSqliteSaver" in message, message
        with pytest.raises(SaverMismatchError, match="AsyncSqliteSaver"):
            graph.astream({"goal": "g"}, config())
        with pytest.raises(SaverMismatchError, match="AsyncSqliteSaver"):
            graph.aget_state_history(config())
        assert [len(m.calls) for m in scripted.values()] == [0, 0, 0]
        # The sync API still works with it.
        assert graph.invoke({"goal": "g"}, config(), context=REVIEW)["__interrupt__"]


@pytest.mark.integration
async def test_postgres_saver_under_the_async_api_names_the_async_saver(pg_url: str) -> None:
    with PostgresSaver.from_conn_string(pg_url) as saver:
        saver.setup()
        scripted = models()
        graph = graph_on(saver, scripted)
        with pytest.raises(SaverMismatchError, match=r"AsyncPostgresSaver \(langgraph"):
            await graph.ainvoke({"goal": "g"}, config())
        assert scripted["planner"].calls == []


async def test_an_async_saver_under_the_sync_api_on_its_own_loop_is_refused(
    tmp_path: Path,
) -> None:
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "c.sqlite")) as saver:
        scripted = models()
        graph = graph_on(saver, scripted)
        for call in (
            lambda: graph.invoke({"goal": "g"}, config()),
            lambda: list(graph.stream({"goal": "g"}, config())),
            lambda: graph.get_state(config()),
            lambda: graph.update_state(config(), {"goal": "x"}),
        ):
            with pytest.raises(
                SaverMismatchError, match=r"await graph\.a\w+\(\) instead"
            ) as raised:
                call()
            assert "SqliteSaver (langgraph.checkpoint.sqlite)" in str(raised.value)
            assert "\n" not in str(raised.value)
        assert scripted["planner"].calls == []
        # Where LangGraph allows it, from another thread while its loop runs, it works.
        out = await asyncio.to_thread(graph.invoke, {"goal": "g"}, config(), context=NEVER)
        assert out["status"] == "completed"
        snapshot = await asyncio.to_thread(graph.get_state, config())
        assert snapshot.values["answer"] == "12 * 4 + 5 = 53"


def test_an_async_saver_whose_loop_has_ended_is_refused(tmp_path: Path) -> None:
    async def open_and_leave() -> AsyncSqliteSaver:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "c.sqlite")) as saver:
            return saver

    saver = asyncio.run(open_and_leave())
    graph = graph_on(saver, models())
    with pytest.raises(SaverMismatchError, match="is not running"):
        graph.invoke({"goal": "g"}, config())


# --- event loops ------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("given", ["model strings", "ChatOpenAI instances"])
def test_three_asyncio_runs_in_a_row_complete(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start, resume, then a new thread, each in its own `asyncio.run()`.

    The server keeps connections alive, as real ones do, so a client pooled on a
    closed loop would fail the second call.
    """
    replies = [plan_reply(STEPS[:2]), replan_reply("finish", answer="53")] * 2
    with FakeOpenAI(replies, keep_alive=True) as server:
        if given == "model strings":
            monkeypatch.setenv("OPENAI_BASE_URL", server.url)
            monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
            graph = build_graph(tools=[calculator], checkpointer=InMemorySaver())
        else:
            model = ChatOpenAI(
                model="gpt-4.1", base_url=server.url, api_key="sk-test", max_retries=0, timeout=10
            )
            graph = build_graph(
                tools=[calculator], checkpointer=InMemorySaver(), planner=model, executor=model
            )
        paused = asyncio.run(graph.ainvoke({"goal": "12*4+5"}, config("a"), context=REVIEW))
        assert paused["__interrupt__"][0].value["type"] == "plan_review"
        done = asyncio.run(graph.ainvoke(APPROVE, config("a"), context=REVIEW))
        assert (done["status"], done["answer"]) == ("completed", "53"), done.get("reason")
        again = asyncio.run(graph.ainvoke({"goal": "12*4+5"}, config("b"), context=NEVER))
        assert (again["status"], again["answer"]) == ("completed", "53"), again.get("reason")
        assert len(server.requests) == 4
        server.assert_done()


@pytest.mark.integration
async def test_inside_a_running_loop_both_apis_work_on_one_graph() -> None:
    """As in a Jupyter cell: `graph.invoke` blocks the cell's loop, `await ainvoke` uses it."""
    replies = [plan_reply(STEPS[:2]), replan_reply("finish", answer="53")] * 2
    with FakeOpenAI(replies, keep_alive=True) as server:
        model = ChatOpenAI(
            model="gpt-4.1", base_url=server.url, api_key="sk-test", max_retries=0, timeout=10
        )
        graph = build_graph(
            tools=[calculator], checkpointer=InMemorySaver(), planner=model, executor=model
        )
        paused = graph.invoke({"goal": "12*4+5"}, config("a"), context=REVIEW)
        assert paused["__interrupt__"]
        done = await graph.ainvoke(APPROVE, config("a"), context=REVIEW)
        assert done["status"] == "completed", done.get("reason")
        paused = await graph.ainvoke({"goal": "12*4+5"}, config("b"), context=REVIEW)
        done = graph.invoke(APPROVE, config("b"), context=REVIEW)
        assert done["status"] == "completed", done.get("reason")
        server.assert_done()


def test_breaking_out_of_a_sync_stream_cancels_the_run_and_the_thread_resumes() -> None:
    started = threading.Event()
    cancelled: list[bool] = []
    slow = {"on": True}

    @tool
    async def wait(label: str) -> str:
        """Wait, the first time, until cancelled."""
        if slow["on"]:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
        return label

    plan = [
        step("s1", args={"expression": "1+1"}),
        step("s2", tool="wait", args={"label": "w"}, depends_on=["s1"]),
    ]
    scripted = models(plan)
    graph = graph_on(InMemorySaver(), scripted, tools=[calculator, wait])
    for mode, part in graph.stream({"goal": "g"}, config(), context=NEVER, stream_mode=["custom"]):
        if mode == "custom" and part["event"] == "step_started" and part["step"] == "s2":
            assert started.wait(10)
            break
    assert cancelled == [True]
    assert graph.get_state(config()).next == ("executor",)
    slow["on"] = False
    out = graph.invoke(None, config(), context=NEVER)
    assert out["status"] == "completed"
    assert {k: r["output"] for k, r in out["results"].items()} == {"s1": 2, "s2": "w"}


def test_invoke_from_async_code_on_the_runtime_loop_is_refused_not_deadlocked() -> None:
    inner = graph_on(InMemorySaver(), models())

    @tool
    async def nested(label: str) -> str:
        """Call another graph's sync API from async code."""
        inner.invoke({"goal": label}, config("inner"), context=NEVER)
        return label

    graph = graph_on(
        InMemorySaver(), models([step("s1", tool="nested", args={"label": "x"})]), tools=[nested]
    )
    out = graph.invoke({"goal": "g"}, config(), context=Context(review="never", step_attempts=1))
    assert out["results"]["s1"]["status"] == "failed"
    assert "await graph.ainvoke() there instead" in out["results"]["s1"]["error"]


def test_batch_runs_several_threads() -> None:
    scripted = {
        role: ScriptedChatModel(list(m._script) * 2, name_=m.name_) for role, m in models().items()
    }
    graph = graph_on(InMemorySaver(), scripted)
    outs = graph.batch([{"goal": "a"}, {"goal": "b"}], [config("a"), config("b")], context=NEVER)
    assert [out["status"] for out in outs] == ["completed", "completed"]


def test_time_travel_on_a_sync_saver_replays_from_an_earlier_checkpoint(tmp_path: Path) -> None:
    with sqlite_saver(tmp_path / "c.sqlite") as saver:
        scripted = models(STEPS[:2])
        graph = graph_on(saver, scripted)
        graph.invoke({"goal": "g"}, config(), context=REVIEW)
        first = graph.invoke(APPROVE, config(), context=REVIEW)
        assert first["status"] == "completed"
        history = list(graph.get_state_history(config()))
        approved = next(s for s in history if s.next == ("executor",))
        # A fork of the approved checkpoint with another goal runs the steps again.
        fork = graph.update_state(approved.config, {"goal": "forked"}, as_node="planner")
        scripted["replanner"].add(replan_reply("finish", answer="again 53"))
        replayed = graph.invoke(None, fork, context=REVIEW)
        assert (replayed["status"], replayed["answer"]) == ("completed", "again 53")
        assert replayed["goal"] == "forked"
        assert graph.get_state(config()).values["answer"] == "again 53"


CTRL_C_SCRIPT = """
import asyncio, sqlite3, sys
sys.path.insert(0, {tests!r})
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from helpers import step
from planexec import Context, ScriptedChatModel, build_graph
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import calculator

slow = sys.argv[1] == "start"

@tool
async def wait(label: str) -> str:
    "Wait a minute the first time."
    if slow:
        await asyncio.sleep(60)
    return label

plan = [step("s1", args={{"expression": "1+1"}}),
        step("s2", tool="wait", args={{"label": "w"}}, depends_on=["s1"])]
planner = ScriptedChatModel([plan_reply(plan)] if slow else [])
replanner = ScriptedChatModel([replan_reply("finish", answer="done")])
saver = SqliteSaver(sqlite3.connect({db!r}, check_same_thread=False))
graph = build_graph(tools=[calculator, wait], checkpointer=saver, planner=planner,
                    replanner=replanner)
config = {{"configurable": {{"thread_id": "t"}}}}
context = Context(review="never")
if slow:
    parts = graph.stream({{"goal": "g"}}, config, context=context, stream_mode="custom")
    for part in parts:
        if part["event"] == "step_started" and part["step"] == "s2":
            print("s2 started", flush=True)
else:
    out = graph.invoke(None, config, context=context)
    print(out["status"], {{k: r["output"] for k, r in out["results"].items()}}, flush=True)
"""


def test_ctrl_c_during_invoke_stops_at_once_and_the_thread_resumes_in_a_new_process(
    tmp_path: Path,
) -> None:
    script = tmp_path / "run.py"
    db = tmp_path / "c.sqlite"
    script.write_text(
        CTRL_C_SCRIPT.format(tests=str(Path(__file__).parent), db=str(db)), encoding="utf-8"
    )
    process = subprocess.Popen(
        [sys.executable, str(script), "start"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "s2 started\n"
        began = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert time.monotonic() - began < 10
    assert process.returncode != 0
    assert err.rstrip().endswith("KeyboardInterrupt"), err

    resumed = subprocess.run(
        [sys.executable, str(script), "resume"], capture_output=True, text=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "completed {'s1': 2, 's2': 'w'}\n"
