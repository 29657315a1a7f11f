"""Sub-agents: compiled LangGraph graphs that carry out plan steps.

A sub-agent is any compiled graph (a ReAct agent with its own model and tools, say)
registered under a name with a description and an input schema. It is a LangChain
tool, so the planner sees it in its tool list, plans validate its arguments, and step
approval treats it like any other tool. Give it to `build_graph` with the other tools::

    from planexec.subagents import subagent

    researcher = subagent(
        "researcher", agent_graph, description="Looks facts up and cites its sources."
    )
    graph = build_graph(tools=[calculator, researcher], checkpointer=saver)

A step that names it runs the graph inside the step's task, as a subgraph:

- Its input is one human message stating the goal, the step, its arguments (after
  `{{id}}` substitution) and the results of the steps it depends on
  (`make_input` replaces that). Its result is its structured response, else the text
  of its last AI message, else its final state as JSON (`read_output` replaces that).
- Its progress streams: `astream(..., subgraphs=True)` yields its events under the
  namespace `("executor:<task id>", "step-<id>:<task id>")`.
- It is checkpointed by the parent's checkpointer under that nested namespace, in the
  parent's thread, so a run that crashes resumes it where it was, and a step whose
  sub-agent finished is not run again. Compile it without a checkpointer of its own.
  `subagent_states` reads those checkpoints; the parent's `get_state(subgraphs=True)`
  does not show them, because LangGraph only looks into subgraphs that are nodes.
- A tool that requires approval (its metadata says `{"requires_approval": True}`, it is
  named in `Context.approval_tools`, or the run's own tool of that name requires it)
  is gated inside the sub-agent too: each call its model makes pauses the run with a
  `step_approval` interrupt naming the step and the sub-agent (`"subagent"`), allowing
  "approve" (the call runs) or "reject" (it does not, and the step fails). planexec
  sees the calls made as LangChain tool runs, which is how agents built on LangGraph
  and LangChain call their tools.
- An `interrupt()` inside it (its own step approval, a question for a person) pauses
  the whole run with that interrupt's value, after the steps already running have
  finished; resuming the run with `Command(resume=...)` (by interrupt id when several
  are pending) resumes the sub-agent, and the steps that finished are not run again.
- Budgets count every model call made inside it, with its tokens and cost (priced with
  `Context.prices` by the model's name). The calls are added to the step's `usage` and
  the run's executor usage, a call is refused (stopping the sub-agent and the run with
  status "budget_exhausted") when a budget has run out, and the sub-agent does not
  start when no model call is left. The records of calls made before an interrupt or
  a crash are lost with the paused node, so those calls are recovered from the usage
  metadata of the AI messages in its saved state (an agent that keeps no messages
  has them counted only as they are made). Under a token or cost budget its calls
  are not serialised as the executor model's are, so parallel calls may overshoot
  those budgets by more than one call.
- A sub-agent step has one attempt, bounded by `Context.step_timeout` (or
  `Context.tool_timeouts[<name>]`): the agent retries inside itself (its model
  client, its tool error handling), and a failed step goes to the replanner. A
  second attempt would start it afresh under another namespace (LangGraph numbers a
  task's second subgraph call), where resuming an interrupt could not reach it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot, interrupt
from pydantic import BaseModel, ConfigDict, Field

from planexec.budget import Budget
from planexec.errors import PlanexecError
from planexec.lease import check_lease
from planexec.models import usage_of
from planexec.plan import digest
from planexec.prices import require_prices
from planexec.prompts import render
from planexec.prompts import subagent as prompts
from planexec.prompts.sections import dependency_results
from planexec.state import Usage
from planexec.tools import TOOL_NAME, TOOL_NAME_RULE

__all__ = [
    "SUBAGENT_TAG",
    "SubAgent",
    "SubAgentInput",
    "SubAgentRequest",
    "default_input",
    "default_output",
    "run_subagent",
    "subagent",
    "subagent_states",
    "subagent_states_sync",
]

SUBAGENT_TAG = "planexec:subagent"
"""The trace tag of a sub-agent's run (besides `planexec:tool`)."""


class SubAgentInput(BaseModel):
    """The default input schema: one request in words."""

    model_config = ConfigDict(extra="forbid")

    request: str = Field(
        description="What the agent should do, in full. It also sees the step's "
        "description and the results of the steps this step depends on."
    )


@dataclass(frozen=True)
class SubAgentRequest:
    """One step for a sub-agent to carry out: what `make_input` turns into its input."""

    args: dict[str, Any]
    """The step's arguments after `{{id}}` substitution; they fit the input schema."""
    step_id: str = ""
    description: str = ""
    """The step's description, written by the planner."""
    goal: str = ""
    """The run's goal."""
    results: dict[str, Any] = field(default_factory=dict)
    """The outputs of the steps this step depends on, by step id."""


def default_input(request: SubAgentRequest) -> dict[str, Any]:
    """`{"messages": [<one human message stating the step>]}`, for message-based agents."""
    text = render(
        prompts.USER,
        goal=request.goal or "(not given)",
        step_id=request.step_id or "request",
        description=request.description or "Carry out the request in the arguments.",
        arguments=json.dumps(request.args, ensure_ascii=False, indent=2, default=str),
        results=dependency_results(request.results),
    )
    return {"messages": [HumanMessage(text)]}


def default_output(state: Any) -> Any:
    """The agent's structured response, else its last AI message's text, else its state."""
    if isinstance(state, Mapping):
        structured = state.get("structured_response")
        if structured is not None:
            return _as_json(structured)
        messages = state.get("messages")
        if isinstance(messages, list):
            last = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
            if last is not None and last.text.strip():
                return last.text.strip()
    return _as_json(state)


def _as_json(value: Any) -> Any:
    if isinstance(value, BaseMessage):
        return {"type": value.type, "text": value.text}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _as_json(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list | tuple):
        return [_as_json(item) for item in value]
    return value


class SubAgent(BaseTool):
    """A compiled LangGraph graph offered to the planner as a tool; make one with `subagent`.

    Called as a plain tool (outside planexec's executor), it runs the graph with
    `make_input` of a request holding only the arguments.
    """

    graph: Any
    """The compiled graph (a `Pregel`, such as a `CompiledStateGraph`)."""
    make_input: Callable[[SubAgentRequest], Any] = default_input
    """Turns a step into the graph's input."""
    read_output: Callable[[Any], Any] = default_output
    """Turns the graph's final state into the step's result (JSON data)."""
    context: Any = None
    """The graph's runtime context, when it declares a `context_schema`."""

    def _invoke_kwargs(self) -> dict[str, Any]:
        return {} if self.context is None else {"context": self.context}

    def _run(self, config: RunnableConfig, **kwargs: Any) -> Any:
        sent = self.make_input(SubAgentRequest(args=kwargs))
        return self.read_output(self.graph.invoke(sent, config, **self._invoke_kwargs()))

    async def _arun(self, config: RunnableConfig, **kwargs: Any) -> Any:
        sent = self.make_input(SubAgentRequest(args=kwargs))
        state = await self.graph.ainvoke(sent, config, **self._invoke_kwargs())
        return self.read_output(state)


def subagent(
    name: str,
    graph: Pregel[Any, Any, Any, Any],
    *,
    description: str,
    input_schema: type[BaseModel] | None = None,
    make_input: Callable[[SubAgentRequest], Any] | None = None,
    read_output: Callable[[Any], Any] | None = None,
    requires_approval: bool = False,
    context: Any = None,
) -> SubAgent:
    """Register `graph` as a sub-agent named `name`, for `build_graph(tools=[...])`.

    Args:
        name: The name plans use in a step's `tool`; letters, digits, `_` and `-`.
        graph: A compiled LangGraph graph, compiled without a checkpointer of its own
            so that the run's checkpointer saves it.
        description: What the agent does, for the planner.
        input_schema: The step arguments it takes; the default is one string field,
            `request`. The arguments reach it through `make_input`.
        make_input: Turns a `SubAgentRequest` into the graph's input; the default is
            `default_input` (one human message).
        read_output: Turns the graph's final state into the step's result; the default
            is `default_output`.
        requires_approval: Whether each step that calls it waits for a person's approval.
        context: The graph's runtime context, if it declares a `context_schema`;
            without one it is handed the run's planexec `Context`.

    Example:
        ```python
        from langchain.agents import create_agent  # or any compiled graph

        agent = create_agent(model, [search], system_prompt="You research facts.")
        researcher = subagent(
            "researcher", agent, description="Researches a question on the web."
        )
        ```
    """
    if not TOOL_NAME.fullmatch(name):
        raise ValueError(f"a sub-agent name must be {TOOL_NAME_RULE}, not {name!a}")
    if not isinstance(graph, Pregel):
        raise TypeError(f"a sub-agent is a compiled LangGraph graph, not {type(graph).__name__}")
    return SubAgent(
        name=name,
        description=description,
        args_schema=input_schema or SubAgentInput,
        graph=graph,
        make_input=make_input or default_input,
        read_output=read_output or default_output,
        context=context,
        metadata={"requires_approval": True} if requires_approval else None,
    )


def _not_a_refusal(record: logging.LogRecord) -> bool:
    """Whether a LangChain callback-error log is about something other than our refusal."""
    args = record.args if isinstance(record.args, tuple) else ()
    return not (
        len(args) == 3 and args[0] == "_SubAgentMeter" and str(args[2]).startswith(_ON_PURPOSE)
    )


_ON_PURPOSE = (
    "BudgetExhaustedError(",
    "ModelConfigError(",
    "GraphInterrupt(",
    "CallRejected(",
    "LeaseLostError(",
)


# LangChain logs a warning for every exception a callback raises, even one raised on
# purpose; a refused model call is reported as the run's "budget_exhausted" instead.
logging.getLogger("langchain_core.callbacks.manager").addFilter(_not_a_refusal)

Spent = Callable[[Usage, str], None]
"""Receives one model call's use and the model's name."""


class _SubAgentMeter(BaseCallbackHandler):
    """Counts the model calls of one sub-agent run against the budget."""

    raise_error = True
    """A refused call raises out of the model call, stopping the sub-agent."""
    run_inline = True

    def __init__(
        self,
        budget: Budget,
        prices: Mapping[str, tuple[float, float]],
        counted: set[str],
        spent: Spent,
        gate: _Gate | None = None,
    ) -> None:
        self.gate = gate
        self.thread_id = ""
        """The run's thread: its lease, if this process holds it, is checked before each call."""
        self.budget = budget
        self.prices = dict(prices)
        self.counted = counted
        self.spent = spent
        self._models: dict[UUID, str] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Reserve the call, or refuse it."""
        self._start(run_id, metadata)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Reserve the call, or refuse it."""
        self._start(run_id, metadata)

    def _start(self, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        model = str((metadata or {}).get("ls_model_name") or "")
        # Under a cost budget a model with no price is refused: its spending cannot count.
        require_prices([model or "(a model with no name)"], self.budget.context)
        self.budget.reserve_model_call()
        with self._lock:
            self._models[run_id] = model

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Check the run's lease, and wait for a person's decision if the tool requires it."""
        name = str((serialized or {}).get("name") or kwargs.get("name") or "")
        check_lease(self.thread_id, f"the sub-agent calls {name}")
        if self.gate is not None:
            args = dict(inputs) if isinstance(inputs, dict) else {"input": input_str}
            self.gate.check(name, metadata, args)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Add the call's tokens and cost."""
        with self._lock:
            model = self._models.pop(run_id, "")
            generation = response.generations[0][0] if response.generations else None
            message = getattr(generation, "message", None)
            if not isinstance(message, AIMessage):
                message = AIMessage("")
            model = str(message.response_metadata.get("model_name") or model)
            usage = usage_of(message, model, self.prices)
            if message.id:
                self.counted.add(message.id)
            self.budget.spend(usage)
            self.spent(usage, model)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A failed call was still made."""
        with self._lock:
            model = self._models.pop(run_id, "")
            self.spent({"calls": 1, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}, model)


class CallRejected(PlanexecError):
    """A person rejected a call the sub-agent made of a tool that requires approval."""


Gated = Callable[[str, Mapping[str, Any] | None], bool]
"""Whether a tool, by name and metadata, waits for a person's approval before each call."""

_GATE_DECISIONS = ("approve", "reject")


@dataclass(frozen=True)
class _Gate:
    """Pauses before each call, inside the sub-agent, of a tool that requires approval.

    The meter calls it inline, in the task of the sub-agent's node that calls the tool,
    so its `interrupt` pauses that node like one raised by the tool itself: resuming
    runs the node again, the interrupt returns the person's answer, and the tool runs
    (approve) or the sub-agent's step fails (reject).
    """

    gated: Gated
    agent: str
    step_id: str
    revision: int

    def check(self, name: str, metadata: Mapping[str, Any] | None, args: dict[str, Any]) -> None:
        """Return once a person approved the call, if the tool requires approval."""
        if not self.gated(name, metadata):
            return
        request = self._request(name, args)
        errors: list[str] = []
        while True:
            answer = interrupt({**request, **({"errors": errors} if errors else {})})
            decision, errors = _gate_decision(answer, request["request_hash"])
            if decision is not None:
                break
        if decision["type"] == "reject":
            note = decision.get("message")
            raise CallRejected(
                f"a person rejected the sub-agent's call of {name}" + (f": {note}" if note else "")
            )

    def _request(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        action = {
            "name": name,
            "args": args,
            "description": f"Step {self.step_id}: the sub-agent {self.agent} calls {name}",
        }
        return {
            "type": "step_approval",
            "action_requests": [action],
            "review_configs": [{"action_name": name, "allowed_decisions": list(_GATE_DECISIONS)}],
            "steps": [self.step_id],
            "revision": self.revision,
            "subagent": self.agent,
            "request_hash": digest({"step": self.step_id, "action": action}),
        }


def _gate_decision(value: object, shown: str) -> tuple[dict[str, Any] | None, list[str]]:
    decisions = value.get("decisions") if isinstance(value, dict) else None
    if not isinstance(decisions, list) or len(decisions) != 1:
        return None, ['answer with {"decisions": [{"type": "approve"}]} or a rejection']
    answered = value.get("request_hash") if isinstance(value, dict) else None
    if answered not in (None, shown):
        return None, [f"the decisions are for request {answered}, not {shown}"]
    [decision] = decisions
    kind = decision.get("type") if isinstance(decision, dict) else None
    if kind not in _GATE_DECISIONS:
        return None, [
            "a call inside a sub-agent can only be approved or rejected, not "
            f"{kind!r:.40}: its arguments are the sub-agent's"
        ]
    message = decision.get("message")
    if message is not None and not isinstance(message, str):
        return None, ['"message" must be text']
    return dict(decision), []


async def run_subagent(
    agent: SubAgent,
    request: SubAgentRequest,
    config: RunnableConfig,
    *,
    budget: Budget,
    prices: Mapping[str, tuple[float, float]],
    counted: set[str],
    spent: Spent,
    gated: Gated | None = None,
    revision: int = 0,
) -> Any:
    """Run `agent` for one step and return its result (as `read_output` reads it).

    `config` is the calling task's config (`langgraph.config.get_config()`), so the
    graph runs as a subgraph of that task: same checkpointer, nested namespace,
    streamed with the parent, resumed with it. Each model call inside it is reserved
    from `budget` before it is made and reported to `spent`; `counted` holds the ids of
    the AI messages already counted for this step, so that calls made before an
    interrupt or a crash are counted once, from the sub-agent's saved state. Each call
    of a tool that `gated` says requires approval first pauses for a person's decision,
    as a `step_approval` interrupt of step `request.step_id` in plan `revision`.
    """
    for usage, model in await _earlier_calls(agent, config, counted, prices):
        budget.spend(usage, reserved=False)
        spent(usage, model)
    budget.check_model_call()
    # One handler for both jobs: LangChain leaves the other handlers' events unawaited
    # when one inline handler raises (a refused call) or is cancelled.
    gate = None if gated is None else _Gate(gated, agent.name, request.step_id, revision)
    meter = _SubAgentMeter(budget, prices, counted, spent, gate)
    meter.thread_id = str((config.get("configurable") or {}).get("thread_id") or "")
    run_config = merge_configs(config, {"callbacks": [meter], "tags": [SUBAGENT_TAG]})
    sent = agent.make_input(request)
    state = await agent.graph.ainvoke(sent, run_config, **agent._invoke_kwargs())
    return agent.read_output(state)


async def _earlier_calls(
    agent: SubAgent,
    config: RunnableConfig,
    counted: set[str],
    prices: Mapping[str, tuple[float, float]],
) -> list[tuple[Usage, str]]:
    """Model calls in the sub-agent's saved state that this step has not counted."""
    graph: Pregel[Any, Any, Any, Any] = agent.graph
    if graph.checkpointer is False:
        return []
    configurable = {k: v for k, v in (config.get("configurable") or {}).items()}
    # Without a checkpoint id the snapshot is the latest one, with its pending writes.
    configurable.pop("checkpoint_id", None)
    try:
        saved = await graph.aget_state({**config, "configurable": configurable})
    except ValueError:  # no checkpointer: nothing was saved
        return []
    return _unseen_calls(saved.values, counted, prices)


def _unseen_calls(
    state: Any, counted: set[str], prices: Mapping[str, tuple[float, float]]
) -> list[tuple[Usage, str]]:
    messages = state.get("messages") if isinstance(state, Mapping) else None
    found: list[tuple[Usage, str]] = []
    for message in messages if isinstance(messages, list) else []:
        if (
            isinstance(message, AIMessage)
            and message.usage_metadata
            and message.id
            and message.id not in counted
        ):
            counted.add(message.id)
            model = str(message.response_metadata.get("model_name") or "")
            found.append((usage_of(message, model, dict(prices)), model))
    return found


async def subagent_states(
    graph: Pregel[Any, Any, Any, Any], config: RunnableConfig, tools: Iterable[BaseTool]
) -> dict[str, StateSnapshot]:
    """The latest saved state of each sub-agent step in `config`'s thread, by step id.

    `graph` is the planexec graph, compiled with a checkpointer; `tools` are the tools
    it was built with (the sub-agents among them are read). While the run is paused
    by a sub-agent's interrupt, that step's snapshot has the interrupt in `interrupts`
    and the sub-agent's pending nodes in `next`. `subagent_states_sync` is the same for
    a saver with sync methods (`SqliteSaver`, `PostgresSaver`).
    """
    saver = _saver_of(graph)
    parent = await graph.aget_state(config)
    listing = [saved async for saved in saver.alist(_thread_config(config))]
    return {
        step_id: await reader.aget_state(target)
        for step_id, reader, target in _readers(saver, parent, listing, config, tools)
    }


def subagent_states_sync(
    graph: Pregel[Any, Any, Any, Any], config: RunnableConfig, tools: Iterable[BaseTool]
) -> dict[str, StateSnapshot]:
    """`subagent_states` through the sync API, for a saver with sync methods."""
    saver = _saver_of(graph)
    parent = graph.get_state(config)
    listing = list(saver.list(_thread_config(config)))
    return {
        step_id: reader.get_state(target)
        for step_id, reader, target in _readers(saver, parent, listing, config, tools)
    }


def _saver_of(graph: Pregel[Any, Any, Any, Any]) -> BaseCheckpointSaver[Any]:
    saver = graph.checkpointer
    if not isinstance(saver, BaseCheckpointSaver):
        raise ValueError("the graph has no checkpointer, so no sub-agent state was saved")
    return saver


def _thread_config(config: RunnableConfig) -> RunnableConfig:
    return {"configurable": {"thread_id": (config.get("configurable") or {})["thread_id"]}}


def _readers(
    saver: BaseCheckpointSaver[Any],
    parent: StateSnapshot,
    listing: Iterable[CheckpointTuple],
    config: RunnableConfig,
    tools: Iterable[BaseTool],
) -> list[tuple[str, Pregel[Any, Any, Any, Any], RunnableConfig]]:
    """For each sub-agent step with saved state: its graph on `saver`, and its config."""
    thread = _thread_config(config)["configurable"]["thread_id"]
    agents = {tool.name: tool for tool in tools if isinstance(tool, SubAgent)}
    step_tools: dict[str, str | None] = {}
    for revision in parent.values.get("revisions") or []:
        for step in revision["plan"]["steps"]:
            step_tools[step["id"]] = step["tool"]
    for step in (parent.values.get("plan") or {"steps": []})["steps"]:
        step_tools[step["id"]] = step["tool"]
    latest: dict[str, tuple[str, str]] = {}
    for saved in listing:
        ns = saved.config["configurable"].get("checkpoint_ns", "")
        step_id = _step_of(ns)
        checkpoint_id = saved.config["configurable"]["checkpoint_id"]
        if step_id is not None and (step_id not in latest or checkpoint_id > latest[step_id][0]):
            latest[step_id] = (checkpoint_id, ns)
    readers = []
    for step_id, (_, ns) in latest.items():
        agent = agents.get(step_tools.get(step_id) or "")
        if agent is not None:
            target: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
            readers.append((step_id, agent.graph.copy({"checkpointer": saver}), target))
    return readers


def _step_of(ns: str) -> str | None:
    """The step id of a sub-agent's own namespace, `executor:<id>|step-<step>:<id>`."""
    parts = [part.split(":", 1)[0] for part in ns.split("|")]
    if len(parts) == 2 and parts[0] == "executor" and parts[1].startswith("step-"):
        return parts[1].removeprefix("step-")
    return None
