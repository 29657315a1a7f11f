"""Custom prompts: per graph and per run, placeholders filled, data kept in its sections,
and prompts that would break that refused before any model is called."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from helpers import config, invoke, run_readme_snippet, step
from planexec import Context, PromptError, Prompts, ScriptedChatModel, build_graph
from planexec.graph import PlanexecGraph
from planexec.prompts.custom import _SPECS, PROMPT_NAMES, check_prompt
from planexec.prompts.sections import DATA_NOTICE
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.tools import calculator

pytestmark = pytest.mark.usefixtures("both_apis")

NEVER = Context(review="never", retry_initial_interval=0.0)
PLAN = [
    step("s1", args=None, description="Multiply 6 by 7"),
    step("s2", tool=None, depends_on=["s1"], description="Say the result"),
]


class Models:
    def __init__(self) -> None:
        self.planner = ScriptedChatModel([plan_reply(PLAN)])
        self.executor = ScriptedChatModel(
            [tool_call_reply("calculator", {"expression": "6*7"}), "It is 42."]
        )
        self.replanner = ScriptedChatModel([replan_reply("finish", answer="42")])

    def graph(self, prompts: Any = None) -> PlanexecGraph:
        return build_graph(
            tools=[calculator],
            checkpointer=InMemorySaver(),
            planner=self.planner,
            executor=self.executor,
            replanner=self.replanner,
            prompts=prompts,
        )

    def systems(self) -> dict[str, list[str]]:
        """The system prompt of every call, by role."""
        return {
            role: [call.messages[0].text for call in model.calls]
            for role, model in (
                ("planner", self.planner),
                ("executor", self.executor),
                ("replanner", self.replanner),
            )
        }


GRAPH_PROMPTS = Prompts(
    planner="You plan chemistry lab work. Never more than $max_steps steps.",
    executor="You are a careful lab assistant.",
    executor_tool="Call $tool for the lab.\n\n$data_notice\nBe exact.",
    replanner="You review lab results. Revisions left: $replans_left.",
)


async def test_build_graph_prompts_replace_every_role_s_system_prompt() -> None:
    models = Models()
    done = await invoke(models.graph(GRAPH_PROMPTS), {"goal": "6*7"}, config(), context=NEVER)
    assert done["status"] == "completed"
    systems = models.systems()
    assert systems["planner"] == [
        f"You plan chemistry lab work. Never more than {NEVER.max_plan_steps} steps."
    ]
    # The executor's prompts: the data notice is where one placed it, else at the end.
    assert systems["executor"] == [
        f"Call calculator for the lab.\n\n{DATA_NOTICE}\nBe exact.",
        f"You are a careful lab assistant.\n\n{DATA_NOTICE}",
    ]
    assert systems["replanner"] == [
        f"You review lab results. Revisions left: {NEVER.max_replans}.\n\n{DATA_NOTICE}"
    ]
    # The data still comes in the user message's tagged sections.
    user = models.planner.calls[0].messages[1].text
    assert "<goal>\n6*7\n</goal>" in user
    assert '"name": "calculator"' in user.split("<tools>")[1].split("</tools>")[0]


async def test_context_prompts_win_for_their_run_only() -> None:
    models = Models()
    graph = models.graph(GRAPH_PROMPTS)
    run = Context(
        review="never",
        planner_prompt="Plan for run two, at most $max_steps steps.",
        replanner_prompt="Finish when you can.",
        max_plan_steps=5,
    )
    done = await invoke(graph, {"goal": "6*7"}, config("two"), context=run)
    assert done["status"] == "completed"
    systems = models.systems()
    assert systems["planner"] == ["Plan for run two, at most 5 steps."]
    assert systems["replanner"] == [f"Finish when you can.\n\n{DATA_NOTICE}"]
    # The executor had no run prompt: the graph's.
    assert systems["executor"][1] == f"You are a careful lab assistant.\n\n{DATA_NOTICE}"


async def test_no_custom_prompt_keeps_planexecs_own() -> None:
    models = Models()
    await invoke(models.graph(), {"goal": "6*7"}, config(), context=NEVER)
    systems = models.systems()
    assert systems["planner"][0].startswith("You are the planner of a planner-executor agent")
    assert systems["executor"][1].endswith(DATA_NOTICE)
    assert DATA_NOTICE in systems["replanner"][0]


async def test_custom_user_templates_keep_their_sections_and_their_own_words() -> None:
    models = Models()
    prompts = {
        "planner_user": "Tools first.\n<tools>\n$tools\n</tools>\n<goal>$goal</goal>"
        "$examples$feedback$invalid_reply\nThink about reagents.",
        "executor_user": "<step_results>$results</step_results>\n<goal>$goal</goal>\n"
        '<step id="$step_id" kind="lab">\n$description\n</step>',
        "replanner_user": "<goal>$goal</goal><tools>$tools</tools>"
        '<plan revision="$revision">$plan</plan><step_results>$results</step_results>'
        "$feedback$invalid_reply",
    }
    done = await invoke(models.graph(prompts), {"goal": "6*7"}, config(), context=NEVER)
    assert done["status"] == "completed"
    planner_user = models.planner.calls[0].messages[1].text
    assert planner_user.startswith("Tools first.\n<tools>\n{")
    assert planner_user.endswith("<goal>6*7</goal>\nThink about reagents.")
    executor_user = models.executor.calls[1].messages[1].text
    assert '<step id="s2" kind="lab">\nSay the result\n</step>' in executor_user
    assert '<step_results><result step="s1">\n42\n</result></step_results>' in executor_user
    replanner_user = models.replanner.calls[0].messages[1].text
    assert re.search(r'<plan revision="1">\[.*"id": "s1"', replanner_user, re.S)


# --- refused ---------------------------------------------------------------------------


def _defaults() -> dict[str, str]:
    return {name: _SPECS[name].default.template for name in PROMPT_NAMES}


@pytest.mark.parametrize(
    ("name", "placeholder"),
    [
        (name, placeholder)
        for name in PROMPT_NAMES
        if not _SPECS[name].system
        for placeholder in sorted(_SPECS[name].allowed - _SPECS[name].optional)
    ],
)
def test_a_user_template_that_drops_any_section_is_refused_at_build(
    name: str, placeholder: str
) -> None:
    text = re.sub(rf"\${placeholder}\b", "", _defaults()[name])
    with pytest.raises(PromptError, match=rf"\${placeholder} exactly once") as caught:
        build_graph(tools=[calculator], prompts={name: text})
    assert f"the {name} prompt" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_replanner_user_template_may_leave_out_history_but_not_repeat_it() -> None:
    # $history came after custom templates did; those without it must still build.
    without = re.sub(r"\$history\b", "", _defaults()["replanner_user"])
    build_graph(tools=[calculator], prompts={"replanner_user": without})
    twice = _defaults()["replanner_user"] + "$history"
    with pytest.raises(PromptError, match=r"\$history exactly once \(it holds it 2 times\)"):
        build_graph(tools=[calculator], prompts={"replanner_user": twice})


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("planner_user", "$goal <tools>$tools</tools>$examples$feedback$invalid_reply", "<goal>"),
        (
            "planner_user",
            "<goal>Do $goal now</goal><tools>$tools</tools>$examples$feedback$invalid_reply",
            "alone inside one <goal>",
        ),
        (
            "planner_user",
            "<goal>$goal</goal><goal></goal><tools>$tools</tools>$examples$feedback$invalid_reply",
            "<goal>",
        ),
        (
            "executor_user",
            "<goal>$goal</goal>$step_id $description<step_results>$results</step_results>",
            "<step>",
        ),
        ("executor_user", "<goal>$goal $goal</goal>", "exactly once"),
        ("planner", "Plan for $goal", "uses $goal"),
        ("executor", "Answer from $results", "data goes in the user message"),
        ("replanner", "It costs $5", "write $$ for a dollar sign"),
        ("executor_tool", "   ", "is empty"),
        ("executor_tool", "Use ${tool} and $tools", "uses $tools"),
    ],
)
def test_a_prompt_that_would_mix_data_and_instructions_is_refused(
    name: Any, text: str, says: str
) -> None:
    with pytest.raises(PromptError, match=re.escape(says)):
        check_prompt(name, text)
    with pytest.raises(PromptError, match=re.escape(says)):
        Prompts(**{name: text})


def test_an_unknown_prompt_name_is_refused() -> None:
    with pytest.raises(PromptError, match=r"unknown prompt\(s\) planer; the prompts are planner"):
        build_graph(tools=[calculator], prompts={"planer": "x"})


def test_dollar_signs_written_twice_and_braced_placeholders_are_fine() -> None:
    template = check_prompt("executor_tool", "Call ${tool}; it costs $$5.")
    assert template.substitute(tool="calculator") == "Call calculator; it costs $5."


async def test_a_bad_run_prompt_stops_the_run_before_any_model_call() -> None:
    with pytest.raises(ValidationError, match="planner_prompt"):
        Context(planner_prompt="Plan $goal")
    models = Models()
    graph = models.graph()
    with pytest.raises(ValidationError, match="executor_tool_prompt"):
        await invoke(
            graph, {"goal": "6*7"}, config(), context={"executor_tool_prompt": "Use $nothing"}
        )
    assert models.planner.calls == []


def test_each_default_prompt_uses_every_placeholder_its_node_fills() -> None:
    """So a node that stopped passing one would fail here, and custom prompts may use all."""
    for name in PROMPT_NAMES:
        spec = _SPECS[name]
        assert isinstance(spec.default, Template)
        check_prompt(name, spec.default.template)
        expected = set(spec.allowed) - ({"data_notice"} if spec.notice else set())
        assert set(spec.default.get_identifiers()) == expected, name


@pytest.mark.async_only
def test_the_readme_s_domain_prompt_snippet_runs_and_prints_what_it_shows(tmp_path: Path) -> None:
    run, shown = run_readme_snippet("prompts", tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == shown
