r"""Pictures of a plan: a Mermaid flowchart for notebooks and docs, a tree for the terminal.

Both colour each step by its status: done, failed, skipped, pending (not run yet) or
active (running, or waiting for a person's approval).

Example:
    ```python
    from IPython.display import Markdown, display

    chart = plan_mermaid(state["plan"], state["results"])
    display(Markdown(f"```mermaid\n{chart}\n```"))
    ```
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal

from rich.markup import escape
from rich.tree import Tree

from planexec.ordering import as_text, topological_order

StepStatus = Literal["done", "failed", "skipped", "active", "pending"]

STATUSES: tuple[StepStatus, ...] = ("done", "failed", "skipped", "active", "pending")

MERMAID_STYLES: dict[StepStatus, str] = {
    "done": "fill:#dcfce7,stroke:#16a34a,color:#14532d",
    "failed": "fill:#fee2e2,stroke:#dc2626,color:#7f1d1d",
    "skipped": "fill:#f3f4f6,stroke:#9ca3af,color:#6b7280,stroke-dasharray:4 3",
    "active": "fill:#fef3c7,stroke:#d97706,color:#78350f",
    "pending": "fill:#ffffff,stroke:#64748b,color:#1e293b",
}
"""The Mermaid `classDef` of each status."""

TREE_STYLES: dict[StepStatus, tuple[str, str]] = {
    "done": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("○", "yellow"),
    "active": ("▶", "bold yellow"),
    "pending": ("·", "dim"),
}
"""The symbol and rich style of each status in the terminal tree."""


def step_status(
    step_id: str, results: Mapping[str, Any] | None, active: Collection[str] = ()
) -> StepStatus:
    """A step's status from the run's results, and the steps that are running or waiting."""
    result = (results or {}).get(step_id)
    if result is not None and result.get("status") in ("done", "failed", "skipped"):
        status: StepStatus = result["status"]
        return status
    return "active" if step_id in active else "pending"


def short(value: Any, limit: int = 80) -> str:
    """`value` as one line of text, cut to `limit` characters."""
    text = " ".join(as_text(value).split()) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mermaid_text(text: str) -> str:
    """`text` made safe inside a quoted Mermaid label."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


def plan_mermaid(
    plan: Mapping[str, Any],
    results: Mapping[str, Any] | None = None,
    *,
    active: Collection[str] = (),
    direction: Literal["TD", "LR"] = "TD",
    width: int = 48,
) -> str:
    """The plan as a Mermaid flowchart: one node per step, an edge per dependency.

    Nodes are labelled with the step's id, tool ("model" for a step the executor model
    answers) and description cut to `width` characters, and coloured by status.

    Args:
        plan: The plan, as JSON (`state["plan"]`).
        results: The run's step results (`state["results"]`); None draws every step pending.
        active: Ids of steps running now or waiting for approval
            (`state["awaiting_approval"]`).
        direction: "TD" (top down) or "LR" (left to right).
        width: The most characters of each step's description shown.
    """
    steps = list(plan.get("steps") or [])
    lines = [f"flowchart {direction}"]
    node = {s["id"]: f"n{index}" for index, s in enumerate(steps, start=1)}
    if not steps:
        lines.append('    empty["(the plan has no steps)"]')
    for s in steps:
        head = _mermaid_text(f"{s['id']} · {s['tool'] or 'model'}")
        body = _mermaid_text(short(s["description"], width))
        lines.append(f'    {node[s["id"]]}["{head}<br/>{body}"]')
    for s in steps:
        lines.extend(
            f"    {node[dep]} --> {node[s['id']]}" for dep in s["depends_on"] if dep in node
        )
    by_status: dict[StepStatus, list[str]] = {status: [] for status in STATUSES}
    for s in steps:
        by_status[step_status(s["id"], results, active)].append(node[s["id"]])
    lines.extend(f"    classDef {status} {MERMAID_STYLES[status]}" for status in STATUSES)
    lines.extend(
        f"    class {','.join(nodes)} {status}" for status, nodes in by_status.items() if nodes
    )
    return "\n".join(lines)


def plan_tree(
    plan: Mapping[str, Any],
    results: Mapping[str, Any] | None = None,
    *,
    active: Collection[str] = (),
    title: str = "plan",
    width: int = 60,
) -> Tree:
    """The plan as a rich `Tree` for the terminal, each step marked with its status.

    A step hangs under the dependency that comes last in the plan's order; its other
    dependencies are named ("after s2, s3"). A done step shows its result, a failed or
    skipped one the reason.
    """
    steps = topological_order(list(plan.get("steps") or []))
    position = {s["id"]: index for index, s in enumerate(steps)}
    root = Tree(escape(title), guide_style="dim")
    branch: dict[str, Tree] = {}
    for s in steps:
        deps = sorted((d for d in s["depends_on"] if d in position), key=position.__getitem__)
        parent = branch[deps[-1]] if deps else root
        branch[s["id"]] = parent.add(_tree_label(s, deps[:-1], results, active, width))
    return root


def _tree_label(
    step: Mapping[str, Any],
    others: list[str],
    results: Mapping[str, Any] | None,
    active: Collection[str],
    width: int,
) -> str:
    status = step_status(step["id"], results, active)
    symbol, style = TREE_STYLES[status]
    label = (
        f"[{style}]{symbol}[/] [bold]{escape(step['id'])}[/] "
        f"[dim]{escape(step['tool'] or 'model')}[/] {escape(short(step['description'], width))}"
    )
    if others:
        label += f" [dim](after {escape(', '.join(others))})[/]"
    result = (results or {}).get(step["id"]) or {}
    if status == "done":
        label += f" [green]→ {escape(short(result.get('output'), width))}[/]"
    elif status in ("failed", "skipped"):
        label += f" [{style}]{status}: {escape(short(result.get('error'), width))}[/]"
    elif status == "active":
        label += f" [{style}]running or awaiting approval[/]"
    return label
