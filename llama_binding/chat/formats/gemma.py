"""Gemma: ``<start_of_turn>user`` / ``<start_of_turn>model`` turns.

Gemma has no system role; system messages are left out (llama-cpp-python's ``gemma``
logs and drops them too).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..types import ChatPrompt
from ._common import first_system, prepare, turns
from ._registry import register

__all__ = ["gemma"]

_END = "<end_of_turn>\n"
_LABELS = {"user": "<start_of_turn>user\n", "assistant": "<start_of_turn>model\n"}
_log = logging.getLogger("llama_binding")


@register("gemma")
def gemma(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
    """Gemma prompt; stops at ``<end_of_turn>\\n``."""
    msgs = prepare(messages)
    if first_system(msgs):
        _log.debug("the gemma chat format has no system role; system messages are left out")
    parts = [label + text + _END if text else label for label, text in turns(msgs, _LABELS)]
    parts.append(_LABELS["assistant"])
    return ChatPrompt("".join(parts), [_END])
