"""The planner-executor graph: assembly and routing.

    intake -> planner -> review -> executor -> replanner -> END
                ^  |      |          |  ^         |
                +--+      |     approval          +--> review / replanner

Every new input enters at intake (`planexec.nodes.intake`): a goal, or, while a plan
waits for review, feedback that review takes as a rejection.

Routers read only the state, so `update_state` and Studio's state editing work without
a run context. Review passes straight on to the executor when review is off or the
plan revision is already approved.

`graph` is the graph compiled without a checkpointer, for `langgraph.json`; apps call
`build_graph()` with their own tools, models and saver.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Literal, TypeVar, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer, Command, StateSnapshot, StateUpdate

from planexec import runtime
from planexec.chat import input_goal, with_messages
from planexec.context import Context, resolve_context
from planexec.events import emit
from planexec.injection import check_injections
from planexec.internals import DURABILITY_KEY, lend_saver, saver_of
from planexec.lease import fence_writes
from planexec.library import check_namespace
from planexec.models import ModelFactory, Models, default_model_factory
from planexec.nodes._library import record_end
from planexec.nodes.approval import approval
from planexec.nodes.executor import executor
from planexec.nodes.intake import intake, route_after_intake
from planexec.nodes.planner import planner, validate_goal
from planexec.nodes.replanner import replanner
from planexec.nodes.review import review
from planexec.prompts.custom import Prompts
from planexec.resources import Resources
from planexec.state import InputState, OutputState, State
from planexec.tools import check_tools, default_tools


class PlanexecGraph(CompiledStateGraph[State, Context, InputState, OutputState]):
    """The compiled planner-executor graph: a LangGraph graph with every entry point.

    Its nodes are async. `invoke`, `stream` and `batch` run the graph on planexec's
    runtime loop, so they work from plain scripts, threads and Jupyter alike, with sync
    savers (`SqliteSaver`, `PostgresSaver`) as well as `InMemorySaver`; `ainvoke` and
    `astream` run it on the caller's loop, with async savers. A saver that cannot serve
    the API called raises `planexec.runtime.SaverMismatchError` before anything runs.
    See `planexec.runtime` for how.
    """

    # `stream` and `astream` pass LangGraph's keyword arguments through **kwargs unchanged.

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Stream the run's parts, as LangGraph's `stream`; the run goes on the runtime loop."""
        _check_input(input, kwargs.get("context"))
        saver = saver_of(self, config)
        lent = runtime.saver_for_sync_run(saver, "invoke")
        if lent is not None and lent is not saver:
            config = lend_saver(config, lent)
        base = CompiledStateGraph.astream
        return runtime.iterate(lambda: base(self, input, config, **kwargs), "invoke")

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """LangGraph's `astream`, refusing a saver that has no async methods."""
        _check_input(input, kwargs.get("context"))
        runtime.saver_for_async(saver_of(self, config), "ainvoke")
        return super().astream(input, config, **kwargs)

    def get_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> StateSnapshot:
        """LangGraph's `get_state`, refusing a saver that cannot answer it from here."""
        runtime.saver_for_sync_state(saver_of(self, config), "get_state")
        return super().get_state(config, subgraphs=subgraphs)

    def get_state_history(
        self,
        config: RunnableConfig,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[StateSnapshot]:
        """LangGraph's `get_state_history`, refusing a saver that cannot answer it from here."""
        runtime.saver_for_sync_state(saver_of(self, config), "get_state_history")
        return super().get_state_history(config, filter=filter, before=before, limit=limit)

    def update_state(
        self,
        config: RunnableConfig,
        values: dict[str, Any] | Any | None,
        as_node: str | None = None,
        task_id: str | None = None,
    ) -> RunnableConfig:
        """LangGraph's `update_state`, refusing a saver that cannot answer it from here."""
        runtime.saver_for_sync_state(saver_of(self, config), "update_state")
        return super().update_state(config, values, as_node, task_id)

    def bulk_update_state(
        self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]
    ) -> RunnableConfig:
        """LangGraph's `bulk_update_state`, refusing a saver that cannot answer it from here."""
        runtime.saver_for_sync_state(saver_of(self, config), "bulk_update_state")
        return super().bulk_update_state(config, supersteps)

    async def aget_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> StateSnapshot:
        """LangGraph's `aget_state`, refusing a saver that has no async methods."""
        runtime.saver_for_async(saver_of(self, config), "aget_state")
        return await super().aget_state(config, subgraphs=subgraphs)

    def aget_state_history(
        self,
        config: RunnableConfig,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[StateSnapshot]:
        """LangGraph's `aget_state_history`, refusing a saver that has no async methods.

        (A plain method returning LangGraph's async iterator, so the check runs at the call.)
        """
        runtime.saver_for_async(saver_of(self, config), "aget_state_history")
        return super().aget_state_history(config, filter=filter, before=before, limit=limit)

    async def aupdate_state(
        self,
        config: RunnableConfig,
        values: dict[str, Any] | Any,
        as_node: str | None = None,
        task_id: str | None = None,
    ) -> RunnableConfig:
        """LangGraph's `aupdate_state`, refusing a saver that has no async methods."""
        runtime.saver_for_async(saver_of(self, config), "aupdate_state")
        return await super().aupdate_state(config, values, as_node, task_id)

    async def abulk_update_state(
        self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]
    ) -> RunnableConfig:
        """LangGraph's `abulk_update_state`, refusing a saver that has no async methods."""
        runtime.saver_for_async(saver_of(self, config), "abulk_update_state")
        return await super().abulk_update_state(config, supersteps)


def _check_input(value: Any, context: Any) -> None:
    """Refuse input whose goal (or last human message) is missing, blank or too long.

    Before the run starts, so that nothing is written: a thread paused for review keeps
    its pause. The intake node checks again, for callers that do not come through here.
    """
    starts, goal = input_goal(value)
    if starts:
        validate_goal(goal, resolve_context(context))


def route_after_planner(state: State) -> Literal["planner", "review", "__end__"]:
    """Ask again after an invalid reply; stop when the run ended; else review the plan."""
    if state.get("status"):
        return "__end__"
    if state.get("draft_errors"):
        return "planner"
    return "review"


def route_after_executor(state: State) -> Literal["approval", "replanner", "__end__"]:
    """Stop when a budget ran out; ask for step approvals; otherwise let the replanner decide."""
    if state.get("status"):
        return "__end__"
    if state.get("awaiting_approval"):
        return "approval"
    return "replanner"


def route_after_replanner(state: State) -> Literal["replanner", "review", "__end__"]:
    """Ask again after an invalid reply; stop when the run ended; else on to review.

    Review lets an approved revision (or any, when review is off) through to the executor.
    """
    if state.get("status"):
        return "__end__"
    if state.get("draft_errors"):
        return "replanner"
    return "review"


def build_graph(
    *,
    tools: Sequence[BaseTool] | None = None,
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
    planner: BaseChatModel | None = None,
    executor: BaseChatModel | None = None,
    replanner: BaseChatModel | None = None,
    model_factory: ModelFactory | None = None,
    library_namespace: Sequence[str] | None = None,
    prompts: Prompts | Mapping[str, str | None] | None = None,
    approval_key: str | bytes | None = None,
) -> PlanexecGraph:
    """Compile the planner-executor graph.

    Args:
        tools: The tools plans may use; None means the built-in ones (calculator and
            workspace file tools). Functions decorated with `@tool` are tools, and so
            are sub-agents: compiled graphs registered with `planexec.subagents.subagent`.
            Names must be unique and fit what model APIs accept (1 to 64 ASCII letters,
            digits, `_` or `-`), and a JSON-schema tool's schema must be valid JSON Schema;
            otherwise `ValueError`. Parameters that LangGraph's `ToolNode` injects are
            filled (`planexec.injection`); a tool with one planexec cannot fill (any other
            `InjectedToolArg`, or `InjectedStore` without a `store`) is a `ValueError`
            naming the tool and the parameter.
        checkpointer: Any LangGraph saver. Review needs one: without it the run cannot
            be resumed after the plan-review interrupt. With one, runs default to
            `durability="sync"` (each checkpoint saved before the next superstep), and
            its writes of a thread whose lease this process holds check the lease
            first (`planexec.lease.fence_writes`).
        store: A LangGraph store, handed to tools through their runtime. It also keeps
            the plan library (`planexec.library`): completed runs save their plans
            there, and later runs reuse them as `Context.reuse_plans` says.
        planner: A chat model for planning; overrides `Context.planner_model`.
        executor: A chat model for steps; overrides `Context.executor_model`.
        replanner: A chat model for replanning; overrides `Context.replanner_model`
            (and defaults to `planner` when only that is given).
        model_factory: Makes a chat model from a model string and the run's context;
            the default makes `ChatOpenAI` clients.
        library_namespace: The store namespace of the plan library; overrides
            `Context.library_namespace`.
        prompts: Prompts that replace planexec's own (`planexec.Prompts`, or a dict
            with its keys): the planner's, executor's and replanner's system prompts
            and their user messages' templates. Each is checked here, and one that
            uses an unknown placeholder or drops a data section is a `PromptError`
            (`planexec.prompts.custom` says what each may hold). A run's `Context`
            prompt fields win over these.
        approval_key: A secret that seals review decisions and step approvals, so that
            records not made by this graph's nodes (through `update_state`, say) are
            refused. None: a key kept in the checkpoint database (SQLite, PostgreSQL),
            else one made for this process (`planexec.seals`).

    Example:
        ```python
        from langgraph.checkpoint.memory import InMemorySaver
        from planexec import build_graph, Context

        graph = build_graph(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": "t1"}}
        graph.invoke({"goal": "What is 12 * 4 + 5?"}, config, context=Context(review="never"))
        ```
    """
    chosen = list(tools) if tools is not None else default_tools()
    check_tools(chosen)
    check_injections(chosen, has_store=store is not None)
    resources = Resources(
        tools={t.name: t for t in chosen},
        models=Models(
            planner=planner,
            executor=executor,
            replanner=replanner,
            factory=model_factory or default_model_factory,
        ),
        library_namespace=(
            check_namespace(library_namespace) if library_namespace is not None else None
        ),
        prompts=Prompts.of(prompts),
        approval_key=approval_key,
    )
    builder = StateGraph(
        State, context_schema=Context, input_schema=InputState, output_schema=OutputState
    )
    builder.add_node("intake", partial(intake, resources=resources))
    builder.add_node(
        "planner", partial(_planner_node, resources=resources), metadata={"role": "planner"}
    )
    builder.add_node(
        "review",
        partial(_review_node, resources=resources),
        destinations=("planner", "replanner", "executor", END),
    )
    builder.add_node(
        "executor", partial(_executor_node, resources=resources), metadata={"role": "executor"}
    )
    builder.add_node("approval", partial(_approval_node, resources=resources))
    builder.add_node(
        "replanner", partial(_replanner_node, resources=resources), metadata={"role": "replanner"}
    )
    builder.add_edge(START, "intake")
    builder.add_conditional_edges("intake", route_after_intake)
    builder.add_conditional_edges("planner", route_after_planner)
    builder.add_conditional_edges("executor", route_after_executor)
    builder.add_edge("approval", "executor")
    builder.add_conditional_edges("replanner", route_after_replanner)
    if isinstance(checkpointer, BaseCheckpointSaver):
        # Before compiling: the copy LangGraph makes of the saver then checks leases too.
        fence_writes(checkpointer)
    compiled: PlanexecGraph = builder.compile(  # type: ignore[assignment]
        checkpointer=checkpointer, store=store, name="planexec"
    )
    # The compiled graph, given the sync entry points; PlanexecGraph adds methods only.
    compiled.__class__ = PlanexecGraph
    if checkpointer in (None, False):
        return compiled
    # Every superstep's checkpoint is written before the next one starts, unless a call
    # passes its own `durability=`: a crash loses at most the steps that were running.
    # LangGraph reads the default from this (internal) configurable key.
    return compiled.with_config(configurable={DURABILITY_KEY: "sync"})


NodeT = TypeVar("NodeT", bound=Callable[..., Awaitable[Any]])


def _announcing(node: NodeT) -> NodeT:
    """`node`, adding its chat messages, and ending the run's record when its update ends it.

    The messages are `planexec.chat`'s; an update that ends the run is told to the plan
    library and emitted as `run_finished`.
    """

    @functools.wraps(node)
    async def run(state: State, runtime: Runtime[Context], **kwargs: Any) -> Any:
        result = with_messages(state, await node(state, runtime, **kwargs))
        update = result.update if isinstance(result, Command) else result
        if isinstance(update, dict) and update.get("status"):
            await record_end(state, update, runtime, kwargs["resources"])
            emit(
                runtime.stream_writer,
                "run_finished",
                status=update["status"],
                reason=update.get("reason"),
                answer=update.get("answer"),
            )
        return result

    return cast(NodeT, run)


# The node functions keep their module names; these aliases keep `build_graph`'s
# keyword arguments (planner=, executor=, replanner=) from shadowing them.
_planner_node = _announcing(planner)
_review_node = _announcing(review)
_executor_node = _announcing(executor)
_approval_node = approval
_replanner_node = _announcing(replanner)


def recursion_limit(context: Context) -> int:
    """A LangGraph recursion limit that a run within `context`'s bounds cannot reach.

    Each plan revision costs at most `max_plan_attempts` planner or replanner supersteps,
    a review, and per step an executor pass, an approval, the pass that runs the approved
    step and (replanning after each step) `max_plan_attempts` replanner replies; the limit
    allows that for the first plan and every replan, with room for a few rejected reviews.
    """
    per_step = 3 + context.max_plan_attempts
    per_revision = 2 * context.max_plan_attempts + 2 + per_step * (context.max_plan_steps + 1)
    return 25 + (context.max_replans + 1 + 5) * per_revision


def run_config(thread_id: str, context: Context | None = None, **extra: Any) -> RunnableConfig:
    """The config for a run on `thread_id`, with the recursion limit set from the budgets."""
    config: RunnableConfig = {
        "configurable": {"thread_id": thread_id},
        "recursion_limit": recursion_limit(context or Context()),
    }
    config.update(extra)  # type: ignore[typeddict-item]
    return config


graph = build_graph()
