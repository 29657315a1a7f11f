"""`planexec completion bash|zsh|fish`: a shell completion script, made from the parser.

The script completes commands, options, option values with fixed choices, file and
folder paths, and thread ids, which it gets from `planexec __complete threads` (with
the `--checkpoint` already typed, if any). Thread ids come from a database others may
write to, so each shell gets them as inert words: nothing in them is expanded while
completing, and each is quoted as it goes onto the command line (bash quotes with
`printf %q`; zsh's `compadd` and fish quote what they insert). Ids with control or
invisible characters are not offered at all. Install it with, for example:

    planexec completion bash > ~/.local/share/bash-completion/completions/planexec
    planexec completion zsh > "${fpath[1]}/_planexec"
    planexec completion fish > ~/.config/fish/completions/planexec.fish
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from planexec.cli.environment import Environment, Output

SHELLS = ("bash", "zsh", "fish")
PROGRAM = "planexec"

ValueKind = Literal["none", "text", "file", "directory", "choices", "thread"]


@dataclass(frozen=True)
class Option:
    """An option of a command, as completion needs it."""

    flags: tuple[str, ...]
    help: str
    kind: ValueKind
    """What the option's value is: "none" for a flag that takes none."""
    choices: tuple[str, ...] = ()
    repeatable: bool = False
    metavar: str = "value"


@dataclass(frozen=True)
class Positional:
    """A positional argument: its name, what it holds, whether it takes several words."""

    name: str
    kind: ValueKind
    choices: tuple[str, ...] = ()
    many: bool = False


@dataclass(frozen=True)
class CommandSpec:
    """A subcommand: its name, help, options and positional arguments."""

    name: str
    help: str
    options: tuple[Option, ...]
    positionals: tuple[Positional, ...]


def _summary(text: str | None) -> str:
    """The first clause of a help text, short enough for a completion menu."""
    if not text or text == argparse.SUPPRESS:
        return ""
    first = re.split(r" \(|: |; |(?<!e\.g)\. ", text, maxsplit=1)[0]
    return first.strip().rstrip(".")


def _kind(action: argparse.Action) -> ValueKind:
    if action.choices is not None:
        return "choices"
    if action.dest == "thread" and not action.option_strings:
        return "thread"
    metavar = str(action.metavar or "")
    if metavar in ("PATH", "FILE"):
        return "file"
    if metavar == "DIR":
        return "directory"
    return "text"


def command_specs(parser: argparse.ArgumentParser) -> tuple[list[Option], list[CommandSpec]]:
    """The top-level options and the visible subcommands of `parser`."""
    top: list[Option] = []
    commands: list[CommandSpec] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if name in helps:  # a subcommand added without help is hidden
                    commands.append(_command(name, _summary(helps[name]), sub))
        elif action.option_strings:
            top.append(_option(action))
    return top, commands


def _option(action: argparse.Action) -> Option:
    takes_value = action.nargs != 0
    return Option(
        flags=tuple(action.option_strings),
        help=_summary(action.help),
        kind=_kind(action) if takes_value else "none",
        choices=tuple(str(c) for c in action.choices or ()),
        repeatable=isinstance(action, argparse._AppendAction),
        metavar=str(action.metavar or action.dest).lower(),
    )


def _command(name: str, help_text: str, parser: argparse.ArgumentParser) -> CommandSpec:
    options, positionals = [], []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            options.append(_option(action))
        else:
            positionals.append(
                Positional(
                    name=str(action.metavar or action.dest).lower(),
                    kind=_kind(action),
                    choices=tuple(str(c) for c in action.choices or ()),
                    many=action.nargs in ("+", "*", argparse.REMAINDER),
                )
            )
    return CommandSpec(name, help_text, tuple(options), tuple(positionals))


# --- bash -----------------------------------------------------------------------------

_BASH_HEAD = """\
# bash completion for planexec (made by `planexec completion bash`)

_planexec_threads() {
    local checkpoint="" i
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        if [[ ${COMP_WORDS[i]} == --checkpoint ]]; then
            checkpoint=${COMP_WORDS[i+1]}
        fi
    done
    if [[ -n $checkpoint ]]; then
        planexec __complete threads --checkpoint "$checkpoint" 2>/dev/null
    else
        planexec __complete threads 2>/dev/null
    fi
}

_planexec_reply() {
    # The words in $1 (one per line) that start with $2, each quoted for the command line.
    # Nothing in them is expanded: compgen -W would run a $(...) found in a thread id.
    local word quoted
    COMPREPLY=()
    while IFS= read -r word; do
        if [[ -n $word && $word == "$2"* ]]; then
            printf -v quoted '%q' "$word"
            COMPREPLY+=("$quoted")
        fi
    done <<< "$1"
}

_planexec() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local command="" start=0 i
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} != -* ]]; then
            command=${COMP_WORDS[i]}
            start=$i
            break
        fi
    done
    COMPREPLY=()
"""

_BASH_TAIL = """\
    if [[ $cur == -* ]]; then
        _planexec_reply "$options" "$cur"
        return
    fi
    # Which positional argument is being typed: skip options and their values.
    local count=0 skip=0
    for ((i = start + 1; i < COMP_CWORD; i++)); do
        if ((skip)); then
            skip=0
        elif [[ $'\\n'$valued$'\\n' == *$'\\n'"${COMP_WORDS[i]}"$'\\n'* ]]; then
            skip=1
        elif [[ ${COMP_WORDS[i]} != -* ]]; then
            count=$((count + 1))
        fi
    done
    local kind=none last=$((${#positionals[@]} - 1))
    if ((count <= last)); then
        kind=${positionals[count]}
    elif ((last >= 0 && last_many)); then
        kind=${positionals[last]}
    fi
    case $kind in
        thread) _planexec_reply "$(_planexec_threads)" "$cur" ;;
        file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
        choices:*) _planexec_reply "${kind#choices:}" "$cur" ;;
    esac
}

complete -F _planexec planexec
"""


def _lines(words: list[str]) -> str:
    """Words for a bash string that `_planexec_reply` splits on newlines."""
    return "$'" + "\\n".join(w.replace("\\", "\\\\").replace("'", "\\'") for w in words) + "'"


def _value_case(options: tuple[Option, ...], indent: str) -> list[str]:
    """`case $prev in ...`: completing the value of the option just typed."""
    arms: list[str] = []
    for option in options:
        if option.kind == "none":
            continue
        pattern = "|".join(option.flags)
        if option.kind == "choices":
            body = f'_planexec_reply {_lines(list(option.choices))} "$cur"; return'
        elif option.kind == "file":
            body = 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return'
        elif option.kind == "directory":
            body = 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")); return'
        else:
            body = "return"
        arms.append(f"{indent}    {pattern}) {body} ;;")
    if not arms:
        return []
    return [f"{indent}case $prev in", *arms, f"{indent}esac"]


def bash_script(parser: argparse.ArgumentParser) -> str:
    """The bash completion script for `parser`."""
    top, commands = command_specs(parser)
    out = [_BASH_HEAD]
    first = [c.name for c in commands] + [f for o in top for f in o.flags]
    out.append("    if [[ -z $command ]]; then")
    out.append(f'        _planexec_reply {_lines(first)} "$cur"')
    out.append("        return")
    out.append("    fi")
    out.append('    local options="" valued="" last_many=0')
    out.append("    local -a positionals=()")
    out.append("    case $command in")
    for command in commands:
        flags = [f for o in command.options for f in o.flags]
        valued = [f for o in command.options if o.kind != "none" for f in o.flags]
        kinds = [
            _lines([f"choices:{p.choices[0]}", *p.choices[1:]]) if p.choices else _lines([p.kind])
            for p in command.positionals
        ]
        many = int(bool(command.positionals) and command.positionals[-1].many)
        out.append(f"        {command.name})")
        out.append(f"            options={_lines(flags)}")
        out.append(f"            valued={_lines(valued)}")
        out.append(f"            positionals=({' '.join(kinds)}) last_many={many}")
        out.extend(_value_case(command.options, "            "))
        out.append("            ;;")
    out.append("        *) return ;;")
    out.append("    esac")
    out.append(_BASH_TAIL)
    return "\n".join(out)


# --- zsh ------------------------------------------------------------------------------

_ZSH_HEAD = """\
#compdef planexec
# zsh completion for planexec (made by `planexec completion zsh`)

_planexec_threads() {
    local -a ids
    local i=${words[(I)--checkpoint]} checkpoint=""
    (( i )) && checkpoint=${words[i+1]}
    if [[ -n $checkpoint ]]; then
        ids=(${(f)"$(planexec __complete threads --checkpoint ${(Q)checkpoint} 2>/dev/null)"})
    else
        ids=(${(f)"$(planexec __complete threads 2>/dev/null)"})
    fi
    _wanted threads expl thread compadd -a ids
}

_planexec() {
    local curcontext=$curcontext state line
    typeset -A opt_args
"""

_ZSH_TAIL = """\
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _planexec "$@"
else
    compdef _planexec planexec
fi
"""


def _zq(text: str) -> str:
    """`text` inside a zsh single-quoted word."""
    return text.replace("'", "'\\''")


def _zsh_help(text: str) -> str:
    return _zq(text.replace("[", "(").replace("]", ")"))


def _zsh_action(kind: ValueKind, choices: tuple[str, ...]) -> str:
    if kind == "choices":
        return "(" + " ".join(_zq(c) for c in choices) + ")"
    return {"file": "_files", "directory": "_directories", "thread": "_planexec_threads"}.get(
        kind, " "
    )


def _zsh_option(option: Option) -> str:
    flags = option.flags
    desc = _zsh_help(option.help)
    if len(flags) > 1:
        head = "'(" + " ".join(flags) + ")'{" + ",".join(flags) + "}"
    else:
        head = ("'*" if option.repeatable else "'") + flags[0] + "'"
    value = ""
    if option.kind != "none":
        value = f":{_zq(option.metavar)}:{_zsh_action(option.kind, option.choices)}"
    return f"{head}'[{desc}]{value}'"


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """The zsh completion script for `parser`."""
    top, commands = command_specs(parser)
    out = [_ZSH_HEAD]
    specs = [_zsh_option(o) for o in top] + ["'1:command:->command'", "'*::argument:->argument'"]
    out.append("    _arguments -C \\\n        " + " \\\n        ".join(specs))
    out.append("    case $state in")
    out.append("        command)")
    out.append("            local -a commands")
    described = " ".join(f"'{_zq(c.name)}:{_zsh_help(c.help)}'" for c in commands)
    out.append(f"            commands=({described})")
    out.append("            _describe -t commands 'planexec command' commands")
    out.append("            ;;")
    out.append("        argument)")
    out.append("            case $words[1] in")
    for command in commands:
        specs = [_zsh_option(o) for o in command.options]
        for position in command.positionals:
            action = _zsh_action(position.kind, position.choices)
            prefix = "'*" if position.many else "'"
            specs.append(f"{prefix}:{_zq(position.name)}:{action}'")
        out.append(f"                {command.name})")
        out.append(
            "                    _arguments \\\n                        "
            + " \\\n                        ".join(specs)
        )
        out.append("                    ;;")
    out.append("            esac")
    out.append("            ;;")
    out.append("    esac")
    out.append(_ZSH_TAIL)
    return "\n".join(out)


# --- fish -----------------------------------------------------------------------------

_FISH_HEAD = """\
# fish completion for planexec (made by `planexec completion fish`)

function __planexec_threads
    set -l words (commandline -opc)
    set -l index (contains -i -- --checkpoint $words)
    if test -n "$index"; and test (count $words) -gt $index
        planexec __complete threads --checkpoint $words[(math $index + 1)] 2>/dev/null
    else
        planexec __complete threads 2>/dev/null
    end
end

complete -c planexec -f
"""


def _fq(text: str) -> str:
    """`text` as a fish single-quoted word."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(option: Option, condition: str) -> str:
    parts = [f"complete -c {PROGRAM} -n {_fq(condition)}"]
    for flag in option.flags:
        parts.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
    if option.kind == "choices":
        parts.append(f"-x -a {_fq(' '.join(option.choices))}")
    elif option.kind == "file":
        parts.append("-r -F")
    elif option.kind == "directory":
        parts.append("-x -a '(__fish_complete_directories)'")
    elif option.kind == "text":
        parts.append("-x")
    if option.help:
        parts.append(f"-d {_fq(option.help)}")
    return " ".join(parts)


def fish_script(parser: argparse.ArgumentParser) -> str:
    """The fish completion script for `parser`."""
    top, commands = command_specs(parser)
    out = [_FISH_HEAD]
    out.extend(_fish_option(o, "__fish_use_subcommand") for o in top)
    for command in commands:
        out.append(
            f"complete -c {PROGRAM} -n __fish_use_subcommand -a {command.name} "
            f"-d {_fq(command.help)}"
        )
    for command in commands:
        condition = f"__fish_seen_subcommand_from {command.name}"
        out.extend(_fish_option(o, condition) for o in command.options)
        for position in command.positionals[:1]:
            if position.kind == "thread":
                values = "'(__planexec_threads)' -k"
            elif position.kind == "choices":
                values = _fq(" ".join(position.choices))
            else:
                continue
            out.append(f"complete -c {PROGRAM} -n {_fq(condition)} -x -a {values}")
    return "\n".join(out) + "\n"


SCRIPTS: dict[str, Callable[[argparse.ArgumentParser], str]] = {
    "bash": bash_script,
    "zsh": zsh_script,
    "fish": fish_script,
}


def completion(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec completion SHELL`."""
    from planexec.cli.parser import build_parser  # here: the parser's module imports this one

    sys.stdout.write(SCRIPTS[args.shell](build_parser()))
    return 0
