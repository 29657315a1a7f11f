"""The README shows what the code does: its snippet runs, its diagram and table are current.

Run with UPDATE_README=1 to rewrite the generated sections from the code.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from pydantic import TypeAdapter

from helpers import README, run_readme_snippet
from planexec import Context
from planexec.graph import graph


def _section(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert match, f"README has no {name} section"
    return match.group(1)


def _replace(text: str, name: str, body: str) -> str:
    return re.sub(
        rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)",
        lambda m: m.group(1) + body + m.group(2),
        text,
        flags=re.S,
    )


def _default(name: str) -> str:
    if name == "prices":
        return "OpenAI list prices of the gpt-4.1 and gpt-4o families"
    value = getattr(Context(), name)
    return "unset" if value is None else f"`{value!r}`"


def context_table() -> str:
    """The Markdown table of Context fields, from their docstrings."""
    schema = TypeAdapter(Context).json_schema()["properties"]
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(Context):
        description = " ".join(schema[field.name]["description"].split())
        rows.append(f"| `{field.name}` | {_default(field.name)} | {description} |")
    return "\n".join(rows) + "\n"


def mermaid_block() -> str:
    return "```mermaid\n" + graph.get_graph().draw_mermaid().rstrip("\n") + "\n```\n"


def test_generated_sections_are_current() -> None:
    text = README.read_text()
    generated = {"graph": mermaid_block(), "context": context_table()}
    if os.environ.get("UPDATE_README"):
        for name, body in generated.items():
            text = _replace(text, name, body)
        README.write_text(text)
    for name, body in generated.items():
        assert _section(text, name) == body, (
            f"README's {name} section is stale: run UPDATE_README=1 pytest tests/test_readme.py"
        )


def test_embedding_snippet_runs_and_prints_what_the_readme_shows(tmp_path: Path) -> None:
    run, shown = run_readme_snippet("embed", tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == shown


def test_streaming_snippet_shows_only_the_answer_streamed(tmp_path: Path) -> None:
    run, shown = run_readme_snippet("stream", tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == shown
    *chunks, answer = shown.splitlines()
    assert len(chunks) > 1
    assert all(line.startswith("replanner '") for line in chunks)
    assert "".join(line.removeprefix("replanner '")[:-1] for line in chunks) == answer
