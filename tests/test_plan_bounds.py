"""Issue 18, item 6: plan validation is iterative and bounded, and never raises.

A plan comes from a model, a person's edit or `update_state`, so every shape is tried:
long chains listed newest-first, deep `args`, cyclic Python objects, huge ids and
names, cycles thousands of steps long, thousands of unknown dependencies. Each is
refused (or accepted) with a short list of readable errors, and a bad edit or reply
never stops the thread: the next decision still works.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from helpers import ARITHMETIC, CLI_MODELS, Harness, cli, interrupt_of, scripted_models, step
from planexec import Context
from planexec.plan import (
    MAX_ARGS_DEPTH,
    MAX_ERRORS,
    Plan,
    PlanError,
    StepDict,
    args_size,
    nesting_problem,
    parse_plan,
    references,
    topological_order,
    validate_plan,
)
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import default_tools

TOOLS = {t.name: t for t in default_tools()}


def calc(i: int, deps: list[int]) -> dict[str, Any]:
    return step(f"s{i}", args={"expression": "1"}, depends_on=[f"s{d}" for d in deps])


def chain(n: int) -> list[dict[str, Any]]:
    """s1 <- s2 <- ... <- sn, listed newest first: the order that broke recursion."""
    return [calc(i, [i - 1] if i > 1 else []) for i in range(n, 0, -1)]


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def cyclic() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


# Each builds the JSON data of a hostile plan, and says which error it must get.
HOSTILE: dict[str, tuple[Callable[[], Any], str]] = {
    "a chain of 3,000 listed newest-first, closed into a cycle": (
        lambda: {"steps": [calc(1, [3000]), *chain(3000)[:-1]]},
        "dependency cycle: ",
    ),
    "a cycle through 5,000 steps": (
        lambda: {"steps": [calc(i, [i % 5000 + 1]) for i in range(1, 5001)]},
        "dependency cycle: ",
    ),
    "args nested 40 levels": (
        lambda: {"steps": [step("s1", args={"expression": "1", "x": nested(40)})]},
        f"nest deeper than {MAX_ARGS_DEPTH} levels",
    ),
    "args nested 5,000 levels": (
        lambda: {"steps": [step("s1", args={"expression": "1", "x": nested(5000)})]},
        "nest deeper than",
    ),
    "args holding themselves": (
        lambda: {"steps": [step("s1", args={"expression": "1", "x": cyclic()})]},
        "nest deeper than",
    ),
    "a description nested 3,000 levels instead of text": (
        lambda: {"steps": [{**step("s1", args={"expression": "1"}), "description": nested(3000)}]},
        "nest deeper than",
    ),
    "depends_on nested 3,000 levels": (
        lambda: {"steps": [{**step("s1", args={"expression": "1"}), "depends_on": nested(3000)}]},
        "nest deeper than",
    ),
    "an id of a million characters": (
        lambda: {"steps": [step("s" * 1_000_000, args={"expression": "1"})]},
        "id: String should match pattern",
    ),
    "a tool name of a million characters": (
        lambda: {"steps": [step("s1", tool="t" * 1_000_000, args={"expression": "1"})]},
        "unknown tool 'tttt",
    ),
    "100,000 unknown dependencies": (
        lambda: {"steps": [step("s1", tool=None, depends_on=[f"x{i}" for i in range(100_000)])]},
        "which is not in the plan",
    ),
    "100,000 steps": (
        lambda: {"steps": [calc(i, []) for i in range(100_000)]},
        "the plan has 100000 steps",
    ),
    "an expression of half a million unclosed references": (
        lambda: {"steps": [step("s1", args={"expression": "{{" * 500_000})]},
        "",
    ),
}


def problems(data: Any, **limits: Any) -> list[PlanError]:
    """What parse_plan and validate_plan say about `data`, as the review node asks them."""
    parsed, errors = parse_plan(data, max_steps=20_000)
    if parsed is None:
        return errors
    return validate_plan(parsed, TOOLS, **{"max_steps": 20_000, **limits})


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_plans_get_a_short_list_of_readable_errors_and_never_raise(name: str) -> None:
    build, expected = HOSTILE[name]
    errors = problems(build(), max_args_chars=20_000, max_text_chars=4_000)
    if expected:
        assert any(expected in str(e) for e in errors), errors[:3]
    assert len(errors) <= MAX_ERRORS + 1
    assert all(len(str(e)) < 1_000 for e in errors)


def test_a_limit_exceeded_is_the_only_error_reported() -> None:
    unknown = step("s1", tool="nope", depends_on=["ghost"])
    many = {"steps": [unknown, *[calc(i, []) for i in range(2, 30)]]}
    assert [str(e) for e in problems(many, max_steps=10)] == [
        "the plan has 29 steps to run; the most allowed is 10"
    ]
    big = {"steps": [unknown, step("s2", args={"expression": "1" * 500})]}
    assert [str(e) for e in problems(big, max_args_chars=200)] == [
        "step s2: args are 518 characters of JSON; the most allowed is 200"
    ]
    wordy = {"steps": [unknown, {**calc(2, []), "description": "w" * 301}]}
    assert [str(e) for e in problems(wordy, max_text_chars=300)] == [
        "step s2: the description is 301 characters long; the most allowed is 300"
    ]


def test_many_errors_are_capped_and_counted() -> None:
    steps = [step(f"s{i}", tool="nope") for i in range(50)]
    errors = problems({"steps": steps})
    assert len(errors) == MAX_ERRORS + 1
    assert str(errors[-1]) == "and more: the rest of the plan was not checked; fix these first"
    pairs = [calc(i, [i + 1 if i % 2 else i - 1]) for i in range(1, 61)]  # 30 two-step cycles
    errors = problems({"steps": pairs})
    assert len(errors) == MAX_ERRORS + 1
    assert str(errors[0]) == "step s2: dependency cycle: s1 -> s2 -> s1"
    assert str(errors[-1]) == f"and {30 - MAX_ERRORS} more error(s)"


def test_a_long_cycle_names_its_start_and_end_and_is_cut_in_between() -> None:
    errors = problems({"steps": [calc(i, [i % 100 + 1]) for i in range(1, 101)]})
    [error] = errors
    assert str(error) == (
        "step s100: dependency cycle: s1 -> s2 -> s3 -> s4 -> s5 -> s6 -> s7 -> s8 -> s9 -> "
        "s10 -> s11 -> s12 -> ... -> s1"
    )


def test_args_at_the_depth_limit_are_accepted_and_one_deeper_are_not() -> None:
    inside = nested(MAX_ARGS_DEPTH - 1)
    ok = {"steps": [step("s1", tool="write_file", args={"path": "a", "content": "x", "m": inside})]}
    parsed, errors = parse_plan(ok)
    assert errors == []
    assert parsed is not None
    deeper = nested(MAX_ARGS_DEPTH)
    bad = {
        "steps": [step("s1", tool="write_file", args={"path": "a", "content": "x", "m": deeper})]
    }
    _, errors = parse_plan(bad)
    assert [str(e) for e in errors] == [f"step s1: args nest deeper than {MAX_ARGS_DEPTH} levels"]
    # A plan that skips parse_plan (a model's reply, say) meets the same check.
    with pytest.raises(ValueError, match=f"args nest deeper than {MAX_ARGS_DEPTH} levels"):
        Plan.model_validate(bad)


def test_nesting_problem_and_references_take_any_input() -> None:
    assert nesting_problem(cyclic(), 10) == "nest deeper than 10 levels"
    assert nesting_problem({"a": [1, {"b": 2}]}, 3) is None
    assert nesting_problem({"a": [1, {"b": 2}]}, 2) == "nest deeper than 2 levels"
    assert list(references(nested(5000, "{{s1}} {{s2}}"))) == ["s1", "s2"]
    assert list(references({"a": ["{{x}}", {"b": "{{y}}"}], "c": "{{z}}"})) == ["x", "y", "z"]


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"a": 1, "b": [1, 2.5, None, True, False, 'é\n"\\'], "c": {"d": {}}},
        {"control": "\x00\x1f\t", "unicode": "日本", "big": 10**80, "neg": -0.0},
        [[[[[]]]]],
        "text",
        {1: "int key", None: "null key", False: "bool key", 2.5: "float key"},
    ],
)
def test_args_size_is_the_length_of_the_json_text(value: Any) -> None:
    assert args_size(value) == len(json.dumps(value, ensure_ascii=False, default=str))


def test_args_size_stops_counting_soon_after_the_limit() -> None:
    assert args_size(cyclic(), 100) > 1000
    assert args_size({"x": "y" * 10_000_000}, 100) > 1000
    assert args_size({"n": 10**5000}, 100) > 1000  # no JSON text exists for it


# --- topological order -------------------------------------------------------------------


def rounds_order(steps: list[StepDict]) -> list[str]:
    """The order as the first implementation computed it, by rescanning: the reference."""
    ids = {s["id"] for s in steps}
    placed: set[str] = set()
    ordered: list[str] = []
    remaining = list(steps)
    while remaining:
        ready = [s for s in remaining if all(d in placed or d not in ids for d in s["depends_on"])]
        assert ready
        placed.update(s["id"] for s in ready)
        ordered.extend(s["id"] for s in ready)
        remaining = [s for s in remaining if s["id"] not in placed]
    return ordered


@pytest.mark.parametrize("seed", range(40))
def test_topological_order_is_the_order_it_always_was(seed: int) -> None:
    # Task ids follow this order, so a run that resumes after an upgrade must find it unchanged.
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    order = list(range(n))
    rng.shuffle(order)
    steps: list[StepDict] = []
    for position, i in enumerate(order):
        earlier = order[:position]
        deps = rng.sample(earlier, k=min(len(earlier), rng.randint(0, 3)))
        if rng.random() < 0.2:
            deps.append(10_000 + i)  # a dependency outside the steps is ignored
        steps.append(calc(i, deps))  # type: ignore[arg-type]
    rng.shuffle(steps)
    assert [s["id"] for s in topological_order(steps)] == rounds_order(steps)


def test_topological_order_of_a_long_chain_listed_newest_first() -> None:
    steps: list[StepDict] = chain(20_000)  # type: ignore[assignment]
    assert [s["id"] for s in topological_order(steps)] == [f"s{i}" for i in range(1, 20_001)]


# --- through the graph: a bad plan never stops the thread ---------------------------------

CYCLIC_CHAIN = [calc(1, [3000]), *chain(3000)[:-1]]
DEEP = [step("s1", args={"expression": "1", "x": nested(100)})]
HUGE_ID = [step("s" * 100_000, args={"expression": "1"})]
BAD_PLANS = {"cyclic chain": CYCLIC_CHAIN, "deep args": DEEP, "huge id": HUGE_ID}
WIDE = Context(max_plan_steps=5000, retry_initial_interval=0.0)


@pytest.mark.parametrize("bad", BAD_PLANS)
async def test_a_bad_edit_pauses_again_and_later_decisions_still_work(bad: str) -> None:
    h = Harness(planner=[plan_reply(ARITHMETIC)], replanner=[replan_reply("finish", answer="43")])
    first = interrupt_of(await h.run({"goal": "count"}, WIDE))
    edit = {"type": "edit", "plan": {"steps": BAD_PLANS[bad]}}
    again = interrupt_of(await h.run(Command(resume=edit), WIDE))
    assert again["type"] == "plan_review"
    assert again["errors"]
    assert all(e.startswith("edited plan: ") for e in again["errors"])
    assert again["plan"] == first["plan"]
    # The edit is kept as a resume value, and replayed by every later decision.
    cancelled = interrupt_of(await h.run(Command(resume={"type": "reject"}), WIDE))
    assert cancelled["errors"] == ["reject decision: message: Field required"]
    out = await h.run(Command(resume={"type": "approve"}), WIDE)
    assert (out["status"], out["answer"]) == ("completed", "43")


@pytest.mark.parametrize("bad", BAD_PLANS)
async def test_a_planner_reply_holding_a_bad_plan_is_asked_again(bad: str) -> None:
    h = Harness(
        planner=[plan_reply(BAD_PLANS[bad]), plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    out = await h.run({"goal": "count"}, Context(review="never", max_plan_steps=5000))
    assert (out["status"], out["answer"]) == ("completed", "43")
    assert len(h.planner.calls) == 2
    assert "invalid" in h.planner.calls[1].prompt.lower()


@pytest.mark.parametrize("bad", BAD_PLANS)
async def test_a_replanner_reply_holding_a_bad_plan_is_asked_again(bad: str) -> None:
    h = Harness(
        planner=[plan_reply(ARITHMETIC)],
        replanner=[
            replan_reply("replan", steps=BAD_PLANS[bad]),
            replan_reply("finish", answer="43"),
        ],
    )
    out = await h.run({"goal": "count"}, Context(review="never", max_plan_steps=5000))
    assert (out["status"], out["answer"]) == ("completed", "43")
    assert len(h.replanner.calls) == 2


def test_the_cli_answers_a_bad_edit_file_with_the_errors_not_a_traceback(
    cli_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripted_models(
        monkeypatch,
        planner=[plan_reply(ARITHMETIC)],
        replanner=[replan_reply("finish", answer="43")],
    )
    code, _, err = cli(capsys, "run", "count", "--thread", "t1", *CLI_MODELS)
    assert code == 0, err
    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps({"steps": CYCLIC_CHAIN}))
    code, out, err = cli(capsys, "resume", "t1", "--edit", str(edit))
    assert code == 2, err
    assert "Traceback" not in out + err
    assert "edited plan: the plan has 3000 steps; the most allowed is 20" in err
    code, out, err = cli(capsys, "resume", "t1", "--approve", "--json")
    assert code == 0, err
    assert json.loads(out)["answer"] == "43"
