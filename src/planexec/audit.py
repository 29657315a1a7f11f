"""The audit trail of a thread: what happened, in order, rebuilt from its checkpoints.

The state at every checkpoint keeps every plan revision, review decision, step approval
and step result (the history lists are stored as the updates written, and rebuilt).
Comparing each checkpoint's state with its parent's shows what that checkpoint added, so
each event is reported once, in the checkpoint that recorded it, however many
checkpoints the thread has. The checkpoints are read one at a time, oldest first, each
state rebuilt from its parent's. Any LangGraph saver works.

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

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    writes_sort_key,
)
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from planexec.internals import MISSING, astate_snapshot, saver_of, state_snapshot
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
    return [r async for r in audit_records(graph, thread_id, current_only=current_only)]


async def audit_records(
    graph: Pregel[Any, Any, Any, Any], thread_id: str, *, current_only: bool = False
) -> AsyncIterator[AuditRecord]:
    """`audit_trail`'s records one at a time, reading one checkpoint at a time.

    The thread's checkpoint ids are listed first; then each checkpoint is loaded,
    oldest first, and its state rebuilt from its parent's and the writes between them,
    so the time taken grows with the history and the memory held with one checkpoint.
    """
    saver = _saver(graph)
    walk = _Walk(graph, await _alinks(saver, thread_id))
    async for saved in _atuples(saver, thread_id, walk.order):
        need = walk.to_replay(saved)
        histories: Mapping[str, DeltaChannelHistory] = {}
        if need and walk.parent_unread(saved):
            histories = await saver.aget_delta_channel_history(config=saved.config, channels=need)
        seeds = walk.seeds(saved, need, histories)
        snapshot = await astate_snapshot(graph, saved, _Seeds(seeds))
        for record in walk.add(saved, seeds, snapshot, current_only=current_only):
            yield record


def audit_trail_sync(
    graph: Pregel[Any, Any, Any, Any], thread_id: str, *, current_only: bool = False
) -> list[AuditRecord]:
    """`audit_trail` for a graph whose checkpointer has synchronous methods.

    `AsyncSqliteSaver` and `AsyncPostgresSaver` do not; use `audit_trail` with them.
    """
    return list(audit_records_sync(graph, thread_id, current_only=current_only))


def audit_records_sync(
    graph: Pregel[Any, Any, Any, Any], thread_id: str, *, current_only: bool = False
) -> Iterator[AuditRecord]:
    """`audit_records` for a graph whose checkpointer has synchronous methods."""
    saver = _saver(graph)
    walk = _Walk(graph, _links(saver, thread_id))
    for checkpoint_id in walk.order:
        saved = saver.get_tuple(_config(thread_id, checkpoint_id))
        if saved is None:
            continue
        need = walk.to_replay(saved)
        histories: Mapping[str, DeltaChannelHistory] = {}
        if need and walk.parent_unread(saved):
            histories = saver.get_delta_channel_history(config=saved.config, channels=need)
        seeds = walk.seeds(saved, need, histories)
        snapshot = state_snapshot(graph, saved, _Seeds(seeds))
        yield from walk.add(saved, seeds, snapshot, current_only=current_only)


_LINKS = (
    "SELECT checkpoint_id, parent_checkpoint_id FROM checkpoints "
    "WHERE thread_id = ? AND checkpoint_ns = ''"
)
"""A thread's checkpoint ids and their parents', as the SQLite savers store them."""


async def _alinks(saver: BaseCheckpointSaver[Any], thread_id: str) -> list[tuple[str, str]]:
    """Each checkpoint id of the thread with its parent's ("" for none).

    The SQLite saver is asked for the ids alone; any other saver lists its checkpoints,
    each dropped as soon as its ids are taken.
    """
    if isinstance(saver, AsyncSqliteSaver):
        await saver.setup()
        async with saver.lock, saver.conn.execute(_LINKS, (thread_id,)) as cursor:
            return [(str(c), str(p or "")) for c, p in await cursor.fetchall()]
    return [
        (_checkpoint_id(t.config), _checkpoint_id(t.parent_config))
        async for t in saver.alist(_config(thread_id))
    ]


_PAGE = 64
"""Checkpoints the SQLite saver is asked for at a time, read in id order."""


async def _atuples(
    saver: BaseCheckpointSaver[Any], thread_id: str, order: Sequence[str]
) -> AsyncIterator[CheckpointTuple]:
    """The thread's checkpoints with their pending writes, in the order of `order`.

    The SQLite saver is read a page of checkpoints at a time (a query each for the
    checkpoints and their writes, decoded one checkpoint at a time) instead of two
    queries per checkpoint, each a round trip to its thread; the lock is not held
    between pages, so the caller may use the saver meanwhile.
    """
    if not isinstance(saver, AsyncSqliteSaver):
        for checkpoint_id in order:
            if (saved := await saver.aget_tuple(_config(thread_id, checkpoint_id))) is not None:
                yield saved
        return
    task_path = "task_path" if getattr(saver, "_has_task_path", True) else "''"
    for start in range(0, len(order), _PAGE):
        page = order[start : start + _PAGE]
        marks = ",".join("?" * len(page))
        async with saver.lock:
            async with saver.conn.execute(
                "SELECT checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
                f"FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
                f"AND checkpoint_id IN ({marks})",
                (thread_id, *page),
            ) as cursor:
                rows = {row[0]: row for row in await cursor.fetchall()}
            async with saver.conn.execute(
                f"SELECT checkpoint_id, task_id, channel, type, value, {task_path}, idx "
                f"FROM writes WHERE thread_id = ? AND checkpoint_ns = '' "
                f"AND checkpoint_id IN ({marks})",
                (thread_id, *page),
            ) as cursor:
                writes: dict[str, list[Any]] = {}
                for row in await cursor.fetchall():
                    writes.setdefault(row[0], []).append(row[1:])
        for checkpoint_id in page:
            if checkpoint_id not in rows:
                continue
            _, parent_id, kind, blob, metadata = rows.pop(checkpoint_id)
            pending = sorted(
                writes.pop(checkpoint_id, []), key=lambda w: writes_sort_key(w[4], w[0], w[5])
            )
            yield CheckpointTuple(
                _config(thread_id, checkpoint_id),
                saver.serde.loads_typed((kind, blob)),
                cast("CheckpointMetadata", json.loads(metadata) if metadata is not None else {}),
                _config(thread_id, parent_id) if parent_id else None,
                [
                    (task, channel, saver.serde.loads_typed((t, v)))
                    for task, channel, t, v, _, _ in pending
                ],
            )


def _links(saver: BaseCheckpointSaver[Any], thread_id: str) -> list[tuple[str, str]]:
    """`_alinks` for a saver with synchronous methods."""
    if isinstance(saver, SqliteSaver):
        with saver.cursor(transaction=False) as cursor:
            cursor.execute(_LINKS, (thread_id,))
            return [(str(c), str(p or "")) for c, p in cursor.fetchall()]
    return [
        (_checkpoint_id(t.config), _checkpoint_id(t.parent_config))
        for t in saver.list(_config(thread_id))
    ]


def _saver(graph: Pregel[Any, Any, Any, Any]) -> BaseCheckpointSaver[Any]:
    saver = saver_of(graph, None)
    if saver is None:
        raise ValueError("the graph has no checkpointer: compile it with the saver of the thread")
    return saver


def _config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


class _Seeds(BaseCheckpointSaver[Any]):
    """Stands in for the saver while LangGraph builds one checkpoint's snapshot.

    It answers the one question LangGraph asks it, the value of each history
    channel at the checkpoint (`planexec.state`'s `DeltaChannel`s), with the value
    `_Walk` rebuilt from the parent's, instead of replaying every ancestor's writes.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__()
        self.values = values

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Each channel's value as a seed, with no writes to replay on it."""
        return {ch: {"seed": self.values[ch], "writes": []} for ch in channels}

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """`get_delta_channel_history`."""
        return self.get_delta_channel_history(config=config, channels=channels)


@dataclass
class _Read:
    """A checkpoint already read, kept until its last child is."""

    snapshot: StateSnapshot
    values: dict[str, Any]
    """Each history channel's value at the checkpoint."""
    writes: dict[str, list[Any]]
    """What the steps that ran from the checkpoint wrote to each history channel."""
    children: int


class _Walk:
    """The checkpoints of one thread, oldest first, each rebuilt from its parent."""

    def __init__(
        self, graph: Pregel[Any, Any, Any, Any], listed: Iterable[tuple[str, str]]
    ) -> None:
        parents = dict(listed)
        self.order = sorted(parents)
        self.parents = parents
        self.children = Counter(p for p in parents.values() if p in parents)
        self.lineage = _lineage(self.order[-1], parents) if self.order else set()
        self.history = {k: ch for k, ch in graph.channels.items() if isinstance(ch, DeltaChannel)}
        self.read: dict[str, _Read] = {}

    def to_replay(self, saved: CheckpointTuple) -> list[str]:
        """The history channels that `saved` does not hold a value of (LangGraph's rule)."""
        checkpoint = saved.checkpoint
        return [
            k
            for k in self.history
            if k in checkpoint["channel_versions"]
            and checkpoint["channel_values"].get(k, MISSING) is MISSING
        ]

    def parent_unread(self, saved: CheckpointTuple) -> bool:
        """Whether `saved`'s parent is in the thread but not read yet (ids out of order)."""
        parent = self.parents.get(_checkpoint_id(saved.config), "")
        return parent in self.parents and parent not in self.read

    def seeds(
        self,
        saved: CheckpointTuple,
        need: Sequence[str],
        histories: Mapping[str, DeltaChannelHistory],
    ) -> dict[str, Any]:
        """The value of each channel in `need` at `saved`."""
        parent = self.read.get(self.parents.get(_checkpoint_id(saved.config), ""))
        values: dict[str, Any] = {}
        for k in need:
            spec = self.history[k]
            if k in histories:
                channel = spec.from_checkpoint(histories[k].get("seed", MISSING))
                channel.replay_writes(histories[k]["writes"])
            else:
                channel = spec.from_checkpoint(parent.values[k] if parent else MISSING)
                channel.replay_writes(parent.writes[k] if parent else [])
            values[k] = channel.get()
        return values

    def add(
        self,
        saved: CheckpointTuple,
        seeds: Mapping[str, Any],
        snapshot: StateSnapshot,
        *,
        current_only: bool,
    ) -> list[AuditRecord]:
        """The records `saved` added to its parent; `saved` kept for its children."""
        checkpoint_id = _checkpoint_id(saved.config)
        parent_id = self.parents.get(checkpoint_id, "")
        parent = self.read.get(parent_id)
        if parent is not None:
            parent.children -= 1
            if parent.children <= 0:
                del self.read[parent_id]
        if self.children[checkpoint_id]:
            values = {
                k: seeds[k]
                if k in seeds
                else spec.from_checkpoint(saved.checkpoint["channel_values"].get(k, MISSING)).get()
                for k, spec in self.history.items()
            }
            writes = {k: [w for w in saved.pending_writes or [] if w[1] == k] for k in self.history}
            self.read[checkpoint_id] = _Read(snapshot, values, writes, self.children[checkpoint_id])
        current = checkpoint_id in self.lineage
        if current_only and not current:
            return []
        found = _Checkpoint(snapshot, parent.snapshot if parent else None).records()
        for record in found:
            record["current"] = current
        return found


def build_trail(
    snapshots: Iterable[StateSnapshot], *, current_only: bool = False
) -> list[AuditRecord]:
    """The audit trail of one thread's checkpoints, given in any order, all in memory.

    `audit_trail` reads the same trail one checkpoint at a time.
    """
    by_id = {_checkpoint_id(s.config): s for s in snapshots}
    if not by_id:
        return []
    ordered = sorted(by_id.values(), key=lambda s: _checkpoint_id(s.config))
    parents = {i: _checkpoint_id(s.parent_config) for i, s in by_id.items()}
    lineage = _lineage(_checkpoint_id(ordered[-1].config), parents)
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


def _lineage(head: str, parents: Mapping[str, str]) -> set[str]:
    """`head` and the ids of its ancestors."""
    seen: set[str] = set()
    node = head
    while node in parents and node not in seen:
        seen.add(node)
        node = parents[node]
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
        items = list(self.values.get(key) or [])
        if len(items) >= len(earlier) and all(a is b for a, b in zip(items, earlier, strict=False)):
            # The walk appends to the parent's very items: what is new is what follows.
            for item in items[len(earlier) :]:
                make(item)
            return
        for item in items:
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
        if results is earlier:  # the walk passes an unchanged value on as it is
            return
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
