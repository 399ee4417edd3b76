"""The hardening changes no real template's output.

Every template llama.cpp ships in ``models/templates`` (from real models' tokenizer
configs) is rendered by ChatTemplate and by the plain environment ``transformers`` uses
(ImmutableSandboxedEnvironment with its globals and tojson); the texts must be equal, and
where one fails (a template that refuses tools or a system role) the other fails too.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import jinja2
import pytest
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llama_binding.chat import ChatTemplate
from llama_binding.errors import TemplateError

TEMPLATES = Path(__file__).resolve().parents[2] / "vendor" / "llama.cpp" / "models" / "templates"
SOURCES = sorted(TEMPLATES.glob("*.jinja")) if TEMPLATES.is_dir() else []

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]
CALLS = [{"id": "call_1", "type": "function",
          "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
CONVERSATIONS: list[tuple[list[dict[str, Any]], Optional[list[dict[str, Any]]]]] = [
    ([{"role": "user", "content": "Hi"}], None),
    ([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "A joke?"}], None),
    ([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": "", "tool_calls": CALLS},
      {"role": "tool", "content": "Sunny", "tool_call_id": "call_1", "name": "get_weather"},
      {"role": "user", "content": "Thanks"}], TOOLS),
]


class _Generation(Extension):
    tags = {"generation"}  # noqa: RUF012  # jinja2's declaration

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        return nodes.Scope(parser.parse_statements(("name:endgeneration",), drop_needle=True), lineno=lineno)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _reference() -> ImmutableSandboxedEnvironment:
    """The environment of transformers' ``apply_chat_template``."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols, _Generation])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@pytest.mark.skipif(not SOURCES, reason=f"{TEMPLATES} is missing: run python vendor/sync.py")
@pytest.mark.parametrize("path", SOURCES, ids=[path.stem for path in SOURCES])
def test_renders_like_transformers(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    reference = _reference().from_string(source)
    ours = ChatTemplate(source, name=path.stem, bos_token="<s>", eos_token="</s>")
    for messages, tools in CONVERSATIONS:
        for generation in (True, False):
            try:
                expected = reference.render(messages=messages, tools=tools, add_generation_prompt=generation,
                                            bos_token="<s>", eos_token="</s>")
            except Exception:
                with pytest.raises(TemplateError, match=f"chat template '{path.stem}'"):
                    ours.render(messages, tools=tools, add_generation_prompt=generation)
                continue
            assert ours.render(messages, tools=tools, add_generation_prompt=generation) == expected
