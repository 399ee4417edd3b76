"""Helpers shared by the built-in formats: validated messages, the system text, the turns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..messages import normalize_messages
from ..types import Message

__all__ = ["first_system", "prepare", "turns"]


def prepare(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """Validate and normalize (one shape for every format; see ``chat.messages``)."""
    return normalize_messages(messages)


def first_system(messages: Sequence[Message]) -> str:
    """The content of the first system message, or ``""`` (later ones are not used)."""
    for message in messages:
        if message["role"] == "system":
            return str(message["content"] or "")
    return ""


def turns(messages: Sequence[Message], labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(label, text)`` for each message whose role has a label, in order.

    Roles without a label are left out (most formats render the system text separately
    and have no place for tool results). A missing content becomes ``""``; as in
    llama-cpp-python, a format renders an empty turn like the open turn at the end.
    """
    return [(labels[m["role"]], str(m["content"] or "")) for m in messages if m["role"] in labels]
