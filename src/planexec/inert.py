r"""Untrusted text made visible and inert before it reaches a terminal.

Plan steps, tool outputs, answers, goals, thread ids and error messages come from
models, tools, MCP servers and shared databases. Printed raw, an ESC can move the
cursor, erase lines, hide text or write the clipboard (OSC 52); a bidi override can
make a step read differently from what runs; a zero-width character can make two
names look the same. Every command prints such text through this module:

- C0 and C1 controls and DEL become `\xNN` (`\x1b` for ESC), with `\n`, `\r` and `\t`
  for the usual three (a newline and a tab are kept where a text may span lines);
- format characters (bidi overrides and isolates, zero-width characters, soft hyphens,
  tags), line and paragraph separators, surrogates, private-use and unassigned code
  points, and letters that draw nothing (Hangul fillers) become `<U+XXXX>`.

`inert` also escapes rich markup, for text placed inside a markup string. `--json`
output does not come here: it stays exact.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = ["inert", "inert_data", "is_visible", "visible"]

_INVISIBLE_LETTERS = "\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5\u180e"
"""Characters that Python counts as printable but that draw nothing, or nearly nothing."""
_INVISIBLE = re.compile(f"[{_INVISIBLE_LETTERS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown(char: str, multiline: bool) -> str:
    if multiline and char in "\n\t":
        return char
    if char in _NAMED:
        return _NAMED[char]
    if char.isprintable() and char not in _INVISIBLE_LETTERS:
        return char
    if unicodedata.category(char) == "Zs":  # a space of another width: visible as space
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"<U+{code:04X}>"


def is_visible(text: str) -> bool:
    """Whether `text` prints exactly as it is: every character visible, none a control."""
    return text.isprintable() and _INVISIBLE.search(text) is None


def visible(value: object, *, multiline: bool = False) -> str:
    r"""`value` as text in which every control and invisible character is spelled out.

    With `multiline`, newlines and tabs are kept as they are.

        >>> visible("ok\x1b[2J\u202egnp.exe")
        'ok\\x1b[2J<U+202E>gnp.exe'
    """
    text = value if isinstance(value, str) else str(value)
    if is_visible(text):
        return text
    return "".join(_shown(char, multiline) for char in text)


def inert(value: object, *, multiline: bool = False) -> str:
    """`visible(value)` with rich markup escaped: safe inside a markup string."""
    from rich.markup import escape  # rich loads only where something is drawn

    return escape(visible(value, multiline=multiline))


def inert_data(value: Any) -> Any:
    """A copy of JSON-like `value` with every string (keys too) passed through `visible`.

    For renderers that take a whole structure (a plan, its results) and print parts of it.
    """
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, Mapping):
        return {visible(k) if isinstance(k, str) else k: inert_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [inert_data(item) for item in value]
    return value
