"""What a new process loads: `import planexec`, the help, completion and a TAB stay light.

Each check runs in a new interpreter and reads `sys.modules` afterwards, so it fails as soon
as a module-level import drags LangGraph, a model client or a database driver back in. The
times these imports save are measured in `bench/cold.py`, never here.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import planexec
from helpers import ARITHMETIC
from planexec import Context, ScriptedChatModel, build_graph
from planexec.checkpoints import open_checkpointer
from planexec.scripted import plan_reply, replan_reply
from thread_states import THREADS, make_states

HEAVY = (
    "langgraph",
    "langchain_core",
    "langchain_openai",
    "openai",
    "mcp",
    "psycopg",
    "aiosqlite",
    "planexec.evals",
    "planexec.graph",
    "importlib.metadata",
)
"""Modules none of the light paths may load (package metadata is read for `--version` only)."""

PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def loaded_after(body: str, *, env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """Which of HEAVY a new interpreter has loaded after running `body`, and what it printed."""
    code = PROBE.format(body=textwrap.dedent(body), heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.splitlines()
    return json.loads(last), "\n".join(printed)


def run_cli(*argv: str) -> str:
    return f"""
from planexec.cli import main
try:
    main({list(argv)!r})
except SystemExit:
    pass
"""


def test_import_planexec_loads_no_langgraph_and_still_offers_every_public_name() -> None:
    loaded, _ = loaded_after("import planexec")
    assert loaded == []
    assert set(planexec.__all__) <= set(dir(planexec))
    for name in planexec.__all__:
        assert getattr(planexec, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        planexec.nonsense  # noqa: B018


def test_building_a_graph_loads_no_model_client_mcp_or_evaluation_suite() -> None:
    body = """
    from planexec import ScriptedChatModel, build_graph
    build_graph(planner=ScriptedChatModel([]), executor=ScriptedChatModel([]),
                replanner=ScriptedChatModel([]))
    """
    loaded, _ = loaded_after(body)
    assert not {"langchain_openai", "openai", "mcp", "planexec.evals"} & set(loaded)
    assert "langgraph" in loaded  # the probe does see what a body loads


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("run", "--help"),
        ("completion", "bash"),
        ("completion", "zsh"),
        ("completion", "fish"),
        ("__complete", "threads"),
    ],
)
def test_help_completion_and_a_tab_load_nothing_heavy(
    argv: tuple[str, ...], tmp_path: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "PLANEXEC_HOME": str(tmp_path)}
    loaded, printed = loaded_after(run_cli(*argv), env=env)
    assert loaded == []
    if argv[0] == "completion":
        assert "planexec" in printed
        assert "__complete threads" in printed


async def test_a_tab_lists_the_thread_ids_newest_first_without_langgraph(tmp_path: Path) -> None:
    ck = tmp_path / "checkpoints.sqlite"
    made = []
    async with open_checkpointer(ck) as saver:
        for n in range(3):
            graph = build_graph(
                checkpointer=saver,
                planner=ScriptedChatModel([plan_reply(ARITHMETIC)]),
                executor=ScriptedChatModel([]),
                replanner=ScriptedChatModel([replan_reply("finish", answer="53")]),
            )
            thread = f"thread-{n}"
            config = {"configurable": {"thread_id": thread}}
            await graph.ainvoke({"goal": "12*4+5"}, config, context=Context(review="never"))
            made.append(thread)
    loaded, printed = loaded_after(run_cli("__complete", "threads", "--checkpoint", str(ck)))
    assert loaded == []
    assert printed.splitlines() == made[::-1]


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A SQLite file with a thread in each state, and one with them encrypted."""
    folder = tmp_path_factory.mktemp("states")
    plain, sealed = folder / "plain.sqlite", folder / "sealed.sqlite"
    asyncio.run(make_states(plain))
    asyncio.run(make_states(sealed, "a key"))
    return {"plain": plain, "sealed": sealed}


@pytest.mark.parametrize(
    "argv",
    [
        ("threads",),
        ("threads", "--all", "--json"),
        # `show` needs the history channels, which are stored by delta: LangGraph
        # rebuilds them, so `show` goes through the graph (tests/test_cli_show.py).
        *(("show", thread) for thread in ("stopped", "recorded")),
    ],
)
@pytest.mark.parametrize("file", ["plain", "sealed"])
def test_show_and_threads_on_a_sqlite_file_load_no_langgraph_pydantic_or_driver(
    argv: tuple[str, ...], file: str, states: dict[str, Path], tmp_path: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "PLANEXEC_HOME": str(tmp_path), "COLUMNS": "100"}
    if file == "sealed":
        env["PLANEXEC_CHECKPOINT_KEY"] = "a key"
    body = run_cli(*argv, "--checkpoint", str(states[file])) + "\nimport sys\n"
    body += "print(json.dumps(sorted(m for m in ('pydantic', 'jsonschema') if m in sys.modules)))"
    loaded, printed = loaded_after(body, env=env)
    *shown, light = printed.splitlines()
    assert (loaded, json.loads(light)) == ([], [])
    text = "\n".join(shown)
    if argv[0] == "threads":
        assert all(thread in text for thread in THREADS)
        assert "unreadable" not in text
    else:
        assert f"goal of {argv[1]}" in text or (argv[1] == "revis" and "goal of revised" in text)


@pytest.mark.parametrize(
    "content", [b"", b"not a database at all" * 10, b"SQLite format 3\0" + b"\0" * 200]
)
def test_a_tab_on_a_bad_file_offers_nothing_and_prints_no_traceback(
    content: bytes, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(content)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from planexec.cli import main; raise SystemExit(main())",
            "__complete",
            "threads",
            "--checkpoint",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_openai_models_of_one_event_loop_share_one_http_client() -> None:
    """A new graph in a running loop makes no new HTTP client (each costs a TLS context)."""
    from langchain_openai import ChatOpenAI

    from planexec.models import for_running_loop

    def http_of(model: Any) -> Any:
        return model.root_async_client._client

    async def copies() -> tuple[Any, Any, Any]:
        planner = ChatOpenAI(model="gpt-4.1", api_key="k", base_url="http://127.0.0.1:9/v1")
        executor = ChatOpenAI(model="gpt-4.1-mini", api_key="k", base_url="http://127.0.0.1:9/v1")
        mine, yours = for_running_loop(planner), for_running_loop(executor)
        assert mine is not planner
        assert yours is not executor
        assert http_of(mine) is http_of(yours)
        assert http_of(mine) is not http_of(planner)
        return http_of(mine), mine, yours

    first, *_ = asyncio.run(copies())
    second, *_ = asyncio.run(copies())
    assert first is not second  # each loop has its own, closed with its loop
    assert first.is_closed


def test_version_prints_the_installed_version_on_stdout() -> None:
    from importlib.metadata import version

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from planexec.cli import main; raise SystemExit(main())",
            "--version",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"planexec {version('planexec')}\n",
        "",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["__complete", "threads"],
        ["__complete", "threads", "--checkpoint", "x.sqlite"],
        ["__complete", "threads", "--checkpoint", "postgresql://db/planexec"],
    ],
)
def test_the_tab_helpers_own_parser_reads_its_arguments_as_the_full_parser_does(
    argv: list[str],
) -> None:
    from planexec.cli.parser import build_complete_parser, build_parser

    full = vars(build_parser().parse_args(argv))
    assert full.pop("version") is None  # the top-level `--version`, which exits when given
    assert vars(build_complete_parser().parse_args(argv)) == full
    with pytest.raises(SystemExit):
        build_complete_parser().parse_args(["__complete", "plans"])
