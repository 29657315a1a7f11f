"""A library of approved plans, kept in a LangGraph store and reused by later runs.

When a run ends "completed", the steps that ran (its approved plan, as it finished) are
saved to the graph's store (`build_graph(store=...)`), one entry per distinct plan: a
later success of the same plan updates that entry's statistics instead of adding a
copy. A run that ran a saved plan and failed counts against it. A new run's planner
then gets the best-fitting saved plans as examples (`Context.reuse_plans="suggest"`),
or, with "replay", a plan that fits the goal exactly is run without a planner call.

The store's layout, under the namespace `ns` (`Context.library_namespace`):

- `(*ns, "entries")`: one item per saved plan, keyed by its id. Its `text` field (the
  goals it served, or its template) is what a store with an embeddings index embeds.
- `(*ns, "goals")`: for each goal (case and spacing ignored), the entries that served it,
  so an exact repeat is found with one read, however large the library.

Everything in an entry is data from a shared database: it is validated against today's
tools before it is offered or run, and never trusted as instructions.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.tools import BaseTool
from langgraph.store.base import BaseStore, SearchItem
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planexec.context import LIBRARY_NAMESPACE
from planexec.plan import PlanDict, StepDict, args_schema, digest, parse_plan, validate_plan
from planexec.state import (
    LibrarySource,
    PlanRevision,
    ReviewRecord,
    Usage,
    add_usage,
    timestamp,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "EXPORT_FORMAT",
    "LibraryImportError",
    "Match",
    "PlanLibrary",
    "SavedPlan",
    "check_entry",
    "check_namespace",
    "describe_source",
    "fill_template",
    "lexical_similarity",
    "template_params",
    "tool_hashes",
]

logger = logging.getLogger("planexec.library")

DEFAULT_NAMESPACE = LIBRARY_NAMESPACE
"""Where plans are kept unless `Context.library_namespace` or `build_graph` says otherwise."""

EXPORT_FORMAT = "planexec-plans/1"
"""The `format` of an export document: `{"format": ..., "plans": [<entry>, ...]}`."""

SCAN = 200
"""The most entries one lexical search reads: the first the store lists (in SQLite and
PostgreSQL, the most recently updated). Semantic search asks the store's index for the
`SEMANTIC_SCAN` nearest instead."""
SEMANTIC_SCAN = 20
TEMPLATE_SCAN = 200
"""The most template entries one exact-fit search tries."""
MIN_SIMILARITY = 0.3
"""Saved plans less similar than this to the goal are not offered as examples."""
MAX_GOALS = 10
"""The most goals an entry remembers (the most recent), for matching repeats."""
MAX_RUNS = 50
"""The most run ids an entry remembers, so that a node re-run after a crash does not
count its run twice."""
HALF_LIFE_DAYS = 30.0
"""Recency halves for every this many days since a plan last succeeded."""
WEIGHTS = {"similarity": 0.6, "success": 0.25, "recency": 0.15}
"""How ranking weighs a plan's similarity to the goal, its success rate and its recency."""

_SLOT = re.compile(r"\{\{\s*param:([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
"""`{{param:name}}` in a template's goal and plan: filled from the new goal's text."""
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class _Stats(BaseModel):
    model_config = ConfigDict(extra="ignore")
    uses: int = Field(default=0, ge=0)
    successes: int = Field(default=0, ge=0)
    failures: int = Field(default=0, ge=0)
    replays: int = Field(default=0, ge=0)
    saved_at: str
    last_used_at: str | None = None
    last_success_at: str | None = None


class _Edits(BaseModel):
    model_config = ConfigDict(extra="ignore")
    count: int = Field(default=0, ge=0)
    last_at: str | None = None


class SavedPlan(BaseModel):
    """One entry of the library, as stored (an export holds a list of these).

    `plan` is the plan that ran, as it finished; `steps` gives each step's tool and the
    shape of its result (types and keys, never the values).
    """

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    version: int = 1
    kind: Literal["plan", "template"] = "plan"
    goal: str = Field(min_length=1)
    """The goal it was first saved for (or the template's text)."""
    goals: list[str] = Field(default_factory=list)
    """The goals it served, the most recent last."""
    template: str | None = None
    """For a template: the goal with `{{param:name}}` slots that the plan uses too."""
    text: str = ""
    """What a store with an embeddings index embeds: the goals, or the template."""
    plan: dict[str, Any]
    revisions: list[dict[str, Any]] = Field(default_factory=list)
    """The approved revisions that led to it: revision, source, reason, plan_hash."""
    steps: list[dict[str, Any]] = Field(default_factory=list)
    """The steps that ran: id, tool and the shape of the result."""
    tools: dict[str, str] = Field(default_factory=dict)
    """The tools it calls, each with the digest of its argument schema when saved."""
    outcome: dict[str, Any] = Field(default_factory=dict)
    """The last run's status and reason."""
    stats: _Stats
    usage: dict[str, dict[str, Usage]] = Field(default_factory=dict)
    """Model use per role, `last` (the latest successful run) and `total` (all of them)."""
    edits: _Edits = Field(default_factory=_Edits)
    """Reviewer edits the plan needed before it ran, and when the last one was made."""
    runs: list[str] = Field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        """Successes over uses, or None when it was never used."""
        return self.stats.successes / self.stats.uses if self.stats.uses else None

    def origin(self, params: Mapping[str, str] | None = None) -> LibrarySource:
        """This entry as the source of a replayed plan revision."""
        return {
            "entry": self.id,
            "uses": self.stats.uses,
            "success_rate": self.success_rate,
            "last_edit": self.edits.last_at,
            "template": self.template,
            "params": dict(params or {}),
        }


@dataclass(frozen=True)
class Match:
    """A saved plan that fits a goal, with the plan to run and why it ranks where it does."""

    entry: SavedPlan
    plan: PlanDict
    """The plan, its template slots filled from the goal."""
    similarity: float
    score: float
    params: dict[str, str]
    exact: bool
    """Whether the goal is one the entry served, or fills its template."""


class LibraryImportError(ValueError):
    """An import was refused whole; `errors` lists every problem found."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        shown = "\n".join(f"- {error}" for error in self.errors)
        super().__init__(f"nothing was imported; {len(self.errors)} problem(s):\n{shown}")


def describe_source(source: Mapping[str, Any]) -> str:
    """A replayed revision's `library` source in one line, for a reviewer."""
    rate = source.get("success_rate")
    shown = "none yet" if not isinstance(rate, int | float) else f"{rate:.0%}"
    edited = source.get("last_edit")
    return (
        f"replayed from saved plan {source.get('entry')!s:.64}: used {source.get('uses')} "
        f"time(s), success rate {shown}, last edited " + (f"{edited!s:.32}" if edited else "never")
    )


# --- text ------------------------------------------------------------------------------


def normalize_goal(goal: str) -> str:
    """The goal as exact matching compares it: spacing collapsed, case ignored."""
    return " ".join(goal.split()).casefold()


def _words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.casefold()) if len(word) > 1 or word.isdigit()}


def lexical_similarity(a: str, b: str) -> float:
    """How much two texts share their words, from 0 to 1 (the cosine of their word sets)."""
    left, right = _words(a), _words(b)
    if not left or not right:
        return 0.0
    return len(left & right) / math.sqrt(len(left) * len(right))


def template_params(template: str, goal: str) -> dict[str, str] | None:
    """The slot values that make `template` read as `goal`, or None if it cannot.

    The template's other text must match the goal word for word (spacing and case
    ignored); each `{{param:name}}` takes the text in its place.
    """
    pattern = ""
    last = 0
    names: list[str] = []
    for slot in _SLOT.finditer(template):
        pattern += _literal(template[last : slot.start()])
        if slot.group(1) in names:
            pattern += f"(?P={slot.group(1)})"
        else:
            names.append(slot.group(1))
            pattern += f"(?P<{slot.group(1)}>.+?)"
        last = slot.end()
    pattern += _literal(template[last:])
    if not names:
        return None
    found = re.fullmatch(pattern, " ".join(goal.split()), re.IGNORECASE | re.DOTALL)
    if found is None:
        return None
    return {name: found.group(name).strip() for name in names}


def _literal(text: str) -> str:
    return r"\s+".join(re.escape(part) for part in re.split(r"\s+", text)) if text else ""


def slot_names(value: object) -> set[str]:
    """Every `{{param:name}}` slot used anywhere inside `value`."""
    if isinstance(value, str):
        return set(_SLOT.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(slot_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(slot_names(v) for v in value)) if value else set()
    return set()


def fill_template(
    plan: Mapping[str, Any], params: Mapping[str, str], tools: Mapping[str, BaseTool]
) -> dict[str, Any]:
    """`plan` with every `{{param:name}}` replaced by its value.

    An argument that is exactly one slot takes the value as a number or a boolean when
    the tool's schema says so, and as text otherwise. A slot with no value is left as it
    is (validation then reports it).
    """
    steps = []
    for step in plan.get("steps") or []:
        if not isinstance(step, Mapping):
            steps.append(step)
            continue
        filled = dict(step)
        filled["description"] = _fill_text(step.get("description"), params)
        tool = tools.get(str(step.get("tool")))
        args = step.get("args")
        if isinstance(args, Mapping):
            types = _param_types(tool) if tool is not None else {}
            filled["args"] = {
                key: _fill_arg(value, params, types.get(key)) for key, value in args.items()
            }
        steps.append(filled)
    return {**plan, "steps": steps}


def _fill_text(value: Any, params: Mapping[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    return _SLOT.sub(lambda m: params.get(m.group(1), m.group(0)), value)


def _fill_arg(value: Any, params: Mapping[str, str], kind: str | None) -> Any:
    if isinstance(value, str):
        whole = _SLOT.fullmatch(value.strip())
        if whole and whole.group(1) in params:
            return _typed(params[whole.group(1)], kind)
        return _fill_text(value, params)
    if isinstance(value, Mapping):
        return {key: _fill_arg(item, params, None) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill_arg(item, params, None) for item in value]
    return value


def _typed(text: str, kind: str | None) -> Any:
    if kind == "integer" and re.fullmatch(r"[-+]?\d+", text.strip()):
        return int(text)
    if kind == "number":
        try:
            return float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            return text
    if kind == "boolean" and text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    return text


def _param_types(tool: BaseTool) -> dict[str, str]:
    schema = args_schema(tool)
    properties = (schema if isinstance(schema, dict) else schema.model_json_schema()).get(
        "properties"
    ) or {}
    return {name: str(spec.get("type")) for name, spec in properties.items()}


# --- what a run leaves behind -----------------------------------------------------------


def tool_hashes(plan: Mapping[str, Any], tools: Mapping[str, BaseTool]) -> dict[str, str]:
    """The digest of each tool's argument schema, for the tools `plan` calls."""
    names = sorted({str(s["tool"]) for s in plan.get("steps") or [] if s.get("tool")})
    return {name: schema_hash(tools[name]) for name in names if name in tools}


def schema_hash(tool: BaseTool) -> str:
    """A digest of `tool`'s argument schema: it changes when the arguments do."""
    schema = args_schema(tool)
    return digest(schema if isinstance(schema, dict) else schema.model_json_schema())


def shape_of(value: Any, depth: int = 0) -> Any:
    """The shape of a step's result: its types and keys, never its values."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if depth >= 3:
        return "array" if isinstance(value, list) else "object"
    if isinstance(value, list):
        return {"array": shape_of(value[0], depth + 1) if value else None, "length": len(value)}
    if isinstance(value, Mapping):
        keys = list(value)[:20]
        return {"object": {str(k)[:40]: shape_of(value[k], depth + 1) for k in keys}}
    return "string"


def approved_revisions(
    revisions: Sequence[PlanRevision], reviews: Sequence[ReviewRecord], reviewed: bool
) -> list[dict[str, Any]]:
    """The revisions with steps that a person approved (every one, when review was off)."""
    return [
        {
            "revision": revision["revision"],
            "source": revision["source"],
            "reason": revision["reason"],
            "plan_hash": digest(revision["plan"]),
            "at": revision["at"],
        }
        for revision in revisions
        if revision["plan"]["steps"] and (not reviewed or _approved(revision, reviews))
    ]


def _approved(revision: PlanRevision, reviews: Sequence[ReviewRecord]) -> bool:
    number = revision["revision"]
    for review in reviews:
        if review["decision"] == "approve" and review["revision"] == number:
            return True
        # A person's edit approves the revision it wrote, the one after the reviewed one.
        if (
            review["decision"] == "edit"
            and revision["source"] == "human"
            and review["revision"] == number - 1
        ):
            return True
    return False


def _recency(at: str | None, now: datetime) -> float:
    if not at:
        return 0.0
    try:
        then = datetime.fromisoformat(at)
    except ValueError:
        return 0.0
    days = max(0.0, (now - then).total_seconds() / 86400)
    return float(0.5 ** (days / HALF_LIFE_DAYS))


def rank(entry: SavedPlan, similarity: float, now: datetime) -> float:
    """The entry's score for a goal: similarity, success rate and recency, weighed."""
    # Laplace's rule: an unused plan starts at one half, not at zero or one.
    success = (entry.stats.successes + 1) / (entry.stats.uses + 2)
    recency = _recency(entry.stats.last_success_at or entry.stats.saved_at, now)
    return (
        WEIGHTS["similarity"] * similarity
        + WEIGHTS["success"] * success
        + WEIGHTS["recency"] * recency
    )


# --- the library ------------------------------------------------------------------------


class PlanLibrary:
    """The saved plans in `store` under `namespace`: find, list, export, import, delete.

    Example:
        ```python
        from langgraph.store.memory import InMemoryStore
        from planexec.library import PlanLibrary

        store = InMemoryStore()
        graph = build_graph(store=store, checkpointer=saver)
        ...  # runs that complete save their plans
        library = PlanLibrary(store)
        for entry in await library.alist():
            print(entry.id, entry.stats.uses, entry.goal)
        ```
    """

    def __init__(self, store: BaseStore, namespace: Sequence[str] = DEFAULT_NAMESPACE) -> None:
        self.store = store
        self.namespace = check_namespace(namespace)
        self.entries_ns = (*self.namespace, "entries")
        self.goals_ns = (*self.namespace, "goals")

    # -- reading --

    async def aget(self, entry_id: str) -> SavedPlan | None:
        """The entry with this id, or None (also when it is stored but does not parse)."""
        item = await self.store.aget(self.entries_ns, entry_id)
        return _parse(item.key, item.value) if item is not None else None

    async def alist(self, *, limit: int | None = None) -> list[SavedPlan]:
        """Every entry that parses, most used first; the others are skipped with a warning."""
        entries = [
            entry
            for item in await self._scan(limit)
            if (entry := _parse(item.key, item.value)) is not None
        ]
        return sorted(entries, key=lambda e: (-e.stats.uses, e.stats.saved_at))

    async def _scan(self, limit: int | None) -> list[SearchItem]:
        items: list[SearchItem] = []
        page = 100
        while limit is None or len(items) < limit:
            want = page if limit is None else min(page, limit - len(items))
            batch = await self.store.asearch(self.entries_ns, limit=want, offset=len(items))
            items.extend(batch)
            if len(batch) < want:
                break
        return items

    async def afind(
        self,
        goal: str,
        tools: Mapping[str, BaseTool],
        *,
        k: int = 3,
        max_steps: int = 20,
        max_args_chars: int | None = None,
    ) -> list[Match]:
        """The `k` saved plans that fit `goal` best and can run with `tools`, best first.

        Similarity is the store's semantic search when it has an embeddings index, and a
        lexical match otherwise; plans below `MIN_SIMILARITY` are left out. A plan whose
        tools are gone or changed their schemas is never offered.
        """
        if k <= 0:
            return []
        exact = await self.areplay(goal, tools, max_steps=max_steps, max_args_chars=max_args_chars)
        found: dict[str, Match] = {exact.entry.id: exact} if exact else {}
        items = await self.store.asearch(self.entries_ns, query=goal, limit=SEMANTIC_SCAN)
        semantic = any(item.score is not None for item in items)
        if not semantic:
            items = await self.store.asearch(self.entries_ns, limit=SCAN)
        now = datetime.now(UTC)
        for item in items:
            if item.key in found:
                continue
            entry = _parse(item.key, item.value)
            if entry is None:
                continue
            similarity = (
                max(0.0, min(1.0, item.score or 0.0))
                if semantic
                else max((lexical_similarity(goal, text) for text in _texts(entry)), default=0)
            )
            if similarity < MIN_SIMILARITY:
                continue
            plan = _runnable(entry, entry.plan, tools, max_steps, max_args_chars)
            if plan is not None:
                score = rank(entry, similarity, now)
                found[entry.id] = Match(entry, plan, similarity, score, {}, exact=False)
        return sorted(found.values(), key=lambda m: (not m.exact, -m.score))[:k]

    async def areplay(
        self,
        goal: str,
        tools: Mapping[str, BaseTool],
        *,
        max_steps: int = 20,
        max_args_chars: int | None = None,
    ) -> Match | None:
        """The saved plan that fits `goal` exactly and can run with `tools`, if there is one.

        An exact fit is a goal the plan served before (case and spacing ignored), or a
        template whose `{{param:name}}` slots the goal fills. Among several, the best
        ranked wins.
        """
        now = datetime.now(UTC)
        candidates: list[Match] = []
        index = await self.store.aget(self.goals_ns, digest(normalize_goal(goal)))
        ids = index.value.get("entries") if index is not None else None
        for entry_id in ids if isinstance(ids, list) else []:
            entry = await self.aget(str(entry_id))
            if entry is None or entry.kind != "plan":
                continue
            plan = _runnable(entry, entry.plan, tools, max_steps, max_args_chars)
            if plan is not None:
                candidates.append(Match(entry, plan, 1.0, rank(entry, 1.0, now), {}, exact=True))
        templates = await self.store.asearch(
            self.entries_ns, filter={"kind": "template"}, limit=TEMPLATE_SCAN
        )
        for item in templates:
            entry = _parse(item.key, item.value)
            if entry is None or entry.template is None:
                continue
            params = template_params(entry.template, goal)
            if params is None:
                continue
            filled = fill_template(entry.plan, params, tools)
            plan = _runnable(entry, filled, tools, max_steps, max_args_chars)
            if plan is not None:
                score = rank(entry, 1.0, now)
                candidates.append(Match(entry, plan, 1.0, score, params, exact=True))
        return max(candidates, key=lambda m: m.score, default=None)

    # -- writing --

    async def arecord(
        self,
        goal: str,
        state: Mapping[str, Any],
        tools: Mapping[str, BaseTool],
        *,
        run_id: str,
        reviewed: bool,
    ) -> str | None:
        """Record how a run that ended went; the id of the entry it saved or updated.

        A completed run saves the steps that ran as an entry, or counts a success for the
        entry it replayed, or for the entry already holding the same plan. A run that
        failed or ran out of budget after running a replayed plan counts a failure
        against it; any other run that did not complete saves nothing.
        """
        status = state.get("status")
        origin = _replayed(state)
        plan = _finished_plan(state)
        if status != "completed":
            if origin is None or status not in ("failed", "budget_exhausted"):
                return None
            if not _ran(state, origin[0]):
                return None
            return await self._count(origin[1], run_id, success=False, state=state)
        if plan is None:
            return None
        if origin is not None and _ran(state, origin[0]) and origin[2] == digest(plan):
            updated = await self._count(origin[1], run_id, success=True, state=state, goal=goal)
            if updated is not None:
                return updated
        if origin is not None and _ran(state, origin[0]):
            await self._count(origin[1], run_id, success=False, state=state)
        entry_id = digest(plan)
        existing = await self.aget(entry_id)
        if existing is not None:
            return await self._count(entry_id, run_id, success=True, state=state, goal=goal)
        entry = _new_entry(entry_id, goal, plan, state, tools, reviewed=reviewed, run_id=run_id)
        await self._put(entry, [])
        return entry_id

    async def _count(
        self,
        entry_id: str,
        run_id: str,
        *,
        success: bool,
        state: Mapping[str, Any],
        goal: str | None = None,
    ) -> str | None:
        entry = await self.aget(entry_id)
        if entry is None:
            return None
        if run_id in entry.runs:
            return entry_id
        now = timestamp()
        before = list(entry.goals)
        stats = entry.stats
        stats.uses += 1
        stats.last_used_at = now
        origin = _replayed(state)
        if origin is not None and origin[1] == entry_id:
            stats.replays += 1
        if success:
            stats.successes += 1
            stats.last_success_at = now
            usage = dict(state.get("usage") or {})
            entry.usage = {"last": usage, "total": add_usage(entry.usage.get("total"), usage)}
            entry.outcome = {"status": "completed", "reason": state.get("reason")}
            if goal is not None and entry.kind == "plan":
                entry.goals = [g for g in entry.goals if normalize_goal(g) != normalize_goal(goal)]
                entry.goals = [*entry.goals, goal][-MAX_GOALS:]
                entry.text = "\n".join(entry.goals)
        else:
            stats.failures += 1
            entry.outcome = {"status": state.get("status"), "reason": state.get("reason")}
        entry.runs = [*entry.runs, run_id][-MAX_RUNS:]
        await self._put(entry, before)
        return entry_id

    async def _put(self, entry: SavedPlan, goals_before: Sequence[str]) -> None:
        value = entry.model_dump(mode="json")
        await self.store.aput(self.entries_ns, entry.id, value, index=["text"])
        if entry.kind != "plan":
            return
        kept = {normalize_goal(g) for g in entry.goals}
        for goal in goals_before:
            if normalize_goal(goal) not in kept:
                await self._unindex(goal, entry.id)
        for goal in entry.goals:
            key = digest(normalize_goal(goal))
            item = await self.store.aget(self.goals_ns, key)
            ids = list(item.value.get("entries") or []) if item is not None else []
            if entry.id not in ids:
                await self.store.aput(
                    self.goals_ns, key, {"entries": [*ids, entry.id]}, index=False
                )

    async def _unindex(self, goal: str, entry_id: str) -> None:
        key = digest(normalize_goal(goal))
        item = await self.store.aget(self.goals_ns, key)
        if item is None:
            return
        ids = [i for i in item.value.get("entries") or [] if i != entry_id]
        if ids:
            await self.store.aput(self.goals_ns, key, {"entries": ids}, index=False)
        else:
            await self.store.adelete(self.goals_ns, key)

    async def adelete(self, entry_id: str) -> bool:
        """Delete the entry with this id; whether there was one."""
        item = await self.store.aget(self.entries_ns, entry_id)
        if item is None:
            return False
        goals = item.value.get("goals")
        for goal in goals if isinstance(goals, list) else []:
            if isinstance(goal, str):
                await self._unindex(goal, entry_id)
        await self.store.adelete(self.entries_ns, entry_id)
        return True

    async def asave_template(
        self,
        template: str,
        plan: Mapping[str, Any],
        tools: Mapping[str, BaseTool],
        *,
        max_steps: int = 20,
    ) -> str:
        """Save `plan` as a template for goals that read like `template`; its id.

        `template` and the plan's arguments or descriptions use the same
        `{{param:name}}` slots, for example "Convert {{param:amount}} USD to EUR" with
        `{"amount": "{{param:amount}}"}`. Raises `LibraryImportError` if they do not fit.
        """
        entry = SavedPlan(
            id=digest({"template": template, "plan": plan}),
            kind="template",
            goal=template,
            template=template,
            text=template,
            plan=dict(plan),
            tools=tool_hashes(plan, tools),
            stats=_Stats(saved_at=timestamp()),
        )
        errors = check_entry(entry, tools, max_steps=max_steps)
        if errors:
            raise LibraryImportError(errors)
        await self._put(entry, [])
        return entry.id

    async def aexport(self) -> dict[str, Any]:
        """Every entry that parses, as a document `aimport` reads back."""
        return {
            "format": EXPORT_FORMAT,
            "plans": [entry.model_dump(mode="json") for entry in await self.alist()],
        }

    async def aimport(
        self, document: object, tools: Mapping[str, BaseTool], *, max_steps: int = 20
    ) -> list[str]:
        """Add the entries of an export document; their ids.

        Every entry must parse and its plan must validate against `tools` (templates
        with their slots filled), or nothing is imported: `LibraryImportError` lists
        every problem. An entry whose id is already in the library replaces it.
        """
        errors: list[str] = []
        if not isinstance(document, Mapping) or document.get("format") != EXPORT_FORMAT:
            raise LibraryImportError([f'not a plan export: "format" must be "{EXPORT_FORMAT}"'])
        plans = document.get("plans")
        if not isinstance(plans, list):
            raise LibraryImportError(['"plans" must be a list of saved plans'])
        entries: list[SavedPlan] = []
        for index, data in enumerate(plans, start=1):
            try:
                entry = SavedPlan.model_validate(data)
            except ValidationError as exc:
                errors.extend(
                    f"plan #{index}: {'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}"
                    for e in exc.errors()
                )
                continue
            problems = check_entry(entry, tools, max_steps=max_steps)
            errors.extend(f"plan #{index} ({entry.id}): {problem}" for problem in problems)
            entries.append(entry)
        ids = [entry.id for entry in entries]
        errors.extend(f"the id {i} is used by more than one plan" for i in sorted(_repeated(ids)))
        if errors:
            raise LibraryImportError(errors)
        for entry in entries:
            old = await self.aget(entry.id)
            await self._put(entry, old.goals if old else [])
        return ids


def check_namespace(namespace: Sequence[str]) -> tuple[str, ...]:
    """`namespace` as a tuple, or `ValueError` if a LangGraph store would refuse it."""
    labels = tuple(namespace)
    if not labels or isinstance(namespace, str):
        raise ValueError("the library's namespace is a sequence of one or more labels")
    for label in labels:
        if not isinstance(label, str) or not label or "." in label:
            raise ValueError(f"namespace label {label!r} must be non-empty text without '.'")
    if labels[0] == "langgraph":
        raise ValueError('a namespace may not start with "langgraph" (LangGraph reserves it)')
    return labels


def check_entry(
    entry: SavedPlan,
    tools: Mapping[str, BaseTool],
    *,
    max_steps: int = 20,
    max_args_chars: int | None = None,
) -> list[str]:
    """Why `entry` cannot run with `tools`, or an empty list.

    A template is checked with a sample value in every slot; its slots must be the
    same in its goal and its plan.
    """
    plan: Mapping[str, Any] = entry.plan
    errors: list[str] = []
    if entry.kind == "template":
        if entry.template is None:
            return ["a template needs its `template` text"]
        in_goal = slot_names(entry.template)
        in_plan = slot_names(entry.plan)
        if not in_goal:
            errors.append("the template has no {{param:name}} slot")
        if in_plan - in_goal:
            errors.append(f"the plan uses slots the template lacks: {sorted(in_plan - in_goal)}")
        plan = fill_template(plan, dict.fromkeys(in_goal, "1"), tools)
    errors.extend(_tool_problems(entry, plan, tools))
    parsed, problems = parse_plan(plan)
    if parsed is not None:
        problems = validate_plan(parsed, tools, max_steps=max_steps, max_args_chars=max_args_chars)
    errors.extend(str(problem) for problem in problems)
    return errors


def _tool_problems(
    entry: SavedPlan, plan: Mapping[str, Any], tools: Mapping[str, BaseTool]
) -> list[str]:
    errors = []
    steps = plan.get("steps")
    used = {
        str(s.get("tool"))
        for s in (steps if isinstance(steps, list) else [])
        if isinstance(s, Mapping) and s.get("tool")
    }
    for name in sorted(used - set(entry.tools)):
        errors.append(f"tool {name!r} is used but its schema digest was not saved")
    for name, saved in sorted(entry.tools.items()):
        tool = tools.get(name)
        if tool is None:
            errors.append(f"tool {name!r} is not available now")
        elif schema_hash(tool) != saved:
            errors.append(f"tool {name!r} has changed its arguments since the plan was saved")
    return errors


def _runnable(
    entry: SavedPlan,
    plan: Mapping[str, Any],
    tools: Mapping[str, BaseTool],
    max_steps: int,
    max_args_chars: int | None,
) -> PlanDict | None:
    """`plan` as a valid plan for `tools`, or None (skipped with a warning)."""
    problems = _tool_problems(entry, plan, tools)
    parsed, errors = parse_plan(plan)
    if parsed is not None and not problems:
        errors = validate_plan(parsed, tools, max_steps=max_steps, max_args_chars=max_args_chars)
    if problems or errors or parsed is None:
        reasons = [*problems, *(str(e) for e in errors)]
        logger.warning("saved plan %r skipped: %r", entry.id, reasons[:5])
        return None
    return parsed.to_dict()


def _parse(key: str, value: Mapping[str, Any]) -> SavedPlan | None:
    try:
        entry = SavedPlan.model_validate({**value, "id": key})
    except ValidationError as exc:
        logger.warning("saved plan %r skipped: it does not parse: %r", key[:80], str(exc)[:300])
        return None
    return entry


def _texts(entry: SavedPlan) -> list[str]:
    if entry.template is not None:
        return [_SLOT.sub(" ", entry.template)]
    return entry.goals or [entry.goal]


def _repeated(ids: Sequence[str]) -> set[str]:
    return {i for i, n in Counter(ids).items() if n > 1}


def _replayed(state: Mapping[str, Any]) -> tuple[int, str, str] | None:
    """The first revision replayed from the library: its number, entry id and plan digest."""
    for revision in state.get("revisions") or []:
        origin = revision.get("library")
        if revision.get("source") == "library" and isinstance(origin, Mapping):
            return revision["revision"], str(origin.get("entry")), digest(revision["plan"])
    return None


def _ran(state: Mapping[str, Any], revision: int) -> bool:
    results = (state.get("results") or {}).values()
    return any(result.get("revision") == revision for result in results)


def _finished_plan(state: Mapping[str, Any]) -> PlanDict | None:
    """The current plan's steps that finished, in plan order; None if there are none."""
    plan = state.get("plan") or {"steps": []}
    results = state.get("results") or {}
    steps: list[StepDict] = [
        s for s in plan["steps"] if results.get(s["id"], {}).get("status") == "done"
    ]
    return {"steps": steps} if steps else None


def _new_entry(
    entry_id: str,
    goal: str,
    plan: PlanDict,
    state: Mapping[str, Any],
    tools: Mapping[str, BaseTool],
    *,
    reviewed: bool,
    run_id: str,
) -> SavedPlan:
    now = timestamp()
    results = state.get("results") or {}
    reviews: list[ReviewRecord] = list(state.get("reviews") or [])
    edits = [r for r in reviews if r["decision"] == "edit"]
    usage = dict(state.get("usage") or {})
    return SavedPlan(
        id=entry_id,
        goal=goal,
        goals=[goal],
        text=goal,
        plan=dict(plan),
        revisions=approved_revisions(state.get("revisions") or [], reviews, reviewed),
        steps=[
            {"id": s["id"], "tool": s["tool"], "shape": shape_of(results[s["id"]].get("output"))}
            for s in plan["steps"]
        ],
        tools=tool_hashes(plan, tools),
        outcome={"status": "completed", "reason": state.get("reason")},
        stats=_Stats(uses=1, successes=1, saved_at=now, last_used_at=now, last_success_at=now),
        usage={"last": usage, "total": usage},
        edits=_Edits(count=len(edits), last_at=edits[-1]["at"] if edits else None),
        runs=[run_id],
    )
