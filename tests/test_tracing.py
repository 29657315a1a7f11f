"""LangSmith traces of a real run, received by a local stand-in for the LangSmith API.

LangSmith reads its environment once per process, so each run happens in a fresh
subprocess (tests/trace_worker.py) with the real `ChatOpenAI` clients pointed at a
local OpenAI-compatible server. The stand-in records every request byte for byte.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langgraph.types import Command

from fake_openai import FakeOpenAI
from helpers import Harness, config, step
from planexec import Context
from planexec.scripted import plan_reply, replan_reply, tool_call_reply

WORKER = Path(__file__).with_name("trace_worker.py")
THREAD = "trace-thread-7"
GOAL = "What is 12 * 4 + 5, in a sentence?"
OPENAI_CANARY = "sk-canary-9d2f61"
OTHER_CANARY = "canary-token-4b7e0c"
LANGSMITH_KEY = "ls-fake-key-31a8"

PLAN = {
    "steps": [
        step("s1", args={"expression": "12*4"}, description="Multiply 12 by 4"),
        step("s2", args=None, depends_on=["s1"], description="Add 5 to the result of s1"),
        step("s3", tool=None, depends_on=["s2"], description="State the result in a sentence"),
    ]
}
REPLIES = [
    {
        "match": "planner of a planner-executor agent",
        "tool_calls": [{"name": "Plan", "arguments": PLAN}],
    },
    {
        "match": '<step id="s2">',
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "48 + 5"}}],
    },
    {"match": '<step id="s3">', "content": "12 * 4 + 5 is 53."},
    {
        "match": "replanner of a planner-executor agent",
        "tool_calls": [
            {
                "name": "Replan",
                "arguments": {"action": "finish", "answer": "53", "steps": None, "reason": "done"},
            }
        ],
    },
]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeLangSmith:
    """Answers the LangSmith API's ingestion endpoints on 127.0.0.1 and keeps every request."""

    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeLangSmith:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record_and_answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    fake.received.append(Received(self.command, self.path, headers, body))
                # `/info` must be `{}` or complete: a partial config stops the tracer thread.
                status = 200 if self.command == "GET" else 202
                data = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _record_and_answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every traced run by id: its fields, `inputs`, `outputs` and `extra` merged."""
        runs: dict[str, dict[str, Any]] = {}
        for request in self.received:
            if request.method == "GET":
                continue
            assert "content-encoding" not in request.headers, "compressed traces: unreadable"
            kind = request.headers.get("content-type", "")
            if kind.startswith("multipart/form-data"):
                _merge_multipart(runs, kind, request.body)
            elif request.body:
                payload = json.loads(request.body)
                for op in ("post", "patch"):
                    for run in payload.get(op, []) if isinstance(payload, dict) else []:
                        runs.setdefault(run["id"], {}).update(run)
        return runs


def _merge_multipart(runs: dict[str, dict[str, Any]], content_type: str, body: bytes) -> None:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        # Part names: "post.<run id>" (the run), "post.<run id>.inputs" (one of its fields).
        _op, _, rest = name.partition(".")
        run_id, _, key = rest.partition(".")
        value = json.loads(payload)
        run = runs.setdefault(run_id, {})
        if key:
            run[key] = value
        else:
            run.update(value)


@pytest.fixture
def langsmith() -> Iterator[FakeLangSmith]:
    server = FakeLangSmith().start()
    yield server
    server.stop()


def run_worker(
    tmp_path: Path, openai: FakeOpenAI, langsmith: FakeLangSmith, tracing: str | None
) -> dict[str, Any]:
    """Run the worker with LangSmith's usual environment; its final state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env.update(
        OPENAI_BASE_URL=openai.url,
        OPENAI_API_KEY=OPENAI_CANARY,
        CANARY_TOKEN=OTHER_CANARY,
        LANGSMITH_ENDPOINT=langsmith.url,
        LANGSMITH_API_KEY=LANGSMITH_KEY,
        LANGSMITH_PROJECT="planexec-tests",
    )
    if tracing is not None:
        env["LANGSMITH_TRACING"] = tracing
    done = subprocess.run(
        [sys.executable, str(WORKER), THREAD, GOAL],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    final: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["status"] == "completed", final
    assert final["answer"] == "53"
    return final


def by_name(runs: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [run for run in runs.values() if run.get("name") == name]


def metadata(run: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = (run.get("extra") or {}).get("metadata") or {}
    return meta


@pytest.mark.integration
def test_traces_are_named_by_node_and_role_with_run_metadata(
    tmp_path: Path, langsmith: FakeLangSmith
) -> None:
    with FakeOpenAI(REPLIES) as openai:
        final = run_worker(tmp_path, openai, langsmith, tracing="true")
        openai.assert_done()
    assert final["results"]["s2"]["output"] == 53

    runs = langsmith.runs()
    names = {run.get("name") for run in runs.values()}
    expected = {"planexec", "planner", "review", "executor", "replanner"}
    expected |= {"step-s1", "step-s2", "step-s3", "calculator"}
    expected |= {"planner model", "executor model", "replanner model"}
    assert expected <= names, sorted(str(n) for n in names)
    assert "ChatOpenAI" not in names
    # Every run of the thread says which thread it belongs to.
    assert {metadata(run).get("thread_id") for run in runs.values()} == {THREAD}

    for node in ("planner", "review", "executor", "replanner"):
        for run in by_name(runs, node):
            assert metadata(run)["langgraph_node"] == node

    models = {"planner": "openai:gpt-4.1", "executor": "openai:gpt-4.1-mini"}
    models["replanner"] = models["planner"]
    seen: dict[str, list[tuple[int, str | None]]] = {}
    for role, model in models.items():
        for run in by_name(runs, f"{role} model"):
            meta = metadata(run)
            assert run["run_type"] == "llm"
            assert {"planexec:model", f"planexec:{role}", "nostream"} <= set(run["tags"])
            assert meta["planexec_role"] == role
            assert meta["planexec_model"] == model
            seen.setdefault(role, []).append((meta["planexec_revision"], meta.get("planexec_step")))
    # The planner works before any plan exists; the steps and the replanner on revision 1.
    seen = {role: sorted(calls, key=str) for role, calls in seen.items()}
    assert seen == {
        "planner": [(0, None)],
        "executor": [(1, "s2"), (1, "s3")],
        "replanner": [(1, None)],
    }

    tool_runs = by_name(runs, "calculator")
    assert sorted(metadata(run)["planexec_step"] for run in tool_runs) == ["s1", "s2"]
    for run in tool_runs:
        assert run["run_type"] == "tool"
        assert "planexec:tool" in run["tags"]
        assert metadata(run)["planexec_revision"] == 1
        assert metadata(run)["planexec_tool"] == "calculator"

    # The traces hold the run's content: the planner model was sent the goal.
    (planner_call,) = by_name(runs, "planner model")
    assert GOAL in json.dumps(planner_call["inputs"])


@pytest.mark.integration
def test_traces_hold_no_secret_from_the_environment(
    tmp_path: Path, langsmith: FakeLangSmith
) -> None:
    with FakeOpenAI(REPLIES) as openai:
        run_worker(tmp_path, openai, langsmith, tracing="true")
    assert len(langsmith.runs()) > 10
    for request in langsmith.received:
        sent = request.path.encode() + request.body
        sent += json.dumps(request.headers).encode()
        for secret in (OPENAI_CANARY, OTHER_CANARY):
            assert secret.encode() not in sent, f"{secret} sent in {request.method} {request.path}"
        # LangSmith's own key goes in its header, and nowhere else.
        assert LANGSMITH_KEY.encode() not in request.path.encode() + request.body
        assert request.headers.get("x-api-key") == LANGSMITH_KEY


@pytest.mark.integration
@pytest.mark.parametrize("tracing", [None, "false"], ids=["unset", "false"])
def test_nothing_is_sent_without_tracing(
    tmp_path: Path, langsmith: FakeLangSmith, tracing: str | None
) -> None:
    with FakeOpenAI(REPLIES) as openai:
        run_worker(tmp_path, openai, langsmith, tracing=tracing)
        openai.assert_done()
    assert langsmith.received == []


class RunRecorder(BaseCallbackHandler):
    """Records each model and tool run's name, tags and metadata, as a tracer sees them."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str | None, list[str], dict[str, Any]]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, **kwargs: Any) -> None:
        self._add("llm", kwargs)

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, **kwargs: Any) -> None:
        self._add("tool", kwargs)

    def _add(self, kind: str, kwargs: dict[str, Any]) -> None:
        self.runs.append((kind, kwargs.get("name"), kwargs.get("tags") or [], kwargs["metadata"]))


async def test_step_approval_proposal_and_scripted_models_carry_the_same_names() -> None:
    harness = Harness(
        planner=[plan_reply([step("s1", args=None, description="Compute 6*7")])],
        executor=[tool_call_reply("calculator", {"expression": "6*7"})],
        replanner=[replan_reply("finish", answer="42")],
    )
    recorder = RunRecorder()
    context = Context(review="never", approval_tools=["calculator"])
    run = {**config("t-approval"), "callbacks": [recorder]}
    paused = await harness.graph.ainvoke({"goal": "6*7"}, run, context=context)
    assert paused["__interrupt__"][0].value["type"] == "step_approval"
    final = await harness.graph.ainvoke(
        Command(resume={"decisions": [{"type": "approve"}]}), run, context=context
    )
    assert final["answer"] == "42"

    seen = [
        (kind, name, meta.get("planexec_step"), meta.get("planexec_revision"))
        for kind, name, _tags, meta in recorder.runs
    ]
    # The executor model proposes the call for approval; the approved call then runs as is.
    assert seen == [
        ("llm", "planner model", None, 0),
        ("llm", "executor model", "s1", 1),
        ("tool", "calculator", "s1", 1),
        ("llm", "replanner model", None, 1),
    ]
    for kind, name, tags, meta in recorder.runs:
        assert meta["thread_id"] == "t-approval"
        if kind == "llm":
            role = name.removesuffix(" model")
            assert {"planexec:model", f"planexec:{role}", "nostream"} <= set(tags)
            assert meta["planexec_model"] == f"{role}-model"
        else:
            assert "planexec:tool" in tags
