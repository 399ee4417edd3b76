"""OpenAI chat completions on top of text completions: the prompt from a chat format, the
grammar from ``response_format``, and the chat-shaped results (a message, or deltas).

Pure functions over the ``Llama`` facade's completion results, so that the facade's
``create_chat_completion`` stays a few lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import SamplerError
from ..grammar import JSON_GBNF, schema_to_gbnf
from ..llama_types import (
    ChatCompletionChunk,
    ChatCompletionDelta,
    ChatFinishReason,
    CompletionChunk,
    CreateChatCompletionResponse,
    CreateCompletionResponse,
)

__all__ = ["chat_chunks", "chat_logprobs", "chat_response", "response_format_grammar"]


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
        return JSON_GBNF if schema is None else schema_to_gbnf(schema, strict=False)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or "schema" not in spec:
            raise SamplerError('response_format "json_schema" needs '
                               '{"json_schema": {"name": ..., "schema": {...}}}')
        return schema_to_gbnf(spec["schema"], strict=bool(spec.get("strict", True)))
    raise ValueError(f'response_format type must be "text", "json_object" or "json_schema", not {kind!r}')


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


def chat_response(completion: CreateCompletionResponse) -> CreateChatCompletionResponse:
    """A text completion as a chat completion with one assistant message."""
    choice = completion["choices"][0]
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


def chat_chunks(chunks: Iterator[CompletionChunk]) -> Iterator[ChatCompletionChunk]:
    """Completion chunks as chat chunks: first the assistant role, then content deltas, and
    a last chunk with an empty delta and the finish reason."""
    try:
        first = True
        for chunk in chunks:
            if first:
                first = False
                yield _chunk(chunk, {"role": "assistant"}, None, None)
            choice = chunk["choices"][0]
            if choice["text"]:
                yield _chunk(chunk, {"content": choice["text"]}, chat_logprobs(choice["logprobs"]), None)
            if choice["finish_reason"] is not None:
                yield _chunk(chunk, {}, None, choice["finish_reason"])
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
