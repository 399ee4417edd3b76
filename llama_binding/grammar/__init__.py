"""GBNF grammars: :class:`LlamaGrammar` (checked when made, no model needed), ready-made
grammars such as :data:`JSON_GBNF` and :data:`JSON_OBJECT_GBNF`, and :func:`schema_to_gbnf`
(JSON Schema -> GBNF)."""

from __future__ import annotations

from .gbnf import DEFAULT_ROOT, JSON_GBNF, JSON_OBJECT_GBNF, LlamaGrammar, checked
from .json_schema import schema_to_gbnf

__all__ = ["DEFAULT_ROOT", "JSON_GBNF", "JSON_OBJECT_GBNF", "LlamaGrammar", "checked", "schema_to_gbnf"]
