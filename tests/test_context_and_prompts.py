import dataclasses
import json
import re
from string import Template
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.runtime import Runtime
from pydantic import ValidationError

from helpers import Harness, step
from planexec import Context, build_graph
from planexec.budget import Budget
from planexec.context import resolve_context
from planexec.execution import StepEnv, _messages
from planexec.models import Models
from planexec.nodes.planner import planner_messages
from planexec.nodes.replanner import replanner_messages
from planexec.prompts import executor as executor_prompts
from planexec.prompts import planner as planner_prompts
from planexec.prompts import render
from planexec.prompts import replanner as replanner_prompts
from planexec.prompts import subagent as subagent_prompts
from planexec.prompts.sections import DATA_NOTICE, INVALID_REPLY
from planexec.resources import Resources
from planexec.scripted import plan_reply
from planexec.tools import calculator

# --- Context --------------------------------------------------------------------------------


def test_context_defaults() -> None:
    c = Context()
    assert c.planner_model == "openai:gpt-4.1"
    assert c.executor_model == "openai:gpt-4.1-mini"
    assert c.replanner_model is None
    assert c.review == "always"
    assert c.replan_policy == "on_failure"
    assert c.max_replans == 3
    assert c.max_plan_steps == 20
    assert c.max_plan_attempts == 3
    assert c.step_attempts == 3
    assert c.max_concurrency == 4
    assert c.max_tool_concurrency == 16
    assert c.approval_tools == []
    assert c.tool_timeouts == {}
    assert (c.max_steps_executed, c.max_model_calls, c.max_tokens) == (None, None, None)
    assert (c.max_cost_usd, c.time_budget_s) == (None, None)
    assert c.workspace == "."
    assert c.prices["gpt-4.1-mini"] == (0.40, 1.60)


def test_context_is_frozen_and_defaults_are_not_shared() -> None:
    c = Context()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.review = "never"
    c.approval_tools.append("write_file")
    assert Context().approval_tools == []


def test_resolve_context() -> None:
    given = Context(review="never")
    assert resolve_context(given) is given
    assert resolve_context(None) == Context()
    from_dict = resolve_context({"review": "never", "max_replans": 2, "tool_timeouts": {}})
    assert from_dict == Context(review="never", max_replans=2)


@pytest.mark.parametrize(
    ("values", "field", "kind"),
    [
        ({"colour": "blue"}, "colour", "unexpected_keyword_argument"),
        ({"review": "sometimes"}, "review", "literal_error"),
        ({"replan_policy": "always"}, "replan_policy", "literal_error"),
        ({"max_replans": -1}, "max_replans", "greater_than_equal"),
        ({"max_plan_steps": 0}, "max_plan_steps", "greater_than_equal"),
        ({"step_attempts": 0}, "step_attempts", "greater_than_equal"),
        ({"retry_initial_interval": -0.5}, "retry_initial_interval", "greater_than_equal"),
        ({"step_timeout": 0}, "step_timeout", "greater_than"),
        ({"tool_timeouts": {"calculator": -1}}, "tool_timeouts", "greater_than"),
        ({"max_concurrency": 0}, "max_concurrency", "greater_than_equal"),
        ({"max_tool_concurrency": 0}, "max_tool_concurrency", "greater_than_equal"),
        ({"max_cost_usd": -1}, "max_cost_usd", "greater_than"),
        ({"max_tokens": 0}, "max_tokens", "greater_than_equal"),
        ({"model_timeout": -1}, "model_timeout", "greater_than"),
        ({"model_max_retries": -1}, "model_max_retries", "greater_than_equal"),
        ({"max_replans": "lots"}, "max_replans", "int_parsing"),
    ],
)
def test_context_validation_errors_name_the_field(
    values: dict[str, Any], field: str, kind: str
) -> None:
    for make in (lambda: Context(**values), lambda: resolve_context(values)):
        with pytest.raises(ValidationError) as caught:
            make()
        [error] = caught.value.errors()
        assert error["loc"][0] == field
        assert error["type"] == kind


def test_replanner_falls_back_to_the_planner_model() -> None:
    assert Context(planner_model="openai:big").replanner == "openai:big"
    assert (
        Context(planner_model="openai:big", replanner_model="openai:other").replanner
        == "openai:other"
    )


def test_timeout_for() -> None:
    c = Context(step_timeout=30, tool_timeouts={"read_file": 2.5})
    assert c.timeout_for("read_file") == 2.5
    assert c.timeout_for("calculator") == 30
    assert c.timeout_for(None) == 30


async def test_a_run_accepts_the_context_as_a_dict() -> None:
    h = Harness(planner=[plan_reply([step("s1", args={"expression": "6*7"})])])
    out = await h.run({"goal": "multiply"}, {"review": "never", "replan_policy": "never"})
    assert "__interrupt__" not in out
    assert out["status"] == "completed"
    assert out["answer"] == "42"


async def test_a_bad_context_dict_fails_before_any_model_call() -> None:
    h = Harness(planner=[plan_reply([step("s1", args={"expression": "6*7"})])])
    with pytest.raises(ValidationError, match="review"):
        await h.run({"goal": "multiply"}, {"review": "sometimes"})
    assert h.planner.calls == []


def test_the_context_schema_studio_shows() -> None:
    schema = build_graph(tools=[calculator]).get_context_jsonschema()
    properties = schema["properties"]
    # Studio's form follows the schema: the models and review first, as declared.
    assert list(properties) == [f.name for f in dataclasses.fields(Context)]
    assert list(properties)[:4] == ["planner_model", "executor_model", "replanner_model", "review"]
    missing = [name for name, prop in properties.items() if not prop.get("description")]
    assert missing == []
    # The descriptions are the attribute docstrings.
    assert properties["review"]["description"] == (
        "Whether the run pauses for a person to review each plan before it runs."
    )
    assert properties["review"]["enum"] == ["always", "never"]
    assert properties["replan_policy"]["enum"] == ["on_failure", "after_each_step", "never"]
    assert properties["max_replans"]["default"] == 3
    assert properties["max_replans"]["minimum"] == 0
    assert schema["additionalProperties"] is False


# --- render ---------------------------------------------------------------------------------


def test_render_fills_exactly_the_placeholders() -> None:
    template = Template("<goal>\n$goal\n</goal> $n")
    assert render(template, goal="win", n=3) == "<goal>\nwin\n</goal> 3"
    with pytest.raises(ValueError, match=r"expects \['goal', 'n'\], was given \['goal'\]"):
        render(template, goal="win")
    with pytest.raises(ValueError, match="was given"):
        render(template, goal="win", n=3, extra="x")


@pytest.mark.parametrize(
    ("template", "placeholders"),
    [
        (planner_prompts.SYSTEM, {"max_steps", "direct_answers"}),
        (
            planner_prompts.USER,
            {"goal", "tools", "earlier_goals", "examples", "feedback", "invalid_reply"},
        ),
        (planner_prompts.EARLIER_GOALS, {"goals"}),
        (planner_prompts.EARLIER_GOAL, {"goal", "answer"}),
        (planner_prompts.FEEDBACK, {"plan", "message"}),
        (replanner_prompts.SYSTEM, {"options", "replans_left"}),
        (
            replanner_prompts.USER,
            {
                "goal",
                "tools",
                "revision",
                "plan",
                "results",
                "history",
                "feedback",
                "invalid_reply",
            },
        ),
        (replanner_prompts.FEEDBACK, {"message"}),
        (
            replanner_prompts.EARLIER_REVISIONS,
            {"revision", "sources", "reasons", "settled", "retired"},
        ),
        (executor_prompts.SYSTEM_REASON, set()),
        (executor_prompts.SYSTEM_TOOL, {"tool"}),
        (executor_prompts.USER, {"goal", "step_id", "description", "results"}),
        (subagent_prompts.USER, {"goal", "step_id", "description", "arguments", "results"}),
        (INVALID_REPLY, {"reply", "errors"}),
    ],
)
def test_every_template_has_the_placeholders_its_node_passes(
    template: Template, placeholders: set[str]
) -> None:
    assert template.is_valid()
    assert set(template.get_identifiers()) == placeholders
    text = render(template, **{name: f"<<{name}>>" for name in placeholders})
    assert "$" not in text
    for name in placeholders:
        assert f"<<{name}>>" in text


def test_plan_syntax_in_prompts_survives_formatting() -> None:
    assert "{{s1}}" in render(planner_prompts.SYSTEM, max_steps=5, direct_answers="")
    assert "{{id}}" in render(replanner_prompts.SYSTEM, options="", replans_left=1)


# --- the prompts the nodes send -------------------------------------------------------------

TAGS = ("<goal>", "<tools>", "<step_results>", "<reviewer_feedback>", "<invalid_reply>")
RESOURCES = Resources(tools={"calculator": calculator}, models=Models())
GOAL = "Work out 12*4+5 and explain it"
PLAN = {
    "steps": [
        step("s1", args={"expression": "12*4"}, description="Multiply twelve by four"),
        step("s2", args={"expression": "{{s1}}/0"}, depends_on=["s1"]),
        step("s3", tool=None, depends_on=["s2"], description="Explain"),
    ]
}


def revision(number: int, source: str = "planner", plan: Any = PLAN) -> dict[str, Any]:
    return {
        "revision": number,
        "source": source,
        "reason": "first plan",
        "plan": plan,
        "diff": {"added": [], "removed": [], "changed": [], "unchanged": []},
        "at": "2026-01-01T00:00:00.000+00:00",
    }


def review(number: int, decision: str, message: str | None = None) -> dict[str, Any]:
    return {
        "revision": number,
        "decision": decision,
        "message": message,
        "plan_hash": "0" * 16,
        "at": "2026-01-01T00:00:00.000+00:00",
    }


def tags_in(messages: list[BaseMessage]) -> set[str]:
    """The tagged sections in `messages`: a tag alone on its line, closed further down."""
    text = "\n".join(m.text for m in messages)
    found = set()
    for tag in TAGS:
        opened = [m.end() for m in re.finditer(rf"(?m)^{tag}$", text)]
        assert len(opened) <= 1, f"{tag} appears {len(opened)} times"
        if opened:
            closing = tag.replace("<", "</")
            assert re.search(rf"(?m)^{closing}$", text[opened[0] :]), f"{tag} is not closed"
            found.add(tag)
    return found


def test_first_planner_prompt() -> None:
    system, user = planner_messages({"goal": f"  {GOAL}  "}, Context(max_plan_steps=7), RESOURCES)
    assert "at most 7 steps" in system.text
    assert tags_in([system, user]) == {"<goal>", "<tools>"}
    assert f"<goal>\n{GOAL}\n</goal>" in user.text
    tools = user.text.split("<tools>\n")[1].split("\n</tools>")[0]
    described = json.loads(tools)
    assert described["name"] == "calculator"
    assert described["args_schema"]["required"] == ["expression"]


def test_planner_prompt_after_a_rejection() -> None:
    state = {
        "goal": GOAL,
        "plan": PLAN,
        "revisions": [revision(1)],
        "reviews": [review(1, "reject", "Skip the division")],
    }
    _, user = planner_messages(state, Context(), RESOURCES)
    assert tags_in([user]) == {"<goal>", "<tools>", "<reviewer_feedback>"}
    feedback = user.text.split("<reviewer_feedback>")[1]
    assert "<feedback>\nSkip the division\n</feedback>" in feedback
    assert "Multiply twelve by four" in feedback.split("<previous_plan>")[1]


def test_planner_prompt_without_feedback_once_the_rejected_revision_is_replaced() -> None:
    state = {
        "goal": GOAL,
        "plan": PLAN,
        "revisions": [revision(1), revision(2)],
        "reviews": [review(1, "reject", "Skip the division")],
    }
    _, user = planner_messages(state, Context(), RESOURCES)
    assert tags_in([user]) == {"<goal>", "<tools>"}
    assert "Skip the division" not in user.text


def test_planner_prompt_after_an_invalid_reply() -> None:
    state = {
        "goal": GOAL,
        "draft": '{"steps": [{"tool": "search"}]}',
        "draft_errors": ["step #1: id: Field required", "step #1: description: Field required"],
        "draft_attempts": 1,
    }
    _, user = planner_messages(state, Context(), RESOURCES)
    assert tags_in([user]) == {"<goal>", "<tools>", "<invalid_reply>"}
    section = user.text.split("<invalid_reply>")[1]
    assert '<reply>\n{"steps": [{"tool": "search"}]}\n</reply>' in section
    assert "- step #1: id: Field required\n- step #1: description: Field required" in section


def replanner_state(**extra: Any) -> dict[str, Any]:
    return {
        "goal": GOAL,
        "plan": PLAN,
        "revisions": [revision(1)],
        "reviews": [review(1, "approve")],
        "results": {
            "s1": {"status": "done", "output": 48, "error": None},
            "s2": {
                "status": "failed",
                "output": None,
                "error": "CalculatorError: division by zero",
            },
        },
        **extra,
    }


def test_replanner_prompt_after_a_failure() -> None:
    system, user = replanner_messages(replanner_state(), Context(), RESOURCES)
    assert tags_in([system, user]) == {"<goal>", "<tools>", "<step_results>"}
    assert DATA_NOTICE in system.text
    assert "You may revise the plan 3 more time(s)." in system.text
    assert '"continue"' not in system.text
    results = user.text.split("<step_results>")[1]
    assert '<result step="s1" status="done">\n48\n</result>' in results
    assert '<result step="s2" status="failed">\nCalculatorError: division by zero\n</result>' in (
        results
    )
    plan = json.loads(user.text.split('<plan revision="1">\n')[1].split("\n</plan>")[0])
    assert [s["status"] for s in plan] == ["done", "failed", "pending"]


def test_replanner_prompt_counts_replans_left() -> None:
    state = replanner_state(revisions=[revision(1), revision(2, "replanner")])
    system, user = replanner_messages(state, Context(max_replans=2), RESOURCES)
    assert "You may revise the plan 1 more time(s)." in system.text
    assert '<plan revision="2">' in user.text


def test_replanner_prompt_offers_continue_only_after_each_step_with_steps_pending() -> None:
    state = replanner_state(results={"s1": {"status": "done", "output": 48, "error": None}})
    context = Context(replan_policy="after_each_step")
    system, _ = replanner_messages(state, context, RESOURCES)
    assert '"continue"' in system.text
    every = {
        "s1": {"status": "done", "output": 48, "error": None},
        "s2": {"status": "done", "output": 1, "error": None},
        "s3": {"status": "done", "output": "ok", "error": None},
    }
    system, _ = replanner_messages(replanner_state(results=every), context, RESOURCES)
    assert '"continue"' not in system.text


def test_replanner_prompt_before_anything_ran() -> None:
    _, user = replanner_messages(replanner_state(results={}), Context(), RESOURCES)
    assert "<step_results>\n(no step has run)\n</step_results>" in user.text


def test_replanner_prompt_after_its_revision_was_rejected() -> None:
    state = replanner_state(
        revisions=[revision(1), revision(2, "replanner")],
        reviews=[review(1, "approve"), review(2, "reject", "Divide by two instead")],
        draft="not json",
        draft_errors=["the reply has no Replan call"],
    )
    _, user = replanner_messages(state, Context(), RESOURCES)
    assert tags_in([user]) == {
        "<goal>",
        "<tools>",
        "<step_results>",
        "<reviewer_feedback>",
        "<invalid_reply>",
    }
    assert "<feedback>\nDivide by two instead\n</feedback>" in user.text
    assert "- the reply has no Replan call" in user.text


def step_env(goal: str = GOAL) -> StepEnv:
    context = Context()
    return StepEnv(
        resources=RESOURCES,
        context=context,
        budget=Budget(context),
        state={"goal": goal},
        runtime=Runtime(context=context),
        revision=1,
        thread_id="t1",
    )


def test_executor_prompt_for_a_text_step() -> None:
    text_step = step("s3", tool=None, depends_on=["s1", "s2"], description="Explain the result")
    given = {"s1": 48, "s2": {"total": 53}, "s9": "UNRELATED-OUTPUT"}
    system, user = _messages(text_step, given, step_env())
    assert tags_in([system, user]) == {"<goal>", "<step_results>"}
    assert system.text == render(executor_prompts.SYSTEM_REASON)
    assert DATA_NOTICE in system.text
    assert '<step id="s3">\nExplain the result\n</step>' in user.text
    assert (
        '<step_results>\n<result step="s1">\n48\n</result>\n'
        '<result step="s2">\n{"total": 53}\n</result>\n</step_results>'
    ) in user.text
    assert "UNRELATED-OUTPUT" not in user.text


def test_executor_prompt_for_a_step_whose_arguments_the_model_chooses() -> None:
    tool_step = step("s1", args=None, description="Compute the square of seven")
    system, user = _messages(tool_step, {}, step_env())
    assert system.text == render(executor_prompts.SYSTEM_TOOL, tool="calculator")
    assert "the tool `calculator`, the only tool you may call" in system.text
    assert "<step_results>\n(this step depends on no other step)\n</step_results>" in user.text
    assert "<tools>" not in user.text
