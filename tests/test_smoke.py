from helpers import Harness, step
from langgraph.types import Command

from planexec.scripted import plan_reply, replan_reply


async def test_plan_review_approve_runs_to_an_answer() -> None:
    steps = [
        step("s1", args={"expression": "12*4"}),
        step("s2", args={"expression": "{{s1}} + 5"}, depends_on=["s1"]),
        step("s3", tool=None, depends_on=["s2"]),
    ]
    h = Harness(
        planner=[plan_reply(steps)],
        executor=["It is 53."],
        replanner=[replan_reply("finish", answer="53")],
    )
    paused = await h.run({"goal": "compute 12*4+5"})
    assert paused["__interrupt__"][0].value["type"] == "plan_review"
    out = await h.run(Command(resume={"type": "approve"}))
    assert out["status"] == "completed"
    assert out["answer"] == "53"
    assert {k: v["output"] for k, v in out["results"].items()} == {
        "s1": 48,
        "s2": 53,
        "s3": "It is 53.",
    }
    assert len(h.executor.calls) == 1
