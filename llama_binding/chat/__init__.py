"""Chat prompting: OpenAI messages to prompt text.

* :mod:`.messages` validates and normalizes OpenAI chat messages;
* :class:`ChatTemplate` renders a model's Hugging Face Jinja template in a hardened,
  budgeted sandbox (templates come from model files and are untrusted);
* :mod:`.formats` holds built-in formats by name for models without a template, and
  :class:`TemplateFormat`, which gives a template the same interface.
"""

from __future__ import annotations

from .formats import TemplateFormat, get_format, names, register
from .gguf import templates_from_metadata
from .messages import normalize_messages
from .template import ChatTemplate
from .types import ChatFormatter, ChatPrompt, Message

__all__ = [
    "ChatFormatter",
    "ChatPrompt",
    "ChatTemplate",
    "Message",
    "TemplateFormat",
    "get_format",
    "names",
    "normalize_messages",
    "register",
    "templates_from_metadata",
]
