"""The rendering budget of a chat template: sizes, a total of values made, and a deadline.

A chat template comes from a model file, so it is untrusted code. The jinja2 sandbox keeps
it away from Python internals, but not from using the machine: a template can loop for
hours, double a string until memory runs out, or keep a million distinct strings alive.
The sandbox hooks (``_sandbox.py``) call into the :class:`Budget` of the render in
progress, which is kept in a context variable so that one compiled template can be
rendered by many threads or tasks at once.

Three limits, checked wherever a template can spend time or make a value:

* ``limit``: no value a template makes (string, list, JSON text, the output itself) may be
  longer than this many characters or items; checked *before* an operation that could
  multiply a size, since ``'x' * 10 ** 10`` exhausts memory inside one C call;
* ``build_limit``: all values made, added up, may not pass ``BUILD_FACTOR * limit``; this
  bounds how much can be alive at once without knowing what Python has freed. A value a
  namespace attribute drops, when nothing else holds it, is given back
  (:func:`replace_item`), so accumulating ``{% set ns.out = ns.out ~ piece %}`` costs
  each piece once rather than the whole text at every step;
* ``deadline``: a :func:`time.monotonic` time after which every hook raises.

:func:`bounded_size` estimates how long the text of a value would be without building it,
and stops counting as soon as the limit is passed, so the check itself costs at most about
``limit`` steps.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Callable, Optional

from jinja2.runtime import Undefined
from jinja2.utils import Namespace

__all__ = [
    "BUILD_FACTOR",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_TIME_LIMIT",
    "MAX_INT_BITS",
    "SECONDS_PER_INPUT_CHAR",
    "Budget",
    "BudgetExceeded",
    "activate",
    "bounded_size",
    "current",
    "deactivate",
    "metered",
    "replace_item",
    "text_length",
]

DEFAULT_MAX_OUTPUT = 1 << 20
"""Characters a template may produce beyond (twice) the text it was given."""

DEFAULT_TIME_LIMIT = 2.0
"""Seconds a render may take beyond :data:`SECONDS_PER_INPUT_CHAR` per character given."""

SECONDS_PER_INPUT_CHAR = 1e-5
"""One more second per 100,000 characters of input: real templates that loop over the
messages inside a loop over the messages (Gemma 4, Command R7B, gpt-oss) take about a
second for 1,000 messages even without the sandbox."""

BUILD_FACTOR = 64
"""How many times the size limit all values made during one render may add up to."""

MAX_INT_BITS = 1 << 16
"""Largest integer (in bits) arithmetic may produce; ``10 ** 10 ** 9`` is one C call."""


class BudgetExceeded(Exception):
    """Raised inside a render when it passes its budget; ``ChatTemplate`` turns it into a
    :class:`~llama_binding.errors.TemplateError`.

    It derives from ``Exception`` only, never from ``TypeError``/``LookupError``/
    ``AttributeError``, because jinja2 and Python swallow those in places (``getitem``
    falls back to ``getattr`` on ``LookupError``).
    """


class Budget:
    """The limits of one render. ``deadline`` is ``None`` outside a render (compile time).

    ``built`` counts the characters (and container slots, 8 each) of every value the hooks
    see being made. Each value is small, but a loop can keep many of them alive (a chain of
    ``[previous, new_string]`` lists, one megabyte per step); capping the total made at
    ``BUILD_FACTOR`` times the limit bounds what can be alive at once.
    """

    __slots__ = ("build_limit", "built", "deadline", "limit", "time_limit")

    def __init__(self, limit: int, time_limit: Optional[float]) -> None:
        self.limit = limit
        self.time_limit = time_limit
        self.deadline = None if time_limit is None else time.monotonic() + time_limit
        self.built = 0
        self.build_limit = BUILD_FACTOR * limit

    def record(self, size: int) -> None:
        """Count ``size`` characters of a value just made; raise past the build limit."""
        if self.deadline is None:  # compile time (constant folding): nothing to add up
            return
        self.built += size
        if self.built > self.build_limit:
            raise BudgetExceeded(f"it built more than {self.build_limit} characters of values")

    def release(self, size: int) -> None:
        """Give back ``size`` counted characters of a value Python has freed."""
        self.built = max(self.built - size, 0)

    def tick(self) -> None:
        """Raise once the deadline has passed (called by every sandbox hook)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BudgetExceeded(f"it ran longer than {self.time_limit:.3g} s")

    def check_len(self, n: int, what: str = "a value") -> None:
        """Raise when ``n`` characters (or items) are more than the limit."""
        if n > self.limit:
            raise BudgetExceeded(f"{what} would be longer than {self.limit} characters")

    def check_size(self, value: Any, what: str = "a value", indent: int = 0) -> int:
        """Raise when the text of ``value`` would pass the limit; return its estimate."""
        size = bounded_size(value, self.limit, indent)
        self.check_len(size, what)
        return size

    def check_int(self, value: Any, what: str = "an argument") -> None:
        """Raise for an integer so large that using it as a width or count passes the limit."""
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > self.limit:
            raise BudgetExceeded(f"{what} ({value}) is larger than the limit of {self.limit}")


def _refs(value: Any) -> int:
    """References to ``value`` (a large number where Python cannot tell: nothing is freed)."""
    counter: Optional[Callable[[Any], int]] = getattr(sys, "getrefcount", None)
    return 1 << 30 if counter is None else counter(value)


def _swap(mapping: dict[str, Any], key: str, value: Any) -> tuple[Any, int]:
    old = mapping.get(key)
    mapping[key] = value
    return old, _refs(old)


_UNSHARED = _swap({"key": "".join(("un", "shared"))}, "key", "")[1]
"""What :func:`_swap` sees for a replaced value that nothing else holds (measured, since
interpreters count references differently)."""


def replace_item(mapping: dict[str, Any], key: str, value: Any) -> None:
    """``mapping[key] = value``, releasing what the replaced value counted in the current
    budget when nothing else holds it (so Python freed it on the spot).

    With this, ``{% set ns.out = ns.out ~ piece %}`` in a loop costs the length of each
    piece instead of the whole text each time, while a replaced value that lives on (in a
    list, another variable, an outer macro call) stays counted.
    """
    old, refs = _swap(mapping, key, value)
    if refs > _UNSHARED:
        return
    if isinstance(old, str):
        current().release(len(old))
    elif isinstance(old, (list, tuple, dict)):
        current().release(8 * len(old))  # its slots only: the items may live on elsewhere


_DEFAULT = Budget(DEFAULT_MAX_OUTPUT, None)
_CURRENT: ContextVar[Budget] = ContextVar("llama_binding_chat_budget", default=_DEFAULT)


def current() -> Budget:
    """The budget of the render in progress in this thread/task (a default one outside)."""
    return _CURRENT.get()


def activate(budget: Budget) -> Any:
    """Make ``budget`` current; returns the token for :func:`deactivate`."""
    return _CURRENT.set(budget)


def deactivate(token: Any) -> None:
    """Restore the budget that was current before :func:`activate`."""
    _CURRENT.reset(token)


def _scalar_size(value: Any) -> int:
    if isinstance(value, (str, bytes, bytearray)):
        return len(value) + 2  # quotes in JSON / repr
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2  # decimal digits, roughly
    return 24  # floats, ranges, functions and other small reprs


def bounded_size(value: Any, limit: int, indent: int = 0) -> int:
    """Estimate the length of ``str(value)`` / ``json.dumps(value, indent=indent)``.

    Walks containers iteratively (no recursion limit) and returns as soon as the running
    total passes ``limit``; each visited node adds at least one, so the walk takes at most
    about ``limit`` steps even for a list that holds the same big list a million times.
    """
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        obj, depth = stack.pop()
        total += 1 + indent * depth if indent else 1
        if isinstance(obj, Undefined):
            continue
        if isinstance(obj, Namespace):
            obj = obj._Namespace__attrs  # its repr shows them
        if isinstance(obj, Mapping):
            items: Iterable[tuple[Any, Any]] = obj.items()
        elif isinstance(obj, (list, tuple, set, frozenset)):
            items = ((None, item) for item in obj)
        else:
            items = ()
            total += _scalar_size(obj)
        step = 3 + indent * (depth + 1)  # a separator and the item's own overhead
        for key, item in items:
            total += 2 if key is None else _scalar_size(key) + 2
            if isinstance(item, str):  # the common leaf, counted here instead of stacked
                total += step + len(item) + 2
            else:
                stack.append((item, depth + 1))
            if total > limit:
                return total
        if total > limit:
            return total
    return total


def text_length(value: Any, max_steps: int = 1 << 22) -> int:
    """The total length of the strings in ``value`` (mapping keys included), nested or not.

    Measures what a caller hands to a template (messages, tools): every occurrence counts,
    as a template renders a repeated message each time; a container that holds itself is
    not entered again, and the walk stops after ``max_steps`` nodes.
    """
    total = 0
    active: set[int] = set()  # containers on the current path (a cycle ends there)
    stack: list[tuple[Any, bool]] = [(value, False)]
    steps = 0
    while stack and steps < max_steps:
        obj, leaving = stack.pop()
        steps += 1
        if leaving:
            active.discard(id(obj))
        elif isinstance(obj, str):
            total += len(obj)
        elif isinstance(obj, (Mapping, list, tuple)) and id(obj) not in active:
            active.add(id(obj))
            stack.append((obj, True))
            children = [*obj.keys(), *obj.values()] if isinstance(obj, Mapping) else obj
            stack.extend((child, False) for child in children)
    return total


def metered(items: Iterable[Any], budget: Budget, what: str, extra: int = 0) -> Iterator[Any]:
    """Yield ``items`` while counting their text size (plus ``extra`` each) and the time.

    Wraps what ``join``, ``sum`` and ``list`` consume, so a lazy chain such as
    ``range(100000) | map('center', 999999) | join`` stops after the first few items
    instead of building the whole result.
    """
    total = 0
    for item in items:
        budget.tick()
        size = len(item) if isinstance(item, str) else bounded_size(item, budget.limit)
        total += size + extra
        budget.check_len(total, what)
        yield item
