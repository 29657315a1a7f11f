"""The repeated-goal workload: what the plan library saves, with it off, on suggest, on replay.

`python -m bench.library [--repeats 10] [--latency 0.05]` starts the fake OpenAI server
(`tests/fake_openai.py`) with a latency per request and per completion token, then for
each `reuse_plans` mode ("off", "suggest", "replay"), on a fresh SQLite checkpoint and
the SQLite store beside it (as the command line keeps them):

1. a seed run plans the goal and completes, which saves its plan;
2. the same goal runs `--repeats` more times (the exact repeats);
3. `--repeats` paraphrases of the goal run once each.

Every run is the real graph with `ChatOpenAI` clients and the calculator tool,
`review="never"`. The planner always answers with the same three-step plan and the
replanner finishes, so every mode does the same work apart from planning.

It reports planner calls, planner prompt and completion tokens, all tokens, and
wall-clock per phase, and the size of the `<saved_plans>` examples in the planner's
prompts (a quarter of their characters, the fake server's token rule). Targets: no
planner call on exact repeats with "replay"; on paraphrases, "suggest" spends no more
planner prompt tokens than "off" beyond the examples' own size. Exit code 0 whatever
the numbers: this is a report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from langchain_core.language_models import BaseChatModel

from fake_openai import FakeOpenAI, prompt_of, tool_names
from helpers import step
from planexec import Context, build_graph, run_config
from planexec.checkpoints import open_checkpointer
from planexec.context import ReuseMode
from planexec.models import chat_model
from planexec.scripted import plan_reply, replan_reply
from planexec.stores import open_store

REPEATS = 10
LATENCY_S = 0.05
PER_TOKEN_S = 0.001
MODES: tuple[ReuseMode, ...] = ("off", "suggest", "replay")

GOAL = "Compute 12*4+5 and 7*8-6, then add the two results together"
PARAPHRASES = [
    "Add together the results of 12*4+5 and 7*8-6",
    "What do 12*4+5 and 7*8-6 add up to together?",
    "Compute 12*4+5, compute 7*8-6, and add the two results",
    "Take 12*4+5 and 7*8-6 and add the results together",
    "Work out 12*4+5 and 7*8-6 then add the two together",
    "Sum the two results of 12*4+5 and 7*8-6",
    "Please compute 12*4+5 and 7*8-6 and add them together",
    "Add 12*4+5 to 7*8-6: compute both results, then add",
    "Compute the two results 12*4+5 and 7*8-6 and add them",
    "Find 12*4+5 and 7*8-6, then add the two results",
]
PLAN = [
    step("s1", "calculator", {"expression": "12*4+5"}, description="Compute 12*4+5"),
    step("s2", "calculator", {"expression": "7*8-6"}, description="Compute 7*8-6"),
    step(
        "s3",
        "calculator",
        {"expression": "{{s1}} + {{s2}}"},
        ["s1", "s2"],
        description="Add the two results",
    ),
]
ANSWER = "12*4+5 = 53 and 7*8-6 = 50; together they make 103."
_EXAMPLES = re.compile(r"\n<saved_plans>.*?</saved_plans>\n", re.S)
"""The section as the planner prompt inserts it, with the line breaks around it."""


def respond(body: dict[str, Any]) -> dict[str, Any] | None:
    """The planner always plans PLAN; the replanner finishes with ANSWER."""
    tools = tool_names(body)
    if "Plan" in tools:
        return plan_reply(PLAN)
    if "Replan" in tools:
        return replan_reply("finish", answer=ANSWER, reason="every step is done")
    return None


@dataclass
class Phase:
    """One mode's figures for one phase (seed, repeats or paraphrases)."""

    mode: str
    phase: str
    runs: int
    completed: int = 0
    planner_calls: int = 0
    planner_tokens_in: int = 0
    planner_tokens_out: int = 0
    tokens: int = 0
    examples_tokens: int = 0
    """Tokens of the `<saved_plans>` sections the planner was sent."""
    wall_s: float = 0.0


async def measure_mode(
    mode: ReuseMode, server: FakeOpenAI, folder: Path, repeats: int
) -> list[Phase]:
    """The three phases of one mode, on their own checkpoint file and store."""
    context = Context(review="never", reuse_plans=mode, model_timeout=60.0, model_max_retries=0)

    def models(spec: str, ctx: Context) -> BaseChatModel:
        return chat_model(spec, timeout=60.0, max_retries=0, api_key="bench", base_url=server.url)

    location = folder / f"{mode}.sqlite"
    phases = [
        ("seed", [GOAL]),
        ("exact repeats", [GOAL] * repeats),
        ("paraphrases", PARAPHRASES[:repeats]),
    ]
    rows = []
    async with open_checkpointer(location) as saver, open_store(location) as store:
        graph = build_graph(checkpointer=saver, store=store, model_factory=models)
        for name, goals in phases:
            row = Phase(mode, name, len(goals))
            before = len(server.requests)
            started = time.perf_counter()
            for n, goal in enumerate(goals):
                config = run_config(f"{mode}-{name}-{n}", context)
                out = await graph.ainvoke({"goal": goal}, config, context=context)
                row.completed += out.get("status") == "completed" and out.get("answer") == ANSWER
                usage = out.get("usage") or {}
                planner = usage.get("planner") or {}
                row.planner_calls += planner.get("calls", 0)
                row.planner_tokens_in += planner.get("input_tokens", 0)
                row.planner_tokens_out += planner.get("output_tokens", 0)
                row.tokens += sum(u["input_tokens"] + u["output_tokens"] for u in usage.values())
            row.wall_s = time.perf_counter() - started
            for body in server.requests[before:]:
                if "Plan" in tool_names(body):
                    # Rounded up: the prompt's tokens are its characters / 4 rounded down.
                    chars = sum(len(m) for m in _EXAMPLES.findall(prompt_of(body)))
                    row.examples_tokens += math.ceil(chars / 4)
            rows.append(row)
    return rows


async def measure_all(repeats: int = REPEATS, latency: float = LATENCY_S) -> list[Phase]:
    """Every mode's phases, one mode after the other on one server."""
    rows: list[Phase] = []
    with (
        FakeOpenAI(responder=respond, latency=latency, per_token_latency=PER_TOKEN_S) as server,
        tempfile.TemporaryDirectory(prefix="planexec-bench-library-") as tmp,
    ):
        folder = Path(tmp)
        # Warm up imports, clients and connections: one untimed run.
        await _warm_up(server, folder)
        for mode in MODES:
            rows.extend(await measure_mode(mode, server, folder, repeats))
    return rows


async def _warm_up(server: FakeOpenAI, folder: Path) -> None:
    warm = folder / "warm"
    warm.mkdir()
    await measure_mode("off", server, warm, 1)


def targets(rows: list[Phase]) -> dict[str, bool]:
    """Each target, and whether it holds."""
    by = {(row.mode, row.phase): row for row in rows}
    replay = by[("replay", "exact repeats")]
    off, suggest = by[("off", "paraphrases")], by[("suggest", "paraphrases")]
    return {
        "replay: 0 planner calls on exact repeats": replay.planner_calls == 0,
        "suggest: paraphrase planner tokens <= off + examples": suggest.planner_tokens_in
        <= off.planner_tokens_in + suggest.examples_tokens,
        "every run completed with the right answer": all(r.completed == r.runs for r in rows),
    }


def markdown(rows: list[Phase], repeats: int, latency: float) -> str:
    """The report as a Markdown table, with the targets."""
    lines = [
        f"### Plan library: the same goal {repeats} times and {repeats} paraphrases "
        f"(model: {latency * 1000:g} ms per call + {PER_TOKEN_S * 1000:g} ms per completion token)",
        "",
        "| reuse_plans | phase | runs | completed | planner calls | planner tokens in/out "
        "| examples tokens | all tokens | wall s | wall s per run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.mode} | {r.phase} | {r.runs} | {r.completed} | {r.planner_calls} "
            f"| {r.planner_tokens_in:,}/{r.planner_tokens_out:,} | {r.examples_tokens:,} "
            f"| {r.tokens:,} | {r.wall_s:.2f} | {r.wall_s / r.runs:.3f} |"
        )
    lines.append("")
    for name, ok in targets(rows).items():
        lines.append(f"- {name}: {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines) + "\n"


async def main(argv: list[str] | None = None) -> int:
    """Run the workload and print the report (and JSON with `--json`); always 0."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.library",
        description="The plan library's repeated-goal workload against a local fake model.",
    )
    parser.add_argument("--repeats", type=int, default=REPEATS, choices=range(1, 11))
    parser.add_argument("--latency", type=float, default=LATENCY_S, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON as well")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.environ["LANGSMITH_TRACING"] = "false"
    os.environ["LANGCHAIN_TRACING_V2"] = "false"
    rows = await measure_all(args.repeats, args.latency)
    print(markdown(rows, args.repeats, args.latency))
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=1))
    return 0


def run(argv: list[str] | None = None) -> int:
    """`main` for synchronous callers."""
    return asyncio.run(main(argv))


if __name__ == "__main__":
    sys.exit(run())
