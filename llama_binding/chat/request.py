"""An OpenAI chat request as a text completion: the prompt from a chat format or the
model's template, the grammar from ``response_format`` or a forced tool call, the stop
strings, and the tool-call parser that will read the answer.

:class:`ChatSetup` is a facade's chat configuration (``chat_format``, special-token
escaping); :meth:`ChatSetup.prompt` turns messages and options into a :class:`PreparedChat`,
which ``Llama`` and ``AsyncLlama`` complete the same way. The chat-shaped results are made
by :mod:`llama_binding.shapes`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from ..errors import SamplerError
from ..grammar import JSON_OBJECT_GBNF, LlamaGrammar, schema_to_gbnf
from .escape import SpecialToken, SpecialTokens, masked_prompt, prompt_tokens
from .formats import TemplateFormat, get_format
from .gguf import special_token_text, templates_from_metadata
from .template import ChatTemplate
from .tools import ToolCallParser, detect, get_parser
from .types import ChatFormatter

if TYPE_CHECKING:
    from ..generation.engine import Engine

__all__ = [
    "ChatSetup",
    "PreparedChat",
    "check_chat_template",
    "check_tools",
    "inline_tool_calls",
    "response_format_grammar",
    "tool_call_grammar",
    "tools_system_prompt",
]


@dataclass(frozen=True)
class PreparedChat:
    """What a chat request completes: prompt tokens, stop strings, a grammar (the caller's,
    ``response_format``'s or a forced tool call's) and the parser of tool calls, if any."""

    tokens: list[int]
    stop: list[str]
    grammar: str | LlamaGrammar | None = None
    parser: ToolCallParser | None = None


def check_chat_template(chat_template: str, chat_format: str | None = None) -> None:
    """Refuse ``chat_template`` beside ``chat_format``, or one that does not compile."""
    if chat_format is not None:
        raise ValueError("give chat_format or chat_template, not both")
    ChatTemplate(chat_template, name="chat_template").compile()


class ChatSetup:
    """A facade's chat configuration over an engine: ``chat_format``'s built-in format, or
    ``chat_template`` (a Jinja template, in the same sandbox as a model's), else the model's
    own template, else llama-2 (llama-cpp-python's fallback); special-token escaping by
    default on or off."""

    def __init__(self, engine: Engine, chat_format: str | None = None,
                 escape_special_tokens: bool = False, chat_template: str | None = None) -> None:
        if chat_template is not None:
            check_chat_template(chat_template, chat_format)
        self.engine = engine
        self.escape_special_tokens = escape_special_tokens
        self._formatter: ChatFormatter | None = get_format(chat_format) if chat_format is not None else None
        self._specials: SpecialTokens | None = None
        if chat_template is not None:  # the caller's Jinja template, with the model's BOS/EOS texts
            template = ChatTemplate(chat_template, name="chat_template",
                                    bos_token=special_token_text(engine.metadata, "bos"),
                                    eos_token=special_token_text(engine.metadata, "eos"))
            self._formatter = TemplateFormat(template)

    def formatter(self) -> ChatFormatter:
        if self._formatter is None:
            default = templates_from_metadata(self.engine.metadata).get("default")
            self._formatter = TemplateFormat(default) if default is not None else get_format("llama-2")
        return self._formatter

    def special_tokens(self) -> SpecialTokens:
        """The vocabulary's control and unknown tokens by text (read once)."""
        if self._specials is None:
            found = self.engine.vocab.special_tokens()
            self._specials = SpecialTokens({text: SpecialToken(*v) for text, v in found.items()})
        return self._specials

    def prompt(self, messages: Sequence[Mapping[str, Any]], *,
               tools: Sequence[Mapping[str, Any]] | None = None,
               tool_choice: Union[str, Mapping[str, Any], None] = None,
               response_format: Mapping[str, Any] | None = None, grammar: str | LlamaGrammar | None = None,
               stop: Union[str, Sequence[str], None] = None,
               escape_special_tokens: bool | None = None) -> PreparedChat:
        """Render and tokenize a chat request (see ``Llama.create_chat_completion``)."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages must be a list of message dicts, not {type(messages).__name__}")
        formatter = self.formatter()
        functions = check_tools(tools, tool_choice) if tool_choice != "none" else []
        schema_grammar = response_format_grammar(response_format)
        parser, template_tools = None, None
        if functions:
            forced = tool_call_grammar(functions, tool_choice)
            if forced is not None and (schema_grammar is not None or grammar is not None):
                raise ValueError("a forced tool call cannot be combined with grammar or response_format")
            source = formatter.template.source if isinstance(formatter, TemplateFormat) else None
            if source is not None and "tools" in source:
                template_tools = tools
            else:
                messages = [{"role": "system", "content": tools_system_prompt(functions)}, *messages]
            parser = get_parser("json" if forced is not None or template_tools is None else detect(source))
            schema_grammar = forced or schema_grammar
        if schema_grammar is not None and grammar is not None:
            raise ValueError("give either grammar or response_format, not both")
        if template_tools is None:  # this format renders no tool calls: earlier ones as text
            messages = inline_tool_calls(messages)
        escape = self.escape_special_tokens if escape_special_tokens is None else escape_special_tokens
        if escape:
            rendered, masker = masked_prompt(formatter, messages, self.special_tokens(), tools=template_tools)
        else:
            rendered, masker = formatter(messages, tools=template_tools), None
        tokens = prompt_tokens(rendered, masker, self.tokenize)
        stops = [*rendered.stop, *([stop] if isinstance(stop, str) else list(stop or []))]
        return PreparedChat(tokens, stops, grammar or schema_grammar, parser)

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        return self.engine.tokenize(text, add_special=add_special, parse_special=parse_special,
                                    what="messages (the rendered chat prompt)")


def response_format_grammar(response_format: Mapping[str, Any] | None) -> str | None:
    """The GBNF that enforces an OpenAI ``response_format`` (None for plain text)."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise TypeError(f"response_format must be a dict, not {type(response_format).__name__}")
    kind = response_format.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")  # llama-cpp-python's extension: strict about keys
        return JSON_OBJECT_GBNF if schema is None else schema_to_gbnf(schema, strict=False, extra_keys=False)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or "schema" not in spec:
            raise SamplerError('response_format "json_schema" needs '
                               '{"json_schema": {"name": ..., "schema": {...}}}')
        return schema_to_gbnf(spec["schema"], strict=bool(spec.get("strict", True)))
    raise ValueError(f'response_format type must be "text", "json_object" or "json_schema", not {kind!r}')


def check_tools(tools: Sequence[Mapping[str, Any]] | None, tool_choice: Any) -> list[Mapping[str, Any]]:
    """The function tools of an OpenAI ``tools`` list, validated with ``tool_choice``."""
    if tools is None:
        if tool_choice not in (None, "none", "auto"):
            raise ValueError(f"tool_choice {tool_choice!r} needs tools")
        return []
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise TypeError(f"tools must be a list of tool dicts, not {type(tools).__name__}")
    functions = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(fn, Mapping) \
                or not isinstance(fn.get("name"), str):
            raise ValueError(f'tools[{i}] must be {{"type": "function", "function": {{"name": ..., '
                             f'"parameters": {{...}}}}}}')
        functions.append(fn)
    if isinstance(tool_choice, Mapping):
        name = (tool_choice.get("function") or {}).get("name")
        if name not in {fn["name"] for fn in functions}:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
    elif tool_choice not in (None, "none", "auto", "required"):
        raise ValueError('tool_choice must be "none", "auto", "required" or a named function, '
                         f"not {tool_choice!r}")
    return functions


def tool_call_grammar(functions: Sequence[Mapping[str, Any]], tool_choice: Any) -> str | None:
    """A grammar that forces one call, as a JSON object {"name": ..., "arguments": {...}}
    whose arguments match the function's parameter schema, for tool_choice "required" or
    a named function; None for "auto"/"none" (the model chooses). The arguments have only
    the keys the parameters declare, unless they say ``additionalProperties``."""
    if isinstance(tool_choice, Mapping):
        name = tool_choice["function"]["name"]
        functions = [fn for fn in functions if fn["name"] == name]
    elif tool_choice != "required":
        return None
    options = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                "properties": {"name": {"const": fn["name"]},
                               "arguments": fn.get("parameters") or {"type": "object"}}}
               for fn in functions]
    return schema_to_gbnf(options[0] if len(options) == 1 else {"anyOf": options}, strict=False,
                          extra_keys=False)


def tools_system_prompt(functions: Sequence[Mapping[str, Any]]) -> str:
    """Tool descriptions for a format whose template cannot render tools itself; the model
    is asked for the generic JSON call that the "json" parser reads."""
    specs = "\n".join(json.dumps({"name": fn["name"], "description": fn.get("description", ""),
                                  "parameters": fn.get("parameters", {})}, ensure_ascii=False)
                      for fn in functions)
    return ("You can call these functions:\n" + specs + "\nTo call one, reply with only a JSON object "
            '{"name": <function name>, "arguments": <arguments object>}.')


def inline_tool_calls(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Messages for a format that knows no tool calls: an assistant turn's ``tool_calls``
    become its content, one generic JSON call per line (what :func:`tools_system_prompt`
    asks for), so that a conversation with earlier calls still renders."""
    out: list[Mapping[str, Any]] = []
    for m in messages:
        calls = m.get("tool_calls") if isinstance(m, Mapping) else None
        if not calls:
            out.append(m)
            continue
        lines = []
        for call in calls:
            fn = call.get("function", {}) if isinstance(call, Mapping) else {}
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except (TypeError, ValueError):
                args = fn.get("arguments")
            lines.append(json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False))
        content = m.get("content")
        text = "\n".join(filter(None, [content if isinstance(content, str) else None, *lines]))
        out.append({k: v for k, v in m.items() if k != "tool_calls"} | {"content": text})
    return out
