"""Llama 2 chat: ``[INST] ... [/INST]`` with the system text in a ``<<SYS>>`` block.

The shape is llama-cpp-python's ``llama-2`` to the character (its spacing included), so a
prompt cache or a test written against it keeps matching: the system block opens the first
instruction, every later user turn starts with ``<s>[INST]``, answers end with `` </s>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt
from ._common import first_system, prepare, turns
from ._registry import register

__all__ = ["llama2"]

_LABELS = {"user": "<s>[INST]", "assistant": "[/INST]"}
_AFTER = (" ", "</s>")  # after a user turn, after an assistant turn (by position)


@register("llama-2")
def llama2(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """Llama 2 prompt; no stop strings (the model ends with its EOS token)."""
    msgs = prepare(messages)
    system = first_system(msgs)
    head = f"[INST] <<SYS>>\n{system}\n<</SYS>>" if system else ""
    parts = [head, " "]
    for i, (label, text) in enumerate(turns(msgs, _LABELS)):
        if head and i == 0:  # the first user text continues the system block's [INST]
            parts.append(text + _AFTER[0])
        elif text:
            parts.append(f"{label}{text} {_AFTER[i % 2]}")
        else:
            parts.append(label + " ")
    parts.append("[/INST]")
    return ChatPrompt("".join(parts), [])
