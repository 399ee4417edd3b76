"""The one state machine behind every format, so that streaming and whole-text parsing agree.

``parse(text)`` is literally "feed everything, then finish", so the two can differ only in
where pieces are cut, and the machine is written so that cuts do not matter:

* content is released as soon as it cannot be the start of the format's marker; only a
  possible marker prefix and trailing whitespace are held back (whitespace next to a tool
  call is dropped, so a reply that is only calls has ``content=None``);
* text after a marker is buffered until the format says the call is complete, then parsed
  as a whole. A complete call is emitted as two deltas: the name (with id and empty
  arguments), then its arguments. Streaming argument text before the call is known to be
  well-formed could not be taken back when it turns out not to be;
* malformed or unfinished text after a marker is never an error: it stays content, marker
  included, so nothing the model wrote is lost;
* formats with ``whole_output`` also accept a completion that is nothing but JSON calls
  (Llama 3.1's bare JSON, the generic fallback). Output that starts like JSON is held to
  the end for that decision; any other output streams as content at once;
* a call without an id of the model's gets a random one (:meth:`MarkerParser.make_id`),
  so two parses of one text agree on everything but those ids.
"""

from __future__ import annotations

import secrets
from typing import Callable, ClassVar

from ._lenient_json import RawCall, load_calls
from .types import Delta, FunctionDelta, ParsedOutput, StreamParser, ToolCallDelta, assemble

__all__ = ["BlockEnd", "MarkerParser"]

BlockEnd = Callable[[str], "int | None"]


class MarkerParser:
    """Base of the format parsers; a format sets the class attributes and overrides hooks."""

    marker: ClassVar[str | None] = None
    """Text that opens a tool-call block; ``None`` when the format has none."""
    whole_output: ClassVar[bool] = False
    """Whether a completion that is only JSON calls (maybe fenced) is read as calls."""

    def block_scanner(self) -> BlockEnd:
        """A fresh function for one block, called with the text after the marker each time it
        grows: how much of it the block takes, ``None`` while it may go on. The default runs
        the block to the end of the output. It may keep state to resume its scan.

        The answer for a prefix must hold for every longer text (decide on what is there,
        never on what is missing), else where the stream was cut would change the result.
        """
        return lambda body: None

    def parse_block(self, block: str) -> list[RawCall] | None:
        """The calls in one block, or ``None`` to keep marker and block as content."""
        return load_calls(block)

    def parse_whole(self, text: str) -> list[RawCall] | None:
        """The calls when the whole output is JSON, or ``None``."""
        return load_calls(text)

    def make_id(self, name: str, arguments: str, index: int) -> str:
        """A fresh random id in OpenAI's shape (``call_`` and 24 characters) for a call the
        model gave none: ids must be unique across responses (a client keys tool results
        by them), so they are not derived from the call. Each call gets its id once, in the
        delta that names it."""
        return f"call_{secrets.token_hex(12)}"

    def parse(self, text: str) -> ParsedOutput:
        """Parse a whole completion (see the module docstring for what becomes what)."""
        stream = self.stream()
        return assemble([*stream.feed(text), *stream.finish()])

    def stream(self) -> StreamParser:
        """A fresh incremental parser for one completion."""
        return _Stream(self)


def _held(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that could begin ``marker``."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


class _Stream:
    """Per-completion state; modes: "start" (deciding about whole-output JSON), "whole"
    (holding it all), "content" (scanning for markers, ``_block`` set inside a block)."""

    def __init__(self, fmt: MarkerParser) -> None:
        self._fmt = fmt
        self._mode = "start" if fmt.whole_output else "content"
        self._buf = ""
        self._block: str | None = None
        self._block_end: BlockEnd = fmt.block_scanner()
        self._ws = ""
        self._skip_ws = False
        self._count = 0
        self._out: list[Delta] = []
        self._finished = False

    def feed(self, piece: str) -> list[Delta]:
        if self._finished:
            raise ValueError("feed() after finish()")
        self._buf += piece
        self._run(final=False)
        out, self._out = self._out, []
        return out

    def finish(self) -> list[Delta]:
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        self._run(final=True)
        if self._count == 0 and self._ws:
            self._out.append({"content": self._ws})
        return self._out

    def _run(self, final: bool) -> None:
        if self._mode == "start":
            head, marker = self._buf.lstrip(), self._fmt.marker or ""
            if not final and (marker.startswith(head) or "```".startswith(head)):
                return
            json_like = head[:1] in ("{", "[") or head.startswith("```")
            self._mode = "whole" if json_like and not (marker and head.startswith(marker)) else "content"
        if self._mode == "whole":
            if not final:
                return
            calls = self._fmt.parse_whole(self._buf)
            if calls is not None:
                self._buf = ""
                self._calls(calls)
                return
            self._mode = "content"
        self._scan(final)

    def _scan(self, final: bool) -> None:
        marker = self._fmt.marker
        while True:
            if self._block is None:
                at = self._buf.find(marker) if marker else -1
                if at < 0:
                    keep = 0 if final or not marker else _held(self._buf, marker)
                    self._content(self._buf[: len(self._buf) - keep])
                    self._buf = self._buf[len(self._buf) - keep :]
                    return
                self._content(self._buf[:at])
                self._block, self._buf = "", self._buf[at + len(marker or "") :]
                self._block_end = self._fmt.block_scanner()
            self._block += self._buf
            end = self._block_end(self._block)
            if end is None and not final:
                self._buf = ""
                return
            end = len(self._block) if end is None else end
            block, self._buf, self._block = self._block[:end], self._block[end:], None
            calls = self._fmt.parse_block(block)
            if calls is None:
                self._content(f"{marker}{block}")
            else:
                self._calls(calls)

    def _content(self, text: str) -> None:
        if self._skip_ws:
            text = text.lstrip()
            self._skip_ws = not text
        text = self._ws + text
        body = text.rstrip()
        self._ws = text[len(body) :]
        if body:
            self._out.append({"content": body})

    def _calls(self, calls: list[RawCall]) -> None:
        self._ws, self._skip_ws = "", True
        for name, arguments, given_id in calls:
            index, self._count = self._count, self._count + 1
            call_id = given_id or self._fmt.make_id(name, arguments, index)
            function: FunctionDelta = {"name": name, "arguments": ""}
            named: ToolCallDelta = {"index": index, "id": call_id, "type": "function", "function": function}
            self._out.append({"tool_calls": [named]})
            self._out.append({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})
