"""Shared fixtures: no network, no provider keys, a fresh saver and graph per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from langchain_core.tools import BaseTool

from planexec import Context
from planexec.tools import calculator, file_tools

# `pg_server` and `pg_url`: a throwaway PostgreSQL server (tests/pg_server.py).
pytest_plugins = ["pg_server"]

PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "ANTHROPIC_API_KEY",
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


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace directory for the file tools."""
    root = tmp_path / "workspace"
    root.mkdir()
    return root


@pytest.fixture
def basic_tools(workspace: Path) -> list[BaseTool]:
    """The calculator and file tools fixed to the test's workspace."""
    return [calculator, *file_tools(workspace)]


@pytest.fixture
def no_review() -> Context:
    """A context that skips plan review and retries fast."""
    return Context(review="never", retry_initial_interval=0.0)
