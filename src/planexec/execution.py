"""How one step runs.

- A tool step whose arguments are complete calls its tool directly: no model call.
- A tool step with `args: null` asks the executor model for the arguments, offering it
  that one tool and no other; any other call it asks for is refused and recorded.
- A step with `tool: null` asks the executor model to answer in text.
- A step whose tool is a sub-agent (`planexec.subagents`) runs that graph as a
  subgraph of the step's task, with the step's arguments and its dependencies' results.

The executor model sees the goal, the step and the results of the step's dependencies,
never the rest of the plan or its history. The only tool a step can run is the one its
approved plan step names.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables.config import merge_configs
from langchain_core.tools import BaseTool
from langgraph.config import get_config
from langgraph.prebuilt import ToolRuntime
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy
from pydantic import BaseModel

from planexec.budget import Budget, BudgetExhaustedError
from planexec.context import Context
from planexec.errors import (
    ExecutorReplyError,
    ModelCallError,
    ModelConfigError,
    PlanexecError,
    StepAbandonedError,
    StepTimeoutError,
    TransientError,
)
from planexec.injection import injected_params, state_view
from planexec.lease import check_lease
from planexec.plan import StepDict, as_text, check_args, resolve_args
from planexec.prompts import fill
from planexec.prompts.sections import DATA_NOTICE, dependency_results
from planexec.resources import Resources
from planexec.state import (
    State,
    StepResult,
    ToolCallRecord,
    Usage,
    revision_number,
    sum_usage,
    timestamp,
)
from planexec.subagents import SubAgent, SubAgentRequest, run_subagent
from planexec.threads import call_in_thread, runs_in_a_thread, still_running
from planexec.tracing import tool_call_config
from planexec.uncertain import Journal, StepSettled, call_once, is_idempotent


class StepArgumentsError(PlanexecError):
    """A step's arguments, after substitution, do not fit its tool."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failed attempt may succeed if tried again.

    A failed model call (`ModelCallError`) is not: its client already retried it
    (`Context.model_max_retries`), and retrying the step would multiply those requests.
    An unusable executor reply (`ExecutorReplyError`) is: the model is asked again.
    """
    if isinstance(exc, BudgetExhaustedError | ModelCallError):
        return False
    if isinstance(exc, TransientError | TimeoutError | ConnectionError | httpx.TransportError):
        return True
    return bool(getattr(exc, "is_retryable", False))


def step_retry_policy(context: Context) -> RetryPolicy:
    """How a step's task (or a proposal of its arguments) retries a transient failure."""
    return RetryPolicy(
        max_attempts=context.step_attempts,
        initial_interval=context.retry_initial_interval,
        backoff_factor=2.0,
        jitter=False,
        retry_on=is_transient,
    )


@dataclass
class StepEnv:
    """What every step of one executor pass shares."""

    resources: Resources
    context: Context
    budget: Budget
    state: State
    runtime: Runtime[Context]
    revision: int
    thread_id: str

    @classmethod
    def of(
        cls,
        state: State,
        runtime: Runtime[Context],
        resources: Resources,
        context: Context,
        budget: Budget,
    ) -> StepEnv:
        """The environment for steps of the current plan revision of `state`'s run."""
        info = runtime.execution_info
        return cls(
            resources=resources,
            context=context,
            budget=budget,
            state=state,
            runtime=runtime,
            revision=revision_number(state),
            thread_id=str(info.thread_id or "") if info else "",
        )

    @property
    def goal(self) -> str:
        """The run's goal, as the planner saw it (without surrounding spaces)."""
        return str(self.state.get("goal") or "").strip()


@dataclass
class StepRecord:
    """What one step's attempts in this process have done so far."""

    attempts: int = 0
    started: float = 0.0
    started_at: str | None = None
    usage: Usage | None = None
    refused: list[ToolCallRecord] = field(default_factory=list)
    args: dict[str, Any] | None = None
    model: str | None = None
    counted: set[str] = field(default_factory=set)
    """Ids of the sub-agent replies already in `usage`."""
    journal: Journal = field(default_factory=Journal)
    """The calls of a tool that must not run twice, as this process knows them."""

    def begin(self) -> None:
        """Count an attempt; the first one sets the start time."""
        self.attempts += 1
        if self.attempts == 1:
            self.started = time.monotonic()
            self.started_at = timestamp()

    def add_usage(self, usage: Usage) -> None:
        """Add one model call's use."""
        self.usage = usage if self.usage is None else sum_usage(self.usage, usage)

    def result(self, step: StepDict, revision: int, **outcome: Any) -> StepResult:
        """The step's result record with this record's history."""
        result: StepResult = {
            "status": outcome["status"],
            "output": outcome.get("output"),
            "error": outcome.get("error"),
            "tool": step["tool"],
            "args": self.args,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "duration_s": round(time.monotonic() - self.started, 4) if self.started else 0.0,
            "revision": revision,
            "usage": self.usage,
            "refused_calls": list(self.refused),
            "model": self.model,
        }
        if outcome.get("resolution"):
            result["resolution"] = outcome["resolution"]
        return result


def idempotency_key(thread_id: str, revision: int, step_id: str) -> str:
    """A key that is the same for every attempt and resume of one step of one revision."""
    return f"{thread_id}:r{revision}:{step_id}"


async def run_step(
    step: StepDict,
    outputs: dict[str, Any],
    env: StepEnv,
    record: StepRecord,
    approved_args: dict[str, Any] | None = None,
) -> StepResult:
    """One attempt at `step`, given its dependencies' outputs.

    Raises on failure; `is_transient` says whether another attempt may help.
    """
    record.begin()
    timeout = env.context.timeout_for(step["tool"])
    limit = env.context.max_output_chars
    # The time budget's deadline, outermost, cancels the attempt as a budget stop.
    async with env.budget.deadline():
        try:
            async with asyncio.timeout(timeout) as deadline:
                output = await _attempt(step, outputs, env, record, approved_args)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            if still_running(idempotency_key(env.thread_id, env.revision, step["id"])):
                raise StepAbandonedError(
                    f"timed out after {timeout:g}s while its tool {step['tool']} was still "
                    "running: a plain function cannot be stopped, so the step is not retried "
                    "or recorded while its call may still have its effect"
                ) from exc
            raise StepTimeoutError(f"timed out after {timeout:g}s") from exc
        except StepSettled as settled:
            return record.result(
                step,
                env.revision,
                status=settled.status,
                output=bounded_output(jsonable(settled.output), limit),
                error=None if settled.error is None else bounded_text(settled.error, limit),
                resolution=settled.resolution,
            )
    return record.result(step, env.revision, status="done", output=bounded_output(output, limit))


TRUNCATED = "\n[planexec: {dropped} more characters were cut here; outputs are limited to {limit}]"
"""The note that ends an output cut to `Context.max_output_chars`."""


def bounded_text(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters (the note included) if it is longer."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - len(TRUNCATED.format(dropped=len(text), limit=limit)))
    return text[:keep] + TRUNCATED.format(dropped=len(text) - keep, limit=limit)


def bounded_output(output: Any, limit: int) -> Any:
    """A step's output, kept as it is when its JSON text fits in `limit` characters.

    A longer output becomes its text (JSON, unless it is a string), cut to `limit`.
    """
    text = as_text(output)
    if len(text) <= limit:
        return output
    return bounded_text(text, limit)


async def _attempt(
    step: StepDict,
    outputs: dict[str, Any],
    env: StepEnv,
    record: StepRecord,
    approved_args: dict[str, Any] | None,
) -> Any:
    messages = _messages(step, outputs, env)
    if step["tool"] is None:
        reply = await _ask(env, record, messages, step=step["id"])
        record.refused.extend({"name": c["name"], "args": c["args"]} for c in reply.tool_calls)
        text = reply.text.strip()
        if not text:
            raise ExecutorReplyError("the executor model's reply was empty")
        return text
    tool = env.resources.tools[step["tool"]]
    if approved_args is not None:
        args = approved_args
    elif step["args"] is not None:
        args = resolve_args(step["args"], outputs, tool)
    else:
        args = await _choose_args(tool, messages, env, record, step=step["id"])
    # The values are final (a person's edit included): a `{{id}}` left in them is text.
    problems = check_args(tool, args, placeholders=False)
    if problems:
        raise StepArgumentsError("; ".join(problems))
    record.args = args
    if isinstance(tool, SubAgent):
        return jsonable(await _run_subagent(tool, args, step, outputs, env, record))
    if not is_idempotent(tool, env.context):
        return await _call_once(tool, args, step, env, record)
    return jsonable(await invoke_tool(tool, args, env, step))


async def _call_once(
    tool: BaseTool, args: dict[str, Any], step: StepDict, env: StepEnv, record: StepRecord
) -> Any:
    """Call a tool that must not run twice, journaled (`planexec.uncertain`); JSON data out."""

    async def call(chosen: dict[str, Any]) -> Any:
        record.args = chosen
        return jsonable(await invoke_tool(tool, chosen, env, step))

    return await call_once(
        step,
        tool.name,
        args,
        key=idempotency_key(env.thread_id, env.revision, step["id"]),
        revision=env.revision,
        journal=record.journal,
        call=call,
    )


async def _run_subagent(
    agent: SubAgent,
    args: dict[str, Any],
    step: StepDict,
    outputs: dict[str, Any],
    env: StepEnv,
    record: StepRecord,
) -> Any:
    """Run a sub-agent step as a subgraph of this step's task, metering its model calls."""
    # An executor model that chose the arguments stays in the record with the agent's.
    models = set(record.model.split(", ")) if record.model else set()

    def spent(usage: Usage, model: str) -> None:
        record.add_usage(usage)
        if model:
            models.add(model)
            record.model = ", ".join(sorted(models))

    request = SubAgentRequest(
        args=args,
        step_id=step["id"],
        description=step["description"],
        goal=env.goal,
        results={dep: outputs[dep] for dep in step["depends_on"]},
    )
    traced = tool_call_config(agent.name, step=step["id"], revision=env.revision)

    def gated(name: str, metadata: Mapping[str, Any] | None) -> bool:
        marked = bool((metadata or {}).get("requires_approval"))
        return marked or env.resources.needs_approval(name, env.context)

    return await run_subagent(
        agent,
        request,
        merge_configs(get_config(), traced),
        budget=env.budget,
        prices=env.context.prices,
        counted=record.counted,
        spent=spent,
        gated=gated,
        revision=env.revision,
    )


async def propose_args(
    step: StepDict, outputs: dict[str, Any], env: StepEnv, record: StepRecord
) -> dict[str, Any]:
    """The arguments the executor model chooses for a tool step whose `args` are null.

    Used before a person approves such a step, so that they approve the real call.
    """
    if step["tool"] is None:
        raise ValueError(f"step {step['id']} calls no tool")
    tool = env.resources.tools[step["tool"]]
    return await _choose_args(tool, _messages(step, outputs, env), env, record, step=step["id"])


async def _choose_args(
    tool: BaseTool, messages: list[BaseMessage], env: StepEnv, record: StepRecord, *, step: str
) -> dict[str, Any]:
    reply = await _ask(env, record, messages, tool, step=step)
    chosen: dict[str, Any] | None = None
    for call in reply.tool_calls:
        if call["name"] == tool.name and chosen is None:
            chosen = call["args"]
        else:
            record.refused.append({"name": call["name"], "args": call["args"]})
    if chosen is None:
        asked = [c["name"] for c in reply.tool_calls]
        detail = (
            f"; it asked for {', '.join(asked)}, which the plan does not allow" if asked else ""
        )
        raise ExecutorReplyError(f"the executor model did not call {tool.name}{detail}")
    # The model's arguments go to the tool as they are: nothing in them is substituted.
    problems = check_args(tool, chosen, placeholders=False)
    if problems:
        raise ExecutorReplyError("the executor model's arguments: " + "; ".join(problems))
    return chosen


async def _ask(
    env: StepEnv,
    record: StepRecord,
    messages: list[BaseMessage],
    tool: BaseTool | None = None,
    *,
    step: str,
) -> AIMessage:
    """Ask the executor model, adding the call to the step's use even when it fails."""
    record.model = env.resources.models.spec("executor", env.context)
    try:
        reply, usage = await env.resources.ask(
            "executor",
            env.context,
            env.budget,
            messages,
            tool,
            revision=env.revision,
            step=step,
        )
    except (BudgetExhaustedError, ModelConfigError):
        raise  # refused before any call was made
    except BaseException:
        # A call that failed or was cancelled was still made: the call budget counts it.
        record.add_usage({"calls": 1, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
        raise
    record.add_usage(usage)
    return reply


def _messages(step: StepDict, outputs: dict[str, Any], env: StepEnv) -> list[BaseMessage]:
    prompts = env.resources.prompts
    writes_args = step["tool"] is not None and step["args"] is None
    system = fill(
        prompts.template("executor_tool" if writes_args else "executor", env.context),
        tool=step["tool"],
        data_notice=DATA_NOTICE,
    )
    user = fill(
        prompts.template("executor_user", env.context),
        goal=env.goal,
        step_id=step["id"],
        description=step["description"],
        results=dependency_results({dep: outputs[dep] for dep in step["depends_on"]}),
    )
    return [SystemMessage(system), HumanMessage(user)]


async def invoke_tool(tool: BaseTool, args: dict[str, Any], env: StepEnv, step: StepDict) -> Any:
    """Call `tool` with `args`, filling the parameters it asks planexec to inject.

    `planexec.injection` says which: the run's state (`InjectedState`), the graph's
    store (`InjectedStore`), a `ToolRuntime`, or the tool call id, which is the step's
    idempotency key, stable across retries and resumes. A tool that takes the id is
    called with a full tool call (LangChain refuses anything else), so its output is
    the resulting `ToolMessage`'s content.
    A tool with no coroutine runs in a daemon thread (`planexec.threads`).
    """
    key = idempotency_key(env.thread_id, env.revision, step["id"])
    traced = tool_call_config(tool.name, step=step["id"], revision=env.revision)
    call_args = dict(args)
    wants_id = False
    for name, injection in injected_params(tool).items():
        if injection.kind == "tool_call_id":
            wants_id = True
        elif injection.kind == "state":
            call_args[name] = state_view(env.state, injection.field)
        elif injection.kind == "store":
            call_args[name] = env.runtime.store
        elif injection.kind == "runtime":
            call_args[name] = ToolRuntime(
                state=env.state,
                context=env.context,
                config=get_config(),
                stream_writer=env.runtime.stream_writer,
                tool_call_id=key,
                store=env.runtime.store,
                tools=[tool],
                execution_info=env.runtime.execution_info,
                server_info=env.runtime.server_info,
            )
    check_lease(env.thread_id, f"calling {tool.name} for step {step['id']}")
    payload: dict[str, Any] = call_args
    if wants_id:
        payload = {"type": "tool_call", "name": tool.name, "args": call_args, "id": key}
    if runs_in_a_thread(tool):
        # Not the loop's default executor: its threads keep the process from exiting.
        return await call_in_thread(key, lambda: tool.invoke(payload, traced))
    return await tool.ainvoke(payload, traced)


def jsonable(value: Any) -> Any:
    """A tool's output as JSON data: kept when it already is, converted or stringified if not."""
    if isinstance(value, ToolMessage):
        value = value.content
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value
