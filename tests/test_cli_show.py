"""`planexec show` reads a SQLite file without the graph, and says what the graph would.

For a thread in each state (`tests/thread_states.py`), plain and encrypted, the direct
read (`planexec.cli.latest`) must report what `graph.aget_state` reports, and `show`
must print the same, for people and as JSON, as when it reads through the graph. The
states the direct reader does not read exactly must go through the graph.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from helpers import cli
from planexec.cli import show as show_module
from planexec.cli.latest import (
    CHECKPOINT_FORMAT,
    DEFAULTS,
    NODES,
    STATE_CHANNELS,
    STORED_BY_DELTA,
    UNREAD,
    Decoder,
    Opaque,
    Pending,
    Unsupported,
    latest_state,
)
from planexec.cli.show import ThreadView, read_directly, read_through_graph
from planexec.cli.threads import sqlite_page, thread_status
from thread_states import THREADS, make_demo, make_states

KEY = "a checkpoint key for the show tests"

pytestmark = pytest.mark.usefixtures("cli_home")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A plain file with every state and a demo thread, and the same states encrypted."""
    folder = tmp_path_factory.mktemp("show")
    plain, sealed = folder / "plain.sqlite", folder / "sealed.sqlite"
    asyncio.run(make_states(plain))
    make_demo(plain, folder / "ws")
    asyncio.run(make_states(sealed, KEY))
    yield {"plain": plain, "sealed": sealed}
    shutil.rmtree(folder, ignore_errors=True)


CASES = [("plain", t, None) for t in (*THREADS, "demo")] + [("sealed", t, KEY) for t in THREADS]


def comparable(view: ThreadView) -> dict[str, Any]:
    return {
        "thread_id": view.thread_id,
        # The direct reader leaves the conversation out (`latest.UNREAD`); show prints none.
        "values": {k: v for k, v in view.values.items() if k not in UNREAD},
        "metadata": dict(view.metadata),
        "created_at": view.created_at,
        "next": tuple(view.next),
        "interrupts": [(i.id, i.value, i.response_schema) for i in view.interrupts],
        "unsaved": view.unsaved,
    }


@pytest.mark.parametrize(("file", "thread", "key"), CASES)
def test_the_direct_read_reports_what_get_state_reports(
    files: dict[str, Path], file: str, thread: str, key: str | None
) -> None:
    direct = read_directly(files[file], thread, key)
    through_graph = read_through_graph(files[file], thread, key)
    if direct is None:
        # The history channels are stored by delta (`planexec.state`): a checkpoint that
        # has written them does not hold them, and `show` goes through the graph.
        assert {"results", "revisions", "reviews"} & set(through_graph.values)
        return
    assert comparable(direct) == comparable(through_graph)


def test_the_states_differ_as_the_listing_says(files: dict[str, Path]) -> None:
    """The fixture's threads are in the states the parity test claims to cover."""
    views = {t: read_through_graph(files["plain"], t, None) for t in (*THREADS, "demo")}
    seen = {
        t: (v.values.get("status"), v.next, [i.value.get("type") for i in v.interrupts])
        for t, v in views.items()
        if v is not None
    }
    assert seen == {
        "done": ("completed", (), []),
        "review": (None, ("review",), ["plan_review"]),
        "approval": (None, ("approval",), ["step_approval"]),
        "broken": ("failed", (), []),
        "stopped": (None, ("planner",), []),  # the recursion limit stops it after intake
        "recorded": (None, ("planner",), []),
        "revised": ("completed", (), []),
        "inflight": (None, ("executor",), []),
        "demo": ("completed", (), []),
    }
    assert views["inflight"] is not None
    assert list(views["inflight"].unsaved) == ["s1"]
    assert views["revised"] is not None
    assert [r["decision"] for r in views["revised"].values["reviews"]][:1] == ["reject"]


def _forced_through_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(show_module, "read_directly", lambda *args: None)


@pytest.mark.parametrize(("file", "thread", "key"), CASES)
@pytest.mark.parametrize("json_mode", [False, True])
def test_show_prints_the_same_read_directly_or_through_the_graph(
    files: dict[str, Path],
    file: str,
    thread: str,
    key: str | None,
    json_mode: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if key:
        monkeypatch.setenv("PLANEXEC_CHECKPOINT_KEY", key)
    argv = ["show", thread, "--checkpoint", str(files[file]), *(["--json"] if json_mode else [])]
    direct = cli(capsys, *argv)
    _forced_through_graph(monkeypatch)
    assert cli(capsys, *argv) == direct
    assert direct[0] == 0
    assert f"goal of {thread}" in direct[1] or thread == "demo"


@pytest.mark.parametrize(
    ("thread", "key", "message"),
    [
        ("nosuch", None, "unknown thread nosuch in"),
        ("d", None, "d is the start of several thread ids in"),
        ("don", None, None),
        ("done", "not the key", "failed its integrity check"),
    ],
)
def test_errors_and_prefixes_read_the_same_either_way(
    files: dict[str, Path],
    thread: str,
    key: str | None,
    message: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = files["sealed" if key else "plain"]
    if key:
        monkeypatch.setenv("PLANEXEC_CHECKPOINT_KEY", key)
    direct = cli(capsys, "show", thread, "--checkpoint", str(path))
    _forced_through_graph(monkeypatch)
    assert cli(capsys, "show", thread, "--checkpoint", str(path)) == direct
    if message is None:
        assert direct[0] == 0
        assert "thread done" in direct[1]
    else:
        assert direct[0] == 2
        assert message in direct[2]


def test_an_encrypted_thread_without_the_key_is_refused_with_the_serializers_words(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert read_directly(files["sealed"], "done", None) is None
    code, _, err = cli(capsys, "show", "done", "--checkpoint", str(files["sealed"]))
    assert code == 2
    assert "no checkpoint key is set" in err


# --- what the direct reader refuses --------------------------------------------------------


def checkpoint(**channels: Any) -> dict[str, Any]:
    """A version-4 checkpoint paused before review, with `channels` added."""
    return {
        "v": 4,
        "id": "1",
        "ts": "2026-12-04T00:00:00+00:00",
        "channel_values": {"goal": "g", "branch:to:review": None, **channels},
        "channel_versions": {"goal": "01", "branch:to:review": "02"},
        "versions_seen": {"planner": {"branch:to:planner": "01"}},
    }


def test_latest_state_reads_a_paused_checkpoint_as_get_state_does() -> None:
    asked = Pending(value={"type": "plan_review"}, id="i1")
    write = ("t1", "__interrupt__", [asked], "~__pregel_pull, review")
    step = ("t2", "__return__", {"planexec_step": "s1"}, "~__pregel_push, ~__pregel_pull, x")
    latest = latest_state("t", checkpoint(), {}, [write, step])
    assert latest.next == ("review",)
    assert latest.interrupts == (asked,)
    assert latest.values == {
        "goal": "g",
        **{k: v for k, v in DEFAULTS.items() if k not in UNREAD},
    }
    assert list(latest.values) == [c for c in STATE_CHANNELS if c in latest.values]


@pytest.mark.parametrize(
    ("change", "writes"),
    [
        ({"v": 3}, []),
        ({"channel_values": {"goal": "g", "__pregel_tasks": []}}, []),
        ({"channel_values": {"goal": "g", "somewhere_else": 1}}, []),
        (
            {
                "channel_values": {"branch:to:nowhere": None},
                "channel_versions": {"branch:to:nowhere": "1"},
            },
            [],
        ),
        ({}, [("00000000-0000-0000-0000-000000000000", "goal", "h", "")]),
        ({}, [("t1", "__resume__", "yes", "~__pregel_pull, review")]),
        ({}, [("t1", "goal", "h", "~__pregel_pull, review")]),
        ({}, [("t1", "__interrupt__", ["not an interrupt"], "~__pregel_pull, review")]),
        ({}, [("t1", "__return__", {}, "~__pregel_pull, planner")]),
    ],
)  # fmt: skip
def test_latest_state_leaves_to_the_graph_what_it_does_not_read_exactly(
    change: dict[str, Any], writes: list[tuple[str, str, Any, str]]
) -> None:
    with pytest.raises(Unsupported):
        latest_state("t", {**checkpoint(), **change}, {}, writes)


def test_two_nodes_to_run_next_are_left_to_the_graph() -> None:
    both = checkpoint(**{"branch:to:executor": None})
    both["channel_versions"]["branch:to:executor"] = "02"
    with pytest.raises(Unsupported):
        latest_state("t", both, {}, [])


def test_the_decoder_reads_what_langgraph_writes_and_refuses_other_types() -> None:
    serde = JsonPlusSerializer()
    plain = {"a": [1, 2.5, None, True, "x"], "b": {"nested": {}}, 3: "int key"}
    assert Decoder(None).loads(*serde.dumps_typed(plain)) == plain
    assert Decoder(None).loads(*serde.dumps_typed(None)) is None
    # A type it does not build is kept as a marker, which `latest_state` refuses outside
    # the channels it does not report.
    assert isinstance(Decoder(None).loads(*serde.dumps_typed(Path("/a"))), Opaque)
    with pytest.raises(Unsupported):
        Decoder(None).loads("msgpack", b"\xc1 not msgpack")
    with pytest.raises(Unsupported):
        Decoder(None).loads("pickle", ormsgpack.packb(1))


def test_a_value_the_reader_does_not_build_sends_the_read_to_the_graph() -> None:
    serde = JsonPlusSerializer()
    unbuilt = Decoder(None).loads(*serde.dumps_typed(Path("/a")))
    checkpoint = {
        "v": CHECKPOINT_FORMAT,
        "ts": "2026-12-04T00:00:00+00:00",
        "channel_values": {"goal": "g", "plan": unbuilt},
        "channel_versions": {"goal": 1, "plan": 1},
        "versions_seen": {},
    }
    with pytest.raises(Unsupported, match="plan"):
        latest_state("t", checkpoint, {}, [])
    # A channel written but absent from the checkpoint is stored elsewhere (by delta).
    del checkpoint["channel_values"]["plan"]
    with pytest.raises(Unsupported, match="not stored in the checkpoint"):
        latest_state("t", checkpoint, {}, [])


def test_the_readers_channel_and_node_names_are_the_graphs() -> None:
    from planexec import build_graph

    graph = build_graph()
    assert tuple(graph.stream_channels_asis) == STATE_CHANNELS
    assert tuple(graph.nodes) == NODES
    defaults = {}
    for name in STATE_CHANNELS:
        channel = graph.channels[name]
        if channel.is_available():
            defaults[name] = channel.get()
    delta = {n for n in STATE_CHANNELS if isinstance(graph.channels[n], DeltaChannel)}
    assert delta == STORED_BY_DELTA
    # get_state reports a never-written delta channel as its reducer's empty value.
    assert defaults == {k: v for k, v in DEFAULTS.items() if k not in delta}
    assert {k: DEFAULTS[k] for k in delta} == {
        "results": {},
        "revisions": [],
        "reviews": [],
        "earlier_goals": [],
    }
    hidden = set(graph.channels) - set(STATE_CHANNELS)
    assert hidden == {"__start__", "__pregel_tasks"} | {f"branch:to:{n}" for n in NODES[1:]}


@pytest.mark.parametrize(("file", "key"), [("plain", None), ("sealed", KEY)])
def test_the_listing_says_of_each_thread_what_get_state_says(
    files: dict[str, Path], file: str, key: str | None
) -> None:
    page = sqlite_page(files[file], key, None)
    expected = THREADS[::-1] if file == "sealed" else ("demo", *THREADS[::-1])
    assert [s.thread_id for s in page.threads] == list(expected)
    assert page.total == len(expected)
    for summary in page.threads:
        view = read_through_graph(files[file], summary.thread_id, key)
        revisions = view.values.get("revisions") or []
        assert summary.problem is None
        assert summary.status == thread_status(view.values, view.interrupts, view.next)
        assert summary.goal == view.values.get("goal")
        assert summary.revision == (revisions[-1]["revision"] if revisions else None)
        assert summary.updated_at == view.created_at


def test_a_page_is_the_newest_threads_and_counts_them_all(files: dict[str, Path]) -> None:
    page = sqlite_page(files["plain"], None, 3)
    assert [s.thread_id for s in page.threads] == ["demo", "inflight", "revised"]
    assert page.total == len(THREADS) + 1
