"""Alpaca: ``### Instruction: ...`` / ``### Response: ...`` blocks after the system text.

The shape is llama-cpp-python's ``alpaca`` to the character; note that, like it, this
format writes no open ``### Response:`` after the last instruction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt
from ._common import first_system, prepare, turns
from ._registry import register

__all__ = ["alpaca"]

_LABELS = {"user": "### Instruction", "assistant": "### Response"}
_AFTER = ("\n\n", "</s>")  # after even and odd turns (by position)


@register("alpaca")
def alpaca(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """Alpaca prompt; no stop strings (the model ends with its EOS token)."""
    msgs = prepare(messages)
    parts = [first_system(msgs), _AFTER[0]]
    for i, (label, text) in enumerate(turns(msgs, _LABELS)):
        parts.append(f"{label}: {text}{_AFTER[i % 2]}" if text else f"{label}:")
    return ChatPrompt("".join(parts), [])
