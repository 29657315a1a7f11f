"""Issue 14, the `messages` channel: chat-shaped input, and the conversation a chat front end
shows (the goal, a message per plan revision, how the goal ended), on both APIs."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from helpers import Harness, config, get_state, interrupt_of, invoke, stream
from planexec import Context, InvalidGoalError, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.graph import graph as module_graph
from planexec.scripted import ScriptedChatModel, plan_reply, replan_reply
from planexec.serde import checkpoint_serde
from planexec.tools import calculator

pytestmark = pytest.mark.usefixtures("both_apis")

CTX = Context(retry_initial_interval=0)
NO_REVIEW = Context(review="never", retry_initial_interval=0)
CANARY = "tool-output-canary-7731"


@tool
def lookup(city: str) -> str:
    """Facts about a city."""
    return f"{city}: {CANARY}"


STEPS = [
    {
        "id": "s1",
        "description": "Look up Lyon",
        "tool": "lookup",
        "args": {"city": "Lyon"},
        "depends_on": [],
    },
    {
        "id": "s2",
        "description": "Compute 6*7",
        "tool": "calculator",
        "args": {"expression": "6*7"},
        "depends_on": [],
    },
]


def harness(*, answer: str = "Lyon is big; 6*7 is 42.") -> Harness:
    return Harness(
        planner=[plan_reply(STEPS)],
        replanner=[replan_reply("finish", answer=answer)],
        tools=[lookup, calculator],
    )


def conversation(out: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m.type, m.text) for m in out["messages"]]


def everything_in(messages: list[BaseMessage]) -> str:
    return json.dumps([m.model_dump() for m in messages], default=str)


@pytest.mark.parametrize(
    "chat",
    [
        [{"type": "human", "content": "How big is Lyon, and what is 6*7?"}],
        [{"role": "user", "content": "How big is Lyon, and what is 6*7?"}],
        [HumanMessage("How big is Lyon, and what is 6*7?")],
        # Agent Chat UI sends text blocks; the goal is their text.
        [
            {
                "type": "human",
                "content": [{"type": "text", "text": "How big is Lyon, and what is 6*7?"}],
            }
        ],
        [
            {"type": "human", "content": "an earlier question"},
            {"type": "ai", "content": "an earlier answer"},
            {"type": "human", "content": "How big is Lyon, and what is 6*7?"},
        ],
    ],
    ids=["type", "role", "object", "blocks", "history"],
)
async def test_the_last_human_message_is_the_goal(chat: list[Any]) -> None:
    h = harness()
    paused = await h.run({"messages": chat}, CTX)
    assert interrupt_of(paused)["goal"] == "How big is Lyon, and what is 6*7?"
    assert "<goal>\nHow big is Lyon, and what is 6*7?\n</goal>" in h.planner.calls[0].prompt
    done = await h.run(Command(resume={"type": "approve"}), CTX)
    assert done["status"] == "completed"
    assert done["goal"] == "How big is Lyon, and what is 6*7?"
    last = done["messages"][-1]
    assert isinstance(last, AIMessage)
    assert last.text == "Lyon is big; 6*7 is 42."
    assert last.additional_kwargs["planexec"] == {"kind": "end", "goal": 1, "status": "completed"}


async def test_a_goal_input_is_recorded_as_a_human_message_and_each_plan_as_a_summary() -> None:
    h = harness()
    paused = await h.run({"goal": "  How big is Lyon?  "}, CTX)
    assert conversation(paused) == [
        ("human", "How big is Lyon?"),
        (
            "ai",
            "Plan (revision 1, 2 steps):\n1. Look up Lyon [lookup]\n2. Compute 6*7 [calculator]",
        ),
    ]
    plan_message = paused["messages"][1]
    assert plan_message.additional_kwargs["planexec"] == {
        "kind": "plan",
        "goal": 1,
        "revision": 1,
        "source": "planner",
        "plan": {"steps": STEPS},
    }
    done = await h.run(Command(resume={"type": "approve"}), CTX)
    assert [m.type for m in done["messages"]] == ["human", "ai", "ai"]
    # Step outputs stay in `results`: nothing in the conversation carries them.
    assert CANARY in json.dumps(done["results"])
    assert CANARY not in everything_in(done["messages"])


async def test_every_revision_gets_a_message_and_edits_are_revisions_too() -> None:
    h = Harness(
        planner=[plan_reply(STEPS), plan_reply(STEPS[1:])],
        replanner=[
            replan_reply("replan", steps=[{**STEPS[1], "id": "s3"}], reason="check again"),
            replan_reply("finish", answer="42"),
        ],
        tools=[lookup, calculator],
    )
    await h.run({"goal": "g"}, CTX)
    await h.run(Command(resume={"type": "reject", "message": "no lookups"}), CTX)
    edited = {"steps": [{**STEPS[1], "description": "Compute six times seven"}]}
    await h.run(Command(resume={"type": "edit", "plan": edited}), CTX)
    done = await h.run(Command(resume={"type": "approve"}), CTX)
    plans = [
        m for m in done["messages"] if m.additional_kwargs.get("planexec", {}).get("kind") == "plan"
    ]
    assert [
        (m.additional_kwargs["planexec"]["revision"], m.additional_kwargs["planexec"]["source"])
        for m in plans
    ] == [(1, "planner"), (2, "planner"), (3, "human"), (4, "replanner")]
    assert [r["revision"] for r in done["revisions"]] == [1, 2, 3, 4]
    assert "1. Compute six times seven [calculator]" in plans[2].text
    assert done["messages"][-1].text == "42"


async def test_a_long_plan_message_is_a_summary() -> None:
    many = [
        {
            "id": f"s{i}",
            "description": "x" * 500,
            "tool": "calculator",
            "args": {"expression": "1+1"},
            "depends_on": [],
        }
        for i in range(15)
    ]
    h = Harness(planner=[plan_reply(many)], tools=[calculator])
    paused = await h.run({"goal": "many"}, Context(max_plan_steps=20))
    text = paused["messages"][-1].text
    assert text.count("\n") == 1 + 12 + 1 - 1  # the title, 12 steps, the rest counted
    assert text.endswith("... and 3 more")
    assert len(text) < 12 * 200 + 100


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"messages": [{"type": "human", "content": ""}]}, "the goal is empty"),
        ({"messages": [{"type": "human", "content": "  \n "}]}, "the goal is empty"),
        ({"messages": [{"type": "ai", "content": "only an AI message"}]}, "the goal is empty"),
        ({"messages": []}, "the goal is empty"),
        ({"messages": [{"nonsense": 1}]}, "the goal is empty"),
        ({"messages": [{"type": "human", "content": "g" * 41}]}, "41 characters long"),
        ({"goal": "g" * 41}, "41 characters long"),
        ({}, "the goal is empty"),
    ],
)
async def test_bad_chat_input_is_refused_before_any_model_call(value: Any, error: str) -> None:
    h = harness()
    with pytest.raises(InvalidGoalError, match=error):
        await h.run(value, Context(max_goal_chars=40))
    assert (h.planner.calls, h.executor.calls, h.replanner.calls) == ([], [], [])
    # Nothing was written: the thread does not exist.
    assert (await get_state(h.graph, config())).values == {}


async def test_the_error_for_an_empty_goal_names_both_inputs() -> None:
    with pytest.raises(InvalidGoalError) as raised:
        await harness().run({"messages": [{"type": "human", "content": " "}]})
    assert str(raised.value) == (
        'the goal is empty: start the run with {"goal": "<what to achieve>"}, or with '
        '{"messages": [...]} ending in a human message that says it'
    )


async def test_a_bad_message_while_paused_loses_nothing() -> None:
    h = harness()
    paused = interrupt_of(await h.run({"goal": "How big is Lyon?"}, CTX))
    before = await get_state(h.graph, config())
    with pytest.raises(InvalidGoalError, match="the goal is empty"):
        await h.run({"messages": [{"type": "human", "content": ""}]}, CTX)
    after = await get_state(h.graph, config())
    assert after.config == before.config  # no checkpoint was written
    assert after.next == ("review",)
    assert after.interrupts[0].value == paused
    done = await h.run(Command(resume={"type": "approve"}), CTX)
    assert done["status"] == "completed"


@pytest.mark.parametrize(
    ("decision", "status", "text"),
    [
        (
            {"type": "cancel", "message": "not now"},
            "cancelled",
            "The run was cancelled: cancelled by the reviewer: not now",
        ),
    ],
)
async def test_a_goal_that_does_not_complete_ends_with_a_message_saying_how(
    decision: dict[str, Any], status: str, text: str
) -> None:
    h = harness()
    await h.run({"goal": "g"}, CTX)
    out = await h.run(Command(resume=decision), CTX)
    assert out["status"] == status
    assert out["messages"][-1].text == text
    assert out["messages"][-1].additional_kwargs["planexec"]["status"] == status


async def test_a_failed_and_an_exhausted_goal_end_with_a_message_saying_how() -> None:
    failing = Harness(planner=["not a plan"] * 3, tools=[calculator])
    out = await failing.run({"goal": "g"}, NO_REVIEW)
    assert out["status"] == "failed"
    assert out["messages"][-1].text.startswith("The run failed: the planner did not produce")
    assert out["messages"][-1].additional_kwargs["planexec"]["status"] == "failed"

    broke = Harness(
        planner=[plan_reply([{**STEPS[1], "args": {"expression": "1/0"}}])],
        replanner=[],
        tools=[calculator],
    )
    out = await broke.run({"goal": "g"}, Context(review="never", max_replans=0))
    assert out["status"] == "budget_exhausted"
    assert out["messages"][-1].text.startswith("The run stopped: a budget ran out: step s2 failed")


async def test_a_direct_answer_is_one_ai_message() -> None:
    direct = {"tool_calls": [{"name": "Plan", "args": {"steps": [], "answer": "Hello!"}}]}
    h = Harness(planner=[direct], tools=[calculator])
    out = await h.run({"messages": [{"type": "human", "content": "hi"}]}, CTX)
    assert conversation(out) == [("human", "hi"), ("ai", "Hello!")]


async def test_streamed_values_carry_the_conversation() -> None:
    h = harness()
    values = [
        part
        async for part in stream(
            h.graph,
            {"messages": [{"type": "human", "content": "How big is Lyon?"}]},
            config(),
            context=NO_REVIEW,
            stream_mode="values",
        )
    ]
    assert [m.type for m in values[0]["messages"]] == ["human"]
    assert [m.type for m in values[-1]["messages"]] == ["human", "ai", "ai"]
    assert values[-1]["messages"][-1].text == "Lyon is big; 6*7 is 42."


def test_the_graph_schemas_show_messages_for_studios_chat_view() -> None:
    shown_in = module_graph.get_input_jsonschema()
    shown_out = module_graph.get_output_jsonschema()
    assert {"goal", "messages"} <= set(shown_in["properties"])
    assert "required" not in shown_in
    assert shown_in["properties"]["messages"]["type"] == "array"
    assert "messages" in shown_out["properties"]
    assert "last human message" in shown_in["properties"]["messages"]["description"]


def _chat_graph(saver: Any, goal: int = 1) -> Any:
    script = {
        1: [plan_reply(STEPS), replan_reply("finish", answer="first answer")],
        2: [plan_reply(STEPS[1:]), replan_reply("finish", answer="second answer")],
    }
    model = ScriptedChatModel(script[goal])
    return build_graph(
        tools=[lookup, calculator],
        checkpointer=saver,
        planner=model,
        executor=model,
        approval_key="k",
    )


def _check_loaded(values: dict[str, Any]) -> None:
    messages = values["messages"]
    assert all(isinstance(m, BaseMessage) for m in messages)
    assert [(m.type, m.text) for m in messages if m.type == "human"] == [
        ("human", "first"),
        ("human", "second"),
    ]
    assert messages[-1].text == "second answer"
    assert messages[1].additional_kwargs["planexec"]["plan"] == {"steps": STEPS}


async def test_conversations_load_from_sqlite_files_plain_and_encrypted(
    tmp_path: Path, both_apis: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    path = tmp_path / "chat.sqlite"
    if both_apis == "invoke":
        conn = sqlite3.connect(path, check_same_thread=False)
        saver = SqliteSaver(conn, serde=checkpoint_serde())
        await invoke(
            _chat_graph(saver), {"messages": [("user", "first")]}, config(), context=NO_REVIEW
        )
        conn.close()
        conn = sqlite3.connect(path, check_same_thread=False)
        second = _chat_graph(SqliteSaver(conn, serde=checkpoint_serde()), 2)
        await invoke(second, {"messages": [("user", "second")]}, config(), context=NO_REVIEW)
        _check_loaded(second.get_state(config()).values)
        conn.close()
    else:
        for key in (None, "secret"):
            where = tmp_path / f"chat-{key}.sqlite"
            async with open_checkpointer(where, encryption_key=key) as saver:
                await invoke(
                    _chat_graph(saver),
                    {"messages": [("user", "first")]},
                    config(),
                    context=NO_REVIEW,
                )
            async with open_checkpointer(where, encryption_key=key) as saver:
                graph = _chat_graph(saver, 2)
                await invoke(graph, {"messages": [("user", "second")]}, config(), context=NO_REVIEW)
                _check_loaded((await graph.aget_state(config())).values)
    assert "unregistered" not in caplog.text
    assert "Blocked" not in caplog.text


@pytest.mark.integration
async def test_conversations_load_from_postgres(pg_url: str, both_apis: str) -> None:
    if both_apis == "invoke":
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(pg_url) as saver:
            saver.setup()
            await invoke(
                _chat_graph(saver), {"messages": [("user", "first")]}, config(), context=NO_REVIEW
            )
        with PostgresSaver.from_conn_string(pg_url) as saver:
            graph = _chat_graph(saver, 2)
            await invoke(graph, {"messages": [("user", "second")]}, config(), context=NO_REVIEW)
            _check_loaded(graph.get_state(config()).values)
        return
    async with open_checkpointer(pg_url) as saver:
        await invoke(
            _chat_graph(saver), {"messages": [("user", "first")]}, config(), context=NO_REVIEW
        )
    async with open_checkpointer(pg_url) as saver:
        graph = _chat_graph(saver, 2)
        await invoke(graph, {"messages": [("user", "second")]}, config(), context=NO_REVIEW)
        _check_loaded((await graph.aget_state(config())).values)


ESCAPES = "\x1b[2J\x1b[31mred\x1b[0m \u202etxt"


@pytest.mark.usefixtures("cli_home")
def test_the_command_line_shows_and_audits_a_chat_thread_with_its_text_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import cli

    path = tmp_path / "chat.sqlite"

    async def talk(goal: int) -> None:
        async with open_checkpointer(path) as saver:
            text = f"goal {goal} {ESCAPES}"
            graph = _chat_graph(saver, goal)
            out = await graph.ainvoke({"messages": [("user", text)]}, config(), context=NO_REVIEW)
            assert out["status"] == "completed"

    for goal in (1, 2):
        asyncio.run(talk(goal))
    code, shown, err = cli(capsys, "show", "t1", "--checkpoint", str(path))
    assert code == 0, err
    assert "goal 2" in shown
    assert "\x1b" not in shown
    assert "\u202e" not in shown
    code, document, err = cli(capsys, "show", "t1", "--json", "--checkpoint", str(path))
    assert code == 0, err
    assert json.loads(document)["goal"] == f"goal 2 {ESCAPES}"
    code, trail, err = cli(capsys, "audit", "t1", "--checkpoint", str(path))
    assert code == 0, err
    assert "\x1b" not in trail
    started = [json.loads(line) for line in trail.splitlines() if '"run_started"' in line]
    assert [(r["goal"], r["goal_index"]) for r in started] == [
        (f"goal 1 {ESCAPES}", 1),
        (f"goal 2 {ESCAPES}", 2),
    ]
