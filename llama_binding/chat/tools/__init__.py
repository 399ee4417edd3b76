"""Tool-call parsers: a model's raw completion to OpenAI ``content`` and ``tool_calls``.

One module per format, found by name: ``get_parser("hermes").parse(text)`` for a whole
completion, ``get_parser(name).stream()`` for deltas while generating. :func:`detect`
picks the name from a chat template, since the template is what taught the model its
syntax. Parsing never raises on model output: what is not a well-formed call is content.
"""

from __future__ import annotations

from . import chatml_function_calling, generic, hermes, llama3, mistral
from ._registry import get_parser, names, register
from .types import Delta, ParsedOutput, StreamParser, ToolCall, ToolCallParser, assemble

__all__ = [
    "Delta",
    "ParsedOutput",
    "StreamParser",
    "ToolCall",
    "ToolCallParser",
    "assemble",
    "detect",
    "get_parser",
    "names",
    "register",
]

_BUILT_IN = (chatml_function_calling, generic, hermes, llama3, mistral)

_SIGNS = (
    ("<tool_call>", "hermes"),
    ("<|python_tag|>", "llama3"),
    ("ipython", "llama3"),
    ("[TOOL_CALLS]", "mistral"),
    ("functions.<function_name>:", "chatml-function-calling"),
)


def detect(template_source: str | None) -> str:
    """The parser name for a chat template's source text; ``"json"`` when nothing matches."""
    for sign, name in _SIGNS:
        if template_source and sign in template_source:
            return name
    return "json"
