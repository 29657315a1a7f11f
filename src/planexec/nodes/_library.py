"""What the nodes do with the plan library: replay, examples for the planner, saving.

The library is an economy, not a dependency: when the store cannot be read or
written, the run goes on as if it had no library, and a warning says why.
"""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from langgraph.runtime import Runtime

from planexec.context import Context, resolve_context
from planexec.library import Match, PlanLibrary
from planexec.prompts import library as prompts
from planexec.prompts import render
from planexec.resources import Resources
from planexec.state import (
    PlanRevision,
    State,
    add_usage,
    current_revision,
    goal_number,
    goal_of_record,
    merge_results,
    next_revision,
    timestamp,
)

logger = logging.getLogger("planexec.library")


def library_of(runtime: Runtime[Context], resources: Resources) -> PlanLibrary | None:
    """The run's plan library, or None when the graph has no store."""
    if runtime.store is None:
        return None
    context = resolve_context(runtime.context)
    return PlanLibrary(runtime.store, resources.library_namespace or context.library_namespace)


async def replayed_revision(
    state: State, goal: str, runtime: Runtime[Context], resources: Resources
) -> PlanRevision | None:
    """The first plan revision, replayed from a saved plan that fits `goal` exactly.

    None unless `reuse_plans` is "replay", no plan was written yet, and one fits.
    """
    context = resolve_context(runtime.context)
    library = library_of(runtime, resources)
    if library is None or context.reuse_plans != "replay" or current_revision(state) is not None:
        return None
    try:
        match = await library.areplay(
            goal,
            resources.tools,
            max_steps=context.max_plan_steps,
            max_args_chars=context.max_args_chars,
        )
    except Exception as exc:  # the store is unreachable or broken: plan as usual
        logger.warning("the plan library could not be read: %r", exc)
        return None
    if match is None:
        return None
    fit = "the goal fills its template" if match.params else "the same goal"
    reason = f"replayed saved plan {match.entry.id}: {fit}"
    revision = next_revision(state, match.plan, "library", reason)
    revision["library"] = match.entry.origin(match.params)
    return revision


async def examples_section(goal: str, runtime: Runtime[Context], resources: Resources) -> str:
    """The planner prompt's `<saved_plans>` section for `goal`, or "" when there is none."""
    context = resolve_context(runtime.context)
    library = library_of(runtime, resources)
    if library is None or context.reuse_plans == "off" or context.library_examples == 0:
        return ""
    try:
        matches = await library.afind(
            goal,
            resources.tools,
            k=context.library_examples,
            max_steps=context.max_plan_steps,
            max_args_chars=context.max_args_chars,
        )
    except Exception as exc:  # the store is unreachable or broken: plan without examples
        logger.warning("the plan library could not be read: %r", exc)
        return ""
    return render_examples(matches)


def render_examples(matches: Sequence[Match]) -> str:
    """The `<saved_plans>` section showing `matches`, or "" for none.

    Goals and plans come from a shared store, so they are written as JSON with `<`, `>`
    and `&` escaped: nothing in them can close or open a tag of the prompt.
    """
    if not matches:
        return ""
    shown = []
    for match in matches:
        entry = match.entry
        rate = entry.success_rate
        goal = entry.template or (entry.goals[-1] if entry.goals else entry.goal)
        shown.append(
            render(
                prompts.EXAMPLE,
                id=entry.id,
                uses=entry.stats.uses,
                rate="none yet" if rate is None else f"{rate:.2f}",
                last=_day(entry.stats.last_success_at),
                goal=inert_json(goal),
                plan=inert_json(match.plan),
            )
        )
    return render(prompts.EXAMPLES, plans="\n".join(shown))


def inert_json(value: object) -> str:
    """`value` as compact JSON whose text cannot be read as a prompt tag."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _day(at: str | None) -> str:
    if not at:
        return "never"
    try:
        return datetime.fromisoformat(at).date().isoformat()
    except ValueError:
        return "unknown"


def final_state(state: State, update: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with a node's last `update` merged as the graph's reducers would."""
    merged: dict[str, Any] = {**state, **update}
    if "revisions" in update:
        merged["revisions"] = operator.add(state.get("revisions") or [], update["revisions"])
    if "reviews" in update:
        merged["reviews"] = operator.add(state.get("reviews") or [], update["reviews"])
    if "results" in update:
        merged["results"] = merge_results(state.get("results"), update["results"])
    if "usage" in update:
        merged["usage"] = add_usage(state.get("usage"), update["usage"])
    return merged


async def record_end(
    state: State, update: Mapping[str, Any], runtime: Runtime[Context], resources: Resources
) -> None:
    """Tell the library how the run ended: save a completed plan, count a replay's outcome."""
    context = resolve_context(runtime.context)
    library = library_of(runtime, resources)
    goal = state.get("goal")
    if library is None or not context.save_plans or not isinstance(goal, str):
        return
    final = final_state(state, update)
    # A thread's earlier goals are not this run's: their revisions and reviews stay out.
    this_goal = goal_number(state)
    for key in ("revisions", "reviews"):
        final[key] = [r for r in final.get(key) or [] if goal_of_record(r) == this_goal]
    info = runtime.execution_info
    # The checkpoint a node starts from is the same when it runs again after a crash, and
    # new for every other run end: the id keeps a re-run from counting twice.
    run_id = f"{info.thread_id}:{info.checkpoint_id}" if info else f"no-run-info:{timestamp()}"
    try:
        await library.arecord(
            goal.strip(),
            final,
            resources.tools,
            run_id=run_id,
            reviewed=context.review == "always",
        )
    except Exception as exc:  # the run's outcome stands even if the library cannot keep it
        logger.warning("the plan library could not be written: %r", exc)
