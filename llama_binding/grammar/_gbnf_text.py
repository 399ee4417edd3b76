"""Small helpers that write GBNF text: literals, groups, repetitions and sequences.

They build expressions as strings and know nothing of JSON Schema; the converter in
:mod:`.json_schema` and the modules beside it compose them into rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["MAX_REPEAT", "group", "is_atom", "literal", "repeat", "seq"]

# GBNF expands {m,n} into n rules and refuses more than 2000 in one repetition
MAX_REPEAT = 1000

_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_ATOM = re.compile(r'[A-Za-z0-9-]+|"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]')


def literal(text: str) -> str:
    """A GBNF string literal that matches ``text`` exactly."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\r\t":
            out.append({"\n": r"\n", "\r": r"\r", "\t": r"\t"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def is_atom(expr: str) -> bool:
    """Whether ``expr`` is one GBNF item (a name, a literal or a class) that a repetition or
    a sequence can take as it is."""
    return _ATOM.fullmatch(expr) is not None


def group(alternatives: Sequence[str]) -> str:
    """Alternatives as an item of a sequence (one alternative needs no group there)."""
    if len(alternatives) == 1:
        return alternatives[0]
    return "( " + " | ".join(alternatives) + " )"


def repeat(atom: str, lo: int, hi: int | None) -> str:
    """``atom`` repeated lo..hi times (hi None: no limit), in the shortest GBNF."""
    if hi == 0:
        return ""
    if hi is None:
        return atom + ("*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}")
    if lo == hi:
        return atom if lo == 1 else f"{atom}{{{lo}}}"
    if (lo, hi) == (0, 1):
        return atom + "?"
    return f"{atom}{{{lo},{hi}}}"


def seq(*items: str) -> str:
    """Items of a sequence, empty ones left out and neighbouring literals joined."""
    out: list[str] = []
    for item in items:
        if not item:
            continue
        if out and _LITERAL.fullmatch(out[-1]) and _LITERAL.fullmatch(item):
            out[-1] = out[-1][:-1] + item[1:]
        else:
            out.append(item)
    return " ".join(out)
