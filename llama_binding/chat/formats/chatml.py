"""ChatML (OpenHermes, Yi, many fine-tunes): ``<|im_start|>role\\n...<|im_end|>``.

The system block is always written, empty when the conversation has no system message,
as llama-cpp-python's ``chatml`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt, Message
from ._common import first_system, prepare, turns
from ._registry import register

__all__ = ["chatml", "chatml_prompt"]

_END = "<|im_end|>"


def chatml_prompt(system: str, messages: Sequence[Message]) -> str:
    """The ChatML text of ``messages`` after a system block, ending with an open assistant turn."""
    parts = [f"<|im_start|>system\n{system}{_END}\n"]
    for role, text in turns(messages, {"user": "user", "assistant": "assistant"}):
        parts.append(f"<|im_start|>{role}\n{text}{_END}\n" if text else f"<|im_start|>{role}\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


@register("chatml")
def chatml(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """ChatML prompt; stops at ``<|im_end|>``."""
    msgs = prepare(messages)
    return ChatPrompt(chatml_prompt(first_system(msgs), msgs), [_END])
