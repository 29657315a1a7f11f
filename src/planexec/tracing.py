"""How a run appears in LangSmith: run names, tags and metadata.

Tracing is LangSmith's own and planexec reads none of its settings: it is off unless
`LANGSMITH_TRACING=true` is set (with `LANGSMITH_API_KEY`, and `LANGSMITH_ENDPOINT` or
`LANGSMITH_PROJECT` as usual), and with it off nothing is sent anywhere.

A traced run is a tree of runs:

- the graph: `planexec` (or the config's `run_name`), with the config's tags and
  metadata and LangGraph's `thread_id`;
- each node: `planner`, `review`, `executor`, `approval`, `replanner`, with LangGraph's
  `langgraph_node` and, for the nodes that call a model, `role` in their metadata;
- each step: `step-<id>`, and `propose-<id>` where the executor model proposes a call
  for a person to approve;
- each model call: `planner model`, `executor model` or `replanner model`, tagged
  `planexec:model`, `planexec:<role>` and LangGraph's `nostream` (its tokens are plan
  JSON, a step's work or tool arguments, not chat text), with metadata `planexec_role`,
  `planexec_model` (the model string), `planexec_revision` and, inside a step,
  `planexec_step`;
- the final answer, under `stream_mode="messages"` or `astream_events` only: `answer`,
  tagged `planexec:answer`, a run that replays the answer's text as the replanner (or
  the planner, answering directly) writes it (`planexec.streaming`);
- each tool call: the tool's name, tagged `planexec:tool`, with metadata
  `planexec_tool`, `planexec_step` and `planexec_revision`. A sub-agent's call
  (`planexec.subagents`) is its graph's run, also tagged `planexec:subagent`, with
  its nodes, tools and model calls inside it.

Every run also carries its parent's metadata, so a model or tool call has `thread_id`
and `langgraph_node` too. `planexec_revision` is the plan revision the call works
from (0 before the first plan).
"""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langgraph.constants import TAG_NOSTREAM

from planexec.state import Role

MODEL_TAG = "planexec:model"
TOOL_TAG = "planexec:tool"


def model_run_name(role: Role) -> str:
    """The name of a model call's run: `"planner model"` and so on."""
    return f"{role} model"


def model_call_config(
    role: Role, model: str, *, revision: int, step: str | None = None
) -> RunnableConfig:
    """The config for one call of `role`'s model (`model` is its model string)."""
    metadata: dict[str, object] = {
        "planexec_role": role,
        "planexec_model": model,
        "planexec_revision": revision,
    }
    if step is not None:
        metadata["planexec_step"] = step
    return {
        "run_name": model_run_name(role),
        "tags": [MODEL_TAG, f"planexec:{role}", TAG_NOSTREAM],
        "metadata": metadata,
    }


def tool_call_config(tool: str, *, step: str, revision: int) -> RunnableConfig:
    """The config for the call of `tool` that runs `step` of plan `revision`."""
    return {
        "run_name": tool,
        "tags": [TOOL_TAG],
        "metadata": {"planexec_tool": tool, "planexec_step": step, "planexec_revision": revision},
    }
