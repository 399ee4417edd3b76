"""The chat templates stored in a GGUF file's metadata, as :class:`ChatTemplate` objects.

GGUF keeps the default template in ``tokenizer.chat_template`` and named ones (``tool_use``,
``rag``, ...) in ``tokenizer.chat_template.<name>``. The BOS/EOS texts a template refers to
come from the vocabulary in the same metadata, so no model needs to be loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .template import ChatTemplate

__all__ = ["DEFAULT_KEY", "special_token_text", "templates_from_metadata"]

DEFAULT_KEY = "tokenizer.chat_template"


def special_token_text(metadata: Mapping[str, Any], which: str) -> str:
    """The text of the ``bos``/``eos`` token, or ``""`` when the metadata does not say."""
    tokens = metadata.get("tokenizer.ggml.tokens")
    token_id = metadata.get(f"tokenizer.ggml.{which}_token_id")
    if tokens is None or token_id is None:
        return ""
    try:
        text = tokens[int(token_id)]
    except (IndexError, TypeError, ValueError):
        return ""
    return text if isinstance(text, str) else ""


def templates_from_metadata(metadata: Mapping[str, Any], **limits: Any) -> dict[str, ChatTemplate]:
    """Every chat template in ``metadata`` by name (``"default"`` for the unnamed one).

    Nothing is compiled here; ``limits`` (``max_output``, ``time_limit``) go to each
    :class:`ChatTemplate`.
    """
    bos = special_token_text(metadata, "bos")
    eos = special_token_text(metadata, "eos")
    found: dict[str, ChatTemplate] = {}
    for key, value in metadata.items():
        if not isinstance(value, str):
            continue
        if key == DEFAULT_KEY:
            name = "default"
        elif key.startswith(DEFAULT_KEY + "."):
            name = key[len(DEFAULT_KEY) + 1:]
        else:
            continue
        found[name] = ChatTemplate(value, name=name, bos_token=bos, eos_token=eos, **limits)
    return found
