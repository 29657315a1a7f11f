"""Shared fixtures: no network, no provider keys, a fresh saver and graph per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# `pg_server` and `pg_url`: a throwaway PostgreSQL server (tests/pg_server.py).
pytest_plugins = ["pg_server"]

PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "OLLAMA_HOST",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never reach a provider: keys are removed and tracing is off."""
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    monkeypatch.setenv("LANGCHAIN_TRACING_V2", "false")


# Future LangGraph behaviour now: state holds plain data, so strict msgpack must pass.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the sync-API run of a test marked `async_only`: it needs what only the async
    API offers (cancelling a run from the test, say)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("async_only") and params.get("both_apis") == "invoke":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=["ainvoke", "invoke"])
def both_apis(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once on LangGraph's async API and once on its sync API (`helpers.API`).

    A module opts in with `pytestmark = pytest.mark.usefixtures("both_apis")`.
    """
    import helpers  # not at the top: LANGGRAPH_STRICT_MSGPACK is set before LangGraph loads

    monkeypatch.setattr(helpers, "API", request.param)
    return str(request.param)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace directory for the file tools."""
    root = tmp_path / "workspace"
    root.mkdir()
    return root


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """planexec's data directory (not made yet) and the editor stay inside the test's temp dir."""
    home = tmp_path / "home"
    monkeypatch.setenv("PLANEXEC_HOME", str(home))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", "false")
    monkeypatch.setenv("COLUMNS", "220")  # wide tables: assertions see cells unwrapped
    return home


class _Terminal:
    """Stands in for stdin on a terminal; answers come from `builtins.input`."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Typed answers, in order; when they run out, input hits end-of-file (Ctrl-D)."""
    queue: list[str] = []

    def fake_input(prompt: str = "") -> str:
        if not queue:
            raise EOFError
        return queue.pop(0)

    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("builtins.input", fake_input)
    return queue
