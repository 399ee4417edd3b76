"""OpenAI chat completions on top of text completions: the prompt from a chat format, the
grammar from ``response_format``, and the chat-shaped results (a message, or deltas).

Pure functions over the ``Llama`` facade's completion results, so that the facade's
``create_chat_completion`` stays a few lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from ..errors import SamplerError
from ..grammar import JSON_OBJECT_GBNF, schema_to_gbnf
from ..llama_types import (
    ChatCompletionChunk,
    ChatCompletionDelta,
    ChatCompletionMessage,
    ChatCompletionToolCall,
    ChatFinishReason,
    CompletionChunk,
    CreateChatCompletionResponse,
    CreateCompletionResponse,
)
from .tools import ToolCallParser

__all__ = ["chat_chunks", "chat_logprobs", "chat_response", "check_tools", "inline_tool_calls",
           "response_format_grammar", "tool_call_grammar", "tools_system_prompt"]


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
        schema = response_format.get("schema")  # llama-cpp-python's extension
        return JSON_OBJECT_GBNF if schema is None else schema_to_gbnf(schema, strict=False)
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
    a named function; None for "auto"/"none" (the model chooses)."""
    if isinstance(tool_choice, Mapping):
        name = tool_choice["function"]["name"]
        functions = [fn for fn in functions if fn["name"] == name]
    elif tool_choice != "required":
        return None
    options = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                "properties": {"name": {"const": fn["name"]},
                               "arguments": fn.get("parameters") or {"type": "object"}}}
               for fn in functions]
    return schema_to_gbnf(options[0] if len(options) == 1 else {"anyOf": options}, strict=False)


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


def chat_logprobs(lp: Mapping[str, Any] | None) -> dict[str, object] | None:
    """A completion's logprobs in the chat shape: ``{"content": [{token, logprob, bytes,
    top_logprobs: [{token, logprob, bytes}]}]}``."""
    if lp is None:
        return None
    content = []
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"] or []):
        alternatives = [{"token": t, "logprob": v, "bytes": list(t.encode("utf-8", "replace"))}
                        for t, v in (top or {}).items()]
        content.append({"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8", "replace")),
                        "top_logprobs": alternatives})
    return {"content": content}


def chat_response(completion: CreateCompletionResponse,
                  parser: ToolCallParser | None = None) -> CreateChatCompletionResponse:
    """A text completion as a chat completion with one assistant message; with a tool-call
    ``parser``, the calls it finds become ``tool_calls`` (finish_reason "tool_calls")."""
    choice = completion["choices"][0]
    if parser is not None:
        parsed = parser.parse(choice["text"])
        if parsed.tool_calls:
            message: ChatCompletionMessage = {
                "role": "assistant", "content": parsed.content,
                "tool_calls": [cast(ChatCompletionToolCall, c.to_dict()) for c in parsed.tool_calls]}
            return {
                "id": "chat" + completion["id"], "object": "chat.completion",
                "created": completion["created"], "model": completion["model"],
                "choices": [{"index": 0, "message": message, "logprobs": chat_logprobs(choice["logprobs"]),
                             "finish_reason": "tool_calls"}],
                "usage": completion["usage"]}
    return {
        "id": "chat" + completion["id"],
        "object": "chat.completion",
        "created": completion["created"],
        "model": completion["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["text"]},
                     "logprobs": chat_logprobs(choice["logprobs"]),
                     "finish_reason": choice["finish_reason"]}],
        "usage": completion["usage"],
    }


def _chunk(src: CompletionChunk, delta: ChatCompletionDelta, lp: dict[str, object] | None,
           finish: ChatFinishReason | None) -> ChatCompletionChunk:
    return {"id": "chat" + src["id"], "object": "chat.completion.chunk", "created": src["created"],
            "model": src["model"],
            "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}]}


def chat_chunks(chunks: Iterator[CompletionChunk],
                parser: ToolCallParser | None = None) -> Iterator[ChatCompletionChunk]:
    """Completion chunks as chat chunks: first the assistant role, then content deltas (and,
    with a tool-call ``parser``, ``tool_calls`` deltas), and a last chunk with an empty delta
    and the finish reason ("tool_calls" when calls were made)."""
    stream = parser.stream() if parser is not None else None
    called = False
    try:
        first = True
        for chunk in chunks:
            if first:
                first = False
                yield _chunk(chunk, {"role": "assistant"}, None, None)
            choice = chunk["choices"][0]
            if stream is None:
                if choice["text"]:
                    yield _chunk(chunk, {"content": choice["text"]}, chat_logprobs(choice["logprobs"]), None)
            else:
                deltas = stream.feed(choice["text"]) if choice["text"] else []
                if choice["finish_reason"] is not None:
                    deltas += stream.finish()
                for delta in deltas:
                    called = called or "tool_calls" in delta
                    yield _chunk(chunk, cast(ChatCompletionDelta, delta), None, None)
            if choice["finish_reason"] is not None:
                yield _chunk(chunk, {}, None, "tool_calls" if called else choice["finish_reason"])
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
