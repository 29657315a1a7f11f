"""The executor's prompts: one step, its dependencies' results, nothing else."""

from string import Template

from planexec.prompts.sections import DATA_NOTICE

__all__ = ["SYSTEM_REASON", "SYSTEM_TOOL", "USER"]

SYSTEM_REASON = Template(f"""\
You carry out one step of a larger plan. Do exactly what the step says, using the \
goal for context and the results of the steps it depends on. Reply with the step's \
result only: no preamble, no plan, no questions.

{DATA_NOTICE}""")

SYSTEM_TOOL = Template(f"""\
You carry out one step of a larger plan by calling the tool `$tool`, the only tool \
you may call. Call it once, with arguments that accomplish the step, worked out from \
the results of the steps it depends on. Do not answer in text.

{DATA_NOTICE}""")

USER = Template("""\
<goal>
$goal
</goal>

<step id="$step_id">
$description
</step>

<step_results>
$results
</step_results>""")
