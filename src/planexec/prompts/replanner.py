"""The replanner's prompt: the plan so far and its results in, a `Replan` out.

The user message grows with the live plan, not with the thread's history: steps settled
under earlier revisions leave `<plan>`, and `<earlier_revisions>` sums those revisions
up in a bounded way (`planexec.nodes.replanner` chooses what it shows).
"""

from string import Template

from planexec.interrupts import PlanSource
from planexec.prompts.sections import DATA_NOTICE

__all__ = [
    "CONTINUE_OPTION",
    "EARLIER_REVISIONS",
    "FEEDBACK",
    "MORE_IDS",
    "NO_IDS",
    "NO_REASON",
    "REASON",
    "REJECTED",
    "SOURCES",
    "SYSTEM",
    "USER",
]

SYSTEM = Template(f"""\
You are the replanner of a planner-executor agent. A plan has been running towards \
the goal. Read the plan and the results so far, then reply by calling `Replan` with \
one action:
- "finish": the results achieve the goal. Put the final answer for the person who \
set the goal in `answer`, based only on the results. Set steps to null.
- "replan": a step failed, or something the goal needs is missing. Put the new steps \
still to run in `steps`; do not repeat finished steps. New steps may depend on \
finished steps and use their results as {{{{id}}}}. Never reuse the id of an earlier \
step. Set answer to null.$options
Always say why in `reason`, in one sentence.

The steps follow the same rules as the plan's: each calls one of the tools in <tools> \
(args in full when known, null to let the executor choose them) or has tool null to \
be answered in text; depends_on lists every step whose result a step needs.

You may revise the plan $replans_left more time(s). When none are left, finish with \
the best answer the results allow, and say what is missing.

{DATA_NOTICE}""")

CONTINUE_OPTION = """
- "continue": the plan is on track; run its next step unchanged. Set answer and steps \
to null."""

USER = Template("""\
<goal>
$goal
</goal>

<tools>
$tools
</tools>

<plan revision="$revision">
$plan
</plan>

<step_results>
$results
</step_results>
$history$feedback$invalid_reply""")

EARLIER_REVISIONS = Template("""
<earlier_revisions>
The plan is at revision $revision: $sources.
The latest reasons for its revisions, oldest first:
$reasons
Steps finished under earlier revisions are left out of <plan>; new steps may still \
depend on them by id: $settled. <step_results> shows the results of the latest of them \
and of those the plan still needs.
Steps that failed or were skipped under earlier revisions (their ids may not be \
reused): $retired.
</earlier_revisions>""")

SOURCES: dict[PlanSource, Template] = {
    "planner": Template("$count by the planner"),
    "replanner": Template("$count by the replanner"),
    "human": Template("$count by a person"),
    "library": Template("$count from the plan library"),
}
"""How `<earlier_revisions>` counts the revisions each source wrote."""
REJECTED = Template("$count rejected by a reviewer")
REASON = Template("- revision $revision: $reason")
MORE_IDS = Template("$ids (and $left earlier)")
NO_IDS = "none"
NO_REASON = "(none given)"

FEEDBACK = Template("""
<reviewer_feedback>
A person reviewed your last revision and rejected it. Revise it again to address \
their feedback.
<feedback>
$message
</feedback>
</reviewer_feedback>""")
