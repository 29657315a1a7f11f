"""Issue 18, items 2 and 11: the built-in tools' cost is bounded, and special files stay out.

A pure Python computation holds the interpreter until it ends, so no timeout can stop
it: the calculator must refuse, before computing, anything that would take long. Each
vector below took seconds to minutes before (`round` with a huge negative digit count,
powers of big literals or of floats turned into integers...). Two kinds of check:

- a structural one that cannot flake: every integer the calculator's operations are
  given or return has at most a few hundred bits (`sizes` records them all);
- a generous CPU-time bound per expression, as a hang detector (the slowest vector
  took minutes; a bounded one takes microseconds).

The file tools read and write only regular files with one link: hard links to files
outside the workspace, FIFOs, sockets and devices are refused without blocking.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolRuntime

import planexec.tools.files as files_module
from helpers import Harness, context, step
from planexec import Context
from planexec.scripted import plan_reply, replan_reply
from planexec.tools import calculator, file_tools
from planexec.tools.calculator import MAX_MAGNITUDE, CalculatorError, evaluate
from planexec.tools.files import LISTING_CUT, MAX_LISTED, MAX_SCANNED, WorkspaceError

# `planexec.tools.calculator` is also the name of the tool the package exports.
calculator_module = importlib.import_module("planexec.tools.calculator")

BITS = 1100
"""No integer an operation sees or makes may be longer: a product of two bounded ones has
at most 666 bits, an integer made from a float (`floor(1e308)`) at most 1024."""


@pytest.fixture
def sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bit length of every integer given to or returned by the calculator's operations."""
    seen: list[int] = []

    def measured(function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            seen.extend(abs(a).bit_length() for a in args if isinstance(a, int))
            result = function(*args)
            if isinstance(result, int):
                seen.append(abs(result).bit_length())
            return result

        return run

    for table in ("_BINARY", "_FUNCTIONS", "_UNARY"):
        original = getattr(calculator_module, table)
        monkeypatch.setattr(
            calculator_module, table, {key: measured(f) for key, f in original.items()}
        )
    return seen


COSTLY = [
    "round(1, -10**7)",
    "round(10**100, -10**9)",
    "round(1.5, -10**18)",
    "round(7, 10**9)",
    "9" * 98 + " ** 9999",
    "9" * 980 + " ** 2",
    "floor(1e308) ** 10000",
    "ceil(1e300) ** 300",
    "round(1e300) * round(1e300)",
    "floor(1e308)",
    "2 ** 2 ** 2 ** 2 ** 2",
    "(10**50) * (10**50) * (10**50)",
    "(((2**64)**2)**2)**2",
    "max(10**100, 1) ** 10000",
    "abs(-(10**100)) ** 9999",
    "10**100 % 7 ** 9999",
    "sqrt(10**100) ** 9999",
    "min(" + ", ".join(["10**99"] * 60) + ") ** 9999",
    "-" * 990 + "1",
    "sqrt(" * 150 + "4" + ")" * 150,
    "(" * 199 + "1" + ")" * 199,
    "1" + "+1" * 499,
    "2**-10000 + (-2)**9999",
]


@pytest.mark.parametrize("expression", COSTLY)
def test_costly_expressions_are_refused_before_they_are_computed(
    expression: str, sizes: list[int]
) -> None:
    began = time.process_time()
    with contextlib.suppress(CalculatorError):
        evaluate(expression)
    assert time.process_time() - began < 0.5  # they took seconds to minutes before
    assert max(sizes, default=0) <= BITS


def random_expression(rng: random.Random, depth: int = 0) -> str:
    """A random expression mixing big literals, functions, powers and nesting."""
    if depth > 6 or rng.random() < 0.25:
        return rng.choice(
            [
                str(rng.randint(-(10**6), 10**6)),
                "9" * rng.randint(1, 120),
                "1e308",
                "0.5",
                "pi",
                f"{rng.random() * 10 ** rng.randint(0, 300)}",
                "10**100",
            ]
        )
    kind = rng.random()
    if kind < 0.5:
        op = rng.choice(["+", "-", "*", "/", "//", "%", "**", "**", "**"])
        return f"({random_expression(rng, depth + 1)}) {op} ({random_expression(rng, depth + 1)})"
    if kind < 0.85:
        name = rng.choice(["abs", "round", "min", "max", "sqrt", "floor", "ceil"])
        count = 2 if name in ("round", "min", "max") else 1
        args = ", ".join(random_expression(rng, depth + 1) for _ in range(count))
        return f"{name}({args})"
    return "-" * rng.randint(1, 50) + f"({random_expression(rng, depth + 1)})"


@pytest.mark.parametrize("seed", range(8))
def test_random_expressions_give_a_number_or_a_calculator_error_quickly(
    seed: int, sizes: list[int]
) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        expression = random_expression(rng)[:1000]
        began = time.process_time()
        try:
            value = evaluate(expression)
        except CalculatorError:
            continue
        finally:
            assert time.process_time() - began < 0.5, expression
        assert isinstance(value, int | float)
        if isinstance(value, int):
            assert abs(value) <= MAX_MAGNITUDE
    assert max(sizes, default=0) <= BITS


async def test_a_costly_expression_built_from_a_tools_output_is_refused(
    workspace: Path, sizes: list[int]
) -> None:
    (workspace / "n.txt").write_text("9" * 99)
    tools: list[BaseTool] = [calculator, *file_tools(workspace)]
    plan = [
        step("s1", tool="read_file", args={"path": "n.txt"}),
        step("s2", args={"expression": "{{s1}} ** 9999"}, depends_on=["s1"]),
        step("s3", args={"expression": "round(1, -{{s1}})"}, depends_on=["s1"]),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="refused")],
        tools=tools,
    )
    out = await h.run({"goal": "compute"}, context(step_attempts=1))
    assert out["results"]["s2"]["error"] == "CalculatorError: the result is too large"
    assert out["results"]["s3"]["error"] == (
        "CalculatorError: round: the number of digits must be between -100 and 100"
    )
    assert out["status"] == "completed"
    assert max(sizes, default=0) <= BITS


# --- special files and hard links --------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside-victim.txt"
    victim.write_text("the victim's content")
    return victim


def tools_in(workspace: Path) -> dict[str, BaseTool]:
    return {t.name: t for t in file_tools(workspace)}


def run_tool(tool: BaseTool, **args: Any) -> Any:
    """Call the tool in a thread, so that a test that would block fails instead of hanging."""
    outcome: list[Any] = []

    runtime = ToolRuntime(
        state={},
        context=Context(),
        config={},
        stream_writer=lambda _: None,
        tool_call_id="t:r1:s1",
        store=None,
        tools=[],
    )

    def call() -> None:
        try:
            outcome.append(tool.invoke({**args, "runtime": runtime}))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), f"{tool.name} blocked"
    [result] = outcome
    if isinstance(result, Exception):
        raise result
    return result


def make_fifo(path: Path) -> Iterator[None]:
    os.mkfifo(path)
    yield


def make_fifo_with_a_reader(path: Path) -> Iterator[None]:
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield
    finally:
        os.close(reader)


def make_socket(path: Path) -> Iterator[None]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    try:
        yield
    finally:
        server.close()


def make_device(path: Path) -> Iterator[None]:
    try:
        os.mknod(path, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 3))  # like /dev/null
    except PermissionError:
        pytest.skip("creating a device needs privileges this test does not have")
    yield


SPECIAL: dict[str, tuple[Callable[[Path], Iterator[None]], str]] = {
    "FIFO": (make_fifo, "a FIFO"),
    "FIFO with a reader": (make_fifo_with_a_reader, "a FIFO"),
    "socket": (make_socket, "a socket"),
    "character device": (make_device, "a character device"),
}


@pytest.mark.parametrize("kind", SPECIAL)
@pytest.mark.parametrize("tool_name", ["read_file", "write_file"])
def test_special_files_are_refused_without_blocking(
    kind: str, tool_name: str, workspace: Path
) -> None:
    make, described = SPECIAL[kind]
    made = make(workspace / "special")
    next(made)
    try:
        args = {"path": "special"}
        if tool_name == "write_file":
            args["content"] = "written"
        with pytest.raises(WorkspaceError) as refused:
            run_tool(tools_in(workspace)[tool_name], **args)
    finally:
        made.close()
    message = str(refused.value)
    if tool_name == "write_file":
        assert message == f"'special' is {described}: only regular files are written"
    else:
        # read_file finds it is not a file before opening it
        assert message == "'special' is not a file in the workspace"


@pytest.mark.parametrize("kind", SPECIAL)
@pytest.mark.parametrize("tool_name", ["read_file", "write_file"])
def test_a_special_file_swapped_in_after_the_check_is_refused_without_blocking(
    kind: str, tool_name: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace / "plain.txt").write_text("plain")
    make, described = SPECIAL[kind]
    made: list[Iterator[None]] = []
    real = files_module.resolve_inside

    def racing(root: Path, path: str) -> Path:
        target = real(root, path)
        target.unlink()
        made.append(make(target))
        next(made[0])
        return target

    monkeypatch.setattr(files_module, "resolve_inside", racing)
    args = {"path": "plain.txt"}
    if tool_name == "write_file":
        args["content"] = "written"
    try:
        with pytest.raises(WorkspaceError) as refused:
            run_tool(tools_in(workspace)[tool_name], **args)
    finally:
        for generator in made:
            generator.close()
    assert str(refused.value) in (
        f"'plain.txt' is {described}: only regular files are written",
        "'plain.txt' is not a file in the workspace",
        "cannot write 'plain.txt': No such device or address",  # a FIFO with no reader
    )


@pytest.mark.parametrize("tool_name", ["read_file", "write_file"])
def test_a_hard_link_to_a_file_outside_is_neither_read_nor_written(
    tool_name: str, workspace: Path, outside: Path
) -> None:
    os.link(outside, workspace / "linked.txt")
    args = {"path": "linked.txt"}
    if tool_name == "write_file":
        args["content"] = "PWNED"
    with pytest.raises(WorkspaceError) as refused:
        run_tool(tools_in(workspace)[tool_name], **args)
    verb = "written" if tool_name == "write_file" else "read"
    assert str(refused.value) == (
        "'linked.txt' is a file with 2 hard links (one may be outside the workspace): "
        f"only regular files are {verb}"
    )
    assert outside.read_text() == "the victim's content"
    assert "victim" not in str(refused.value)


def test_a_hard_link_swapped_in_after_the_check_is_not_truncated(
    workspace: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace / "plain.txt").write_text("plain")
    real = files_module.resolve_inside

    def racing(root: Path, path: str) -> Path:
        target = real(root, path)
        target.unlink()
        os.link(outside, target)
        return target

    monkeypatch.setattr(files_module, "resolve_inside", racing)
    with pytest.raises(WorkspaceError, match="hard links"):
        run_tool(tools_in(workspace)["write_file"], path="plain.txt", content="PWNED")
    assert outside.read_text() == "the victim's content"


def test_plain_files_are_still_read_and_overwritten(workspace: Path) -> None:
    tools = tools_in(workspace)
    (workspace / "a.txt").write_text("a longer original")
    assert run_tool(tools["write_file"], path="a.txt", content="short") == "wrote 5 bytes to a.txt"
    assert (workspace / "a.txt").read_text() == "short"
    assert run_tool(tools["read_file"], path="a.txt") == "short"


# --- listings ---------------------------------------------------------------------------


def test_a_listing_stops_after_scanning_its_bound_and_says_so(workspace: Path) -> None:
    for i in range(MAX_SCANNED + 500):
        (workspace / f"f{i:06d}").touch()
    listed = run_tool(tools_in(workspace)["list_files"], path=".")
    assert len(listed) == MAX_LISTED + 1
    assert listed[-1] == LISTING_CUT
    assert listed[:-1] == sorted(listed[:-1])


def test_a_listing_of_exactly_the_maximum_is_not_cut(workspace: Path) -> None:
    for i in range(MAX_LISTED):
        (workspace / f"f{i:04d}").touch()
    listed = run_tool(tools_in(workspace)["list_files"], path=".")
    assert listed == [f"f{i:04d}" for i in range(MAX_LISTED)]


def test_a_deep_and_wide_tree_is_listed_one_directory_at_a_time(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(300):
        (workspace / f"d{i:03d}" / "inner").mkdir(parents=True)
    deep = workspace
    for i in range(100):
        deep = deep / f"n{i}"
    deep.mkdir(parents=True)
    listing: set[int] = set()
    most = 0
    real_open, real_close = files_module.open_inside, os.close

    def counting_open(*args: Any, **kwargs: Any) -> int:
        nonlocal most
        fd = real_open(*args, **kwargs)
        listing.add(fd)
        most = max(most, len(listing))
        return fd

    def counting_close(fd: int) -> None:
        listing.discard(fd)
        real_close(fd)

    monkeypatch.setattr(files_module, "open_inside", counting_open)
    monkeypatch.setattr(files_module.os, "close", counting_close)
    try:
        listed = files_module.list_paths(workspace, ".", recursive=True)
    finally:
        monkeypatch.undo()
    assert "d299/inner/" in listed
    assert most == 1
