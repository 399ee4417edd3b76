"""The value types of tool-call parsing, shared by every format module and by the facade.

A parser turns a model's raw completion into OpenAI's shape: the text meant for the user
(``content``) and the function calls. Streaming yields OpenAI ``choices[0].delta`` dicts so
the facade and server can forward them as they are; :func:`assemble` folds them back into
a :class:`ParsedOutput`, which is how the tests hold stream and whole-text parsing together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from typing_extensions import NotRequired, TypedDict

__all__ = [
    "Delta",
    "FunctionDelta",
    "ParsedOutput",
    "StreamParser",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallParser",
    "assemble",
]


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for; ``arguments`` is JSON text, as OpenAI sends it."""

    name: str
    arguments: str
    id: str

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI ``message.tool_calls[i]`` shape."""
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": "function", "function": function}


@dataclass(frozen=True)
class ParsedOutput:
    """A completion split into user-facing text (``None`` when there is none) and tool calls."""

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)


class FunctionDelta(TypedDict, total=False):
    name: str
    arguments: str


class ToolCallDelta(TypedDict):
    """One element of an OpenAI delta's ``tool_calls``: the first names the call, later ones
    carry only ``index`` and a piece of ``function.arguments``."""

    index: int
    id: NotRequired[str]
    type: NotRequired[Literal["function"]]
    function: FunctionDelta


class Delta(TypedDict, total=False):
    """An OpenAI ``choices[0].delta``: either ``content`` text or one ``tool_calls`` element."""

    content: str
    tool_calls: list[ToolCallDelta]


class StreamParser(Protocol):
    """Incremental parsing of one completion: ``feed`` pieces as they are generated, then
    ``finish`` once; each returns the deltas that became certain."""

    def feed(self, piece: str) -> list[Delta]: ...

    def finish(self) -> list[Delta]: ...


class ToolCallParser(Protocol):
    """One tool-call format. ``parse(text)`` equals :func:`assemble` of a stream's deltas,
    but for the ids of calls the model gave none (fresh random ones each time)."""

    def parse(self, text: str) -> ParsedOutput: ...

    def stream(self) -> StreamParser: ...


def assemble(deltas: Iterable[Delta]) -> ParsedOutput:
    """Fold streamed deltas into the result a client reassembling the stream would see."""
    content: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        content.append(delta.get("content", ""))
        for part in delta.get("tool_calls", []):
            slot = calls.setdefault(part["index"], {"id": "", "name": "", "arguments": ""})
            slot["id"] = part.get("id", slot["id"])
            slot["name"] += part["function"].get("name", "")
            slot["arguments"] += part["function"].get("arguments", "")
    text = "".join(content)
    return ParsedOutput(text or None, [ToolCall(**calls[i]) for i in sorted(calls)])
