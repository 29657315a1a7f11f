"""Plan pictures: the Mermaid flowchart and the terminal tree, coloured by step status."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from helpers import step
from planexec.cli.show import show_thread
from planexec.pictures import plan_mermaid, plan_tree, step_status

PLAN = {
    "steps": [
        step("s1", args={"expression": "2*3"}, description='Multiply "2" by <3> #now'),
        step("s2", args={"expression": "sum({{s1}})"}, depends_on=["s1"]),
        step("s3", tool=None, depends_on=["s2"], description="Explain the total"),
        step("s4", depends_on=["s1"], description="Add one"),
        step("s5", tool="publish", depends_on=["s4", "s1"], description="Publish the result"),
    ]
}
RESULTS: dict[str, Any] = {
    "s1": {"status": "done", "output": 6, "error": None},
    "s2": {"status": "failed", "output": None, "error": "unknown function 'sum'"},
    "s3": {"status": "skipped", "output": None, "error": "not run: step s2 failed"},
}


def test_mermaid_has_a_node_per_step_an_edge_per_dependency_and_a_class_per_status() -> None:
    assert plan_mermaid(PLAN, RESULTS, active=["s4"]) == "\n".join(
        [
            "flowchart TD",
            '    n1["s1 · calculator<br/>Multiply #quot;2#quot; by #lt;3#gt; #35;now"]',
            '    n2["s2 · calculator<br/>do s2"]',
            '    n3["s3 · model<br/>Explain the total"]',
            '    n4["s4 · calculator<br/>Add one"]',
            '    n5["s5 · publish<br/>Publish the result"]',
            "    n1 --> n2",
            "    n2 --> n3",
            "    n1 --> n4",
            "    n4 --> n5",
            "    n1 --> n5",
            "    classDef done fill:#dcfce7,stroke:#16a34a,color:#14532d",
            "    classDef failed fill:#fee2e2,stroke:#dc2626,color:#7f1d1d",
            "    classDef skipped fill:#f3f4f6,stroke:#9ca3af,color:#6b7280,stroke-dasharray:4 3",
            "    classDef active fill:#fef3c7,stroke:#d97706,color:#78350f",
            "    classDef pending fill:#ffffff,stroke:#64748b,color:#1e293b",
            "    class n1 done",
            "    class n2 failed",
            "    class n3 skipped",
            "    class n4 active",
            "    class n5 pending",
        ]
    )


def test_mermaid_without_results_draws_every_step_pending_and_cuts_long_text() -> None:
    plan = {"steps": [step("a", description="x" * 60), step("b", depends_on=["a"])]}
    chart = plan_mermaid(plan, direction="LR", width=10)
    assert chart.splitlines()[0] == "flowchart LR"
    assert '    n1["a · calculator<br/>xxxxxxxxx…"]' in chart
    assert chart.splitlines()[-1] == "    class n1,n2 pending"
    assert plan_mermaid({"steps": []}).splitlines()[1] == '    empty["(the plan has no steps)"]'


def test_status_prefers_a_recorded_result_over_being_active() -> None:
    assert step_status("s1", RESULTS, active=["s1"]) == "done"
    assert step_status("s9", RESULTS, active=["s9"]) == "active"
    assert step_status("s9", None) == "pending"


def render(renderable: Any) -> str:
    console = Console(record=True, width=100, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_tree_hangs_each_step_under_its_last_dependency() -> None:
    text = render(plan_tree(PLAN, RESULTS, active=["s4"], title="plan (revision 2)"))
    assert text == (
        "plan (revision 2)\n"
        '└── ✓ s1 calculator Multiply "2" by <3> #now → 6\n'
        "    ├── ✗ s2 calculator do s2 failed: unknown function 'sum'\n"
        "    │   └── ○ s3 model Explain the total skipped: not run: step s2 failed\n"
        "    └── ▶ s4 calculator Add one running or awaiting approval\n"
        "        └── · s5 publish Publish the result (after s1)\n"
    )


def test_tree_markup_in_plan_text_is_shown_literally() -> None:
    plan = {"steps": [step("s1", description="[bold]not markup[/]")]}
    done = {"s1": {"status": "done", "output": "[red]x[/]", "error": None}}
    assert (
        render(plan_tree(plan, done))
        == "plan\n└── ✓ s1 calculator [bold]not markup[/] → [red]x[/]\n"
    )


def test_show_prints_the_tree_with_the_table() -> None:
    console = Console(record=True, width=160, color_system=None)
    values = {
        "goal": "g",
        "plan": PLAN,
        "results": RESULTS,
        "revisions": [],
        "awaiting_approval": ["s4"],
    }
    show_thread(console, "t1", values, {}, "paused for step approval", demo=False)
    text = console.export_text()
    assert "dependencies\n└── ✓ s1 calculator" in text
    assert "▶ s4 calculator Add one running or awaiting approval" in text
    assert text.index("plan (revision ?)") < text.index("dependencies")
