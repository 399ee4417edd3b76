"""JSON helpers shared by the formats: reading call objects leniently, never raising.

Model output is untrusted and often truncated, so every function here answers ``None`` for
"not a tool call" instead of raising; the caller then keeps the text as content.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

__all__ = ["JsonEnd", "RawCall", "compact", "load_calls", "to_call"]

RawCall = tuple[str, str, Optional[str]]
"""A parsed call before numbering: name, arguments as JSON text, and the model's id if it gave one."""

_FENCE = re.compile(r"\A\s*```(?:json)?\s*(.*?)\s*```\s*\Z", re.DOTALL)
_STRUCT = re.compile(r'["\\\[\]{}]')
_SEPARATORS = " \t\r\n;"


def compact(value: Any) -> str | None:
    """OpenAI's arguments text: compact, UTF-8 kept; ``None`` for values JSON cannot hold (NaN, sets)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None


def to_call(obj: Any) -> RawCall | None:
    """Read ``{"name", "arguments"|"parameters", "id"?}`` or OpenAI's ``{"function": {...}}``.

    Both a name and arguments are required: a bare ``{"name": ...}`` is far more often an
    answer's data than a call. String arguments are kept as given when they are JSON.
    """
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = {**obj["function"], "id": obj.get("id")}
    name, call_id = obj.get("name"), obj.get("id")
    args = obj["arguments"] if "arguments" in obj else obj.get("parameters")
    if not isinstance(name, str) or not name:
        return None
    if isinstance(args, str):
        try:
            json.loads(args)
        except (ValueError, RecursionError):
            return None
        text: str | None = args
    else:
        text = compact(args) if isinstance(args, dict) else None
    if text is None:
        return None
    return name, text, call_id if isinstance(call_id, str) and call_id else None


def _load_values(text: str) -> list[Any] | None:
    """JSON values one after another, separated by whitespace or ``;`` (Llama 3.1 does both)."""
    decoder, i = json.JSONDecoder(), 0
    values: list[Any] = []
    while True:
        while i < len(text) and text[i] in _SEPARATORS:
            i += 1
        if i == len(text):
            return values
        try:
            value, i = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            return None
        values.append(value)


def load_calls(text: str) -> list[RawCall] | None:
    """Calls from JSON text (optionally in a ```json fence): objects, arrays of them, or
    ``{"tool_calls": [...]}``; ``None`` unless every value read is a call."""
    match = _FENCE.match(text)
    values = _load_values(match.group(1) if match else text)
    calls: list[RawCall] = []
    for value in values or []:
        if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
            value = value["tool_calls"]
        for item in value if isinstance(value, list) else [value]:
            call = to_call(item)
            if call is None:
                return None
            calls.append(call)
    return calls or None


class JsonEnd:
    """Where the JSON array/object opening at ``start`` ends; ``None`` while it is open.

    Only brackets outside strings are counted (validity is json's job afterwards). Each
    call resumes where the last one stopped, so a stream fed a character at a time stays
    linear in the length of the call instead of rescanning it on every piece.
    """

    def __init__(self, start: int) -> None:
        self._pos, self._depth, self._in_string, self._escaped = start, 0, False, False

    def __call__(self, text: str) -> int | None:
        pos = self._pos
        while True:
            if self._escaped:
                if pos >= len(text):
                    break
                pos, self._escaped = pos + 1, False
            match = _STRUCT.search(text, pos)
            if match is None:
                pos = len(text)
                break
            char, pos = match.group(), match.end()
            if self._in_string:
                self._escaped = char == "\\"
                self._in_string = char != '"'
            elif char == '"':
                self._in_string = True
            elif char in "[{":
                self._depth += 1
            elif char in "]}":
                self._depth -= 1
                if self._depth <= 0:
                    return pos
        self._pos = pos
        return None
