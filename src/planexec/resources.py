"""What the nodes of one compiled graph share: its tools and its models."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from langgraph.runtime import Runtime
from pydantic import BaseModel

from planexec.budget import Budget
from planexec.context import Context
from planexec.errors import ModelCallError
from planexec.models import (
    Models,
    StructuredReply,
    structured_method,
    structured_reply,
    usage_of,
)
from planexec.plan import args_schema
from planexec.prices import require_prices
from planexec.prompts.custom import Prompts
from planexec.seals import Sealer, sealer
from planexec.state import ROLES, Role, Usage
from planexec.tools import requires_approval
from planexec.tracing import model_call_config

if TYPE_CHECKING:
    from planexec.streaming import AnswerStream

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Resources:
    """The tools a plan may name, by name, and the models of each role."""

    tools: Mapping[str, BaseTool]
    models: Models
    library_namespace: tuple[str, ...] | None = None
    """The plan library's store namespace, overriding `Context.library_namespace`."""
    prompts: Prompts = field(default_factory=Prompts)
    """The graph's own prompts (`build_graph(prompts=...)`); a run's Context may override."""
    approval_key: str | bytes | None = field(default=None, repr=False)
    """The key that seals approvals (`planexec.seals`); None: the checkpoint database's."""

    async def sealer(self, runtime: Runtime[Any]) -> Sealer:
        """The sealer of approval records for the thread a node runs in."""
        return await sealer(runtime, self.approval_key)

    def describe_tools(self) -> str:
        """The tools as the planner and replanner see them: one JSON object per line."""
        lines = []
        for tool in self.tools.values():
            schema = args_schema(tool)
            params = schema if isinstance(schema, dict) else schema.model_json_schema()
            params = {k: v for k, v in params.items() if k not in ("title", "description")}
            lines.append(
                json.dumps(
                    {"name": tool.name, "description": tool.description, "args_schema": params},
                    ensure_ascii=False,
                )
            )
        return "\n".join(lines)

    def require_prices(self, context: Context) -> None:
        """Refuse the run if a role's model has no price under a cost budget.

        Raises:
            ModelConfigError: naming the models without a price, and `Context.prices`.
        """
        require_prices([self.models.spec(role, context) for role in ROLES], context)

    def needs_approval(self, tool: str | None, context: Context) -> bool:
        """Whether every call of `tool` waits for a person's approval."""
        if tool is None:
            return False
        known = self.tools.get(tool)
        return tool in context.approval_tools or (known is not None and requires_approval(known))

    async def ask_structured(
        self,
        role: Role,
        context: Context,
        budget: Budget,
        schema: type[ModelT],
        messages: Sequence[BaseMessage],
        *,
        revision: int = 0,
        answer: AnswerStream | None = None,
    ) -> tuple[StructuredReply[ModelT], Usage]:
        """Ask `role`'s model for a `schema` object, counting the call against the budget.

        The call is cancelled if the time budget runs out while it is made. `revision`
        (the plan revision the call works from) goes into the call's trace. A model with
        no price under a cost budget is refused before the call (`ModelConfigError`).
        `answer`, if given, relays the reply's `answer` field as chat text while the
        model writes it (`planexec.streaming`); the call itself is made as without it.
        """
        require_prices([self.models.spec(role, context)], context)
        async with budget.deadline(), budget.model_call():
            model = self.models.get(role, context)
            spec = self.models.spec(role, context)
            traced = model_call_config(role, spec, revision=revision)
            method = structured_method(model, context)
            if answer is not None:
                traced = answer.watch(traced, method=method, schema=schema.__name__)
            try:
                reply = await structured_reply(model, schema, messages, traced, method=method)
            except GraphBubbleUp:
                raise  # a model that pauses the run (an `interrupt()`) is not a failure
            except Exception as exc:
                raise ModelCallError(role, exc) from exc
            usage = usage_of(reply.raw, spec, context.prices)
            budget.spend(usage)
        return reply, usage

    async def ask(
        self,
        role: Role,
        context: Context,
        budget: Budget,
        messages: Sequence[BaseMessage],
        tool: BaseTool | None = None,
        *,
        revision: int = 0,
        step: str | None = None,
    ) -> tuple[AIMessage, Usage]:
        """Ask `role`'s model, with `tool` as the only tool it may call, if given.

        `revision` and `step` (the step the call is for) go into the call's trace. A model
        with no price under a cost budget is refused before the call (`ModelConfigError`).
        """
        require_prices([self.models.spec(role, context)], context)
        async with budget.model_call():
            model = self.models.get(role, context)
            runnable = model.bind_tools([tool], tool_choice=tool.name) if tool else model
            spec = self.models.spec(role, context)
            traced = model_call_config(role, spec, revision=revision, step=step)
            try:
                reply = await runnable.ainvoke(list(messages), traced)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                raise ModelCallError(role, exc) from exc
            if not isinstance(reply, AIMessage):
                reply = AIMessage(content=str(getattr(reply, "content", reply)))
            usage = usage_of(reply, spec, context.prices)
            budget.spend(usage)
        return reply, usage
