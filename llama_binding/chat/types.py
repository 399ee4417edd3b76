"""The small value types of chat prompting, shared by formats, templates and the facade."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ChatFormatter", "ChatPrompt", "Message"]

Message = dict[str, Any]
"""One normalized OpenAI chat message (see :func:`~llama_binding.chat.messages.normalize_messages`)."""


@dataclass(frozen=True)
class ChatPrompt:
    """What a chat format makes of a conversation: the text to complete and how to end it.

    ``stop`` holds the strings that end the assistant's turn in this format (the model's
    end-of-generation tokens stop it too). ``add_bos`` says whether the tokenizer should
    prepend BOS: built-in formats leave that to the tokenizer (as llama-cpp-python does),
    a Jinja template writes ``bos_token`` itself where the model wants it.
    """

    prompt: str
    stop: list[str] = field(default_factory=list)
    add_bos: bool = True


class ChatFormatter(Protocol):
    """A chat format: OpenAI messages in, a :class:`ChatPrompt` out.

    Keyword arguments (``tools``, ``add_generation_prompt``, template variables) are
    accepted by every format; the built-in formats ignore them, like llama-cpp-python's.
    """

    def __call__(self, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt: ...
