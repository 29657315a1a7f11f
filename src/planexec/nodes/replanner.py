"""The replanner node: after the plan runs (or a step fails), finish or revise the rest.

Finished steps are kept as they ran: the revised plan is the finished steps followed by
the replanner's new steps, validated like any plan. `max_replans` bounds revisions;
past it the run ends "budget_exhausted" with every finished result kept.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from planexec.budget import Budget, BudgetExhaustedError
from planexec.context import Context, resolve_context
from planexec.errors import ModelCallError
from planexec.events import emit
from planexec.execution import bounded_text
from planexec.nodes._drafts import (
    invalid_reply,
    invalid_reply_section,
    unanswered_calls,
    unreadable,
    valid_reply,
)
from planexec.nodes.planner import goal_of
from planexec.plan import Plan, PlanDict, Replan, StepDict, as_text, validate_plan
from planexec.prompts import fill, render
from planexec.prompts import replanner as prompts
from planexec.prompts.sections import DATA_NOTICE
from planexec.resources import Resources
from planexec.state import (
    State,
    StepResult,
    done_steps,
    goal_number,
    goal_of_record,
    next_revision,
    rejection_feedback,
    replans_used,
    retired_ids,
    revision_number,
)
from planexec.streaming import AnswerStream, finishes_replan

EARLIER_RESULTS = 8
"""Results of steps finished under earlier revisions shown besides those the plan needs."""
EARLIER_RESULT_CHARS = 1_000
"""The most characters of each such result the prompt shows."""
LATEST_REASONS = 3
"""How many revisions' reasons `<earlier_revisions>` shows."""
REASON_CHARS = 300
"""The most characters of each reason shown."""
LISTED_IDS = 30
"""The most step ids `<earlier_revisions>` lists in each list; the rest are counted."""


def _status_of(step: StepDict, state: State) -> str:
    result = (state.get("results") or {}).get(step["id"])
    return result["status"] if result else "pending"


def replanner_messages(
    state: State, context: Context, resources: Resources
) -> list[SystemMessage | HumanMessage]:
    """The replanner's prompt: goal, tools, the live plan with each step's status, results.

    Its size follows the live plan, not the thread's history. Steps settled under an
    earlier revision than the latest that ran any step leave `<plan>`; of their results
    only those a live step depends on and the latest `EARLIER_RESULTS` are shown, each
    cut to `EARLIER_RESULT_CHARS`. `<earlier_revisions>` counts the rest.
    """
    plan = state.get("plan") or {"steps": []}
    results = state.get("results") or {}
    latest = _latest_run_revision(results)
    live = [s for s in plan["steps"] if not _settled_before(results.get(s["id"]), latest)]
    shown = [{**step, "status": _status_of(step, state)} for step in live]
    message = rejection_feedback(state)
    feedback = render(prompts.FEEDBACK, message=message) if message is not None else ""
    can_continue = context.replan_policy == "after_each_step" and any(
        s["status"] == "pending" for s in shown
    )
    return [
        SystemMessage(
            fill(
                resources.prompts.template("replanner", context),
                options=prompts.CONTINUE_OPTION if can_continue else "",
                replans_left=max(0, context.max_replans - replans_used(state)),
                data_notice=DATA_NOTICE,
            )
        ),
        HumanMessage(
            fill(
                resources.prompts.template("replanner_user", context),
                goal=goal_of(state, context.max_goal_chars),
                tools=resources.describe_tools(),
                revision=revision_number(state),
                plan=json.dumps(shown, indent=1, ensure_ascii=False),
                results=_results_section(results, live, latest),
                history=_history_section(state, latest),
                feedback=feedback,
                invalid_reply=invalid_reply_section(state),
            )
        ),
    ]


def _latest_run_revision(results: dict[str, StepResult]) -> int | None:
    """The latest revision any step ran under; None when no result names one."""
    return max((r["revision"] for r in results.values() if "revision" in r), default=None)


def _settled_before(result: StepResult | None, latest: int | None) -> bool:
    """Whether `result` settled its step under a revision before `latest`."""
    return result is not None and latest is not None and result.get("revision", latest) < latest


def _result_tag(step_id: str, result: StepResult, limit: int | None = None) -> str:
    body = as_text(result["output"]) if result["status"] == "done" else result["error"] or ""
    if limit is not None:
        body = bounded_text(body, limit)
    return f'<result step="{step_id}" status="{result["status"]}">\n{body}\n</result>'


def _results_section(
    results: dict[str, StepResult], live: list[StepDict], latest: int | None
) -> str:
    """Each shown result once, in the order the steps settled.

    Results from the latest revision that ran steps are shown in full, even of failed
    steps that the plan has since dropped; of earlier finished steps, those a live step
    depends on and the latest `EARLIER_RESULTS`, each cut to `EARLIER_RESULT_CHARS`.
    """
    needed = {dep for step in live for dep in step["depends_on"]}
    earlier = [
        i for i, r in results.items() if _settled_before(r, latest) and r["status"] == "done"
    ]
    kept = {i for i in earlier if i in needed} | set(earlier[-EARLIER_RESULTS:])
    tags = [
        _result_tag(i, r, EARLIER_RESULT_CHARS) if i in kept else _result_tag(i, r)
        for i, r in results.items()
        if i in kept or not _settled_before(r, latest)
    ]
    return "\n".join(tags) or "(no step has run)"


def _history_section(state: State, latest: int | None) -> str:
    """`<earlier_revisions>` once the current goal's plan has been revised, else nothing."""
    goal = goal_number(state)
    revisions = [r for r in state.get("revisions") or [] if goal_of_record(r) == goal]
    if len(revisions) < 2:
        return ""
    sources = [
        render(template, count=count)
        for source, template in prompts.SOURCES.items()
        if (count := sum(1 for r in revisions if r["source"] == source))
    ]
    rejected = sum(
        1
        for r in state.get("reviews") or []
        if r["decision"] == "reject" and goal_of_record(r) == goal
    )
    if rejected:
        sources.append(render(prompts.REJECTED, count=rejected))
    reasons = [
        render(
            prompts.REASON,
            revision=r["revision"],
            reason=bounded_text(r["reason"] or prompts.NO_REASON, REASON_CHARS),
        )
        for r in revisions[-LATEST_REASONS:]
    ]
    results = state.get("results") or {}
    earlier = [i for i, r in results.items() if _settled_before(r, latest)]
    return render(
        prompts.EARLIER_REVISIONS,
        revision=revisions[-1]["revision"],
        sources=", ".join(sources),
        reasons="\n".join(reasons),
        settled=_id_list([i for i in earlier if results[i]["status"] == "done"]),
        retired=_id_list([i for i in earlier if results[i]["status"] != "done"]),
    )


def _id_list(ids: list[str]) -> str:
    """The latest `LISTED_IDS` of `ids`, and how many earlier ones are left out."""
    if not ids:
        return prompts.NO_IDS
    listed = ", ".join(ids[-LISTED_IDS:])
    left = len(ids) - LISTED_IDS
    return render(prompts.MORE_IDS, ids=listed, left=left) if left > 0 else listed


def conclude_without_model(state: State) -> dict[str, Any]:
    """The end of a run whose replan policy is "never": the sink steps' results, or the failure."""
    plan = state.get("plan") or {"steps": []}
    results = state.get("results") or {}
    for step in plan["steps"]:
        result = results.get(step["id"])
        if result is not None and result["status"] != "done":
            return {
                "status": "failed",
                "reason": f"step {step['id']} {result['status']}: {result['error']}",
            }
    needed = {dep for step in plan["steps"] for dep in step["depends_on"]}
    sinks = [s["id"] for s in plan["steps"] if s["id"] not in needed and s["id"] in results]
    if len(sinks) == 1:
        answer = as_text(results[sinks[0]]["output"])
    else:
        answer = "\n".join(f"{i}: {as_text(results[i]['output'])}" for i in sinks)
    return {"status": "completed", "answer": answer, "reason": "every step of the plan is done"}


async def replanner(
    state: State, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Ask the replanner model to finish or revise, and check what it says."""
    context = resolve_context(runtime.context)
    budget = Budget.of(state, context, runtime.stream_writer)
    if context.replan_policy == "never":
        return {**conclude_without_model(state), "active_s": budget.elapsed()}
    left = context.max_replans - replans_used(state)
    plan = state.get("plan") or {"steps": []}
    failed = [s["id"] for s in plan["steps"] if _status_of(s, state) == "failed"]
    if failed and left <= 0:
        return {
            "status": "budget_exhausted",
            "reason": f"step {failed[0]} failed and the replan budget (max_replans="
            f"{context.max_replans}) is used up; every finished step's result is kept",
            "active_s": budget.elapsed(),
        }
    async with AnswerStream(finishes_replan, limit=context.max_output_chars) as answer:
        return await _decide(state, runtime, resources, budget, answer, failed)


async def _decide(
    state: State,
    runtime: Runtime[Context],
    resources: Resources,
    budget: Budget,
    answer: AnswerStream,
    failed: list[str],
) -> dict[str, Any]:
    """Ask the replanner model, its answer streamed, and act on its decision."""
    context = resolve_context(runtime.context)
    left = context.max_replans - replans_used(state)
    try:
        reply, usage = await resources.ask_structured(
            "replanner",
            context,
            budget,
            Replan,
            replanner_messages(state, context, resources),
            revision=revision_number(state),
            answer=answer,
        )
    except (BudgetExhaustedError, ModelCallError) as exc:
        return {
            **_call_failed(exc, state, context),
            "active_s": budget.elapsed(),
            **unanswered_calls("replanner", budget),
        }
    spent = {"usage": {"replanner": usage}, "active_s": budget.elapsed()}
    attempts = state.get("draft_attempts", 0)
    decision = _bounded(reply.parsed, context)
    if decision is None:
        return {**invalid_reply("replanner", context, attempts, reply.text, reply.errors), **spent}
    problems = _decision_errors(decision, state, failed)
    if problems:
        return {**invalid_reply("replanner", context, attempts, reply.text, problems), **spent}
    if decision.action == "finish" and decision.answer is not None:
        # The streamed chunks now spell the answer, under `answer.message_id`.
        answer_id = await answer.finish(decision.answer)
        return {
            "status": "completed",
            "answer": decision.answer,
            # The end message takes the chunks' id; with nothing streamed, its own.
            "answer_id": answer_id if answer.relayed else None,
            "reason": decision.reason,
            **valid_reply(),
            **spent,
        }
    if decision.action == "continue":
        return {**valid_reply(), **spent}
    if left <= 0:
        return {
            "status": "budget_exhausted",
            "reason": f"the replanner asked to revise the plan ({decision.reason}) but the "
            f"replan budget (max_replans={context.max_replans}) is used up; every finished "
            "step's result is kept",
            **spent,
        }
    done = done_steps(state)
    revised = _revised_plan(done, [s.to_dict() for s in decision.steps or []])
    errors = validate_plan(
        revised,
        resources.tools,
        max_steps=context.max_plan_steps,
        done=done,
        retired=retired_ids(state),
        max_args_chars=context.max_args_chars,
        max_text_chars=context.max_text_chars,
    )
    if errors:
        return {**invalid_reply("replanner", context, attempts, reply.text, errors), **spent}
    update = _revision(state, revised.to_dict(), decision.reason, runtime)
    if context.review == "always":
        emit(runtime.stream_writer, "review_requested", revision=update["revisions"][0]["revision"])
    return {**update, **valid_reply(), **spent}


def _bounded(decision: Replan | None, context: Context) -> Replan | None:
    """The decision with its answer and reason cut to the context's limits."""
    if decision is None:
        return None
    answer = decision.answer
    if answer is not None:
        answer = bounded_text(answer, context.max_output_chars)
    reason = bounded_text(decision.reason, context.max_text_chars)
    return decision.model_copy(update={"answer": answer, "reason": reason})


def _revised_plan(done: dict[str, StepDict], proposed: list[StepDict]) -> Plan:
    """The finished steps followed by the replanner's new steps.

    A finished step that the replanner restates takes its own place, so validation
    accepts it when unchanged and reports any change as a change to a finished step.
    """
    restated: dict[str, StepDict] = {}
    for step in proposed:
        if step["id"] in done:
            restated.setdefault(step["id"], step)
    steps = [
        *(restated.get(i, ran) for i, ran in done.items()),
        *(step for step in proposed if restated.get(step["id"]) is not step),
    ]
    return Plan.model_validate({"steps": steps})


def _decision_errors(decision: Replan, state: State, failed: list[str]) -> list[str]:
    plan = state.get("plan") or {"steps": []}
    pending = [s["id"] for s in plan["steps"] if _status_of(s, state) == "pending"]
    if decision.action == "finish" and not (decision.answer or "").strip():
        return ['action "finish" needs the final answer in `answer`']
    if decision.action == "replan" and not decision.steps:
        return ['action "replan" needs at least one new step in `steps`']
    if decision.action == "continue" and failed:
        return [f'step {failed[0]} failed, so "continue" is not possible: finish or replan']
    if decision.action == "continue" and not pending:
        return ['no step is left to run, so "continue" is not possible: finish or replan']
    return []


def _revision(
    state: State, plan: PlanDict, reason: str, runtime: Runtime[Context]
) -> dict[str, Any]:
    revision = next_revision(state, plan, "replanner", reason)
    emit(
        runtime.stream_writer,
        "replan",
        revision=revision["revision"],
        reason=reason,
        diff=revision["diff"],
    )
    return {"plan": plan, "revisions": [revision], "revision": revision["revision"]}


def _call_failed(
    exc: BudgetExhaustedError | ModelCallError, state: State, context: Context
) -> dict[str, Any]:
    """The update for a replanner call that did not return a reply to use."""
    if isinstance(exc, BudgetExhaustedError):
        return {
            "status": "budget_exhausted",
            "reason": f"{exc}; every finished step's result is kept",
        }
    if exc.unreadable:
        # Asked again like an invalid decision, up to max_plan_attempts replies.
        attempts = state.get("draft_attempts", 0)
        return invalid_reply("replanner", context, attempts, "", [unreadable(exc)])
    return {"status": "failed", "reason": str(exc)}
