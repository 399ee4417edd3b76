"""The filters a chat template may use: jinja2's own, each wrapped in a budget check, and
``tojson`` with Hugging Face's semantics.

jinja2 calls filters directly, not through the sandbox's ``call`` hook, so a filter such as
``center(10 ** 9)``, ``indent(big)`` or ``join`` over a lazy ``map`` could build a huge
string with no check at all. Every filter is therefore wrapped: the deadline is checked,
widths and counts must be within the limit, lazy inputs are metered item by item, the
filters that multiply their input are estimated before they run, and results are checked
and counted.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional, Union

from ._budget import Budget, current, metered
from ._checks import check_percent_format, check_replace, check_result, repeat_estimate

__all__ = ["guard_filters", "tojson"]

_Filter = Callable[..., Any]
_Precheck = Callable[[Budget, Any, "tuple[Any, ...]", "dict[str, Any]"], None]


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: Optional[Union[int, str]] = None,
    separators: Optional[tuple[str, str]] = None,
    sort_keys: bool = False,
) -> str:
    """``json.dumps`` as Hugging Face exposes it to chat templates.

    jinja2's own ``tojson`` escapes ``<``, ``>``, ``&`` and ``'`` for HTML and takes no
    options; tool-calling templates need plain JSON with their own indent and separators.
    """
    budget = current()
    step = len(indent) if isinstance(indent, str) else (indent or 0)
    if separators is not None:
        step += sum(len(part) for part in separators if isinstance(part, str))
    budget.check_size(value, "the JSON text", indent=max(step, 0))
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)
    budget.check_len(len(text), "the JSON text")
    return text


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _text(budget: Budget, value: Any) -> str:
    if isinstance(value, str):
        return value
    budget.check_size(value, "a filter's input")
    return str(value)


def _pre_replace(budget: Budget, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    check_replace(budget, _text(budget, value), _arg(args, kwargs, 0, "old", None),
                  _arg(args, kwargs, 1, "new", None), _arg(args, kwargs, 2, "count", None))


def _pre_indent(budget: Budget, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    text = _text(budget, value)
    width = _arg(args, kwargs, 0, "width", 4)
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    budget.check_len(repeat_estimate(text, text.count("\n") + 1, step), "an indented string")


def _pre_wordwrap(budget: Budget, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    text = _text(budget, value)
    wrap = _arg(args, kwargs, 2, "wrapstring", None)
    step = len(wrap) if isinstance(wrap, str) else 1
    budget.check_len(repeat_estimate(text, len(text) + 1, step), "a wrapped string")


def _pre_format(budget: Budget, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    check_percent_format(budget, _text(budget, value), kwargs or args)


def _pre_text(budget: Budget, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    budget.check_size(value, "a filter's input")


_PRECHECKS: dict[str, _Precheck] = {
    "replace": _pre_replace,
    "indent": _pre_indent,
    "wordwrap": _pre_wordwrap,
    "format": _pre_format,
    "string": _pre_text,
    "pprint": _pre_text,
    "urlencode": _pre_text,
}
# filters whose integer arguments are lengths or counts of what they make
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "batch", "slice"})
# filters that build one value from all items of their input: always metered
_ACCUMULATING = frozenset({"join", "sum"})


def _guard(name: str, func: _Filter) -> _Filter:
    lead = 0 if getattr(func, "jinja_pass_arg", None) is None else 1  # context/env comes first
    precheck = _PRECHECKS.get(name)
    what = f"the result of the {name!r} filter"

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.tick()
        if len(args) <= lead:
            return func(*args, **kwargs)
        value, rest = args[lead], args[lead + 1:]
        if name in _WIDTH_FILTERS:
            for extra in (*rest, *kwargs.values()):
                budget.check_int(extra, f"an argument of the {name!r} filter")
        if precheck is not None:
            precheck(budget, value, rest, kwargs)
        if name in _ACCUMULATING or isinstance(value, Iterator):
            separator = _arg(rest, kwargs, 0, "d", "") if name == "join" else ""
            value = metered(value, budget, what, len(separator) if isinstance(separator, str) else 0)
        result = func(*args[:lead], value, *rest, **kwargs)
        check_result(budget, result, what)
        return result

    return guarded


def guard_filters(filters: Mapping[str, _Filter]) -> dict[str, _Filter]:
    """Every filter of ``filters`` wrapped in the budget checks (``tojson`` replaced)."""
    table = dict(filters)
    table["tojson"] = tojson
    return {name: _guard(name, func) for name, func in table.items()}
