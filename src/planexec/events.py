"""Progress events written to LangGraph's "custom" stream.

Every event is a dict with `"planexec": EVENT_VERSION` and an `"event"` name:

| event | fields |
|---|---|
| `plan_ready` | `revision`, `source`, `steps` (count), `reason` |
| `review_requested` | `revision`, `errors` |
| `step_started` | `step`, `tool`, `revision` |
| `step_finished` | `step`, `status`, `duration_s`, `attempts`, `error`, `tokens` |
| `replan` | `revision`, `reason`, `diff` |
| `run_finished` | `status`, `reason` |

Stream them with `graph.stream(..., stream_mode="custom")` (or with other modes, as a
list). Fields are only ever added within a version.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import StreamWriter

EVENT_VERSION = 1


def emit(writer: StreamWriter | None, event: str, **fields: Any) -> None:
    """Write one progress event to the graph's custom stream, if anyone listens."""
    if writer is not None:
        writer({"planexec": EVENT_VERSION, "event": event, **fields})


def is_event(chunk: object) -> bool:
    """Whether a custom-stream chunk is a planexec progress event."""
    return isinstance(chunk, dict) and chunk.get("planexec") == EVENT_VERSION
