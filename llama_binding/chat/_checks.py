"""Size checks for the operations that can multiply the size of a value in one step.

Each function raises :class:`~._budget.BudgetExceeded` *before* the operation runs when
its result would pass the budget's limit: checking afterwards would be too late, since
``'x' * 10 ** 10`` or ``s.replace('', big)`` exhausts memory inside a single C call.
The estimates are upper bounds up to a small constant factor, never exact; a result that
passes its estimate is checked again once built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._budget import MAX_INT_BITS, Budget, BudgetExceeded, bounded_size

__all__ = [
    "check_binop",
    "check_format_spec",
    "check_percent_format",
    "check_replace",
    "check_result",
    "repeat_estimate",
]

_SEQUENCES = (str, bytes, list, tuple)
# one %-conversion: optional (key), flags, width, .precision, length modifier, type
_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0+\- ]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")
_DIGITS = re.compile(r"\d+")
_SLOT = 8  # bytes of one reference in a list, tuple or dict


def _check_number_text(budget: Budget, digits: str, what: str) -> None:
    if len(digits) > 9:
        raise BudgetExceeded(f"{what} ({digits[:12]}...) is larger than the limit of {budget.limit}")
    budget.check_int(int(digits), what)


def check_result(budget: Budget, value: Any, what: str, new_items: bool = False) -> None:
    """Check a value just built (text by its length, containers by their item count) and
    count it in the budget's total: a container slot as the 8 bytes of its pointer, and
    with ``new_items`` the strings it holds too (``split`` makes new ones; ``+`` and most
    filters only refer to existing ones)."""
    if isinstance(value, (str, bytes)):
        budget.check_len(len(value), what)
        budget.record(len(value))
    elif isinstance(value, (list, tuple, dict)):
        budget.check_len(len(value), what)
        size = _SLOT * len(value)
        if new_items and not isinstance(value, dict):
            size += sum(len(item) for item in value if isinstance(item, (str, bytes)))
        budget.record(size)
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded(f"{what} is an integer of more than {MAX_INT_BITS} bits")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_binop(budget: Budget, operator: str, left: Any, right: Any) -> None:
    """Check ``left <operator> right`` before Python computes it."""
    if operator == "*":
        if isinstance(left, _SEQUENCES) and _is_count(right):
            budget.check_len(len(left) * max(right, 0), "a repeated value")
        elif isinstance(right, _SEQUENCES) and _is_count(left):
            budget.check_len(len(right) * max(left, 0), "a repeated value")
        elif _is_count(left) and _is_count(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise BudgetExceeded(f"a product would have more than {MAX_INT_BITS} bits")
    elif operator == "**":
        if _is_count(left) and _is_count(right) and right > 0 and abs(left) > 1:
            if left.bit_length() * right > MAX_INT_BITS:
                raise BudgetExceeded(f"a power would have more than {MAX_INT_BITS} bits")
    elif operator == "+":
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            budget.check_len(len(left) + len(right), "a sum of two values")
    elif operator == "%" and isinstance(left, str):
        check_percent_format(budget, left, right)


def check_percent_format(budget: Budget, fmt: str, args: Any) -> None:
    """Check ``fmt % args`` (the ``%`` operator and the ``format`` filter).

    Widths and precisions written in ``fmt`` or passed as ``*`` must be within the limit,
    and the result is bounded by the format's length plus, for each conversion, the text
    of all arguments (a mapping key may be used many times).
    """
    conversions = 0
    starred = False
    for match in _PERCENT.finditer(fmt):
        if match.group(3) == "%":
            continue
        conversions += 1
        for digits in match.group(1, 2):
            if digits == "*":
                starred = True
            elif digits:
                _check_number_text(budget, digits, "a width in a format string")
    values = args if isinstance(args, (tuple, Mapping)) else (args,)
    if starred and isinstance(values, tuple):  # some integer argument is a width
        for item in values:
            budget.check_int(item, "a width passed to a format string")
    if conversions:
        size = bounded_size(values, budget.limit)
        budget.check_len(len(fmt) + conversions * size, "a formatted string")


def check_format_spec(budget: Budget, spec: str) -> None:
    """Check one ``str.format`` field spec (after nested fields were filled in)."""
    for digits in _DIGITS.findall(spec):
        _check_number_text(budget, digits, "a width in a format string")


def check_replace(budget: Budget, text: Any, old: Any, new: Any, count: Any) -> None:
    """Check ``text.replace(old, new, count)`` for str and bytes (``old`` may be empty)."""
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        found = text.count(old) if old else len(text) + 1
    elif isinstance(text, bytes) and isinstance(old, bytes) and isinstance(new, bytes):
        found = text.count(old) if old else len(text) + 1
    else:
        return  # Python raises its own TypeError
    if _is_count(count) and count >= 0:
        found = min(found, count)
    budget.check_len(len(text) + found * max(len(new) - len(old), 0), "a replaced string")


def repeat_estimate(text: str, pieces: int, piece_len: int) -> int:
    """Length of ``text`` with a ``piece_len``-long string inserted ``pieces`` times."""
    return len(text) + max(pieces, 0) * max(piece_len, 0)
