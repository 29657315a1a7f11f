"""The notebooks run offline, start to finish, in a kernel of this environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# Text each notebook must print: the story it tells reached its end.
EXPECTED = {
    "quickstart": [
        "plan_review of revision 1",
        "s7: CalculatorError: unknown function 'sum'",
        "plan_review of revision 2 from the replanner",
        "step_approval for steps ['s12']",
        "status: completed",
        "| **Total** | **118400** |",
        "class n1,n2,n3,n4,n5,n6,n7,n8,n9 done",
        "invoke paused for plan_review",
        "invoke paused for step_approval",
        "invoke: completed | ",
    ],
    "human_review": [
        "plan_review revision 2 - rewritten after the reviewer's feedback",
        '"body": "Yearly cost: 450 EUR"',
        "outbox: [{'to': 'accounts@example.com', 'body': 'Three seats: 450 EUR a year.'}]",
        "fork:     completed | Five seats cost 750 EUR a year; finance has been told.",
        "original  revisions [1, 2, 3] results {'s1': 150, 's2': 450, "
        "'s3': 'sent to accounts@example.com'}",
        "fork      revisions [1, 2] results {'f1': 750, 'f2': 'sent to finance@example.com'}",
        "run_finished     (left behind) completed: Three seats cost 450 EUR a year",
    ],
    "chat": [
        "paused for plan_review",
        "revision 2 | [('reject', 'Sorry, I meant 12 times 5')]",
        "completed | 12 times 5 is 60.",
        "human: And that divided by 4?",
        "   ai: 60 divided by 4 is 15.",
        "goal 2 | earlier: ['12 times 5 is 60.']",
        "results now: {'s1': 15}",
    ],
    "custom_tools_and_models": [
        "s4: 56.25    model: cheap-model",
        "the executor model was offered only: ['calculator']",
        "ChatOpenAI qwen2.5:7b http://localhost:11434/v1",
        "MCP tools: [('lookup_price', False), ('add_to_cart', True), ('cart_total', False)]",
        "waiting for approval: [{'name': 'add_to_cart'",
        "{'p1': 0.75, 'p2': '4 pear', 'p3': 3.0}",
    ],
    "subagents": [
        "executor / step-s1     agent",
        "researcher args ['request']: Researches our pricing notes",
        "s1 researcher -> '150'  usage: {'calls': 2, 'input_tokens': 280, 'output_tokens': 14",
        "paused: {'type': 'question', 'question': 'Which plan do you mean: Pro or Team?'}",
        "sub-agent s2 waits in: ('tools',)",
        "checkpoint namespaces: ['', 'executor|step-s2']",
        "{'s1': 5, 's2': '90', 's3': 450}",
        "research model calls: 3 | step s2 usage: 3 calls",
        "status: budget_exhausted | budget max_model_calls exhausted",
    ],
}


def _paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] in ("display_data", "execute_result"):
            data = output["data"]
            parts.append(data.get("text/markdown") or data.get("text/plain") or "")
    return "".join(parts)


def test_every_notebook_is_tested() -> None:
    assert {path.stem for path in _paths()} == set(EXPECTED)


@pytest.mark.parametrize("path", _paths(), ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], cell.id
            assert cell.execution_count is None, cell.id


@pytest.mark.slow
@pytest.mark.parametrize("path", _paths(), ids=lambda path: path.stem)
def test_notebook_runs_offline(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits this environment: no provider keys (conftest), no tracing, and
    # a closed local port as the model endpoint, so nothing can reach a real model.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    # ipykernel gives its sys.stderr no file descriptor when it sees this variable; the
    # MCP stdio client hands the server sys.stderr, and needs one.
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary folders
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        # Run from a folder outside the repository, as a user's copy would be.
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [
        output
        for cell in cells
        for output in cell.outputs
        if output["output_type"] == "error"
        or (output["output_type"] == "stream" and output["name"] == "stderr")
    ]
    assert errors == []
    printed = "\n".join(_text(cell) for cell in cells)
    for expected in EXPECTED[path.stem]:
        assert expected in printed
