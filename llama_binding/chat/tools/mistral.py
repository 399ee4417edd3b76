"""Mistral tool calls: ``[TOOL_CALLS]`` and a JSON array of ``{"name", "arguments", "id"?}``.

Mistral 7B v0.3 and Nemo write the array form; newer models (Mistral Small 3.2, Devstral,
Magistral) write ``[TOOL_CALLS]name[ARGS]{...}`` (optionally ``name[CALL_ID]id[ARGS]``),
once per call, which is read too. The model's own ``id`` is kept, since later turns refer
to it; missing ids are made as 9 alphanumerics, the only shape Mistral's templates accept.
A block that does not parse stays content, ``[TOOL_CALLS]`` included. ``whole_output`` is
on because ``[TOOL_CALLS]`` is a control token that a detokenizer may drop, leaving a bare
array.
"""

from __future__ import annotations

import json
import re
import secrets
import string

from ._engine import BlockEnd, MarkerParser
from ._lenient_json import JsonEnd, RawCall, load_calls, to_call
from ._registry import register

__all__ = ["MistralParser"]

_ID_CHARS = string.ascii_letters + string.digits
_NAMED = re.compile(r"\s*([\w.-]+)(?:\[CALL_ID\]([A-Za-z0-9]+))?\[ARGS\]\s*", re.ASCII)


@register("mistral")
class MistralParser(MarkerParser):
    marker = "[TOOL_CALLS]"
    whole_output = True

    def block_scanner(self) -> BlockEnd:
        scan: list[JsonEnd] = []  # set once the block's JSON has begun

        def end(body: str) -> int | None:
            if not scan:
                start = len(body) - len(body.lstrip())
                if start == len(body):
                    return None
                if body[start] != "[":
                    if not (body[start].isalnum() or body[start] in "_.-"):
                        return 0
                    named = _NAMED.match(body)
                    if named is None or named.end() == len(body):
                        return None
                    start = named.end()
                    if body[start] != "{":
                        return start
                scan.append(JsonEnd(start))
            return scan[0](body)

        return end

    def parse_block(self, block: str) -> list[RawCall] | None:
        named = _NAMED.match(block)
        if named is None:
            return load_calls(block)
        try:
            arguments = json.loads(block[named.end() :])
        except (ValueError, RecursionError):
            return None
        call = to_call({"name": named.group(1), "arguments": arguments, "id": named.group(2)})
        return None if call is None else [call]

    def make_id(self, name: str, arguments: str, index: int) -> str:
        """Nine random letters and digits: what Mistral's templates accept as a call id."""
        return "".join(secrets.choice(_ID_CHARS) for _ in range(9))
