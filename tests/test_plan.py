import hashlib
from typing import Any

import pytest
from langchain_core.tools import BaseTool, StructuredTool, tool

from helpers import step
from planexec.plan import (
    Plan,
    PlanError,
    diff_plans,
    parse_plan,
    plan_hash,
    resolve_args,
    step_hash,
    topological_order,
    validate_plan,
)
from planexec.tools import calculator


@tool
def scale(value: int, factor: int = 2) -> int:
    """Multiply an integer by a factor."""
    return value * factor


def _count(**kwargs: Any) -> int:
    return len(kwargs)


# A tool whose argument schema is a JSON schema dict rather than a pydantic model.
json_tool = StructuredTool.from_function(
    func=_count,
    name="lookup",
    description="Look a record up.",
    args_schema={
        "type": "object",
        "properties": {
            "record": {"type": "integer"},
            "label": {"type": "string"},
            "weight": {"type": "number"},
        },
        "required": ["record"],
    },
)

TOOLS: dict[str, BaseTool] = {"calculator": calculator, "scale": scale, "lookup": json_tool}


def plan(*steps: dict[str, Any]) -> Plan:
    return Plan.model_validate({"steps": list(steps)})


def check(*steps: dict[str, Any], max_steps: int = 10, **kwargs: Any) -> list[PlanError]:
    return validate_plan(plan(*steps), TOOLS, max_steps=max_steps, **kwargs)


def calc(id: str, expression: str = "1+1", depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    return step(id, args={"expression": expression}, depends_on=depends_on)


# --- validate_plan -----------------------------------------------------------------------


def test_a_valid_plan_has_no_errors() -> None:
    assert (
        check(
            calc("s1", "12*4"),
            calc("s2", "{{s1}} + 5", depends_on=("s1",)),
            step("s3", tool=None, depends_on=["s2"]),
            step("s4", tool="calculator", args=None, depends_on=["s1"]),
        )
        == []
    )


def test_ids_must_be_unique() -> None:
    assert check(calc("s1"), calc("s1", "2")) == [
        PlanError("s1", "the id is used by more than one step")
    ]


def test_depends_on_must_name_steps_in_the_plan() -> None:
    assert check(calc("s1", depends_on=("ghost",))) == [
        PlanError("s1", "depends on 'ghost', which is not in the plan")
    ]


def test_a_step_may_not_depend_on_itself() -> None:
    assert check(calc("s1", depends_on=("s1",))) == [PlanError("s1", "the step depends on itself")]


def test_depends_on_may_not_list_a_step_twice() -> None:
    assert check(calc("s1"), calc("s2", depends_on=("s1", "s1"))) == [
        PlanError("s2", "depends_on lists a step more than once")
    ]


def test_a_two_step_cycle_is_reported_once() -> None:
    assert check(calc("a", depends_on=("b",)), calc("b", depends_on=("a",))) == [
        PlanError("b", "dependency cycle: a -> b -> a")
    ]


def test_a_longer_cycle_names_every_step_on_it() -> None:
    errors = check(
        calc("a", depends_on=("c",)),
        calc("b", depends_on=("a",)),
        calc("c", depends_on=("b",)),
        calc("free"),
    )
    assert errors == [PlanError("b", "dependency cycle: a -> c -> b -> a")]


def test_unknown_tool_lists_the_available_tools() -> None:
    assert check(step("s1", tool="search", args={"q": "x"})) == [
        PlanError("s1", "unknown tool 'search' (available: calculator, lookup, scale)")
    ]


def test_unknown_tool_with_no_tools_at_all() -> None:
    errors = validate_plan(plan(step("s1", tool="search")), {}, max_steps=5)
    assert errors == [PlanError("s1", "unknown tool 'search' (available: none)")]


def test_a_reference_must_be_listed_in_depends_on() -> None:
    errors = check(calc("s1"), calc("s2", "{{s1}} * 2"), calc("s3", "{{ s2 }} + {{s2}}"))
    assert errors == [
        PlanError("s2", "args use {{s1}} but depends_on does not list 's1'"),
        # One error per referenced step, however often and however spaced.
        PlanError("s3", "args use {{s2}} but depends_on does not list 's2'"),
    ]


def test_a_reference_deep_inside_args_is_found() -> None:
    errors = check(calc("s1"), step("s2", tool="lookup", args={"record": [{"k": "{{s1}}"}]}))
    assert PlanError("s2", "args use {{s1}} but depends_on does not list 's1'") in errors


def test_args_with_a_null_tool_are_refused() -> None:
    assert check(step("s1", tool=None, args={"expression": "1"})) == [
        PlanError("s1", "args are given but tool is null")
    ]


def test_args_missing_a_required_parameter() -> None:
    assert check(step("s1", args={})) == [
        PlanError("s1", "argument 'expression' is required by tool 'calculator'")
    ]


def test_args_with_an_unknown_parameter() -> None:
    assert check(step("s1", args={"expression": "1", "precision": 2})) == [
        PlanError("s1", "argument 'precision' is not a parameter of tool 'calculator'")
    ]


def test_args_of_the_wrong_type() -> None:
    assert check(step("s1", args={"expression": 12})) == [
        PlanError(
            "s1", "argument 'expression' of tool 'calculator': Input should be a valid string"
        )
    ]
    [error] = check(step("s1", tool="scale", args={"value": "many"}))
    assert error.step == "s1"
    assert error.message.startswith("argument 'value' of tool 'scale': ")
    assert "valid integer" in error.message


def test_a_value_holding_a_reference_is_not_type_checked() -> None:
    errors = check(
        calc("s1"),
        step("s2", tool="scale", args={"value": "{{s1}}", "factor": 3}, depends_on=["s1"]),
    )
    assert errors == []


def test_a_reference_does_not_excuse_other_arguments() -> None:
    errors = check(
        calc("s1"),
        step("s2", tool="scale", args={"value": "{{s1}}", "factor": "x"}, depends_on=["s1"]),
    )
    assert [(e.step, e.message.split(":")[0]) for e in errors] == [
        ("s2", "argument 'factor' of tool 'scale'")
    ]


def test_args_null_on_a_tool_step_is_allowed() -> None:
    assert check(step("s1", tool="scale", args=None)) == []


class TestJsonSchemaTool:
    def test_missing_required(self) -> None:
        assert check(step("s1", tool="lookup", args={"label": "x"})) == [
            PlanError("s1", "argument 'record' is required by tool 'lookup'")
        ]

    def test_unknown_argument(self) -> None:
        assert check(step("s1", tool="lookup", args={"record": 1, "colour": "red"})) == [
            PlanError("s1", "argument 'colour' is not a parameter of tool 'lookup'")
        ]

    def test_wrong_types(self) -> None:
        errors = check(
            step("s1", tool="lookup", args={"record": "seven"}),
            step("s2", tool="lookup", args={"record": True}),
            step("s3", tool="lookup", args={"record": 1, "label": 5, "weight": "heavy"}),
        )
        assert errors == [
            PlanError("s1", "argument 'record' of tool 'lookup' should be of type integer"),
            PlanError("s2", "argument 'record' of tool 'lookup' should be of type integer"),
            PlanError("s3", "argument 'label' of tool 'lookup' should be of type string"),
            PlanError("s3", "argument 'weight' of tool 'lookup' should be of type number"),
        ]

    def test_an_integer_is_a_number(self) -> None:
        assert check(step("s1", tool="lookup", args={"record": 1, "weight": 2})) == []

    def test_a_reference_is_not_type_checked(self) -> None:
        errors = check(
            calc("s1"),
            step("s2", tool="lookup", args={"record": "{{s1}}"}, depends_on=["s1"]),
        )
        assert errors == []


def test_too_many_steps() -> None:
    assert check(calc("s1"), calc("s2"), calc("s3"), max_steps=2) == [
        PlanError(None, "the plan has 3 steps to run; the most allowed is 2")
    ]
    assert check(calc("s1"), calc("s2"), max_steps=2) == []


def test_finished_steps_do_not_count_against_max_steps() -> None:
    s1 = calc("s1")
    errors = check(s1, calc("s2"), calc("s3"), max_steps=2, done={"s1": s1})
    assert errors == []


def test_an_empty_plan() -> None:
    assert check() == [PlanError(None, "the plan has no steps")]


def test_a_finished_step_cannot_be_changed() -> None:
    ran = calc("s1", "1+1")
    errors = check(calc("s1", "2+2"), calc("s2"), done={"s1": ran})
    assert errors == [PlanError("s1", "the step has finished; it cannot be changed")]


def test_a_finished_step_cannot_be_removed() -> None:
    errors = check(calc("s2"), done={"s1": calc("s1")})
    assert errors == [PlanError("s1", "the step has finished; it cannot be removed")]


def test_a_finished_step_kept_as_it_ran_is_fine() -> None:
    ran = calc("s1", "6*7")
    assert check(ran, calc("s2", "{{s1}}/2", depends_on=("s1",)), done={"s1": ran}) == []


def test_a_retired_id_cannot_be_reused() -> None:
    errors = check(calc("s1"), calc("s2"), retired={"s2"})
    assert errors == [
        PlanError(
            "s2",
            "the id belongs to an earlier step that failed or was skipped; "
            "give the new step a new id",
        )
    ]


def test_plan_error_text_names_the_step() -> None:
    assert str(PlanError("s3", "bad")) == "step s3: bad"
    assert str(PlanError(None, "the plan has no steps")) == "the plan has no steps"


# --- parse_plan ----------------------------------------------------------------------------


def test_parse_plan_accepts_a_plan() -> None:
    data = {"steps": [calc("s1")]}
    parsed, errors = parse_plan(data)
    assert errors == []
    assert parsed is not None
    assert parsed.to_dict() == data


def test_parse_plan_names_steps_by_id_or_position() -> None:
    data = {
        "steps": [
            {**calc("s1"), "description": ""},
            {"description": "no id", "tool": None},
            {**calc("s3"), "bogus": 1},
            "not a step",
            {**calc("bad id!")},
        ]
    }
    parsed, errors = parse_plan(data)
    assert parsed is None
    assert [(e.step, e.message.split(":")[0]) for e in errors] == [
        ("s1", "description"),
        ("#2", "id"),
        ("s3", "bogus"),
        ("#4", "Input should be a valid dictionary or instance of Step"),
        ("bad id!", "id"),
    ]
    assert errors[1].message == "id: Field required"
    assert errors[2].message == "bogus: Extra inputs are not permitted"


def test_parse_plan_errors_about_the_whole_plan_name_no_step() -> None:
    parsed, errors = parse_plan({"stepz": []})
    assert parsed is None
    assert errors == [
        PlanError(None, "steps: Field required"),
        PlanError(None, "stepz: Extra inputs are not permitted"),
    ]
    _, errors = parse_plan("a plan")
    assert [e.step for e in errors] == [None]


# --- topological_order -----------------------------------------------------------------------


def test_topological_order_puts_dependencies_first_and_keeps_plan_order_for_ties() -> None:
    steps = [
        calc("c", depends_on=("a",)),
        calc("b"),
        calc("a"),
        calc("d", depends_on=("c", "b")),
        calc("e"),
    ]
    assert [s["id"] for s in topological_order(steps)] == ["b", "a", "e", "c", "d"]


def test_topological_order_ignores_dependencies_outside_the_steps() -> None:
    steps = [calc("s3", depends_on=("s1",)), calc("s2")]
    assert [s["id"] for s in topological_order(steps)] == ["s3", "s2"]


def test_topological_order_refuses_a_cycle() -> None:
    steps = [calc("a", depends_on=("b",)), calc("b", depends_on=("a",))]
    with pytest.raises(ValueError, match="cycle"):
        topological_order(steps)


# --- resolve_args ------------------------------------------------------------------------------


def test_a_whole_string_reference_keeps_the_output_type() -> None:
    outputs = {"s1": 42, "s2": [1, 2], "s3": {"k": "v"}, "s4": None}
    args = {"a": "{{s1}}", "b": " {{ s2 }} ", "c": "{{s3}}", "d": "{{s4}}"}
    assert resolve_args(args, outputs) == {"a": 42, "b": [1, 2], "c": {"k": "v"}, "d": None}


def test_an_embedded_reference_becomes_text() -> None:
    outputs = {"s1": 42, "s2": "plain text", "s3": {"total": 3.5}}
    resolved = resolve_args({"expression": "{{s1}} + 5", "note": "got {{s2}} and {{s3}}"}, outputs)
    assert resolved == {"expression": "42 + 5", "note": 'got plain text and {"total": 3.5}'}


def test_references_are_resolved_inside_nested_lists_and_dicts() -> None:
    outputs = {"s1": 7, "s2": "x"}
    args = {"items": ["{{s1}}", {"name": "{{s2}}-{{s1}}", "n": 3}], "flag": True, "count": 2}
    assert resolve_args(args, outputs) == {
        "items": [7, {"name": "x-7", "n": 3}],
        "flag": True,
        "count": 2,
    }


def test_resolve_args_leaves_the_input_alone() -> None:
    args = {"items": ["{{s1}}"]}
    resolve_args(args, {"s1": 1})
    assert args == {"items": ["{{s1}}"]}


# --- diff_plans and hashes -----------------------------------------------------------------------


def test_diff_from_nothing_adds_everything() -> None:
    new = {"steps": [calc("s1"), calc("s2")]}
    assert diff_plans(None, new) == {
        "added": ["s1", "s2"],
        "removed": [],
        "changed": [],
        "unchanged": [],
    }


def test_diff_between_revisions() -> None:
    old = {"steps": [calc("s1"), calc("s2", "2"), calc("s3")]}
    new = {"steps": [calc("s1"), calc("s2", "3"), calc("s4")]}
    assert diff_plans(old, new) == {
        "added": ["s4"],
        "removed": ["s3"],
        "changed": ["s2"],
        "unchanged": ["s1"],
    }


def test_plan_hash_depends_on_content_not_key_order() -> None:
    one = {"steps": [calc("s1", "1+1")]}
    reordered = {"steps": [dict(reversed(list(calc("s1", "1+1").items())))]}
    assert plan_hash(one) == plan_hash(reordered)
    assert plan_hash(one) != plan_hash({"steps": [calc("s1", "1+2")]})
    assert len(plan_hash(one)) == 16
    int(plan_hash(one), 16)


def test_plan_hash_is_stable_across_versions() -> None:
    # Review decisions stored in checkpoints carry this digest: changing how it is
    # computed invalidates every pending decision.
    assert plan_hash({"steps": []}) == "4430e7786edc0f84"
    canonical = (
        '{"steps":[{"args":{"expression":"1+1"},"depends_on":[],'
        '"description":"é","id":"s1","tool":"calculator"}]}'
    )
    one = {"steps": [{**calc("s1", "1+1"), "description": "é"}]}
    assert plan_hash(one) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    reordered_step = dict(reversed(list(calc("s1", "1+1").items())))
    assert step_hash(calc("s1", "1+1")) == step_hash(reordered_step)
    assert step_hash(calc("s1", "1+1")) != step_hash(calc("s1", "1+1", depends_on=("s0",)))
