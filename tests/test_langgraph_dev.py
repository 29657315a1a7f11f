"""`langgraph dev` end to end: the project's langgraph.json served locally, driven by the SDK.

The server is the real `langgraph dev` (in-memory runtime), started on a free loopback
port with no network use (no version check, no analytics, no tracing). Its models are
the default `ChatOpenAI` clients, pointed through the environment at a local
OpenAI-compatible server. It runs in a temporary directory with `--config` naming the
project's langgraph.json, so its `.langgraph_api/` persistence stays out of the project.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from fake_openai import FakeOpenAI, prompt_of
from helpers import step
from planexec import Context

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
GRAPH_ID = "planexec"
STARTUP_DEADLINE_S = 90.0
RUN_CONTEXT = {"retry_initial_interval": 0.0, "model_max_retries": 0, "model_timeout": 10.0}

PLAN = {
    "steps": [
        step("s1", args={"expression": "12*4"}, description="Multiply 12 by 4"),
        step("s2", args={"expression": "{{s1}} + 5"}, depends_on=["s1"], description="Add 5"),
        step("s3", tool=None, depends_on=["s2"], description="State the result in a sentence"),
    ]
}
EDITED = {
    "steps": [
        step("s1", args={"expression": "12*5"}, description="Multiply 12 by 5"),
        step("s2", args={"expression": "{{s1}} + 5"}, depends_on=["s1"], description="Add 5"),
    ]
}
RESULT = re.compile(r'<result step="(\w+)" status="done">\n(.*?)\n</result>', re.DOTALL)


def answer_models(body: dict[str, Any]) -> dict[str, Any] | None:
    """Planner, replanner and executor replies, chosen by what each request's prompt says."""
    prompt = prompt_of(body)
    if "replanner of a planner-executor agent" in prompt:
        done = ", ".join(f"{i}={value}" for i, value in RESULT.findall(prompt))
        arguments = {"action": "finish", "answer": done, "steps": None, "reason": "all done"}
        return {"tool_calls": [{"name": "Replan", "arguments": arguments}]}
    if "planner of a planner-executor agent" in prompt:
        return {"tool_calls": [{"name": "Plan", "arguments": PLAN}]}
    if '<step id="s3">' in prompt:
        return {"content": "The result is 53."}
    return None


@dataclass
class DevServer:
    url: str
    workdir: Path
    log: Path
    models: FakeOpenAI


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serving_url(log: Path, port: int) -> str:
    """The API URL the server printed: the CLI moves to another port if ours was taken."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))
    found = re.search(r"API: (http://127\.0\.0\.1:\d+)", text)
    return found.group(1) if found else f"http://127.0.0.1:{port}"


def _is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    workdir = tmp_path_factory.mktemp("langgraph-dev")
    log = tmp_path_factory.mktemp("langgraph-dev-log") / "server.log"
    with FakeOpenAI(responder=answer_models) as models:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))
        }
        env.update(
            LANGSMITH_TRACING="false",
            LANGGRAPH_NO_VERSION_CHECK="true",
            LANGGRAPH_CLI_NO_ANALYTICS="1",
            OPENAI_BASE_URL=models.url,
            OPENAI_API_KEY="dummy",
        )
        port = _free_port()
        command = [
            str(Path(sys.executable).with_name("langgraph")),
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            str(ROOT / "langgraph.json"),
        ]
        with log.open("wb") as out:
            server = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + STARTUP_DEADLINE_S
            url = f"http://127.0.0.1:{port}"
            while not _is_up(url):
                if server.poll() is not None:
                    pytest.fail(f"langgraph dev exited ({server.returncode}):\n{log.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"langgraph dev did not start in time:\n{log.read_text()}")
                time.sleep(0.25)
                url = _serving_url(log, port)
            yield DevServer(url=url, workdir=workdir, log=log, models=models)
        finally:
            _stop(server)


def _stop(server: subprocess.Popen[bytes]) -> None:
    """End the server's whole process group: the CLI and the worker it started."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=20)


@pytest.fixture
async def client(dev_server: DevServer) -> AsyncIterator[LangGraphClient]:
    async with get_client(url=dev_server.url) as sdk:
        yield sdk


async def start_and_pause(client: LangGraphClient, goal: str) -> tuple[str, dict[str, Any]]:
    """Start a run of `goal` in a new thread; the thread id and its plan-review request."""
    thread = await client.threads.create()
    run = await client.runs.create(
        thread["thread_id"], GRAPH_ID, input={"goal": goal}, context=RUN_CONTEXT
    )
    await asyncio.wait_for(client.runs.join(thread["thread_id"], run["run_id"]), 60)
    assert (await client.threads.get(thread["thread_id"]))["status"] == "interrupted"
    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["review"]
    (paused,) = state["interrupts"]
    return thread["thread_id"], paused["value"]


async def resume_streaming(
    client: LangGraphClient, thread_id: str, decision: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Resume with `decision`, streaming updates and custom events; both, in order."""
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    parts = client.runs.stream(
        thread_id,
        GRAPH_ID,
        command={"resume": decision},
        stream_mode=["updates", "custom"],
        context=RUN_CONTEXT,
    )
    async for part in parts:
        assert part.event != "error", part.data
        if part.event == "updates":
            updates.append(part.data)
        elif part.event == "custom":
            events.append(part.data)
    return updates, events


def assert_step_progress(events: list[dict[str, Any]], steps: list[str]) -> None:
    """Each step started, then finished "done"; the run finished "completed"."""
    assert all(event["planexec"] == 1 for event in events)
    names = [(event["event"], event.get("step")) for event in events]
    for step_id in steps:
        started = names.index(("step_started", step_id))
        finished = names.index(("step_finished", step_id))
        assert started < finished
        assert events[finished]["status"] == "done"
    started_steps = sorted(s for name, s in names if name == "step_started")
    assert started_steps == sorted(steps)
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["status"] == "completed"


async def test_studio_shows_the_graph_and_every_context_field_with_its_description(
    client: LangGraphClient, dev_server: DevServer
) -> None:
    (assistant,) = await client.assistants.search(graph_id=GRAPH_ID)
    assert assistant["description"].startswith("Planner-executor agent")
    schemas = await client.assistants.get_schemas(assistant["assistant_id"])

    shown = schemas["context_schema"]["properties"]
    fields = Context.__pydantic_fields__
    assert set(shown) == set(fields)
    for name, info in fields.items():
        assert info.description, f"Context.{name} has no docstring"
        assert shown[name]["description"] == info.description, name
    assert shown["review"]["default"] == "always"
    assert shown["review"]["enum"] == ["always", "never"]
    # The prompts a team tunes per assistant: text fields, planexec's own when empty.
    for prompt in ("planner_prompt", "executor_prompt", "executor_tool_prompt", "replanner_prompt"):
        assert {"type": "string"} in shown[prompt]["anyOf"]
        assert shown[prompt]["default"] is None
    assert "$max_steps" in shown["planner_prompt"]["description"]

    goal = schemas["input_schema"]["properties"]["goal"]
    assert goal["type"] == "string"
    assert goal["description"] == "What the run should achieve, in plain language."
    # Either a goal or chat messages: Studio offers its chat view for `messages`.
    assert "required" not in schemas["input_schema"]
    assert schemas["input_schema"]["properties"]["messages"]["type"] == "array"
    assert {"status", "answer", "plan", "results", "messages"} <= set(
        schemas["output_schema"]["properties"]
    )
    drawn = await client.assistants.get_graph(assistant["assistant_id"])
    nodes = {node["id"] for node in drawn["nodes"]}
    assert nodes == {
        "__start__",
        "intake",
        "planner",
        "review",
        "executor",
        "approval",
        "replanner",
        "__end__",
    }
    edges = {(edge["source"], edge["target"]) for edge in drawn["edges"]}
    assert {
        ("__start__", "intake"),
        ("intake", "review"),
        ("planner", "review"),
        ("review", "executor"),
        ("executor", "approval"),
    } <= edges
    # Persistence went to the server's working directory, not into the project.
    assert (dev_server.workdir / ".langgraph_api").is_dir()


async def test_review_edit_runs_the_edited_plan_with_streamed_progress(
    client: LangGraphClient, dev_server: DevServer
) -> None:
    goal = "What is 12 * 5 + 5? (edited)"
    thread_id, review = await start_and_pause(client, goal)
    assert review["type"] == "plan_review"
    assert review["plan"] == PLAN
    assert review["revision"] == 1

    # An edit that names an unknown tool is refused: the same review, with the errors.
    broken = {"steps": [step("s1", tool="no_such_tool", args={})]}
    await client.runs.wait(
        thread_id,
        GRAPH_ID,
        command={"resume": {"type": "edit", "plan": broken}},
        context=RUN_CONTEXT,
    )
    state = await client.threads.get_state(thread_id)
    (again,) = state["interrupts"]
    assert again["value"]["revision"] == 1
    assert any("no_such_tool" in error for error in again["value"]["errors"])

    updates, events = await resume_streaming(
        client, thread_id, {"type": "edit", "plan": EDITED, "message": "use 5"}
    )
    assert_step_progress(events, ["s1", "s2"])
    assert {"review", "executor", "replanner"} <= {node for u in updates for node in u}

    final = (await client.threads.get_state(thread_id))["values"]
    assert final["status"] == "completed"
    assert final["plan"] == EDITED
    assert {k: v["output"] for k, v in final["results"].items()} == {"s1": 60, "s2": 65}
    assert final["answer"] == "s1=60, s2=65"
    assert [r["source"] for r in final["revisions"]] == ["planner", "human"]
    assert [r["decision"] for r in final["reviews"]] == ["edit"]
    # The edited plan called tools directly: no executor model request for this goal.
    sent = dev_server.models.requests_containing(goal)
    assert [request["model"] for request in sent] == ["gpt-4.1", "gpt-4.1"]


async def test_review_approve_streams_steps_and_keeps_the_history(
    client: LangGraphClient, dev_server: DevServer
) -> None:
    goal = "What is 12 * 4 + 5? (approved)"
    thread_id, review = await start_and_pause(client, goal)
    assert review["plan"] == PLAN

    updates, events = await resume_streaming(client, thread_id, {"type": "approve"})
    assert_step_progress(events, ["s1", "s2", "s3"])
    step_updates = {node: u[node] for u in updates for node in u if node.startswith("step-")}
    assert {k: v["result"]["output"] for k, v in step_updates.items()} == {
        "step-s1": 48,
        "step-s2": 53,
        "step-s3": "The result is 53.",
    }

    final = await client.threads.get_state(thread_id)
    assert final["next"] == []
    values = final["values"]
    assert values["status"] == "completed"
    assert values["answer"] == "s1=48, s2=53, s3=The result is 53."
    assert [r["decision"] for r in values["reviews"]] == ["approve"]
    sent = dev_server.models.requests_containing(goal)
    assert sorted(request["model"] for request in sent) == ["gpt-4.1", "gpt-4.1", "gpt-4.1-mini"]

    history = await client.threads.get_history(thread_id, limit=50)
    assert len(history) >= 5
    assert history[0]["checkpoint"] == final["checkpoint"]
    assert [h["next"] for h in reversed(history)][:5] == [
        ["__start__"],
        ["intake"],
        ["planner"],
        ["review"],
        ["executor"],
    ]
    (at_review,) = [h for h in history if h["next"] == ["review"]]
    (review_task,) = at_review["tasks"]
    assert review_task["interrupts"][0]["value"]["type"] == "plan_review"
    assert at_review["values"]["plan"] == PLAN
    assert "status" not in at_review["values"] or at_review["values"]["status"] is None


async def test_file_tools_and_a_fan_out_run_under_the_servers_blocking_call_checks(
    client: LangGraphClient, dev_server: DevServer
) -> None:
    """`langgraph dev` raises on blocking calls made on its event loop (blockbuster).

    The built-in file tools do file I/O and the calculator steps run side by side; all
    of it must stay off the server's loop.
    """
    goal = "Write a note, read it back, and add some numbers (files)"
    thread_id, _ = await start_and_pause(client, goal)
    plan = {
        "steps": [
            step("w", tool="write_file", args={"path": "notes/a.txt", "content": "hello"}),
            step("r", tool="read_file", args={"path": "notes/a.txt"}, depends_on=["w"]),
            step("l", tool="list_files", args={"path": "notes"}, depends_on=["w"]),
            *[step(f"c{i}", args={"expression": f"{i}*{i}"}) for i in range(1, 5)],
        ]
    }
    _, events = await resume_streaming(client, thread_id, {"type": "edit", "plan": plan})
    assert_step_progress(events, ["w", "r", "l", "c1", "c2", "c3", "c4"])
    final = (await client.threads.get_state(thread_id))["values"]
    assert final["status"] == "completed"
    assert final["results"]["r"]["output"] == "hello"
    assert (dev_server.workdir / "notes" / "a.txt").read_text() == "hello"
    assert "Blocking" not in dev_server.log.read_text(errors="replace")


# --- Agent Chat UI's answers to the plan review ------------------------------------------


async def wait_resumed(client: LangGraphClient, thread_id: str, resume: object) -> dict[str, Any]:
    """Resume as Agent Chat UI does (`command: {resume}`); the thread's state after."""
    await client.runs.wait(thread_id, GRAPH_ID, command={"resume": resume}, context=RUN_CONTEXT)
    state: dict[str, Any] = await client.threads.get_state(thread_id)
    return state


async def test_agent_chat_ui_renders_the_review_and_its_hitl_answers_resume_it(
    client: LangGraphClient, dev_server: DevServer
) -> None:
    thread_id, review = await start_and_pause(client, "What is 12 * 5 + 5? (chat edit)")
    [action] = review["action_requests"]
    assert (action["name"], action["args"]) == ("review_plan", {"plan": PLAN})
    assert review["review_configs"] == [
        {
            "action_name": "review_plan",
            "allowed_decisions": ["approve", "edit", "reject", "respond"],
        }
    ]
    assert review["action_request"] == {"action": "review_plan", "args": {"plan": PLAN}}

    feedback = "Please use 12 * 5 (hitl respond)"
    respond = {"decisions": [{"type": "respond", "message": feedback}]}
    (again,) = (await wait_resumed(client, thread_id, respond))["interrupts"]
    assert (again["value"]["revision"], again["value"]["plan"]) == (2, PLAN)
    assert dev_server.models.requests_containing(feedback)

    two = {"decisions": [{"type": "approve"}, {"type": "approve"}]}
    (refused,) = (await wait_resumed(client, thread_id, two))["interrupts"]
    assert refused["value"]["revision"] == 2
    assert refused["value"]["errors"] == [
        'answer with {"decisions": [<one decision>]}: the plan review shows one action'
    ]

    edited = {"name": "review_plan", "args": {"plan": json.dumps(EDITED, indent=2)}}
    edit = {"decisions": [{"type": "edit", "edited_action": edited}]}
    final = (await wait_resumed(client, thread_id, edit))["values"]
    assert final["status"] == "completed"
    assert final["plan"] == EDITED
    assert final["answer"] == "s1=60, s2=65"
    assert [r["decision"] for r in final["reviews"]] == ["reject", "edit"]


async def test_agent_inbox_answers_resume_the_review(
    client: LangGraphClient, dev_server: DevServer
) -> None:
    thread_id, review = await start_and_pause(client, "What is 12 * 4 + 5? (inbox)")
    assert review["config"] == {
        "allow_accept": True,
        "allow_edit": True,
        "allow_respond": True,
        "allow_ignore": True,
    }
    feedback = "One more look, please (inbox response)"
    response = [{"type": "response", "args": feedback}]
    (again,) = (await wait_resumed(client, thread_id, response))["interrupts"]
    assert again["value"]["revision"] == 2
    assert dev_server.models.requests_containing(feedback)

    # Agent Chat UI accepts with the action it showed; a stale one is refused.
    stale = {"action": "review_plan", "args": {"plan": EDITED}}
    (refused,) = (await wait_resumed(client, thread_id, [{"type": "accept", "args": stale}]))[
        "interrupts"
    ]
    assert refused["value"]["errors"][0].startswith("the decision is for plan ")

    shown = again["value"]["action_request"]
    final = (await wait_resumed(client, thread_id, [{"type": "accept", "args": shown}]))["values"]
    assert final["status"] == "completed"
    assert final["answer"] == "s1=48, s2=53, s3=The result is 53."
    assert [r["decision"] for r in final["reviews"]] == ["reject", "approve"]


def chat_message(text: str) -> dict[str, Any]:
    """A new message as Agent Chat UI submits it: an id, type human, text content blocks."""
    return {
        "messages": [
            {
                "id": f"chat-{abs(hash(text))}",
                "type": "human",
                "content": [{"type": "text", "text": text}],
            }
        ]
    }


async def send_chat(client: LangGraphClient, thread_id: str, text: str) -> dict[str, Any]:
    """Send `text` as Agent Chat UI does (`values` stream, new input); the thread's state."""
    parts = client.runs.stream(
        thread_id,
        GRAPH_ID,
        input=chat_message(text),
        stream_mode=["values"],
        stream_subgraphs=True,
        context=RUN_CONTEXT,
    )
    async for part in parts:
        assert part.event != "error", part.data
    state: dict[str, Any] = await client.threads.get_state(thread_id)
    return state


async def test_agent_chat_ui_messages_feedback_while_paused_and_a_follow_up_goal(
    client: LangGraphClient, dev_server: DevServer
) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    state = await send_chat(client, thread_id, "What is 12 * 4 + 5? (chat thread)")
    assert state["next"] == ["review"]
    human, plan = state["values"]["messages"]
    assert (human["type"], human["content"][0]["text"]) == (
        "human",
        "What is 12 * 4 + 5? (chat thread)",
    )
    assert plan["type"] == "ai"
    assert plan["content"] == (
        "Plan (revision 1, 3 steps):\n1. Multiply 12 by 4 [calculator]\n2. Add 5 [calculator]\n"
        "3. State the result in a sentence"
    )
    assert plan["additional_kwargs"]["planexec"]["plan"] == PLAN

    # A message instead of a resume: feedback for the planner, one run, one pause.
    feedback = "Check the multiplication first (chat while paused)"
    state = await send_chat(client, thread_id, feedback)
    assert state["next"] == ["review"]
    (paused,) = state["interrupts"]
    assert paused["value"]["revision"] == 2
    assert paused["value"]["goal"] == "What is 12 * 4 + 5? (chat thread)"
    assert dev_server.models.requests_containing(feedback)
    assert [r["decision"] for r in state["values"]["reviews"]] == ["reject"]
    runs = await client.runs.list(thread_id)
    assert {run["status"] for run in runs} == {"success"}

    final = (await wait_resumed(client, thread_id, {"decisions": [{"type": "approve"}]}))["values"]
    assert final["status"] == "completed"
    answer = "s1=48, s2=53, s3=The result is 53."
    assert final["messages"][-1]["type"] == "ai"
    assert final["messages"][-1]["content"] == answer

    # The next message on the finished thread is a new goal, with the answer in view
    # (sent as a background run this time, as `useStream` clients may).
    run = await client.runs.create(
        thread_id, GRAPH_ID, input=chat_message("And in words? (follow-up)"), context=RUN_CONTEXT
    )
    await asyncio.wait_for(client.runs.join(thread_id, run["run_id"]), 60)
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["review"]
    assert state["values"]["goal_index"] == 2
    assert state["interrupts"][0]["value"]["revision"] == 3
    [seen] = dev_server.models.requests_containing("<earlier_goals>")
    assert answer in json.dumps(seen)
    final = (await wait_resumed(client, thread_id, {"decisions": [{"type": "approve"}]}))["values"]
    assert final["status"] == "completed"
    assert [g["text"] for g in final["earlier_goals"]] == ["What is 12 * 4 + 5? (chat thread)"]
    humans = [m["content"] for m in final["messages"] if m["type"] == "human"]
    assert len(humans) == 3
    assert final["messages"][-1]["additional_kwargs"]["planexec"]["goal"] == 2


async def test_an_empty_chat_message_while_paused_is_refused_and_the_pause_kept(
    client: LangGraphClient,
) -> None:
    thread_id, review = await start_and_pause(client, "What is 12 * 4 + 5? (empty message)")
    errors = []
    async for part in client.runs.stream(
        thread_id, GRAPH_ID, input=chat_message(" "), stream_mode=["values"], context=RUN_CONTEXT
    ):
        if part.event == "error":
            errors.append(part.data)
    assert errors
    assert "the goal is empty" in json.dumps(errors)
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["review"]
    assert state["interrupts"][0]["value"]["plan_hash"] == review["plan_hash"]


# --- the answer, streamed as Agent Chat UI streams a run ---------------------------------


async def test_a_messages_tuple_stream_carries_the_answer_token_by_token(
    client: LangGraphClient, dev_server: DevServer
) -> None:
    """`useStream` (Agent Chat UI) asks for values and messages-tuple, with subgraphs."""
    goal = "What is 12 * 4 + 5? (streamed answer)"
    thread = await client.threads.create()
    chunks: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    shown: list[str] = []
    async for part in client.runs.stream(
        thread["thread_id"],
        GRAPH_ID,
        input={"goal": goal},
        context={**RUN_CONTEXT, "review": "never"},
        stream_mode=["values", "messages-tuple"],
        stream_subgraphs=True,
    ):
        assert part.event != "error", part.data
        if part.event.startswith("messages"):
            message, metadata = part.data
            shown.append(str(message.get("content")))
            # Chunks of messages being written; a node's own messages arrive whole.
            if message.get("type") == "AIMessageChunk":
                chunks.append((part.event, message, metadata))
    final = (await client.threads.get_state(thread["thread_id"]))["values"]
    assert final["status"] == "completed"
    assert final["answer"] == "s1=48, s2=53, s3=The result is 53."
    # Every model was asked, and streamed (SSE); only the answer became chat text.
    sent = dev_server.models.requests_containing(goal)
    assert len(sent) == 3
    assert all(body["stream"] is True for body in sent)
    assert {event for event, _, _ in chunks} == {"messages"}
    assert {message["id"] for _, message, _ in chunks} == {chunks[0][1]["id"]}
    # No plan JSON, step work or call arguments came as chat text, whole or in pieces.
    joined = "".join(shown)
    assert all(hidden not in joined for hidden in ('"steps"', "expression", '"action"', "Replan"))
    assert "".join(message["content"] for _, message, _ in chunks) == final["answer"]
    assert len(chunks) > 2
    assert {metadata["langgraph_node"] for _, _, metadata in chunks} == {"replanner"}
    assert not any(message.get("tool_call_chunks") for _, message, _ in chunks)
    # The conversation's last message is the one the chunks built, under their id.
    assert final["messages"][-1]["id"] == chunks[0][1]["id"]
    assert final["messages"][-1]["content"] == final["answer"]
