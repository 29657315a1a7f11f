"""The model side of the benchmark: `tests/fake_openai.py` with a responder per workload.

The responder answers like a well-behaved model: the planner gets the workload's plan,
the replanner says "continue" when it is offered and "finish" otherwise, and the
executor answers a text step in a sentence. Every reply carries explicit token counts
(a quarter of the characters, the fake server's own rule), so the server's per-token
latency and the usage the client reads are the numbers recorded here.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# `tests` is not a package (pytest puts the directory itself on sys.path), so the fake
# server is imported as the top-level module `fake_openai`, as the tests import it.
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))

from fake_openai import FakeOpenAI, prompt_of, tool_names

PLANNER_MARK = "You are the planner"
REPLANNER_MARK = "You are the replanner"
CONTINUE_MARK = '- "continue":'
STEP_MARK = re.compile(r'<step id="([^"]+)">')


@dataclass(frozen=True)
class Call:
    """One model request the server answered."""

    role: str
    """"planner", "replanner" or "executor"."""
    action: str
    """"plan", "finish", "continue" or "text"."""
    step: str | None
    """The step an executor request was for."""
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    """What the server waited before the reply was complete: per call plus per token."""


def tokens(text: str) -> int:
    """Tokens for `text` by the fake server's rule: a quarter of the characters."""
    return len(text) // 4


class ModelServer:
    """A fake OpenAI server whose replies follow the current workload's plan."""

    def __init__(self) -> None:
        # Connections stay open between requests, as with a real provider, so that no
        # run pays for a new TCP connection per model call.
        self.fake = FakeOpenAI(responder=self._respond, keep_alive=True)
        self.steps: list[dict[str, Any]] = []
        self.answer = ""
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def start(self) -> ModelServer:
        """Start serving on 127.0.0.1."""
        self.fake.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.fake.stop()

    @property
    def url(self) -> str:
        """The base URL for `OPENAI_BASE_URL`."""
        return str(self.fake.url)

    def configure(
        self, steps: list[dict[str, Any]], answer: str, latency: float, per_token: float
    ) -> None:
        """Serve `steps` as the plan from now on, with these model latencies."""
        self.steps = steps
        self.answer = answer
        self.fake.latency = latency
        self.fake.per_token_latency = per_token

    @property
    def calls(self) -> list[Call]:
        """Every request answered so far, in arrival order."""
        with self._lock:
            return list(self._calls)

    def _respond(self, body: dict[str, Any]) -> dict[str, Any] | None:
        prompt = prompt_of(body)
        offered = tool_names(body)
        step: str | None = None
        if PLANNER_MARK in prompt and "Plan" in offered:
            role, action = "planner", "plan"
            reply = _call("Plan", {"steps": self.steps})
        elif REPLANNER_MARK in prompt and "Replan" in offered:
            role = "replanner"
            action = "continue" if CONTINUE_MARK in prompt else "finish"
            reply = _call(
                "Replan",
                {
                    "action": action,
                    "answer": self.answer if action == "finish" else None,
                    "steps": None,
                    "reason": "every step is done" if action == "finish" else "on track",
                },
            )
        else:
            found = STEP_MARK.search(prompt)
            if found is None or offered:
                return None  # no workload asks the executor to choose arguments
            role, action, step = "executor", "text", found.group(1)
            reply = {"content": f"Step {step} is done: the fact it asked for holds."}
        sent = reply.get("content", "") + "".join(
            c["arguments"] for c in reply.get("tool_calls", [])
        )
        usage = {"prompt_tokens": tokens(prompt), "completion_tokens": max(1, tokens(sent))}
        latency = self.fake.latency + self.fake.per_token_latency * usage["completion_tokens"]
        with self._lock:
            self._calls.append(
                Call(
                    role, action, step, usage["prompt_tokens"], usage["completion_tokens"], latency
                )
            )
        return {**reply, "usage": usage}


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    # Arguments go out as the exact JSON text whose tokens are counted.
    return {"tool_calls": [{"name": name, "arguments": json.dumps(arguments)}]}
