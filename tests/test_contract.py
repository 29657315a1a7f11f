"""The public interface the README promises: names, signatures, defaults and shapes."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from helpers import config, invoke, step
from planexec import Context, Plan, ScriptedChatModel, Step, build_graph, validate_plan
from planexec.graph import graph as module_graph
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import calculator, default_tools

pytestmark = pytest.mark.usefixtures("both_apis")

README = Path(__file__).resolve().parent.parent / "README.md"
STEPS = [
    step("s1", args={"expression": "12*4"}),
    step("s2", args={"expression": "{{s1}} + 5"}, depends_on=["s1"]),
]


def test_the_readme_plan_is_a_valid_plan_for_the_built_in_tools() -> None:
    found = re.search(r"```json\n(\{\"steps\": \[\n.*?\n\]\})\n```", README.read_text(), re.S)
    assert found, "README shows no plan"
    data = json.loads(found.group(1))
    plan = Plan.model_validate(data)
    assert plan.steps[2] == Step.model_validate(data["steps"][2])
    assert (plan.steps[2].tool, plan.steps[2].args) == (None, None)
    tools = {tool.name: tool for tool in default_tools()}
    assert validate_plan(plan, tools, max_steps=Context().max_plan_steps) == []


def test_build_graph_takes_keyword_arguments_only() -> None:
    kinds = {p.kind for p in inspect.signature(build_graph).parameters.values()}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}
    with pytest.raises(TypeError):
        build_graph([calculator])  # type: ignore[call-arg]


def test_the_module_graph_for_langgraph_json_has_no_checkpointer() -> None:
    assert module_graph.checkpointer is None


async def test_a_run_given_no_context_uses_the_defaults_and_pauses_for_review() -> None:
    planner = ScriptedChatModel([plan_reply(STEPS)])
    graph = build_graph(tools=[calculator], checkpointer=InMemorySaver(), planner=planner)
    out = await invoke(graph, {"goal": "Compute 12*4+5"}, config())
    [pending] = out["__interrupt__"]
    assert (pending.value["type"], pending.value["plan"]) == ("plan_review", {"steps": STEPS})


async def test_without_review_no_checkpointer_is_needed_and_results_are_complete() -> None:
    planner = ScriptedChatModel([plan_reply(STEPS), replan_reply("finish", answer="53")])
    graph = build_graph(tools=[calculator], planner=planner)
    out = await invoke(graph, {"goal": "Compute 12*4+5"}, context=Context(review="never"))
    assert (out["status"], out["answer"]) == ("completed", "53")
    s2 = out["results"]["s2"]
    assert (s2["status"], s2["output"], s2["error"]) == ("done", 53, None)
    assert (s2["tool"], s2["args"], s2["attempts"]) == ("calculator", {"expression": "48 + 5"}, 1)
    assert s2["duration_s"] >= 0
    assert [r["source"] for r in out["revisions"]] == ["planner"]
    assert out["usage"]["planner"]["calls"] == 1
