"""The audit trail of a thread: what happened, in order, rebuilt from its checkpoints.

Every checkpoint holds the whole state, and the state keeps every plan revision, review
decision, step approval and step result. Comparing each checkpoint with its parent
shows what that checkpoint added, so each event is reported once, in the checkpoint
that recorded it, however many checkpoints the thread has. Any LangGraph saver works.

Each record is a JSON object with a `type` and the time it happened (`at`, UTC ISO
8601), plus `checkpoint_id` (the checkpoint that recorded it), `written_by` (the
node(s) whose step wrote it, or "update_state" for a direct state edit) and `current`
(false for work on a branch that a later fork left behind):

| type | fields |
|---|---|
| `run_started` | `goal`, `goal_index` |
| `plan_revision` | `revision`, `source`, `reason`, `diff`, `plan_hash`, `plan`, `goal_index` |
| `review_decision` | `revision`, `decision`, `message`, `plan_hash`, `goal_index` |
| `step_approval` | `step`, `revision`, `decision`, `args`, `message`, `step_hash` |
| `step_started` | `step`, `revision`, `description`, `tool`, `args` (after `{{id}}` substitution) |
| `step_finished` | `step`, `revision`, `status`, `output`, `error`, `attempts`, `duration_s`, |
| (continued) | `tokens`, `usage`, `model` (the executor model, if asked), `refused_calls` |
| `run_finished` | `status`, `reason`, `answer`, `goal_index` |

A thread that took follow-up goals has a `run_started` and a `run_finished` per goal;
`goal_index` says which goal each record is about (`planexec.state`).

A step that never started (skipped because a dependency failed, or rejected at
approval) has a `step_finished` record only.

Example:
    ```python
    records = await audit_trail(graph, "my-thread")
    [r["type"] for r in records][:3]   # ['run_started', 'plan_revision', 'review_decision']
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from planexec.plan import plan_hash, topological_order

AuditRecord = dict[str, Any]
"""One event of the audit trail: JSON data with a `type` and an `at` timestamp."""

_RANK = {
    "run_started": 0,
    "review_decision": 1,
    "plan_revision": 2,
    "step_approval": 3,
    "step_started": 4,
    "step_finished": 4,
    "run_finished": 9,
}
"""Order of records that one checkpoint added at the same instant: a decision before
the revision it caused, steps before the end of the run."""


async def audit_trail(
    graph: Pregel[Any, Any, Any, Any], thread_id: str, *, current_only: bool = False
) -> list[AuditRecord]:
    """The thread's audit trail, oldest first, from the graph's checkpointer.

    Args:
        graph: A graph compiled with the checkpointer that holds the thread.
        thread_id: The thread to audit.
        current_only: Leave out work on branches that a fork left behind (records whose
            checkpoint is not an ancestor of the thread's latest state).
    """
    snapshots = [s async for s in graph.aget_state_history(_config(thread_id))]
    return build_trail(snapshots, current_only=current_only)


def audit_trail_sync(
    graph: Pregel[Any, Any, Any, Any], thread_id: str, *, current_only: bool = False
) -> list[AuditRecord]:
    """`audit_trail` for a graph whose checkpointer has synchronous methods.

    `AsyncSqliteSaver` and `AsyncPostgresSaver` do not; use `audit_trail` with them.
    """
    snapshots = list(graph.get_state_history(_config(thread_id)))
    return build_trail(snapshots, current_only=current_only)


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def build_trail(
    snapshots: Iterable[StateSnapshot], *, current_only: bool = False
) -> list[AuditRecord]:
    """The audit trail of one thread's checkpoints, given in any order."""
    by_id = {_checkpoint_id(s.config): s for s in snapshots}
    if not by_id:
        return []
    ordered = sorted(by_id.values(), key=lambda s: _checkpoint_id(s.config))
    lineage = _lineage(ordered[-1], by_id)
    trail: list[AuditRecord] = []
    for snapshot in ordered:
        current = _checkpoint_id(snapshot.config) in lineage
        if current_only and not current:
            continue
        parent = by_id.get(_checkpoint_id(snapshot.parent_config))
        found = _Checkpoint(snapshot, parent).records()
        for record in found:
            record["current"] = current
        trail.extend(found)
    return trail


def _checkpoint_id(config: RunnableConfig | None) -> str:
    return str(((config or {}).get("configurable") or {}).get("checkpoint_id") or "")


def _lineage(head: StateSnapshot, by_id: Mapping[str, StateSnapshot]) -> set[str]:
    """The ids of `head` and its ancestors."""
    seen: set[str] = set()
    node: StateSnapshot | None = head
    while node is not None and _checkpoint_id(node.config) not in seen:
        seen.add(_checkpoint_id(node.config))
        node = by_id.get(_checkpoint_id(node.parent_config))
    return seen


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass
class _Pending:
    """A record with the keys it is ordered by within its checkpoint."""

    moment: datetime
    rank: tuple[int, int]
    record: AuditRecord


class _Checkpoint:
    """The records one checkpoint added to its parent's state."""

    def __init__(self, snapshot: StateSnapshot, parent: StateSnapshot | None) -> None:
        self.values: Mapping[str, Any] = snapshot.values or {}
        self.before: Mapping[str, Any] = parent.values if parent is not None else {}
        self.saved = _time(snapshot.created_at) or datetime.now(UTC)
        self.finished: dict[str, datetime] = {}
        """When each step recorded in this checkpoint finished (or was skipped)."""
        self.common = {
            "checkpoint_id": _checkpoint_id(snapshot.config),
            "written_by": _written_by(snapshot, parent),
        }
        self.found: list[_Pending] = []

    def records(self) -> list[AuditRecord]:
        self._run_started()
        self._listed("reviews", self._review)
        self._listed("revisions", self._revision)
        self._approvals()
        self._steps()
        self._run_finished()
        self.found.sort(key=lambda p: (p.moment, p.rank))
        return [p.record for p in self.found]

    def _add(self, kind: str, moment: datetime | None, sub: int = 0, **fields: Any) -> None:
        at = moment or self.saved
        record = {"type": kind, "at": _iso(at), **fields, **self.common}
        self.found.append(_Pending(at, (_RANK[kind], sub), record))

    def _run_started(self) -> None:
        goal = self.values.get("goal")
        if not goal:
            return
        if "goal_index" in self.values:
            # The intake node took a goal; feedback sent as a goal does not change this.
            took = self.values.get("goal_message") != self.before.get("goal_message")
            seen = "goal_index" not in self.before and self.before.get("goal") == goal
            started = took and not seen
        else:
            started = goal != self.before.get("goal")
        if started:
            self._add("run_started", self.saved, goal=goal, goal_index=_goal(self.values))

    def _listed(self, key: str, make: Callable[[Mapping[str, Any]], None]) -> None:
        earlier = list(self.before.get(key) or [])
        for item in self.values.get(key) or []:
            if item in earlier:
                earlier.remove(item)
            else:
                make(item)

    def _review(self, review: Mapping[str, Any]) -> None:
        self._add(
            "review_decision",
            _time(review.get("at")),
            revision=review.get("revision"),
            decision=review.get("decision"),
            message=review.get("message"),
            plan_hash=review.get("plan_hash"),
            goal_index=review.get("goal") or 1,
        )

    def _revision(self, revision: Mapping[str, Any]) -> None:
        plan: Any = revision.get("plan") or {"steps": []}
        self._add(
            "plan_revision",
            _time(revision.get("at")),
            revision=revision.get("revision"),
            source=revision.get("source"),
            reason=revision.get("reason"),
            diff=revision.get("diff"),
            plan_hash=plan_hash(plan),
            plan=plan,
            goal_index=revision.get("goal") or 1,
        )

    def _approvals(self) -> None:
        earlier: Mapping[str, Any] = self.before.get("approvals") or {}
        for step_id, approval in (self.values.get("approvals") or {}).items():
            if earlier.get(step_id) == approval:
                continue
            self._add(
                "step_approval",
                _time(approval.get("at")),
                step=step_id,
                revision=approval.get("revision"),
                decision=approval.get("decision"),
                args=approval.get("args"),
                message=approval.get("message"),
                step_hash=approval.get("step_hash"),
            )

    def _steps(self) -> None:
        earlier: Mapping[str, Any] = self.before.get("results") or {}
        results: Mapping[str, Any] = self.values.get("results") or {}
        new = {i: r for i, r in results.items() if earlier.get(i) != r}
        if not new:
            return
        plan_steps = list((self.values.get("plan") or {"steps": []})["steps"])
        steps = {s["id"]: s for s in plan_steps}
        order = [s["id"] for s in topological_order(plan_steps)]
        # Steps no longer in the plan (a fork replaced it) come after, in results order.
        order += [i for i in new if i not in steps]
        for index, step_id in enumerate(i for i in order if i in new):
            self._step(step_id, new[step_id], steps.get(step_id), index)

    def _step(
        self,
        step_id: str,
        result: Mapping[str, Any],
        step: Mapping[str, Any] | None,
        index: int,
    ) -> None:
        deps: Sequence[str] = step["depends_on"] if step else ()
        # A step starts after its dependencies finish; timestamps are rounded to the
        # millisecond, so the order is made to respect that.
        after = max((self.finished[d] for d in deps if d in self.finished), default=None)
        started = _time(result.get("started_at"))
        if started is not None:
            start = max(started, after) if after else started
            finish = max(start, started + timedelta(seconds=result.get("duration_s") or 0.0))
            self._add(
                "step_started",
                start,
                2 * index,
                step=step_id,
                revision=result.get("revision"),
                description=step["description"] if step else None,
                tool=result.get("tool"),
                args=result.get("args"),
            )
        else:
            finish = after or self._decided(step_id) or self.saved
        self.finished[step_id] = finish
        usage = result.get("usage")
        self._add(
            "step_finished",
            finish,
            2 * index + 1,
            step=step_id,
            revision=result.get("revision"),
            status=result.get("status"),
            output=result.get("output"),
            error=result.get("error"),
            attempts=result.get("attempts"),
            duration_s=result.get("duration_s"),
            tokens=(usage["input_tokens"] + usage["output_tokens"]) if usage else 0,
            usage=usage,
            model=result.get("model"),
            refused_calls=result.get("refused_calls") or [],
        )

    def _decided(self, step_id: str) -> datetime | None:
        """When a person decided on the step, for a step skipped at approval."""
        approval = (self.values.get("approvals") or {}).get(step_id)
        return _time(approval.get("at")) if approval else None

    def _run_finished(self) -> None:
        status = self.values.get("status")
        if status and status != self.before.get("status"):
            self._add(
                "run_finished",
                self.saved,
                status=status,
                reason=self.values.get("reason"),
                answer=self.values.get("answer"),
                goal_index=_goal(self.values),
            )


def _goal(values: Mapping[str, Any]) -> int:
    return int(values.get("goal_index") or 1)


def _written_by(snapshot: StateSnapshot, parent: StateSnapshot | None) -> str:
    source = (snapshot.metadata or {}).get("source")
    if source == "update":
        return "update_state"
    if source == "input" or parent is None:
        return "input"
    return ",".join(parent.next) or str(source)
