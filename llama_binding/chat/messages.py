"""Validation and normalization of OpenAI chat messages, before any format sees them.

Formats and templates are written for one shape: a ``role`` among system, user, assistant
and tool, and ``content`` as one string. Requests come in the wider OpenAI shape (the
``developer`` role, content as a list of typed parts, ``null`` content beside tool calls),
so this module maps the one onto the other once, and rejects what cannot be rendered with
an error that points at the message (``messages[2].content[1]: ...``) instead of letting a
template fail somewhere inside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from .types import Message

__all__ = ["ROLES", "normalize_messages"]

ROLES = ("system", "user", "assistant", "tool")
"""The roles after normalization."""

_ALIASES = {"developer": "system"}  # OpenAI's name for system instructions of newer models
_PART_SEPARATOR = "\n"  # text parts are joined as llama.cpp's server joins them


def _type_name(value: object) -> str:
    return type(value).__name__


def _text_of_parts(parts: Sequence[Any], where: str) -> str:
    texts = []
    for j, part in enumerate(parts):
        at = f"{where}.content[{j}]"
        if not isinstance(part, Mapping):
            raise TypeError(f"{at} must be a content part object, got {_type_name(part)}")
        kind = part.get("type")
        if kind != "text":
            if not isinstance(kind, str):
                raise ValueError(f"{at} has no 'type'")
            raise ValueError(
                f"{at}: {kind} content parts are not supported yet (multimodal support is not there); "
                "send text parts only"
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise TypeError(f"{at}.text must be a string, got {_type_name(text)}")
        texts.append(text)
    return _PART_SEPARATOR.join(texts)


def _content(message: Mapping[str, Any], role: str, where: str) -> Optional[str]:
    content = message.get("content")
    if content is None:
        if role == "assistant":  # beside tool_calls, or an empty turn
            return None
        raise ValueError(f"{where} ({role}) has no content")
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        return _text_of_parts(content, where)
    raise TypeError(f"{where}.content must be a string or a list of content parts, got {_type_name(content)}")


def _normalize(message: object, where: str) -> Message:
    if not isinstance(message, Mapping):
        raise TypeError(f"{where} must be a message object (a mapping), got {_type_name(message)}")
    if "role" not in message:
        raise ValueError(f"{where} has no 'role'")
    role = message["role"]
    if not isinstance(role, str):
        raise TypeError(f"{where}.role must be a string, got {_type_name(role)}")
    role = _ALIASES.get(role, role)
    if role not in ROLES:
        known = ", ".join(sorted((*ROLES, *_ALIASES)))
        raise ValueError(f"{where} has an unknown role {message['role']!r} (known roles: {known})")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant":
            raise ValueError(f"{where} ({role}) has tool_calls; only assistant messages make tool calls")
        if not isinstance(tool_calls, Sequence) or isinstance(tool_calls, (str, bytes)):
            raise TypeError(f"{where}.tool_calls must be a list, got {_type_name(tool_calls)}")
    call_id = message.get("tool_call_id")
    if call_id is not None and not isinstance(call_id, str):
        raise TypeError(f"{where}.tool_call_id must be a string, got {_type_name(call_id)}")
    normalized = dict(message)
    normalized["role"] = role
    normalized["content"] = _content(message, role, where)
    return normalized


def normalize_messages(messages: object) -> list[Message]:
    """New message dicts with roles mapped (``developer`` -> ``system``) and content as text.

    Every other key (``name``, ``tool_calls``, ``tool_call_id``, ``reasoning_content``, ...)
    is passed through as it is, for the templates that use it; the input is not modified.
    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for a wrong value,
    naming the message by its index.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of message objects, got {_type_name(messages)}")
    if not messages:
        raise ValueError("messages is empty: a chat needs at least one message")
    return [_normalize(message, f"messages[{i}]") for i, message in enumerate(messages)]
