"""Generic fallback: the whole completion is JSON calls, else it is all content.

Accepted, after stripping whitespace and an optional ```json fence: an object with
``name`` and ``arguments``/``parameters``, an array of them, ``{"tool_calls": [...]}``
(OpenAI-shaped elements too), or such values one after another. Anything else, malformed
JSON included, is returned as content unchanged. This suits models prompted to answer with
JSON when their template names no tool-call syntax; output that starts like JSON is held
back to the end of the stream for the decision.
"""

from __future__ import annotations

from ._engine import MarkerParser
from ._registry import register

__all__ = ["JsonParser"]


@register("json")
class JsonParser(MarkerParser):
    whole_output = True
