"""Vicuna v1.1: ``USER: ... ASSISTANT: ...</s>`` after a fixed system sentence.

As in llama-cpp-python's ``vicuna``, the fixed system sentence is always used and system
messages of the conversation are not rendered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt
from ._common import prepare, turns
from ._registry import register

__all__ = ["SYSTEM", "vicuna"]

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_LABELS = {"user": "USER", "assistant": "ASSISTANT"}
_AFTER = (" ", "</s>")  # after even and odd turns (by position, as llama-cpp-python)


@register("vicuna")
def vicuna(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """Vicuna prompt; no stop strings (the model ends with its EOS token)."""
    parts = [SYSTEM, _AFTER[0]]
    for i, (label, text) in enumerate([*turns(prepare(messages), _LABELS), ("ASSISTANT", "")]):
        parts.append(f"{label}: {text}{_AFTER[i % 2]}" if text else f"{label}:")
    return ChatPrompt("".join(parts), [])
