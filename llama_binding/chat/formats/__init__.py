"""Chat formats for models without a usable template, one module each, found by name.

``get_format("chatml")(messages)`` gives a :class:`~llama_binding.chat.types.ChatPrompt`.
The built-in formats reproduce llama-cpp-python's ``chat_format`` names and prompt shapes
(``phi-3`` follows llama.cpp, which llama-cpp-python lacks); :class:`TemplateFormat` wraps
a model's Jinja template in the same interface.
"""

from __future__ import annotations

from . import (
    alpaca,
    chatml,
    chatml_function_calling,
    gemma,
    llama2,
    llama3,
    mistral_instruct,
    phi3,
    qwen,
    vicuna,
    zephyr,
)
from ._registry import get_format, names, register
from .template import TemplateFormat

__all__ = ["TemplateFormat", "get_format", "names", "register"]

_BUILT_IN = (alpaca, chatml, chatml_function_calling, gemma, llama2, llama3, mistral_instruct, phi3, qwen,
             vicuna, zephyr)
