"""GBNF grammars: :class:`LlamaGrammar` (checked when made, no model needed) and ready-made
grammars such as :data:`JSON_GBNF`."""

from __future__ import annotations

from .gbnf import DEFAULT_ROOT, JSON_GBNF, LlamaGrammar, checked

__all__ = ["DEFAULT_ROOT", "JSON_GBNF", "LlamaGrammar", "checked"]
