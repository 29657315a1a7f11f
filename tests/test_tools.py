import math
import os
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool, ToolException
from langgraph.prebuilt import ToolRuntime

from helpers import Harness, step
from planexec import Context
from planexec.scripted import plan_reply
from planexec.tools import calculator, default_tools, file_tools
from planexec.tools.calculator import CalculatorError, evaluate
from planexec.tools.files import WorkspaceError

# --- calculator ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2+3*4", 14),
        ("(12 * 4) + 5", 53),
        ("7/2", 3.5),
        ("2**10", 1024),
        ("10//3", 3),
        ("-5 % 3", 1),
        ("+4 - -1", 5),
        ("sqrt(16)", 4),
        ("round(2.567, 2)", 2.57),
        ("max(1, 7, 3)", 7),
        ("min(4, -2)", -2),
        ("abs(-3)", 3),
        ("floor(2.7)", 2),
        ("ceil(2.1)", 3),
        ("pi", math.pi),
        ("e", math.e),
        ("  1 + 1  ", 2),
        ("10**100", 10**100),
    ],
)
def test_calculator_results(expression: str, value: float) -> None:
    assert calculator.invoke({"expression": expression}) == value


@pytest.mark.parametrize(
    ("expression", "value"),
    [("8/2", 4), ("2.5*2", 5), ("1e3", 1000), ("sqrt(9)", 3), ("-6/3", -2)],
)
def test_whole_floats_become_ints(expression: str, value: int) -> None:
    result = evaluate(expression)
    assert result == value
    assert type(result) is int


@pytest.mark.parametrize(("expression", "value"), [("0.5", 0.5), ("1e20", 1e20), ("7/2", 3.5)])
def test_other_floats_stay_floats(expression: str, value: float) -> None:
    # 1e20 is whole but beyond 2**53, where a float no longer counts integers exactly.
    result = evaluate(expression)
    assert result == value
    assert type(result) is float


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # names and calls
        ("x + 1", "not allowed in arithmetic: 'x'"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("abs(x=1)", "unknown function 'abs'"),
        ("(lambda: 1)()", "not allowed in arithmetic: '(lambda: 1)()'"),
        # attributes
        ("(1).real", "not allowed in arithmetic: '1 .real'"),
        ("math.pi", "not allowed in arithmetic: 'math.pi'"),
        ("sqrt.__class__", "not allowed in arithmetic: 'sqrt.__class__'"),
        # other syntax
        ("[1, 2]", "not allowed in arithmetic: '[1, 2]'"),
        ("1 if 1 else 2", "not allowed in arithmetic: '1 if 1 else 2'"),
        ("1 < 2", "not allowed in arithmetic: '1 < 2'"),
        ("~1", "not allowed in arithmetic: '~1'"),
        ("'a'", "'a' is not a number"),
        ("2 +", "not an arithmetic expression: '2 +'"),
        # booleans are not numbers
        ("True + 1", "True is not a number"),
        ("max(False, 1)", "False is not a number"),
        # huge exponents and results
        ("2**100000", "the exponent 100000 is too large"),
        ("9**9**9", "the exponent 387420489 is too large"),
        ("10**99 * 10**5", "the result is too large"),
        ("(10.0**300)**2", "the result is too large"),
        ("1e999", "the result is not a finite number"),
        ("1e999 - 1e999", "the result is not a finite number"),
        ("round(1e999)", "round: cannot convert float infinity to integer"),
        ("(-8)**(1/3)", "the result is not a real number"),
        # division by zero
        ("1/0", "division by zero"),
        ("5 // 0", "division by zero"),
        ("10 % 0", "division by zero"),
        # bad function arguments
        ("sqrt(-1)", "sqrt: math domain error"),
        ("min()", "min: min expected at least 1 argument, got 0"),
        # empty and too long
        ("", "the expression is empty"),
        ("   ", "the expression is empty"),
        ("1+" * 500 + "1", "the expression is longer than 1000 characters"),
    ],
)
def test_calculator_errors(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError) as caught:
        calculator.invoke({"expression": expression})
    assert str(caught.value) == message
    # A ToolException: LangChain can hand the message back to a model.
    assert isinstance(caught.value, ToolException)


def test_an_expression_of_exactly_the_maximum_length_is_allowed() -> None:
    expression = "1+" * 499 + "11"
    assert len(expression) == 1000
    assert evaluate(expression) == 510


def test_calculator_takes_one_string_argument() -> None:
    assert calculator.name == "calculator"
    assert set(calculator.tool_call_schema.model_json_schema()["properties"]) == {"expression"}
    assert calculator.name in [t.name for t in default_tools()]


# --- file tools: calling them the way the executor does ------------------------------------


def runtime(context: Any) -> ToolRuntime[Any, Any]:
    """A ToolRuntime built as `execution.invoke_tool` builds it."""
    return ToolRuntime(
        state={},
        context=context,
        config={},
        stream_writer=lambda _: None,
        tool_call_id="thread:r1:s1",
        store=None,
        tools=[],
    )


def call(tool: BaseTool, context: Any = None, **args: Any) -> Any:
    return tool.invoke({**args, "runtime": runtime(context or Context())})


def tools_by_name(workspace: Path | None) -> dict[str, BaseTool]:
    return {t.name: t for t in file_tools(workspace)}


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` (links not followed) with its content."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = (
                "<link>" if path.is_symlink() else path.read_text(errors="replace")
            )
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    root = tmp_path / "outside"
    root.mkdir()
    (root / "secret.txt").write_text("top secret")
    return root


def test_write_read_and_list_inside_the_workspace(workspace: Path) -> None:
    t = tools_by_name(workspace)
    assert call(t["write_file"], path="notes/a.txt", content="héllo") == (
        "wrote 6 bytes to notes/a.txt"
    )
    assert (workspace / "notes" / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert call(t["read_file"], path="notes/a.txt") == "héllo"
    call(t["write_file"], path="notes/a.txt", content="replaced")
    assert call(t["read_file"], path="./notes/a.txt") == "replaced"
    call(t["write_file"], path="top.txt", content="")
    assert call(t["list_files"]) == ["notes/", "top.txt"]
    assert call(t["list_files"], recursive=True) == ["notes/", "notes/a.txt", "top.txt"]
    assert call(t["list_files"], path="notes") == ["notes/a.txt"]


def test_absolute_paths_inside_the_workspace_are_allowed(workspace: Path) -> None:
    t = tools_by_name(workspace)
    call(t["write_file"], path=str(workspace / "abs.txt"), content="x")
    assert call(t["read_file"], path="abs.txt") == "x"
    assert call(t["read_file"], path="sub/../abs.txt") == "x"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../escape.txt", "is outside the workspace"),
        ("notes/../../escape.txt", "is outside the workspace"),
        ("{outside}/escape.txt", "is outside the workspace"),
        ("{outside}/secret.txt", "is outside the workspace"),
        # Absolute paths point into the test's own tmp dir, never at a system file: if
        # confinement ever broke, a suite run as root must not write anywhere real.
        ("{outside}/../escape-abs.txt", "is outside the workspace"),
        ("..", "is outside the workspace"),
        ("notes\\escape.txt", "use '/' to separate directories"),
        ("..\\escape.txt", "use '/' to separate directories"),
        ("a\x00b.txt", "the path contains a NUL character"),
        ("", "the path is empty"),
        ("   ", "the path is empty"),
    ],
)
@pytest.mark.parametrize("tool_name", ["write_file", "read_file", "list_files"])
def test_paths_leaving_the_workspace_are_refused(
    tool_name: str, path: str, message: str, workspace: Path, outside: Path, tmp_path: Path
) -> None:
    t = tools_by_name(workspace)
    before = tree(tmp_path)
    args = {"path": path.format(outside=outside)}
    if tool_name == "write_file":
        args["content"] = "pwned"
    with pytest.raises(WorkspaceError, match=message):
        call(t[tool_name], **args)
    assert tree(tmp_path) == before


@pytest.fixture
def links(workspace: Path, outside: Path) -> Path:
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    (workspace / "linkdir").symlink_to(outside, target_is_directory=True)
    (workspace / "dangling.txt").symlink_to(outside / "not-yet.txt")
    return workspace


@pytest.mark.parametrize(
    ("tool_name", "args"),
    [
        ("read_file", {"path": "link.txt"}),
        ("read_file", {"path": "linkdir/secret.txt"}),
        ("write_file", {"path": "link.txt", "content": "pwned"}),
        ("write_file", {"path": "linkdir/new.txt", "content": "pwned"}),
        ("write_file", {"path": "linkdir/secret.txt", "content": "pwned"}),
        ("write_file", {"path": "dangling.txt", "content": "pwned"}),
        ("list_files", {"path": "linkdir"}),
    ],
)
def test_symlinks_pointing_outside_are_refused(
    tool_name: str, args: dict[str, str], links: Path, outside: Path
) -> None:
    t = tools_by_name(links)
    with pytest.raises(WorkspaceError, match="is outside the workspace"):
        call(t[tool_name], **args)
    assert tree(outside) == {"secret.txt": "top secret"}


def test_a_recursive_listing_does_not_follow_links_out(links: Path) -> None:
    listed = call(tools_by_name(links)["list_files"], recursive=True)
    assert listed == ["dangling.txt", "link.txt", "linkdir"]
    assert not any("secret" in name for name in listed)


def test_a_symlink_inside_pointing_inside_is_fine(workspace: Path) -> None:
    (workspace / "real.txt").write_text("real")
    (workspace / "alias.txt").symlink_to(workspace / "real.txt")
    assert call(tools_by_name(workspace)["read_file"], path="alias.txt") == "real"


@pytest.mark.parametrize(
    ("tool_name", "args", "message"),
    [
        ("read_file", {"path": "missing.txt"}, "'missing.txt' is not a file in the workspace"),
        ("read_file", {"path": "sub"}, "'sub' is not a file in the workspace"),
        ("read_file", {"path": "binary.bin"}, "'binary.bin' is not UTF-8 text"),
        ("write_file", {"path": "sub", "content": "x"}, "'sub' is a directory"),
        ("write_file", {"path": ".", "content": "x"}, "'.' is a directory"),
        ("list_files", {"path": "binary.bin"}, "'binary.bin' is not a directory in the workspace"),
        ("list_files", {"path": "missing"}, "'missing' is not a directory in the workspace"),
    ],
)
def test_file_tool_errors(
    tool_name: str, args: dict[str, str], message: str, workspace: Path
) -> None:
    (workspace / "sub").mkdir()
    (workspace / "binary.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(WorkspaceError) as caught:
        call(tools_by_name(workspace)[tool_name], **args)
    assert str(caught.value) == message


def test_without_a_fixed_workspace_the_context_workspace_is_used(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    t = tools_by_name(None)
    call(t["write_file"], Context(workspace=str(first)), path="a.txt", content="one")
    # A context given as a dict works too.
    call(t["write_file"], {"workspace": str(second)}, path="a.txt", content="two")
    assert tree(first) == {"a.txt": "one"}
    assert tree(second) == {"a.txt": "two"}
    assert call(t["read_file"], Context(workspace=str(first)), path="a.txt") == "one"
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        call(t["read_file"], Context(workspace=str(first)), path="../second/a.txt")


def test_a_fixed_workspace_wins_over_the_context(workspace: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    call(
        tools_by_name(workspace)["write_file"],
        Context(workspace=str(other)),
        path="a.txt",
        content="x",
    )
    assert tree(workspace) == {"a.txt": "x"}
    assert tree(other) == {}


async def test_a_run_uses_the_context_workspace(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    steps = [
        step("s1", tool="write_file", args={"path": "out/report.txt", "content": "42 apples"}),
        step("s2", tool="read_file", args={"path": "out/report.txt"}, depends_on=["s1"]),
    ]
    h = Harness(planner=[plan_reply(steps)], tools=file_tools())
    out = await h.run(
        {"goal": "write and read a report"},
        Context(review="never", replan_policy="never", workspace=str(work)),
    )
    assert out["status"] == "completed"
    assert out["answer"] == "42 apples"
    assert tree(work) == {"out/report.txt": "42 apples"}
    assert h.executor.calls == []


async def test_a_run_refuses_a_path_outside_the_workspace(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    steps = [step("s1", tool="write_file", args={"path": "../escaped.txt", "content": "x"})]
    h = Harness(planner=[plan_reply(steps)], tools=file_tools())
    out = await h.run(
        {"goal": "escape"},
        Context(
            review="never",
            replan_policy="never",
            workspace=str(work),
            retry_initial_interval=0,
        ),
    )
    assert out["status"] == "failed"
    result = out["results"]["s1"]
    assert result["status"] == "failed"
    assert result["error"] == "WorkspaceError: '../escaped.txt' is outside the workspace"
    assert result["attempts"] == 1
    assert not (tmp_path / "escaped.txt").exists()
    assert tree(tmp_path) == {}
