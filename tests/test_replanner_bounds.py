"""The replanner's prompt grows with the live plan, not with the thread's history."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from helpers import REPLANNED_START, Harness, context, replanning_script, step
from planexec import Context
from planexec.models import Models
from planexec.nodes.replanner import EARLIER_RESULT_CHARS, replanner_messages
from planexec.resources import Resources
from planexec.scripted import ScriptedCall, plan_reply
from planexec.tools import calculator

REVISIONS = 50
RESOURCES = Resources(tools={"calculator": calculator}, models=Models())


@pytest.fixture(scope="module")
def calls() -> list[ScriptedCall]:
    """The replanner's requests in a run revised `REVISIONS` times: call n sees revision n."""
    harness = Harness(planner=[plan_reply(REPLANNED_START)], replanner=replanning_script(REVISIONS))
    out = asyncio.run(harness.run({"goal": "count up"}, context(max_replans=REVISIONS)))
    assert out["status"] == "completed"
    assert out["results"]["z"]["output"] == 123456789001
    assert len(harness.replanner.calls) == REVISIONS + 1
    return harness.replanner.calls


def _plan_of(call: ScriptedCall) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = json.loads(
        call.prompt.split("<plan revision=")[1].split(">\n", 1)[1].split("\n</plan>")[0]
    )
    return shown


def test_the_prompt_at_revision_50_is_about_the_size_of_the_prompt_at_revision_5(
    calls: list[ScriptedCall],
) -> None:
    # Each call's live plan is the one step its revision added.
    assert all(len(_plan_of(call)) == 1 for call in calls[1:])
    at_5, at_50 = calls[4], calls[49]
    assert len(at_5.messages) == len(at_50.messages) == 2
    # Before: about 190 characters more per revision (3,860 at revision 5, 12,441 at 50).
    assert len(at_50.prompt) - len(at_5.prompt) < 600
    assert len(at_50.prompt) < 5_000
    assert max(len(call.prompt) for call in calls) < 5_000


def test_a_result_appears_once_in_every_prompt(calls: list[ScriptedCall]) -> None:
    for call in calls:
        shown = re.findall(r'<result step="(\w+)"', call.prompt)
        assert len(shown) == len(set(shown))
    # s0's result: its own revision's, then an earlier one, then left out, then z needs it.
    seen = [call.prompt.count("123456789000") for call in calls]
    assert seen[:9] == [1] * 9
    assert seen[12:-1] == [0] * (len(calls) - 13)
    assert seen[-1] == 1


def test_the_latest_prompt_keeps_what_the_plan_depends_on_and_lists_what_it_leaves_out(
    calls: list[ScriptedCall],
) -> None:
    last = calls[-1].prompt
    assert [s["id"] for s in _plan_of(calls[-1])] == ["z"]
    assert '<result step="s0" status="done">\n123456789000\n</result>' in last
    assert '<result step="z" status="done">\n123456789001\n</result>' in last
    history = last.split("<earlier_revisions>\n")[1].split("</earlier_revisions>")[0]
    assert "The plan is at revision 51: 1 by the planner, 50 by the replanner." in history
    assert "- revision 51: revision 51 adds a step" in history
    assert "revision 48:" not in history
    assert "s48, s49 (and 11 earlier)" in history
    assert "f45" in history
    assert '<result step="s1" ' not in last


def _revision(number: int, source: str = "replanner", reason: str | None = None) -> dict[str, Any]:
    return {"revision": number, "source": source, "reason": reason, "plan": {}}


def test_a_failure_stays_in_view_after_the_revision_that_fixes_it_is_rejected() -> None:
    # Revision 2 failed at f2; revision 3 was rejected before any of its steps ran.
    state: Any = {
        "goal": "g",
        "plan": {"steps": [step("a"), step("b", depends_on=["a"]), step("c")]},
        "revisions": [_revision(1, "library"), _revision(2, reason="f2"), _revision(3, "human")],
        "reviews": [
            {"revision": 3, "decision": "reject", "message": "no", "plan_hash": "", "at": ""}
        ],
        "results": {
            "a": {"status": "done", "output": "x" * 5_000, "error": None, "revision": 1},
            "b": {"status": "done", "output": "B", "error": None, "revision": 2},
            "f2": {"status": "failed", "output": None, "error": "boom", "revision": 2},
        },
    }
    _, user = replanner_messages(state, Context(), RESOURCES)
    plan = json.loads(user.text.split('<plan revision="3">\n')[1].split("\n</plan>")[0])
    assert [(s["id"], s["status"]) for s in plan] == [("b", "done"), ("c", "pending")]
    assert '<result step="f2" status="failed">\nboom\n</result>' in user.text
    assert '<result step="b" status="done">\nB\n</result>' in user.text
    earlier = user.text.split('<result step="a" status="done">\n')[1].split("\n</result>")[0]
    assert earlier.startswith("xxx")
    assert len(earlier) == EARLIER_RESULT_CHARS
    assert "<feedback>\nno\n</feedback>" in user.text
    history = user.text.split("<earlier_revisions>\n")[1].split("</earlier_revisions>")[0]
    assert (
        "The plan is at revision 3: 1 by the replanner, 1 by a person, 1 from the plan "
        "library, 1 rejected by a reviewer."
    ) in history
    assert "- revision 2: f2\n- revision 3: (none given)\n" in history
    assert "depend on them by id: a." in history
    assert "(their ids may not be reused): none." in history
