"""What ``llama_cpp.llama_chat_format`` offers through the shim: llama-cpp-python's way to
add a chat format (``register_chat_format`` with a function that returns a
``ChatFormatterResponse``) and its ``format_<name>`` functions for the built-in formats.

Its chat *handlers* (Llava, Functionary, ...) and Hugging Face tokenizer formatters are not
offered: ``Llama(chat_handler=...)`` takes any callable of llama-cpp-python's handler
signature, and ``Llama(chat_template=...)`` a Jinja template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from ..chat import formats
from ..chat.types import ChatPrompt

__all__ = ["ChatFormatter", "ChatFormatterResponse", "LlamaChatCompletionHandler", "format_functions",
           "register_chat_format"]

#: llama-cpp-python's type of a chat handler (``Llama(chat_handler=...)``)
LlamaChatCompletionHandler = Callable[..., Any]


@dataclass
class ChatFormatterResponse:
    """What a chat format function of llama-cpp-python returns. ``added_special``: the
    prompt already holds the special tokens (BOS) it needs, so none is added."""

    prompt: str
    stop: Optional[Union[str, list[str]]] = None
    stopping_criteria: Any = None
    added_special: bool = False


ChatFormatter = Callable[..., ChatFormatterResponse]


def register_chat_format(name: str) -> Callable[[ChatFormatter], ChatFormatter]:
    """Decorator: make a function ``f(messages, **kwargs) -> ChatFormatterResponse`` the chat
    format ``name`` (``Llama(chat_format=name)``). A name already taken raises ValueError
    (llama-cpp-python replaces it silently). A ``stopping_criteria`` of the response is not used."""

    def decorate(function: ChatFormatter) -> ChatFormatter:
        def formatter(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatPrompt:
            answer = function(messages=list(messages), **kwargs)
            stop = [answer.stop] if isinstance(answer.stop, str) else list(answer.stop or [])
            return ChatPrompt(answer.prompt, stop, add_bos=not answer.added_special)

        formats.register(name)(formatter)
        return function

    return decorate


def _format_function(name: str) -> ChatFormatter:
    def format_messages(messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
        rendered = formats.get_format(name)(messages, **kwargs)
        return ChatFormatterResponse(rendered.prompt, list(rendered.stop), added_special=not rendered.add_bos)

    format_messages.__name__ = format_messages.__qualname__ = _function_name(name)
    format_messages.__doc__ = f"The {name!r} chat format's prompt of ``messages``."
    return format_messages


def _function_name(name: str) -> str:
    """llama-cpp-python's function name of a format: ``llama-2`` -> ``format_llama2``."""
    return "format_" + re.sub(r"-(?=\d)", "", name).replace("-", "_")


def format_functions() -> dict[str, ChatFormatter]:
    """``format_<name>`` for every registered chat format, by function name."""
    return {_function_name(name): _format_function(name) for name in formats.names()}
