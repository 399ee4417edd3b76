"""Qwen (1.x) chat: ChatML with a default system message.

Like llama-cpp-python's ``qwen`` it stops at ``<|endoftext|>``; the model's end-of-turn
token ``<|im_end|>`` is an end-of-generation token and stops it as a token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt
from ._common import first_system, prepare
from ._registry import register
from .chatml import chatml_prompt

__all__ = ["DEFAULT_SYSTEM", "qwen"]

DEFAULT_SYSTEM = "You are a helpful assistant."


@register("qwen")
def qwen(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """Qwen prompt: ChatML, with :data:`DEFAULT_SYSTEM` when no system message is given."""
    msgs = prepare(messages)
    return ChatPrompt(chatml_prompt(first_system(msgs) or DEFAULT_SYSTEM, msgs), ["<|endoftext|>"])
