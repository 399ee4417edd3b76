"""Llama 3 instruct: header-delimited turns ending in ``<|eot_id|>``.

Every system message is rendered in place (not only the first), as llama-cpp-python's
``llama-3`` does. ``<|begin_of_text|>`` is not written: it is the model's BOS token, which
the tokenizer adds (``add_bos``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt
from ._common import prepare, turns
from ._registry import register

__all__ = ["llama3"]

_EOT = "<|eot_id|>"
_HEADERS = {role: f"<|start_header_id|>{role}<|end_header_id|>\n\n"
            for role in ("system", "user", "assistant")}


@register("llama-3")
def llama3(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """Llama 3 prompt; stops at ``<|eot_id|>``."""
    parts = [header + text + _EOT if text else header for header, text in turns(prepare(messages), _HEADERS)]
    parts.append(_HEADERS["assistant"])
    return ChatPrompt("".join(parts), [_EOT])
