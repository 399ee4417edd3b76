"""Zephyr: ``<|system|>``, ``<|user|>`` and ``<|assistant|>`` turns ending in ``</s>``.

The shape is llama-cpp-python's ``zephyr`` to the character, including the blank line it
leaves after ``<|user|>`` and ``<|assistant|>`` (its role labels end in a newline and its
ChatML helper adds another) and the system block it writes even when empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt
from ._common import first_system, prepare, turns
from ._registry import register

__all__ = ["zephyr"]

_EOS = "</s>"
_LABELS = {"user": "<|user|>\n", "assistant": "<|assistant|>\n"}


@register("zephyr")
def zephyr(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """Zephyr prompt; stops at ``</s>``."""
    msgs = prepare(messages)
    parts = [f"<|system|>\n{first_system(msgs)}{_EOS}\n"]
    for label, text in turns(msgs, _LABELS):
        parts.append(f"{label}\n{text}{_EOS}\n" if text else f"{label}\n")
    parts.append(_LABELS["assistant"] + "\n")
    return ChatPrompt("".join(parts), [_EOS])
