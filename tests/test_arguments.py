"""Tool arguments against JSON Schema: a corpus of keywords, through every path a call takes.

Paths: plan validation (the planner asked again, a reviewer's edit sent back), a step
approval's edit, the executor model's reply, and the arguments after `{{id}}`
substitution. In each, arguments outside the schema never reach the tool.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.types import Command

from helpers import Harness, context, interrupt_of, step
from planexec import Context, Plan, build_graph
from planexec.arguments import (
    MAX_PROBLEMS,
    PATTERN_TIMEOUT,
    json_schema_problems,
    schema_problem,
)
from planexec.plan import REFERENCE, check_args, validate_plan
from planexec.scripted import plan_reply, replan_reply, tool_call_reply

DEFS = {"pos": {"type": "integer", "minimum": 1}}

# (name, schema of the argument `v`, values that fit, values that do not)
CORPUS: list[tuple[str, dict[str, Any], list[Any], list[Any]]] = [
    ("enum", {"type": "string", "enum": ["red", "green"]}, ["red"], ["blue", "Red"]),
    ("const", {"const": 3}, [3], [4, "3"]),
    ("min-max", {"type": "integer", "minimum": 1, "maximum": 10}, [1, 10], [0, 11]),
    ("exclusive", {"exclusiveMinimum": 0, "exclusiveMaximum": 1}, [0.5], [0, 1]),
    ("multipleOf", {"type": "integer", "multipleOf": 5}, [10], [7]),
    ("integer", {"type": "integer"}, [3, 4.0], [3.5, True, "3"]),
    ("lengths", {"type": "string", "minLength": 2, "maxLength": 4}, ["ab", "abcd"], ["a", "abcde"]),
    ("pattern", {"type": "string", "pattern": r"^[a-z]+\.csv$"}, ["a.csv"], ["a.txt", "../a.csv"]),
    ("items", {"type": "array", "items": {"type": "integer"}}, [[1, 2], []], [[1, "2"], ["x"]]),
    ("item count", {"type": "array", "minItems": 1, "maxItems": 2}, [[1]], [[], [1, 2, 3]]),
    ("unique", {"type": "array", "uniqueItems": True}, [[1, 2]], [[1, 1]]),
    (
        "prefixItems",
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
        [["a", 1]],
        [[1, "a"]],
    ),
    (
        "nested required",
        {"type": "object", "properties": {"qty": {"type": "integer"}}, "required": ["qty"]},
        [{"qty": 1}],
        [{}, {"qty": "1"}],
    ),
    (
        "nested closed",
        {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
        [{"a": 1}],
        [{"a": 1, "b": 2}],
    ),
    (
        "anyOf",
        {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]},
        [5, "x"],
        ["xy", None],
    ),
    ("oneOf", {"oneOf": [{"type": "integer"}, {"type": "number"}]}, [1.5], [1]),
    ("nullable", {"type": ["integer", "null"]}, [None, 2], ["2"]),
    ("$ref", {"$ref": "#/$defs/pos"}, [1], [0]),
    (
        "dependentRequired",
        {"type": "object", "dependentRequired": {"card": ["expiry"]}},
        [{"card": 1, "expiry": 2}, {}],
        [{"card": 1}],
    ),
    (
        "if-then",
        {
            "type": "object",
            "if": {"properties": {"kind": {"const": "file"}}},
            "then": {"required": ["path"]},
        },
        [{"kind": "file", "path": "p"}, {"kind": "url"}],
        [{"kind": "file"}],
    ),
    ("not", {"not": {"type": "string"}}, [1], ["s"]),
    (
        "deep",
        {
            "type": "object",
            "properties": {
                "rows": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"n": {"maximum": 3}}},
                }
            },
        },
        [{"rows": [{"n": 1}, {"n": 3}]}],
        [{"rows": [{"n": 1}, {"n": 4}]}],
    ),
]  # fmt: skip

GOOD = [
    pytest.param(schema, value, id=f"{name}-{i}")
    for name, schema, good, _ in CORPUS
    for i, value in enumerate(good)
]
BAD = [
    pytest.param(schema, value, id=f"{name}-{i}")
    for name, schema, _, bad in CORPUS
    for i, value in enumerate(bad)
]


def tool_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's argument schema: `v` as given, and a free-text `note`."""
    return {
        "type": "object",
        "properties": {"v": schema, "note": {"type": "string"}},
        "required": ["v"],
        "$defs": DEFS,
    }


class Probe:
    """A JSON-schema tool that records every call it gets."""

    def __init__(self, schema: dict[str, Any], name: str = "probe") -> None:
        self.calls: list[dict[str, Any]] = []

        def run(**kwargs: Any) -> str:
            self.calls.append(kwargs)
            return "ok"

        self.tool: BaseTool = StructuredTool(
            name=name, description="Records its calls.", args_schema=tool_schema(schema), func=run
        )


def give() -> BaseTool:
    """A tool whose output is the JSON value it is given as text."""

    def run(value: str) -> Any:
        return json.loads(value)

    return StructuredTool.from_function(run, name="give", description="Gives a JSON value.")


def problems(schema: dict[str, Any], args: dict[str, Any], **kw: Any) -> list[str]:
    return check_args(Probe(schema).tool, args, **kw)


# --- the keywords --------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "value"), GOOD)
def test_values_that_fit_pass_with_and_without_placeholders(schema: Any, value: Any) -> None:
    assert problems(schema, {"v": value}) == []
    assert problems(schema, {"v": value}, placeholders=False) == []


@pytest.mark.parametrize(("schema", "value"), BAD)
def test_every_keyword_is_enforced(schema: Any, value: Any) -> None:
    found = problems(schema, {"v": value})
    assert found, f"{value!r} passed {schema}"
    assert all("tool 'probe'" in p for p in found)
    assert any("'v" in p for p in found), found
    assert problems(schema, {"v": value}, placeholders=False) == found


def test_the_schemas_dialect_is_honoured() -> None:
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {"v": {"type": "number", "maximum": 1, "exclusiveMaximum": True}},
    }
    assert schema_problem(draft4) is None
    assert json_schema_problems("t", draft4, {"v": 0.5}) == []
    assert json_schema_problems("t", draft4, {"v": 1}) == [
        "argument 'v' of tool 't': 1 is greater than or equal to the maximum of 1"
    ]
    # The same keywords are not valid JSON Schema 2020-12 (the default).
    assert schema_problem({k: v for k, v in draft4.items() if k != "$schema"}) is not None


def test_messages_keep_the_established_wording() -> None:
    schema = {"type": "integer"}
    assert problems(schema, {}) == ["argument 'v' is required by tool 'probe'"]
    assert problems(schema, {"v": 1, "colour": "red"}) == [
        "argument 'colour' is not a parameter of tool 'probe'"
    ]
    assert problems(schema, {"v": "seven"}) == [
        "argument 'v' of tool 'probe' should be of type integer"
    ]
    nested = {"type": "object", "properties": {"qty": {"type": "integer"}}, "required": ["qty"]}
    assert problems(nested, {"v": {}}) == ["argument 'v.qty' is required by tool 'probe'"]
    rows = CORPUS[-1][1]
    assert problems(rows, {"v": {"rows": [{"n": 9}]}}) == [
        "argument 'v.rows.0.n' of tool 'probe': 9 is greater than the maximum of 3"
    ]


def test_extra_top_level_keys_pass_where_the_schema_allows_them() -> None:
    open_schema = {"type": "object", "properties": {"a": {}}, "additionalProperties": True}
    keyed = {"type": "object", "patternProperties": {"^x-": {"type": "string"}}}
    assert json_schema_problems("t", open_schema, {"a": 1, "b": 2}) == []
    assert json_schema_problems("t", keyed, {"x-a": "s", "other": 1}) == []
    assert json_schema_problems("t", keyed, {"x-a": 1}) == [
        "argument 'x-a' of tool 't' should be of type string"
    ]


def test_many_problems_are_cut_short_and_long_values_are_not_quoted_whole() -> None:
    many = problems({"type": "array", "items": {"type": "integer"}}, {"v": ["x"] * 1000})
    assert len(many) == MAX_PROBLEMS + 1
    assert many[-1] == "and more problems with the arguments of tool 'probe'"
    [long] = problems({"type": "string", "maxLength": 3}, {"v": "y" * 50_000})
    assert len(long) < 400
    assert long.startswith("argument 'v' of tool 'probe': 'yyyy")
    assert "is too long" in long


# --- schemas that cannot be used -----------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "object", "properties": {"v": {"type": "strin"}}}, "not valid JSON Schema at"),
        ({"type": "object", "properties": {"v": {"pattern": "("}}}, "not valid JSON Schema"),
        ({"type": "array"}, "does not describe an object"),
    ],
)
def test_an_invalid_schema_is_refused_by_build_graph(schema: Any, message: str) -> None:
    bad = StructuredTool(name="bad", description="x", args_schema=schema, func=lambda: 1)
    with pytest.raises(ValueError, match=message) as raised:
        build_graph(tools=[bad])
    assert str(raised.value).startswith("tool 'bad': ")
    # A tool that never went through build_graph is refused at the call instead.
    assert check_args(bad, {})[0].startswith("tool 'bad' cannot be called: its argument")


@pytest.fixture
def counting_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server serving a schema, recording every request."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"type": "integer"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_remote_ref_is_never_fetched(counting_server: tuple[str, list[str]]) -> None:
    url, seen = counting_server
    schema = {"type": "object", "properties": {"v": {"$ref": f"{url}/int.json"}}}
    found = json_schema_problems("t", schema, {"v": "x"})
    assert found == [
        f"tool 't' cannot be called: its argument schema has a $ref to '{url}/int.json'"
    ]
    assert seen == []


def test_a_schema_that_refers_to_itself_endlessly_is_an_error_not_a_crash() -> None:
    assert json_schema_problems("t", {"$ref": "#"}, {"v": 1}) == [
        "tool 't' cannot be called: its argument schema refers to itself endlessly"
    ]


# --- placeholders at plan time -------------------------------------------------------


def subtrees(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside `value`, `value` itself included."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from subtrees(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from subtrees(item, (*path, index))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return copy


@pytest.mark.parametrize(("schema", "value"), GOOD + BAD)
def test_a_whole_placeholder_is_never_refused(schema: Any, value: Any) -> None:
    """It may stand for any value, so also for one that fits."""
    assert problems(schema, {"v": "{{s1}}"}) == []
    assert problems(schema, {"v": "{{s1}}", "note": "{{s2}}"}) == []


@pytest.mark.parametrize(("schema", "value"), GOOD)
def test_placeholders_in_values_that_fit_pass_at_every_depth(schema: Any, value: Any) -> None:
    for path in subtrees(value):
        args = {"v": replaced(value, path, "{{s1}}")}
        assert problems(schema, args) == [], args


@pytest.mark.parametrize(("schema", "value"), BAD)
def test_a_placeholder_elsewhere_excuses_nothing(schema: Any, value: Any) -> None:
    expected = problems(schema, {"v": value})
    assert problems(schema, {"v": value, "note": "{{s1}}"}) == expected
    assert problems(schema, {"v": value, "note": "total: {{s1}}"}) == expected


def test_text_around_a_placeholder_is_still_text() -> None:
    assert problems({"type": "integer"}, {"v": "{{s1}} items"}) == [
        "argument 'v' of tool 'probe' should be of type integer"
    ]
    # Its content is not known yet: pattern, enum and lengths wait.
    for schema in ({"pattern": "^[a-z]+$"}, {"enum": ["a"]}, {"maxLength": 2}):
        assert problems({"type": "string", **schema}, {"v": "x{{s1}}"}) == []


def test_what_a_placeholder_cannot_change_is_checked_around_it() -> None:
    nested = {"type": "object", "properties": {"qty": {"type": "integer"}}, "required": ["qty"]}
    assert problems(nested, {"v": {"item": "{{s1}}"}}) == [
        "argument 'v.qty' is required by tool 'probe'"
    ]
    closed = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    assert problems(closed, {"v": {"a": "{{s1}}", "b": 1}}) == [
        "argument 'v.b' is not a parameter of tool 'probe'"
    ]
    assert problems({"type": "array", "maxItems": 1}, {"v": ["{{s1}}", "{{s1}}"]}) == [
        "argument 'v' of tool 'probe': ['{{s1}}', '{{s1}}'] is too long"
    ]
    assert problems({"type": "object"}, {"v": ["{{s1}}"]}) == [
        "argument 'v' of tool 'probe' should be of type object"
    ]
    assert problems({"type": "integer"}, {"v": 1, "{{s1}}": 2}) == [
        "argument '{{s1}}' is not a parameter of tool 'probe'"
    ]


def test_without_placeholders_the_text_is_checked_as_it_is() -> None:
    assert problems({"type": "integer"}, {"v": "{{s1}}"}, placeholders=False) == [
        "argument 'v' of tool 'probe' should be of type integer"
    ]
    assert problems({"enum": ["a"]}, {"v": "x{{s1}}"}, placeholders=False) != []


def test_the_pattern_used_for_placeholders_is_the_plans() -> None:
    assert REFERENCE.fullmatch("{{ s1 }}")
    assert problems({"type": "integer"}, {"v": " {{ s1 }} "}) == []


# --- through the graph ---------------------------------------------------------------

SCHEMA = {"type": "integer", "minimum": 1, "maximum": 10}


async def test_a_plan_outside_the_schema_is_sent_back_to_the_planner() -> None:
    probe = Probe(SCHEMA)
    h = Harness(
        planner=[
            plan_reply([step("s1", "probe", {"v": 99})]),
            plan_reply([step("s1", "probe", {"v": 9})]),
        ],
        replanner=[replan_reply("finish", answer="done")],
        tools=[probe.tool],
    )
    out = await h.run({"goal": "g"}, context())
    assert out["status"] == "completed"
    assert probe.calls == [{"v": 9}]
    retry = h.planner.calls[1].prompt
    assert "argument 'v' of tool 'probe': 99 is greater than the maximum of 10" in retry


async def test_a_reviewers_edit_outside_the_schema_is_sent_back() -> None:
    probe = Probe(SCHEMA)
    h = Harness(
        planner=[plan_reply([step("s1", "probe", {"v": 2})])],
        replanner=[replan_reply("finish", answer="done")],
        tools=[probe.tool],
    )
    await h.run({"goal": "g"}, Context())
    edited = {"steps": [step("s1", "probe", {"v": 0})]}
    again = interrupt_of(await h.run(Command(resume={"type": "edit", "plan": edited})))
    assert again["type"] == "plan_review"
    assert (
        "edited plan: step s1: argument 'v' of tool 'probe': 0 is less than the minimum of 1"
        in again["errors"]
    )
    assert probe.calls == []


async def test_a_step_approval_edit_outside_the_schema_asks_again() -> None:
    probe = Probe(SCHEMA)
    probe.tool.metadata = {"requires_approval": True}
    h = Harness(
        planner=[plan_reply([step("s1", "probe", {"v": 2})])],
        replanner=[replan_reply("finish", answer="done")],
        tools=[probe.tool],
    )
    await h.run({"goal": "g"}, context())
    edit = {"type": "edit", "edited_action": {"name": "probe", "args": {"v": 11}}}
    again = interrupt_of(await h.run(Command(resume={"decisions": [edit]}), context()))
    assert again["type"] == "step_approval"
    assert again["errors"] == [
        "step s1: argument 'v' of tool 'probe': 11 is greater than the maximum of 10"
    ]
    assert probe.calls == []


@pytest.mark.parametrize(("schema", "value"), BAD)
async def test_the_executor_models_arguments_never_reach_the_tool_outside_the_schema(
    schema: Any, value: Any
) -> None:
    probe = Probe(schema)
    attempts = 2
    h = Harness(
        planner=[plan_reply([step("s1", "probe", None)])],
        executor=[tool_call_reply("probe", {"v": value})] * attempts,
        replanner=[replan_reply("finish", answer="gave up")],
        tools=[probe.tool],
    )
    out = await h.run({"goal": "g"}, context(step_attempts=attempts))
    assert probe.calls == []
    result = out["results"]["s1"]
    assert result["status"] == "failed"
    assert result["attempts"] == attempts
    assert "the executor model's arguments: " in result["error"]
    assert "tool 'probe'" in result["error"]


async def test_a_placeholder_in_the_executor_models_reply_is_text() -> None:
    probe = Probe({"type": "integer"})
    h = Harness(
        planner=[
            plan_reply([step("s0", "give", {"value": "3"}), step("s1", "probe", None, ["s0"])])
        ],
        executor=[tool_call_reply("probe", {"v": "{{s0}}"})],
        replanner=[replan_reply("finish", answer="gave up")],
        tools=[give(), probe.tool],
    )
    out = await h.run({"goal": "g"}, context(step_attempts=1))
    assert out["results"]["s1"]["status"] == "failed"
    assert "should be of type integer" in out["results"]["s1"]["error"]
    assert probe.calls == []


@pytest.mark.parametrize(("schema", "value"), GOOD + BAD)
async def test_after_substitution_the_value_is_checked_in_full(schema: Any, value: Any) -> None:
    probe = Probe(schema)
    fits = not problems(schema, {"v": value}, placeholders=False)
    plan = [
        step("s1", "give", {"value": json.dumps(value)}),
        step("s2", "probe", {"v": "{{s1}}"}, ["s1"]),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="done")],
        tools=[give(), probe.tool],
    )
    out = await h.run({"goal": "g"}, context())
    result = out["results"]["s2"]
    if fits:
        assert result["status"] == "done"
        # The output replaces the placeholder as it is: a number stays a number.
        assert probe.calls == [{"v": value}]
    else:
        assert result["status"] == "failed"
        assert result["error"].startswith("StepArgumentsError: ")
        assert "tool 'probe'" in result["error"]
        assert probe.calls == []


def test_validate_plan_reports_schema_errors_under_the_step() -> None:
    probe = Probe(SCHEMA)
    plan = Plan.model_validate({"steps": [step("a", "probe", {"v": 0, "note": 5})]})
    errors = validate_plan(plan, {"probe": probe.tool}, max_steps=5)
    assert [str(e) for e in errors] == [
        "step a: argument 'v' of tool 'probe': 0 is less than the minimum of 1",
        "step a: argument 'note' of tool 'probe' should be of type string",
    ]


# --- patterns that never end ----------------------------------------------------------

BOMB = r"^(a|aa)+$"
"""Backtracks without end on a run of a's that does not match: `re` would take years."""


async def guarded(schema: dict[str, Any], args: dict[str, Any]) -> list[str]:
    """`json_schema_problems` in a thread, failing the test instead of hanging it."""
    return await asyncio.wait_for(
        asyncio.to_thread(json_schema_problems, "t", schema, args), timeout=60
    )


async def test_a_pattern_that_never_ends_is_stopped_and_refuses_the_value() -> None:
    schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": BOMB}}}
    assert await guarded(schema, {"v": "a" * 10}) == []
    assert await guarded(schema, {"v": "a" * 60 + "!"}) == [
        f"argument 'v' of tool 't': matching the pattern {BOMB!r} took over {PATTERN_TIMEOUT:g}s"
    ]


async def test_a_key_pattern_that_never_ends_is_stopped_too() -> None:
    keyed = {"type": "object", "patternProperties": {BOMB: {"type": "integer"}}}
    closed = {**keyed, "additionalProperties": False}
    key = "a" * 60 + "!"
    # Neither matched nor known to miss: the value is checked, and the key is not allowed.
    assert await guarded(keyed, {key: "x"}) == [
        f"argument '{key}' of tool 't' should be of type integer"
    ]
    assert await guarded(closed, {key: 1}) == [f"argument '{key}' is not a parameter of tool 't'"]
    assert await guarded(closed, {"aaaa": 1}) == []
