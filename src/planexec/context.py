"""Run settings: the graph's `context_schema`.

`Context` is plain data. Nothing here reads the environment; the command line
does that once and passes values in. A run given no context uses these defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    ValidationInfo,
    field_validator,
)
from pydantic.dataclasses import dataclass

from planexec.prompts.custom import PromptName, check_prompt

ReviewMode = Literal["always", "never"]
ReplanPolicy = Literal["on_failure", "after_each_step", "never"]
ReuseMode = Literal["off", "suggest", "replay"]
StructuredMethod = Literal["strict_tool", "tool", "json_schema"]
"""How a model is asked for structured output (`planexec.models.structured_method`):

- "strict_tool": a forced tool call whose schema the provider enforces (`strict`), the
  schema in its strict form (`planexec.wire`);
- "tool": a forced tool call with the schema as it is (free-form `args` objects);
- "json_schema": the reply's content constrained to the schema in its strict form.
"""

LIBRARY_NAMESPACE: tuple[str, ...] = ("planexec", "plans")
"""The store namespace of the plan library (`planexec.library`) unless a run says otherwise."""

_PROMPT_OF: dict[str, PromptName] = {
    "planner_prompt": "planner",
    "executor_prompt": "executor",
    "executor_tool_prompt": "executor_tool",
    "replanner_prompt": "replanner",
}

_Label = Annotated[str, Field(pattern=r"^[^.]+$")]

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
}
"""USD per million (input, output) tokens for models whose price is known."""


# Every field is declared with `Field()`: pydantic puts keyword-only dataclass fields
# without one after the others in the JSON Schema, and so at the end of Studio's form.
@dataclass(
    frozen=True,
    kw_only=True,
    config=ConfigDict(use_attribute_docstrings=True, extra="forbid"),
)
class Context:
    """Settings for one run, passed as `graph.invoke(..., context=Context(...))`.

    A dict with the same keys also works; unknown keys and values of the wrong type
    are rejected with a `pydantic.ValidationError` that names the field. On a thread
    that takes follow-up goals, the budgets (`max_replans` and the `max_*` and time
    budgets) count each goal on its own.

    Concurrency has two separate bounds within an executor pass. `max_concurrency` is
    for a model's rate limit: it bounds the steps that call a model (text steps, steps
    whose arguments the executor model writes, sub-agents), and such a step holds its
    slot for its tool call too. `max_tool_concurrency` bounds direct tool calls, which
    call no model and never wait for a model slot. A plain `def` tool runs in a daemon
    thread of planexec's own pool, which starts a thread whenever none is idle rather
    than queueing behind a fixed size, so these bounds, not a thread pool's, say how
    many calls run at once (`planexec.threads`).

    Example:
        ```python
        Context(planner_model="openai:gpt-4.1", executor_model="openai:gpt-4.1-mini")
        ```
    """

    planner_model: str = Field(default="openai:gpt-4.1")
    """Model that writes the plan, as "<provider>:<model name>": any provider LangChain's
    init_chat_model knows once its package is installed ("anthropic:claude-sonnet-4-5",
    "ollama:qwen2.5:7b", "google_genai:gemini-2.5-flash"...)."""

    executor_model: str = Field(default="openai:gpt-4.1-mini")
    """Model that carries out steps that need reasoning, as "<provider>:<model name>"."""

    replanner_model: str | None = Field(default=None)
    """Model that revises the plan and writes the final answer; the planner's when unset."""

    review: ReviewMode = Field(default="always")
    """Whether the run pauses for a person to review each plan before it runs."""

    replan_policy: ReplanPolicy = Field(default="on_failure")
    """When the replanner is asked: after a failure and at the end of the plan
    ("on_failure"), after every step ("after_each_step"), or never ("never": the run
    ends with the last step's result, or fails with the first failure)."""

    direct_answers: bool = Field(default=True)
    """Whether the planner may answer a goal that needs no tools at once, ending the run
    "completed" without a plan to review or execute: faster and cheaper for short goals,
    but nobody reviews those answers. Plans with steps are always reviewed."""

    reuse_plans: ReuseMode = Field(default="suggest")
    """How saved plans from the graph's store are used: "suggest" shows the planner the
    best-fitting ones as examples; "replay" also runs a plan that fits the goal exactly
    (the same goal, or a template's slots filled) with no planner call; "off" uses none.
    Completed runs save their plans either way, unless `save_plans` is off."""

    save_plans: bool = Field(default=True)
    """Whether a run that completes saves its plan to the graph's store, when it has one."""

    library_examples: int = Field(default=3, ge=0, le=10)
    """The most saved plans shown to the planner as examples."""

    library_namespace: tuple[_Label, ...] = Field(default=LIBRARY_NAMESPACE, min_length=1)
    """The store namespace the plan library lives under (`build_graph` may override it)."""

    max_replans: int = Field(default=3, ge=0)
    """How many times the plan may be revised after it first runs."""

    max_plan_steps: int = Field(default=20, ge=1)
    """The most steps a plan may have still to run (finished steps a replan keeps do not count)."""

    max_args_chars: int = Field(default=20_000, ge=100)
    """The longest a plan step's `args` may be, as JSON text; a longer plan is invalid."""

    max_goal_chars: int = Field(default=20_000, ge=1)
    """The longest goal accepted, in characters, spaces included; a longer one is refused
    before any model is called."""

    max_text_chars: int = Field(default=4_000, ge=100)
    """The longest a plan step's description or a reviewer's message may be, in
    characters: a plan with a longer description is invalid, a decision with a longer
    message is refused (the run asks again), and a longer reason from the replanner is
    cut to this length."""

    max_output_chars: int = Field(default=50_000, ge=100)
    """The longest a step's output (as JSON text) or error is kept in the state and shown
    to the models; a longer one is cut to this length, ending in a note that says how
    much was dropped (the step stays done, its output becoming that text)."""

    max_plan_attempts: int = Field(default=3, ge=1)
    """How many replies the planner or replanner gets to produce a valid plan before
    the run fails; each retry is shown the previous reply's errors. A reply whose body
    cannot be read (not JSON) counts as one; a call that failed outright ends the run."""

    step_attempts: int = Field(default=3, ge=1)
    """Attempts per step, the first included, when an attempt fails in a way that may
    succeed on retry: a tool's transient error (a timeout, a connection error), an
    attempt past its timeout, or an executor model reply that cannot be used (no tool
    call, arguments that do not fit the tool, empty text). A model call that failed
    (its client retries spent, see `model_max_retries`) is not retried by the step: the
    step fails. So a step asks the executor model at most `step_attempts` times, sending
    at most `step_attempts * (1 + model_max_retries)` requests."""

    retry_initial_interval: float = Field(default=0.5, ge=0)
    """Seconds before the first retry of a step; each further retry waits twice as long."""

    step_timeout: float = Field(default=120.0, gt=0)
    """Seconds one attempt of a step may take before it is cancelled and counts as failed."""

    tool_timeouts: dict[str, PositiveFloat] = Field(default_factory=dict)
    """Per-tool attempt timeouts in seconds, overriding `step_timeout` for those tools."""

    max_concurrency: int = Field(default=4, ge=1)
    """The most steps that call a model running at the same time: steps the executor model
    answers or chooses arguments for, and sub-agent steps. Set it to what the model's rate
    limit allows; direct tool calls do not count against it (see `max_tool_concurrency`)."""

    max_tool_concurrency: int = Field(default=16, ge=1)
    """The most direct tool calls running at the same time: steps whose arguments the plan
    (or a person's approval) fixed, so that no model is called. Independent of
    `max_concurrency`, so a model's rate limit never queues them."""

    approval_tools: list[str] = Field(default_factory=list)
    """Tools whose every call waits for a person's approval, besides tools whose
    metadata says `{"requires_approval": True}`."""

    non_idempotent_tools: list[str] = Field(default_factory=list)
    """Tools that must not run twice for one step, besides tools whose metadata says
    `{"idempotent": False}`. Before such a call the step records that it began; a run
    that resumes after a crash (or a timeout) inside the call pauses with an
    "uncertain_step" interrupt for a person to re-run, mark done or skip the step,
    instead of calling the tool again. Other tools get the step's idempotency key to
    deduplicate with, and are simply called again."""

    max_steps_executed: int | None = Field(default=None, ge=1)
    """Budget: the most steps the run may execute; unlimited when unset."""

    max_model_calls: int | None = Field(default=None, ge=1)
    """Budget: the most model calls, all roles together; unlimited when unset."""

    max_tokens: int | None = Field(default=None, ge=1)
    """Budget: the most tokens (input and output, all roles); unlimited when unset."""

    max_cost_usd: float | None = Field(default=None, gt=0)
    """Budget: the most the run may spend in USD, priced with `prices`; unlimited when unset."""

    time_budget_s: float | None = Field(default=None, gt=0)
    """Budget: seconds the run may spend working (planning, executing, replanning),
    not counting time paused for review; unlimited when unset."""

    prices: dict[str, tuple[NonNegativeFloat, NonNegativeFloat]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES)
    )
    """USD per million (input, output) tokens, by model name without the provider."""

    model_timeout: float = Field(default=60.0, gt=0)
    """Seconds one HTTP request to a model may take."""

    model_max_retries: int = Field(default=2, ge=0)
    """Retries of a failed model request by the client: rate limits (after the server's
    Retry-After), server errors, timeouts and lost connections. One model call sends at
    most `1 + model_max_retries` requests; a call that still fails is not retried again."""

    structured_output: Literal["auto", "strict_tool", "tool", "json_schema"] = Field(default="auto")
    """How the planner and replanner models are asked for their plans: "auto" suits the
    provider (a strict tool call for OpenAI and Anthropic, a JSON schema for Ollama and
    Gemini, a forced tool call otherwise); "strict_tool", "tool" (a forced tool call
    with no strict schema, for servers or older models that refuse strict ones) or
    "json_schema" (the reply's text constrained to the schema) choose one."""

    planner_prompt: str | None = Field(default=None)
    """The planner's system prompt for this run, instead of planexec's (or build_graph's
    `prompts=`): instructions only, where "$max_steps" and "$direct_answers" may stand.
    The goal, the tools and the saved plans still come in the user message's sections."""

    executor_prompt: str | None = Field(default=None)
    """The executor's system prompt for steps it answers in text, for this run. The note
    that step results are data is added at its end unless it places "$data_notice"."""

    executor_tool_prompt: str | None = Field(default=None)
    """The executor's system prompt for steps whose tool arguments it writes, for this
    run; "$tool" stands for the step's tool. The data note is added as for executor_prompt."""

    replanner_prompt: str | None = Field(default=None)
    """The replanner's system prompt for this run; "$options" (the "continue" action, when
    offered) and "$replans_left" may stand. The data note is added as for executor_prompt."""

    workspace: str = Field(default=".")
    """Directory that the built-in file tools may read and write; nothing outside it."""

    @field_validator("library_namespace")
    @classmethod
    def _unreserved(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value and value[0] == "langgraph":
            raise ValueError('may not start with "langgraph" (LangGraph reserves it)')
        return value

    @field_validator(
        "planner_prompt", "executor_prompt", "executor_tool_prompt", "replanner_prompt"
    )
    @classmethod
    def _usable_prompt(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            check_prompt(_PROMPT_OF[str(info.field_name)], value)
        return value

    @property
    def replanner(self) -> str:
        """The replanner's model string, falling back to the planner's."""
        return self.replanner_model or self.planner_model

    def timeout_for(self, tool: str | None) -> float:
        """The attempt timeout for a step that calls `tool` (or the executor model)."""
        if tool is not None and tool in self.tool_timeouts:
            return self.tool_timeouts[tool]
        return self.step_timeout


def resolve_context(value: Context | dict[str, Any] | None) -> Context:
    """The run's `Context`: as given, built from a dict, or the defaults.

    LangGraph hands nodes `None` when a caller passes no context.
    """
    if value is None:
        return Context()
    if isinstance(value, Context):
        return value
    return Context(**value)
