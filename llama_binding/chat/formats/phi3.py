"""Phi-3: ``<|role|>\\ntext<|end|>\\n`` per message.

llama-cpp-python has no built-in Phi-3 format; this is the shape of llama.cpp's own
``phi3`` template (``llm_chat_apply_template``), which also renders system messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt
from ._common import prepare, turns
from ._registry import register

__all__ = ["phi3"]

_ROLES = {role: role for role in ("system", "user", "assistant")}


@register("phi-3")
def phi3(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """Phi-3 prompt; stops at ``<|end|>`` (and ``<|endoftext|>``)."""
    parts = [f"<|{role}|>\n{text}<|end|>\n" for role, text in turns(prepare(messages), _ROLES)]
    parts.append("<|assistant|>\n")
    return ChatPrompt("".join(parts), ["<|end|>", "<|endoftext|>"])
