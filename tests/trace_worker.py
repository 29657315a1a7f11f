"""Subprocess worker for tests/test_tracing.py: one reviewed run, traced or not.

LangSmith reads its environment once per process, so each tracing setting gets a fresh
process. The models are the real `ChatOpenAI` clients, pointed at a local server by
`OPENAI_BASE_URL`; the run pauses for plan review, is approved, and finishes.

    python trace_worker.py <thread id> <goal>

Prints the final state as JSON on the last line of stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys

from langchain_core.tracers.langchain import wait_for_all_tracers
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from planexec import Context, build_graph, run_config


async def main(thread: str, goal: str) -> dict[str, object]:
    graph = build_graph(checkpointer=InMemorySaver())
    context = Context(
        planner_model="openai:gpt-4.1",
        executor_model="openai:gpt-4.1-mini",
        retry_initial_interval=0.0,
        model_timeout=10.0,
        model_max_retries=0,
    )
    config = run_config(thread, context)
    paused = await graph.ainvoke({"goal": goal}, config, context=context)
    if "__interrupt__" not in paused:
        raise SystemExit(f"expected a plan review, got {paused}")
    final: dict[str, object] = await graph.ainvoke(
        Command(resume={"type": "approve"}), config, context=context
    )
    return final


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], sys.argv[2]))
    wait_for_all_tracers()
    print(json.dumps(result, default=str))
