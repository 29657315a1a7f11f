"""Issue 6, item 4: bad input. Path traversal, canary secrets, and size bounds.

Every file outside the workspace that a vector aims at is one this module creates under
pytest's `tmp_path` (a secret to read, a victim to overwrite): nothing here names a real
system file, so a broken confinement would change only the test's own temp dir.
LangSmith traces are checked for the same canaries in tests/test_tracing.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.tools import BaseTool, ToolException
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command

import planexec.tools.files as files_module
from fake_openai import FakeOpenAI
from helpers import Harness, step
from planexec import Context
from planexec.cli import main
from planexec.errors import InvalidGoalError
from planexec.scripted import plan_reply, replan_reply, tool_call_reply
from planexec.tools import file_tools
from planexec.tools.files import WorkspaceError

PAYLOAD = "PWNED-BY-A-TRAVERSAL"
VICTIM = "the victim's original content"


# --- the arena: a workspace, with secrets and victims all around it ---------------------


@dataclass
class Arena:
    """`jail/workspace` is the workspace; everything else under `tmp` is outside it."""

    tmp: Path
    jail: Path
    ws: Path
    secret: str

    def outside_snapshot(self) -> dict[str, Any]:
        """Every entry under `tmp` that is not in the workspace: kind and content."""
        found: dict[str, Any] = {}
        for dirpath, dirnames, filenames in os.walk(self.tmp):
            here = Path(dirpath)
            if here == self.ws:
                dirnames[:] = []
                continue
            for name in dirnames + filenames:
                path = here / name
                if path == self.ws:
                    continue
                key = str(path.relative_to(self.tmp))
                if path.is_symlink():
                    found[key] = ("link", os.readlink(path))
                elif path.is_dir():
                    found[key] = ("dir",)
                else:
                    found[key] = ("file", path.read_bytes())
        return found


@pytest.fixture
def arena(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Arena:
    secret = f"SECRET-{uuid4().hex}"
    jail = tmp_path / "jail"
    ws = jail / "workspace"
    for folder in (ws / "sub", jail / "outside", jail / "workspace-sibling"):
        folder.mkdir(parents=True)
    for where in (tmp_path, jail, jail / "outside", jail / "workspace-sibling"):
        (where / "secret.txt").write_text(secret)
        (where / "victim.txt").write_text(VICTIM)
        (where / "OUTSIDE-MARKER.txt").write_text("outside")
    (ws / "inside.txt").write_text("inside")
    (ws / "sub" / "inside.txt").write_text("inside too")
    links = {
        "link-secret": jail / "secret.txt",
        "link-rel": "../secret.txt",
        "link-dir": jail / "outside",
        "link-parent": "..",
        "chain-1": "chain-2",
        "chain-2": jail / "secret.txt",
        "chain-dir-1": "chain-dir-2",
        "chain-dir-2": jail / "outside",
        "link-victim": jail / "victim.txt",
        "dangling": jail / "new-victim.txt",
        "sub/deep-link": "../../secret.txt",
        "link-sibling": jail / "workspace-sibling",
        "link-ws": ".",
        "loop-a": "loop-b",
        "loop-b": "loop-a",
    }
    for name, target in links.items():
        (ws / name).symlink_to(target)
    # Were "~" or "$HOME" ever expanded, they would reach the secret.
    monkeypatch.setenv("HOME", str(jail))
    return Arena(tmp_path, jail, ws, secret)


# --- the corpus ---------------------------------------------------------------------------

OUTSIDE = "is outside the workspace"
BACKSLASH = "use '/' to separate directories"
NUL = "the path contains a NUL character"
EMPTY = "the path is empty"
UNUSABLE = "cannot be used"
LITERAL = "literal"
"""Not an escape at all: the path names something inside the workspace, literally."""

CORPUS: list[tuple[str, str]] = [
    # `..` in every position
    ("..", OUTSIDE),
    ("../", OUTSIDE),
    ("../secret.txt", OUTSIDE),
    ("../victim.txt", OUTSIDE),
    ("./../secret.txt", OUTSIDE),
    ("../../secret.txt", OUTSIDE),
    ("sub/../../secret.txt", OUTSIDE),
    ("sub/./.././../secret.txt", OUTSIDE),
    ("a/b/c/../../../../secret.txt", OUTSIDE),
    ("../workspace/../secret.txt", OUTSIDE),
    ("../outside", OUTSIDE),
    ("../outside/secret.txt", OUTSIDE),
    # a sibling whose name starts with the workspace's (a naive prefix check passes it)
    ("../workspace-sibling/secret.txt", OUTSIDE),
    ("{ws}-sibling/secret.txt", OUTSIDE),
    # absolute paths
    ("{jail}/secret.txt", OUTSIDE),
    ("{jail}/victim.txt", OUTSIDE),
    ("{jail}/outside/secret.txt", OUTSIDE),
    ("{jail}", OUTSIDE),
    ("{ws}/../secret.txt", OUTSIDE),
    ("{ws}/./sub/../../secret.txt", OUTSIDE),
    ("/{jail}/secret.txt", OUTSIDE),
    # trailing dots, slashes and spaces
    ("../secret.txt/", OUTSIDE),
    ("../secret.txt/.", OUTSIDE),
    ("../ secret.txt", OUTSIDE),
    ("...", LITERAL),
    ("..../secret.txt", LITERAL),
    (".. /secret.txt", LITERAL),
    (" ../secret.txt", LITERAL),
    ("secret.txt.", LITERAL),
    # symlinks in the workspace that point out of it
    ("link-secret", OUTSIDE),
    ("link-rel", OUTSIDE),
    ("link-dir", OUTSIDE),
    ("link-dir/secret.txt", OUTSIDE),
    ("link-dir/new.txt", OUTSIDE),
    ("link-dir/../secret.txt", OUTSIDE),
    ("link-parent/secret.txt", OUTSIDE),
    ("chain-1", OUTSIDE),
    ("chain-dir-1/secret.txt", OUTSIDE),
    ("link-victim", OUTSIDE),
    ("dangling", OUTSIDE),
    ("sub/deep-link", OUTSIDE),
    ("link-sibling/secret.txt", OUTSIDE),
    ("link-ws/../secret.txt", OUTSIDE),
    ("loop-a", UNUSABLE),
    ("loop-a/secret.txt", UNUSABLE),
    # URL-encoded, double-encoded, overlong UTF-8 and HTML entities: never decoded
    ("%2e%2e%2fsecret.txt", LITERAL),
    ("%2e%2e/secret.txt", LITERAL),
    ("..%2fsecret.txt", LITERAL),
    ("%2e%2e%5csecret.txt", LITERAL),
    ("%2e%2e%2f%2e%2e%2fsecret.txt", LITERAL),
    ("..%252fsecret.txt", LITERAL),
    ("%252e%252e%252fsecret.txt", LITERAL),
    ("%c0%ae%c0%ae/secret.txt", LITERAL),
    ("..%c0%afsecret.txt", LITERAL),
    ("..%00/secret.txt", LITERAL),
    ("&#46;&#46;/secret.txt", LITERAL),
    ("file:///{jail}/secret.txt", LITERAL),
    # the home directory and environment variables: never expanded
    ("~/secret.txt", LITERAL),
    ("~root/secret.txt", LITERAL),
    ("$HOME/secret.txt", LITERAL),
    ("${HOME}/secret.txt", LITERAL),
    ("%HOME%/secret.txt", LITERAL),
    # Windows-style
    ("..\\secret.txt", BACKSLASH),
    ("..\\..\\secret.txt", BACKSLASH),
    ("sub\\..\\..\\secret.txt", BACKSLASH),
    ("..\\/secret.txt", BACKSLASH),
    ("sub/..\\../secret.txt", BACKSLASH),
    ("C:\\secret.txt", BACKSLASH),
    ("\\\\server\\share\\secret.txt", BACKSLASH),
    ("\\\\?\\C:\\secret.txt", BACKSLASH),
    ("C:/secret.txt", LITERAL),
    ("C:secret.txt", LITERAL),
    # NUL bytes
    ("../secret.txt\x00", NUL),
    ("inside.txt\x00../../secret.txt", NUL),
    ("\x00", NUL),
    # unicode lookalikes of "." and "/" and "\"
    ("\uff0e\uff0e/secret.txt", LITERAL),
    ("\u2024\u2024/secret.txt", LITERAL),
    ("\u2025/secret.txt", LITERAL),
    ("..\u2215secret.txt", LITERAL),
    ("..\u2044secret.txt", LITERAL),
    ("..\uff0fsecret.txt", LITERAL),
    ("..\uff3csecret.txt", LITERAL),
    (".\u200b./secret.txt", LITERAL),
    # very long paths
    ("a/../" * 1000 + "../secret.txt", OUTSIDE),
    ("./" * 3000 + "../secret.txt", OUTSIDE),
    ("x" * 300, UNUSABLE),
    ("a/" * 3000 + "x", UNUSABLE),
    # empty
    ("", EMPTY),
    ("   ", EMPTY),
    ("\t\n", EMPTY),
]

TOOLS = ("read_file", "write_file", "list_files")


def runtime() -> ToolRuntime[Any, Any]:
    """A ToolRuntime as the executor builds it."""
    return ToolRuntime(
        state={},
        context=Context(),
        config={},
        stream_writer=lambda _: None,
        tool_call_id="thread:r1:s1",
        store=None,
        tools=[],
    )


def call(tools: dict[str, BaseTool], name: str, path: str) -> Any:
    args: dict[str, Any] = {"path": path, "runtime": runtime()}
    if name == "write_file":
        args["content"] = PAYLOAD
    return tools[name].invoke(args)


def expand(template: str, arena: Arena) -> str:
    return template.replace("{jail}", str(arena.jail)).replace("{ws}", str(arena.ws))


def assert_no_escape(arena: Arena, before: dict[str, Any], result: Any = None) -> None:
    assert arena.outside_snapshot() == before
    assert arena.secret not in repr(result)
    assert "OUTSIDE-MARKER" not in repr(result)


def test_the_corpus_has_at_least_40_distinct_vectors() -> None:
    paths = [path for path, _ in CORPUS]
    assert len(set(paths)) == len(paths)
    assert len(paths) - [kind for _, kind in CORPUS].count(LITERAL) >= 40


def assert_lands_in_tmp(path: str, arena: Arena) -> None:
    """Refuse to try a write that, were confinement broken, could reach outside `tmp`.

    The guard against the incident: links are followed here as the system would.
    """
    if "\x00" in path or not path.strip():
        return
    naive = Path(os.path.realpath(os.path.join(arena.ws, path)))
    assert naive == arena.tmp or arena.tmp in naive.parents, f"unsafe vector {path!r}"


@pytest.mark.parametrize(("template", "expected"), CORPUS, ids=[repr(p)[:40] for p, _ in CORPUS])
def test_traversal_vector(template: str, expected: str, arena: Arena) -> None:
    tools = {t.name: t for t in file_tools(arena.ws)}
    path = expand(template, arena)
    for tool_name in TOOLS:
        if tool_name == "write_file":
            assert_lands_in_tmp(path, arena)
        before = arena.outside_snapshot()
        if expected == LITERAL and tool_name == "write_file":
            result = call(tools, tool_name, path)
            assert_no_escape(arena, before, result)
            # It wrote the file the path literally names, inside the workspace.
            assert (arena.ws / path).read_text() == PAYLOAD
            assert result.startswith(f"wrote {len(PAYLOAD)} bytes to ")
            continue
        with pytest.raises(WorkspaceError) as caught:
            call(tools, tool_name, path)
        assert_no_escape(arena, before)
        message = str(caught.value)
        assert isinstance(caught.value, ToolException)  # given back to the model: no crash
        if expected == LITERAL:
            kind = "file" if tool_name == "read_file" else "directory"
            assert message.endswith(f"is not a {kind} in the workspace"), tool_name
        else:
            assert expected in message, tool_name
        assert arena.secret not in message


def test_the_workspace_itself_is_unchanged_by_refused_vectors(arena: Arena) -> None:
    tools = {t.name: t for t in file_tools(arena.ws)}
    inside = sorted(p.name for p in arena.ws.iterdir())
    for template, expected in CORPUS:
        if expected != LITERAL:
            assert_lands_in_tmp(expand(template, arena), arena)
            with pytest.raises(WorkspaceError):
                call(tools, "write_file", expand(template, arena))
    assert sorted(p.name for p in arena.ws.iterdir()) == inside
    assert (arena.ws / "inside.txt").read_text() == "inside"


def test_listings_never_show_what_is_outside(arena: Arena) -> None:
    tools = {t.name: t for t in file_tools(arena.ws)}
    listed = tools["list_files"].invoke({"path": ".", "recursive": True, "runtime": runtime()})
    assert "link-dir" in listed  # the link itself is shown, not followed
    assert not any("OUTSIDE-MARKER" in name or "secret.txt" in name for name in listed)
    assert "sub/inside.txt" in listed


# --- a symlink swapped in after the path was checked -----------------------------------


def swap_after_check(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None]) -> list[Path]:
    """Run `swap` right after `resolve_inside` approves a path: the window a racing
    process would use to put a symlink where the checked file or directory was."""
    real = files_module.resolve_inside
    checked: list[Path] = []

    def racing(root: Path, path: str) -> Path:
        target = real(root, path)
        checked.append(target)
        swap()
        return target

    monkeypatch.setattr(files_module, "resolve_inside", racing)
    return checked


def replace_with_link(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize(
    ("tool_name", "path", "swapped", "to"),
    [
        ("read_file", "inside.txt", "inside.txt", "secret.txt"),
        ("write_file", "inside.txt", "inside.txt", "victim.txt"),
        ("read_file", "sub/secret.txt", "sub", "outside"),
        ("write_file", "sub/victim.txt", "sub", "outside"),
        ("write_file", "sub/new.txt", "sub", "outside"),
        ("write_file", "sub/deeper/new.txt", "sub", "outside"),
        ("list_files", "sub", "sub", "outside"),
    ],
)
def test_a_symlink_swapped_in_after_the_check_is_not_followed(
    tool_name: str,
    path: str,
    swapped: str,
    to: str,
    arena: Arena,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Files named as the ones outside, so that the path passes every check before the swap.
    (arena.ws / "sub" / "victim.txt").write_text("inside victim")
    (arena.ws / "sub" / "secret.txt").write_text("not the secret")
    tools = {t.name: t for t in file_tools(arena.ws)}
    checked = swap_after_check(
        monkeypatch, lambda: replace_with_link(arena.ws / swapped, arena.jail / to)
    )
    before = arena.outside_snapshot()
    with pytest.raises(WorkspaceError, match=r"cannot (read|write|list)"):
        call(tools, tool_name, path)
    assert checked == [arena.ws / path]  # the check did pass: the swap came after
    assert_no_escape(arena, before)
    assert (arena.jail / "victim.txt").read_text() == VICTIM


def test_links_inside_the_workspace_still_work(arena: Arena) -> None:
    (arena.ws / "alias").symlink_to("sub")
    (arena.ws / "alias.txt").symlink_to("inside.txt")
    tools = {t.name: t for t in file_tools(arena.ws)}
    assert call(tools, "read_file", "alias.txt") == "inside"
    assert call(tools, "read_file", "alias/inside.txt") == "inside too"
    wrote = call(tools, "write_file", "alias/new.txt")
    assert wrote == f"wrote {len(PAYLOAD)} bytes to sub/new.txt"
    assert call(tools, "list_files", "alias") == ["sub/deep-link", "sub/inside.txt", "sub/new.txt"]
    assert call(tools, "write_file", "brand/new/dirs/f.txt").endswith("brand/new/dirs/f.txt")


# --- traversal through the whole graph ------------------------------------------------------

GRAPH_VECTORS = [
    ("../secret.txt", OUTSIDE),
    ("{jail}/secret.txt", OUTSIDE),
    ("link-secret", OUTSIDE),
    ("link-dir/secret.txt", OUTSIDE),
    ("chain-1", OUTSIDE),
    ("..\\secret.txt", BACKSLASH),
]


def prompts_of(h: Harness) -> str:
    return "\n".join(c.prompt for m in (h.planner, h.executor, h.replanner) for c in m.calls)


@pytest.mark.parametrize(("template", "refusal"), GRAPH_VECTORS)
async def test_a_plan_step_reading_outside_fails_and_the_secret_reaches_no_model(
    template: str, refusal: str, arena: Arena
) -> None:
    path = expand(template, arena)
    h = Harness(
        planner=[plan_reply([step("s1", tool="read_file", args={"path": path})])],
        replanner=[replan_reply("finish", answer="the file could not be read")],
        tools=file_tools(arena.ws),
    )
    out = await h.run(
        {"goal": "read the secret"}, Context(review="never", retry_initial_interval=0.0)
    )
    result = out["results"]["s1"]
    assert result["status"] == "failed"
    assert refusal in result["error"]
    # The replanner was told why, and never shown the secret.
    assert len(h.replanner.calls) == 1
    assert refusal in h.replanner.calls[0].prompt
    assert arena.secret not in prompts_of(h)
    assert arena.secret not in json.dumps(await h.state(), default=str)


async def test_a_traversal_proposed_by_the_executor_model_is_refused(arena: Arena) -> None:
    h = Harness(
        planner=[plan_reply([step("s1", tool="read_file", args=None)])],
        executor=[tool_call_reply("read_file", {"path": "../secret.txt"})],
        replanner=[replan_reply("finish", answer="refused")],
        tools=file_tools(arena.ws),
    )
    out = await h.run(
        {"goal": "read the secret"}, Context(review="never", retry_initial_interval=0.0)
    )
    assert out["results"]["s1"]["status"] == "failed"
    assert OUTSIDE in out["results"]["s1"]["error"]
    assert arena.secret not in prompts_of(h)
    assert arena.secret not in json.dumps(await h.state(), default=str)


async def test_a_traversal_write_in_a_plan_changes_nothing_outside(arena: Arena) -> None:
    before = arena.outside_snapshot()
    plan = [
        step("w1", tool="write_file", args={"path": "../victim.txt", "content": PAYLOAD}),
        step("w2", tool="write_file", args={"path": "link-victim", "content": PAYLOAD}),
        step("w3", tool="write_file", args={"path": "link-dir/new.txt", "content": PAYLOAD}),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        replanner=[replan_reply("finish", answer="refused")],
        tools=file_tools(arena.ws),
    )
    out = await h.run({"goal": "overwrite"}, Context(review="never", retry_initial_interval=0.0))
    assert {r["status"] for r in out["results"].values()} == {"failed"}
    assert arena.outside_snapshot() == before


# --- canary secrets from the environment ---------------------------------------------------

MODELS = [
    "--planner-model", "openai:planner",
    "--executor-model", "openai:executor",
    "--replanner-model", "openai:replanner",
]  # fmt: skip
GOAL = "Summarise notes.txt and add 12 * 4"
CANARY_PLAN = [
    step("s1", tool="read_file", args={"path": "notes.txt"}, description="Read the notes"),
    step("s2", args={"expression": "12*4"}, description="Multiply 12 by 4"),
    step("s3", tool=None, depends_on=["s1", "s2"], description="Summarise the notes and s2"),
]


def canary_replies() -> list[dict[str, Any]]:
    return [
        {
            "match": "You are the planner",
            "tool_calls": [{"name": "Plan", "arguments": {"steps": CANARY_PLAN}}],
        },
        {"match": '<step id="s3">', "content": "The notes say hello; 12 * 4 is 48."},
        {
            "match": "You are the replanner",
            "tool_calls": [
                {
                    "name": "Replan",
                    "arguments": {
                        "action": "finish",
                        "answer": "hello, and 48",
                        "steps": None,
                        "reason": "done",
                    },
                }
            ],
        },
    ]


@dataclass
class Canaries:
    values: dict[str, str]

    def found_in(self, where: str, text: str | bytes) -> list[str]:
        data = text.encode() if isinstance(text, str) else text
        return [f"{name} in {where}" for name, v in self.values.items() if v.encode() in data]


@pytest.fixture
def canaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Canaries:
    values = {
        "OPENAI_API_KEY": f"sk-canary-{uuid4().hex}",
        "SECRET_TOKEN": f"canary-token-{uuid4().hex}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PLANEXEC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return Canaries(values)


def files_bytes(checkpoint: Path) -> bytes:
    """The SQLite file and any journal beside it: every table, metadata included."""
    return b"".join(p.read_bytes() for p in checkpoint.parent.glob(checkpoint.name + "*"))


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_canaries_never_reach_checkpoints_output_logs_or_request_bodies(
    encrypted: bool,
    canaries: Canaries,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if encrypted:
        canaries.values["PLANEXEC_CHECKPOINT_KEY"] = f"ck-canary-{uuid4().hex}"
        monkeypatch.setenv("PLANEXEC_CHECKPOINT_KEY", canaries.values["PLANEXEC_CHECKPOINT_KEY"])
    caplog.set_level(logging.DEBUG)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("hello from the notes")
    ck = tmp_path / "ck.sqlite"
    where = ["--checkpoint", str(ck)]
    outputs: list[str] = []
    with FakeOpenAI(canary_replies()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        code = main(["run", GOAL, "--yes", "--json", "--thread", "c1", "--workspace", str(ws),
                     *where, *MODELS])  # fmt: skip
        outputs.extend(capsys.readouterr())
        assert code == 0, outputs
        assert json.loads(outputs[0])["answer"] == "hello, and 48"
        for argv in (["show", "c1", "--json"], ["show", "c1"], ["resume", "c1"]):
            assert main([*argv, *where]) == 0
            outputs.extend(capsys.readouterr())
        server.assert_done()
    key = canaries.values["OPENAI_API_KEY"]
    # The key was in use: it went where it belongs, the Authorization header.
    assert [h["authorization"] for h in server.request_headers] == [f"Bearer {key}"] * 3
    leaks = canaries.found_in("checkpoint", files_bytes(ck))
    leaks += canaries.found_in("CLI output", "\n".join(outputs))
    leaks += canaries.found_in("logs", caplog.text)
    for body in server.requests:
        leaks += canaries.found_in("a request body", json.dumps(body))
    assert leaks == []
    # The scans can see what is there: plaintext without a key, ciphertext with one.
    assert any("hello from the notes" in json.dumps(body) for body in server.requests)
    assert (GOAL.encode() in files_bytes(ck)) is not encrypted
    assert caplog.records  # DEBUG logging did record the run


def test_canaries_never_reach_the_demo_checkpoint_output_or_logs(
    canaries: Canaries,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    canaries.values["PLANEXEC_CHECKPOINT_KEY"] = f"ck-canary-{uuid4().hex}"
    monkeypatch.setenv("PLANEXEC_CHECKPOINT_KEY", canaries.values["PLANEXEC_CHECKPOINT_KEY"])
    caplog.set_level(logging.DEBUG)
    ck = tmp_path / "demo.sqlite"
    code = main(["demo", "--yes", "--json", "--workspace", str(tmp_path / "demo"),
                 "--checkpoint", str(ck), "--thread", "d1"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"
    assert main(["show", "d1", "--json", "--checkpoint", str(ck)]) == 0
    shown, _ = capsys.readouterr()
    leaks = canaries.found_in("checkpoint", files_bytes(ck))
    leaks += canaries.found_in("CLI output", out + err + shown)
    leaks += canaries.found_in("logs", caplog.text)
    assert leaks == []


# --- input bounds ---------------------------------------------------------------------------


async def test_an_oversized_goal_is_refused_before_any_model_call() -> None:
    h = Harness(planner=[plan_reply([step("s1", args={"expression": "1+1"})])])
    with pytest.raises(InvalidGoalError, match="41 characters long; the most allowed is 40"):
        await h.run({"goal": "g" * 41}, Context(review="never", max_goal_chars=40))
    assert h.planner.calls == []
    assert h.executor.calls == []
    assert h.replanner.calls == []


async def test_a_goal_of_exactly_the_limit_is_planned() -> None:
    h = Harness(planner=[plan_reply([step("s1", args={"expression": "1+1"})])])
    out = await h.run({"goal": "g" * 40}, Context(max_goal_chars=40))
    assert out["__interrupt__"][0].value["type"] == "plan_review"
    assert len(h.planner.calls) == 1
    assert "g" * 40 in h.planner.calls[0].prompt


def test_the_cli_refuses_an_oversized_goal_without_calling_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLANEXEC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    goal = "x" * (Context().max_goal_chars + 1)
    with FakeOpenAI() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        code = main(["run", goal, "--yes", "--checkpoint", str(tmp_path / "c.sqlite"), *MODELS])
        assert server.requests == []
    err = capsys.readouterr().err
    assert code == 2
    assert f"the goal is {len(goal)} characters long; the most allowed is 20000" in err


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def big_write(step_id: str, size: int = 300) -> dict[str, Any]:
    return step(step_id, tool="write_file", args={"path": f"{step_id}.txt", "content": "w" * size})


async def test_a_step_with_oversized_args_makes_the_plan_invalid(workspace: Path) -> None:
    small = step("s1", tool="write_file", args={"path": "ok.txt", "content": "fine"})
    h = Harness(
        planner=[plan_reply([big_write("huge")]), plan_reply([small])],
        replanner=[replan_reply("finish", answer="written")],
        tools=file_tools(workspace),
    )
    out = await h.run({"goal": "write"}, Context(review="never", max_args_chars=200))
    assert out["status"] == "completed"
    error = "step huge: args are 335 characters of JSON; the most allowed is 200"
    assert error in h.planner.calls[1].prompt  # the planner was told which step, and why
    assert names(workspace) == ["ok.txt"]  # huge never ran


async def test_oversized_args_fail_the_run_when_the_planner_keeps_sending_them(
    workspace: Path,
) -> None:
    h = Harness(planner=[plan_reply([big_write("huge")])], tools=file_tools(workspace))
    out = await h.run(
        {"goal": "write"}, Context(review="never", max_args_chars=200, max_plan_attempts=1)
    )
    assert out["status"] == "failed"
    assert "step huge: args are 335 characters of JSON" in out["reason"]
    assert names(workspace) == []


async def test_a_replan_with_oversized_args_is_refused(workspace: Path) -> None:
    first = step("s1", tool="write_file", args={"path": "a.txt", "content": "a"})
    h = Harness(
        planner=[plan_reply([first])],
        replanner=[
            replan_reply("replan", steps=[first, big_write("more")]),
            replan_reply("finish", answer="done"),
        ],
        tools=file_tools(workspace),
    )
    out = await h.run({"goal": "write"}, Context(review="never", max_args_chars=200))
    assert out["status"] == "completed"
    assert "step more: args are 335 characters of JSON" in h.replanner.calls[1].prompt
    assert names(workspace) == ["a.txt"]


async def test_an_oversized_tool_output_is_kept_truncated_and_models_see_only_that(
    workspace: Path,
) -> None:
    big = "HEAD-" + "x" * 2000 + "-TAIL-MARKER"
    (workspace / "big.txt").write_text(big)
    plan = [
        step("s1", tool="read_file", args={"path": "big.txt"}),
        step("s2", tool=None, depends_on=["s1"], description="Summarise s1"),
    ]
    h = Harness(
        planner=[plan_reply(plan)],
        executor=["it is mostly x"],
        replanner=[replan_reply("finish", answer="mostly x")],
        tools=file_tools(workspace),
    )
    out = await h.run({"goal": "summarise"}, Context(review="never", max_output_chars=300))
    result = out["results"]["s1"]
    assert result["status"] == "done"
    kept = result["output"]
    assert len(kept) == 300
    assert kept.startswith("HEAD-xxx")
    dropped = len(big) - kept.index("\n[planexec:")
    assert kept.endswith(
        f"\n[planexec: {dropped} more characters were cut here; outputs are limited to 300]"
    )
    assert out["results"]["s2"]["status"] == "done"
    for prompt in (h.executor.calls[0].prompt, h.replanner.calls[0].prompt):
        assert kept in prompt
        assert "TAIL-MARKER" not in prompt


async def test_an_oversized_edit_at_plan_review_asks_again_with_the_error(
    workspace: Path,
) -> None:
    small = step("s1", tool="write_file", args={"path": "ok.txt", "content": "fine"})
    h = Harness(
        planner=[plan_reply([small])],
        replanner=[replan_reply("finish", answer="written")],
        tools=file_tools(workspace),
    )
    ctx = Context(max_args_chars=200)
    first = (await h.run({"goal": "write"}, ctx))["__interrupt__"][0].value
    edit = {"type": "edit", "plan": {"steps": [big_write("s1")]}}
    again = (await h.run(Command(resume=edit), ctx))["__interrupt__"][0].value
    assert again["type"] == "plan_review"
    assert again["errors"] == [
        "edited plan: step s1: args are 333 characters of JSON; the most allowed is 200"
    ]
    assert again["plan"] == first["plan"]  # nothing else changed
    assert names(workspace) == []
    out = await h.run(Command(resume={"type": "approve"}), ctx)
    assert out["status"] == "completed"
    assert names(workspace) == ["ok.txt"]


async def test_an_oversized_edit_at_step_approval_asks_again_with_the_error(
    workspace: Path,
) -> None:
    small = step("s1", tool="write_file", args={"path": "ok.txt", "content": "fine"})
    h = Harness(
        planner=[plan_reply([small])],
        replanner=[replan_reply("finish", answer="written")],
        tools=file_tools(workspace),
    )
    ctx = Context(review="never", approval_tools=["write_file"], max_args_chars=200)
    first = (await h.run({"goal": "write"}, ctx))["__interrupt__"][0].value
    assert first["type"] == "step_approval"
    args = {"path": "ok.txt", "content": "w" * 300}
    edit = {"type": "edit", "edited_action": {"name": "write_file", "args": args}}
    again = (await h.run(Command(resume={"decisions": [edit]}), ctx))["__interrupt__"][0].value
    assert again["type"] == "step_approval"
    assert again["errors"] == [
        "step s1: the edited args are 333 characters of JSON; the most allowed is 200"
    ]
    assert names(workspace) == []
    out = await h.run(Command(resume={"decisions": [{"type": "approve"}]}), ctx)
    assert out["status"] == "completed"
    assert (workspace / "ok.txt").read_text() == "fine"
