"""Mistral instruct: ``[INST] user [/INST]answer</s>``; system messages are not rendered.

The spacing is llama-cpp-python's ``mistral-instruct``: the space sits before ``[/INST]``
and none after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt
from ._common import prepare
from ._registry import register

__all__ = ["mistral_instruct"]

_EOS = "</s>"


@register("mistral-instruct")
def mistral_instruct(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """Mistral instruct prompt; stops at ``</s>``."""
    parts = []
    for message in prepare(messages):
        content = message["content"]
        if message["role"] == "user":
            parts.append(f"[INST] {content}")
        elif message["role"] == "assistant" and content is not None:
            parts.append(f" [/INST]{content}{_EOS}")
    parts.append(" [/INST]")
    return ChatPrompt("".join(parts), [_EOS])
