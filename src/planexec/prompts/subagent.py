"""The request a sub-agent receives by default: one step, its arguments, its inputs."""

from string import Template

from planexec.prompts.sections import DATA_NOTICE

__all__ = ["USER"]

USER = Template(f"""\
You carry out one step of a larger plan. Do what the step says, with the arguments \
below, using the goal for context and the results of the steps it depends on. When \
you are done, reply with the step's result only: no preamble and no questions.

<goal>
$goal
</goal>

<step id="$step_id">
$description
</step>

<arguments>
$arguments
</arguments>

<step_results>
$results
</step_results>

{DATA_NOTICE}""")
