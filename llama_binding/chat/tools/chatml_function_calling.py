"""llama-cpp-python's ``chatml-function-calling`` answers: ``message:`` then text, or one or
more ``functions.<name>:`` lines each followed by a JSON object of arguments.

The ``message:`` prefix that the format's prompt asks for is not part of the content. A
block whose name or JSON is malformed stays content, ``functions.`` included.
"""

from __future__ import annotations

import json
import re

from ._engine import BlockEnd, MarkerParser
from ._lenient_json import JsonEnd, RawCall, compact
from ._registry import register
from .types import Delta, StreamParser

__all__ = ["ChatmlFunctionCallingParser"]

_NAME = re.compile(r"([\w.-]+):\s*", re.ASCII)
_PREFIX = "message:"


@register("chatml-function-calling")
class ChatmlFunctionCallingParser(MarkerParser):
    marker = "functions."

    def block_scanner(self) -> BlockEnd:
        scan: list[JsonEnd] = []  # set once the arguments have begun

        def end(body: str) -> int | None:
            if not scan:
                named = _NAME.match(body)
                if named is None:
                    return None if re.fullmatch(r"[\w.-]*", body, re.ASCII) else 0
                if named.end() == len(body):
                    return None
                if body[named.end()] != "{":
                    return named.end()
                scan.append(JsonEnd(named.end()))
            return scan[0](body)

        return end

    def parse_block(self, block: str) -> list[RawCall] | None:
        named = _NAME.match(block)
        if named is None:
            return None
        try:
            arguments = json.loads(block[named.end() :])
        except (ValueError, RecursionError):
            return None
        text = compact(arguments) if isinstance(arguments, dict) else None
        return None if text is None else [(named.group(1), text, None)]

    def stream(self) -> StreamParser:
        return _WithoutPrefix(super().stream())


class _WithoutPrefix:
    """A stream whose content loses a leading ``message:`` (and the whitespace after it)."""

    def __init__(self, inner: StreamParser) -> None:
        self._inner = inner
        self._head: str | None = ""  # content held until it shows whether it starts with the prefix

    def feed(self, piece: str) -> list[Delta]:
        return self._strip(self._inner.feed(piece), final=False)

    def finish(self) -> list[Delta]:
        return self._strip(self._inner.finish(), final=True)

    def _strip(self, deltas: list[Delta], final: bool) -> list[Delta]:
        if self._head is None:
            return deltas
        out: list[Delta] = []
        for i, delta in enumerate(deltas):
            if "content" not in delta:  # a call came first: no prefix to strip
                out += self._release() + deltas[i:]
                return out
            self._head += delta["content"]
            decided = self._decide(final)
            if decided is not None:
                return out + decided + deltas[i + 1 :]
        return out + ((self._decide(final) or []) if final else [])

    def _decide(self, final: bool) -> list[Delta] | None:
        head = self._head or ""
        stripped = head.lstrip()
        if stripped.startswith(_PREFIX):
            rest = stripped[len(_PREFIX) :].lstrip()
            if not rest and not final:
                return None
            self._head = None
            return [{"content": rest}] if rest else []
        if _PREFIX.startswith(stripped) and not final:
            return None
        return self._release()

    def _release(self) -> list[Delta]:
        head, self._head = self._head, None
        return [{"content": head}] if head else []
