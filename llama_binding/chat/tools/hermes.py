"""Hermes / Qwen tool calls: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``.

Used by Hermes 2 Pro, Qwen 2.5 / Qwen 3 and many fine-tunes whose templates say
``<tool_call>``. Text before, between and after the blocks is content. A block whose JSON
is malformed, or that never closes and does not parse, stays content with its tags.
"""

from __future__ import annotations

from ._engine import BlockEnd, MarkerParser
from ._lenient_json import RawCall, load_calls
from ._registry import register

__all__ = ["HermesParser"]

_END = "</tool_call>"


@register("hermes")
class HermesParser(MarkerParser):
    marker = "<tool_call>"

    def block_scanner(self) -> BlockEnd:
        seen = 0

        def end(body: str) -> int | None:
            nonlocal seen
            at, seen = body.find(_END, max(0, seen - len(_END) + 1)), len(body)
            return None if at < 0 else at + len(_END)

        return end

    def parse_block(self, block: str) -> list[RawCall] | None:
        # an unclosed last block is accepted when its JSON is whole: a stop string or the
        # token budget may have cut just the closing tag
        return load_calls(block[: -len(_END)] if block.endswith(_END) else block)
