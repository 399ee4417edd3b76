"""Integer ranges by digits: a GBNF expression for the decimal integers from lo to hi.

A grammar cannot compare numbers, so a range is written digit by digit, as alternatives of
prefixes followed by digit classes (``1[5-9] | [2-9][0-9] | 1[0-9]{2}`` ...).
"""

from __future__ import annotations

from ._gbnf_text import group, literal, seq

__all__ = ["MAX_DIGITS", "MAX_INT", "integer_range"]

MAX_DIGITS = 16
MAX_INT = 10**MAX_DIGITS - 1


def _digits(lo: int, hi: int) -> str:
    return f"[{lo}]" if lo == hi else f"[{lo}-{hi}]"


def _any_digits(n: int) -> str:
    return "" if n == 0 else "[0-9]" if n == 1 else f"[0-9]{{{n}}}"


def _same_length(a: str, b: str) -> list[str]:
    """Alternatives matching the digit strings from ``a`` to ``b`` (same length, a <= b)."""
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if i == len(a):
        return [literal(a)]
    prefix = literal(a[:i]) if i else ""
    x, y, rest = int(a[i]), int(b[i]), len(a) - i - 1
    low_tail, high_tail = a[i + 1 :], b[i + 1 :]
    alternatives = []
    first, last = x, y
    if rest and low_tail != "0" * rest:  # x followed by low_tail..99
        alternatives.append(seq(prefix, literal(a[i]), group(_same_length(low_tail, "9" * rest))))
        first = x + 1
    high = ""
    if rest and high_tail != "9" * rest:  # y followed by 00..high_tail
        high = seq(prefix, literal(b[i]), group(_same_length("0" * rest, high_tail)))
        last = y - 1
    if first <= last:
        alternatives.append(seq(prefix, _digits(first, last), _any_digits(rest)))
    if high:
        alternatives.append(high)
    return alternatives


def _naturals(lo: int, hi: int | None) -> list[str]:
    """Alternatives matching the decimal numbers lo..hi (no leading zeros; hi None: up to
    16 digits)."""
    top = MAX_INT if hi is None else hi
    alternatives: list[str] = []
    for n in range(len(str(lo)), len(str(top)) + 1):
        first = max(lo, 10 ** (n - 1) if n > 1 else 0)
        last = min(top, 10**n - 1)
        if hi is None and n > 1 and first == 10 ** (n - 1):
            alternatives.append(f"[1-9] [0-9]{{{n - 1},{MAX_DIGITS - 1}}}")  # all longer ones
            break
        alternatives.extend(_same_length(str(first), str(last)))
    return alternatives


def integer_range(lo: int | None, hi: int | None) -> str:
    """A GBNF expression for the integers lo..hi (None: unbounded on that side)."""
    alternatives = []
    if lo is None or lo < 0:  # the negative part, by magnitude
        smallest = 1 if hi is None or hi >= 0 else -hi
        largest = None if lo is None else -lo
        alternatives.append('"-" ' + group(_naturals(smallest, largest)))
    if hi is None or hi >= 0:
        alternatives.extend(_naturals(max(lo or 0, 0), hi))
    return " | ".join(alternatives)
