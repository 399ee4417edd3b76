"""Llama 3.1 / 3.2 / 3.3 tool calls.

Two shapes: the whole output is bare JSON, ``{"name": ..., "parameters": {...}}`` (or
``"arguments"``), possibly several separated by ``;`` or newlines; or ``<|python_tag|>``
and then JSON calls or built-in tool calls ``brave_search.call(query="...")``. The latter
are read with :mod:`ast` (never evaluated): keyword arguments whose values are plain
literals become the JSON arguments. Anything else after the tag (code for the code
interpreter, malformed JSON) stays content, tag included, without raising.
"""

from __future__ import annotations

import ast
import warnings

from ._engine import MarkerParser
from ._lenient_json import RawCall, load_calls, to_call
from ._registry import register

__all__ = ["Llama3Parser"]


def _builtin_calls(text: str) -> list[RawCall] | None:
    """Calls from statements like ``wolfram_alpha.call(query="2+2")``, or ``None``."""
    try:
        with warnings.catch_warnings():  # odd escapes in model text warn on parsing
            warnings.simplefilter("ignore")
            tree = ast.parse(text.strip())
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    calls: list[RawCall] = []
    for statement in tree.body:
        if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
            return None
        func, node = statement.value.func, statement.value
        if not (isinstance(func, ast.Attribute) and func.attr == "call" and isinstance(func.value, ast.Name)):
            return None
        if node.args or any(kw.arg is None for kw in node.keywords):
            return None
        try:
            arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return None
        call = to_call({"name": func.value.id, "arguments": arguments})
        if call is None:
            return None
        calls.append(call)
    return calls or None


@register("llama3")
class Llama3Parser(MarkerParser):
    marker = "<|python_tag|>"
    whole_output = True

    def parse_block(self, block: str) -> list[RawCall] | None:
        return load_calls(block) or _builtin_calls(block)
