"""Every OpenAI-shaped result, built in one place.

The engine yields small dataclasses (:class:`~llama_binding.generation.stream.TextChunk`,
:class:`~llama_binding.generation.stream.Completion`, embedding vectors); the facades
(``Llama``, ``AsyncLlama``) and the server turn them into OpenAI's completion, completion
chunk, chat completion, chat chunk (with tool-call deltas), embedding and usage objects
with the functions and small stateful builders here, and write no such dict themselves.
The names and fields are llama-cpp-python's (:mod:`llama_binding.llama_types`).
"""

from __future__ import annotations

import base64
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np
import numpy.typing as npt

from .generation.logprobs import TokenLogprob
from .generation.stream import Completion, TextChunk
from .llama_types import (
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionDelta,
    ChatCompletionMessage,
    ChatCompletionToolCall,
    ChatFinishReason,
    CompletionChoice,
    CompletionChunk,
    CompletionUsage,
    CreateChatCompletionResponse,
    CreateCompletionResponse,
    CreateEmbeddingResponse,
)

if TYPE_CHECKING:
    from .chat.tools import StreamParser, ToolCallParser

__all__ = [
    "ChatChunker",
    "CompletionChunker",
    "Meta",
    "achat_chunks",
    "acompletion_chunks",
    "chat_chunks",
    "chat_completion",
    "chat_logprobs",
    "completion",
    "completion_chunks",
    "completion_logprobs",
    "embeddings",
    "models",
    "usage",
]


TokenText = Callable[[int], str]
"""A token's text, for log-probabilities (``Engine.token_text``)."""

# Response ids: unique, not secret. uuid.uuid4() reads os.urandom, which releases the GIL;
# on a server's event loop, taking it back waits for the engine thread's Python (measured:
# 1.3 ms a request on a 2-core machine, most of the time to first token's overhead)
_ids = random.Random()
if hasattr(os, "register_at_fork"):  # a forked child draws other ids (POSIX)
    os.register_at_fork(after_in_child=_ids.seed)


@dataclass(frozen=True)
class Meta:
    """The fields every object of one response shares: its id, creation time and model."""

    id: str
    created: int
    model: str

    @classmethod
    def new(cls, model: str) -> Meta:
        return cls(f"cmpl-{uuid.UUID(int=_ids.getrandbits(128), version=4)}", int(time.time()), model)


def usage(prompt_tokens: int, completion_tokens: int) -> CompletionUsage:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


# --- text completions ----------------------------------------------------------------------


def completion_logprobs(entries: Sequence[TokenLogprob], text: TokenText,
                        text_offset: int) -> tuple[dict[str, object], int]:
    """The OpenAI completion ``logprobs`` object for ``entries``, and the text offset after
    them; ``text(token)`` is a token's text (``Engine.token_text``: safe while the model closes)."""
    tokens: list[str] = []
    offsets: list[int] = []
    pos = text_offset
    for e in entries:
        piece = text(e.token)
        tokens.append(piece)
        offsets.append(pos)
        pos += len(piece)
    return {
        "tokens": tokens,
        "text_offset": offsets,
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [
            None if e.top is None
            else {text(t): lp for t, lp in e.top.items()}
            for e in entries
        ],
    }, pos


def _choice(index: int, text: str, finish_reason: Any,
            logprobs: Optional[dict[str, object]]) -> CompletionChoice:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


def completion(meta: Meta, results: Sequence[Completion], prompt_tokens: int, text: TokenText,
               echo_text: str = "") -> CreateCompletionResponse:
    """A whole completion: one choice per result (``index`` in order)."""
    choices = []
    for i, r in enumerate(results):
        lp = None if r.logprobs is None else completion_logprobs(r.logprobs, text, 0)[0]
        choices.append(_choice(i, echo_text + r.text, r.finish_reason, lp))
    return {"id": meta.id, "object": "text_completion", "created": meta.created, "model": meta.model,
            "choices": choices, "usage": usage(prompt_tokens, sum(len(r.tokens) for r in results))}


@dataclass
class CompletionChunker:
    """One streamed completion's chunks: :meth:`chunk` for each engine chunk of choice
    ``index`` (None for a chunk with nothing to send), :meth:`usage_chunk` for the last one
    of ``stream_options={"include_usage": True}`` (no choices, the usage)."""

    meta: Meta
    text: TokenText
    prompt_tokens: int
    echo_text: str = ""
    _started: set[int] = field(default_factory=set)
    _offsets: dict[int, int] = field(default_factory=dict)
    _generated: int = 0

    def chunk(self, index: int, chunk: TextChunk) -> CompletionChunk | None:
        self._generated += len(chunk.tokens)
        text = chunk.text
        if index not in self._started:
            self._started.add(index)
            text = self.echo_text + text
        lp = None
        if chunk.logprobs is not None:  # made for every chunk, so that text offsets run on
            offset = self._offsets.get(index, 0)
            lp, self._offsets[index] = completion_logprobs(chunk.logprobs, self.text, offset)
        if not text and chunk.finish_reason is None:
            return None
        meta = self.meta  # the per-token path of every stream: the dict written out
        return {"id": meta.id, "object": "text_completion", "created": meta.created, "model": meta.model,
                "choices": [{"text": text, "index": index, "logprobs": lp,
                             "finish_reason": chunk.finish_reason}]}

    def usage_chunk(self) -> CompletionChunk:
        return {"id": self.meta.id, "object": "text_completion", "created": self.meta.created,
                "model": self.meta.model, "choices": [],
                "usage": usage(self.prompt_tokens, self._generated)}  # type: ignore[typeddict-unknown-key]


def completion_chunks(chunker: CompletionChunker, chunks: Iterator[Any], include_usage: bool,
                      one: bool = False) -> Iterator[CompletionChunk]:
    """A stream's chunks from the engine's ``(choice index, chunk)`` pairs (``one``: chunks
    of choice 0 alone); closing it early closes ``chunks`` at once (the engine is free
    again), not when it happens to be collected."""
    try:
        for item in chunks:
            index, chunk = (0, item) if one else item
            out = chunker.chunk(index, chunk)
            if out is not None:
                yield out
        if include_usage:
            yield chunker.usage_chunk()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def acompletion_chunks(chunker: CompletionChunker, chunks: AsyncIterator[tuple[int, TextChunk]],
                             include_usage: bool) -> AsyncIterator[CompletionChunk]:
    """:func:`completion_chunks` for an async stream."""
    try:
        async for index, chunk in chunks:
            out = chunker.chunk(index, chunk)
            if out is not None:
                yield out
        if include_usage:
            yield chunker.usage_chunk()
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


# --- chat completions ----------------------------------------------------------------------


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


def chat_completion(result: CreateCompletionResponse,
                    parser: ToolCallParser | None = None) -> CreateChatCompletionResponse:
    """A text completion as a chat completion, an assistant message per choice; with a
    tool-call ``parser``, the calls it finds become ``tool_calls`` (finish_reason "tool_calls")."""
    choices: list[ChatCompletionChoice] = []
    for choice in result["choices"]:
        message: ChatCompletionMessage = {"role": "assistant", "content": choice["text"]}
        finish: ChatFinishReason | None = choice["finish_reason"]
        parsed = parser.parse(choice["text"]) if parser is not None else None
        if parsed is not None and parsed.tool_calls:
            message = {"role": "assistant", "content": parsed.content,
                       "tool_calls": [cast(ChatCompletionToolCall, c.to_dict()) for c in parsed.tool_calls]}
            finish = "tool_calls"
        choices.append({"index": choice["index"], "message": message,
                        "logprobs": chat_logprobs(choice["logprobs"]), "finish_reason": finish})
    return {"id": "chat" + result["id"], "object": "chat.completion", "created": result["created"],
            "model": result["model"], "choices": choices, "usage": result["usage"]}


class ChatChunker:
    """Completion chunks -> chat chunks: per choice, first the assistant role, then content
    deltas (with a tool-call ``parser``, ``tool_calls`` deltas), and a last chunk with an
    empty delta and the finish reason ("tool_calls" when calls were made). A usage chunk
    (no choices) passes through with the chat object name."""

    def __init__(self, parser: ToolCallParser | None = None) -> None:
        self._parser = parser
        self._streams: dict[int, StreamParser | None] = {}
        self._called: set[int] = set()

    def feed(self, src: CompletionChunk) -> list[ChatCompletionChunk]:
        if not src["choices"]:
            return [{"id": "chat" + src["id"], "object": "chat.completion.chunk", "created": src["created"],
                     "model": src["model"], "choices": [],
                     "usage": src.get("usage")}]  # type: ignore[typeddict-unknown-key]
        out: list[ChatCompletionChunk] = []
        for choice in src["choices"]:
            i = choice["index"]
            if i not in self._streams:
                self._streams[i] = self._parser.stream() if self._parser is not None else None
                out.append(_chat_chunk(src, i, {"role": "assistant"}, None, None))
            stream = self._streams[i]
            if stream is None:
                if choice["text"]:
                    out.append(_chat_chunk(src, i, {"content": choice["text"]},
                                           chat_logprobs(choice["logprobs"]), None))
            else:
                deltas = stream.feed(choice["text"]) if choice["text"] else []
                if choice["finish_reason"] is not None:
                    deltas += stream.finish()
                for delta in deltas:
                    if "tool_calls" in delta:
                        self._called.add(i)
                    out.append(_chat_chunk(src, i, cast(ChatCompletionDelta, delta), None, None))
            if choice["finish_reason"] is not None:
                finish = "tool_calls" if i in self._called else choice["finish_reason"]
                out.append(_chat_chunk(src, i, {}, None, finish))
        return out


def _chat_chunk(src: CompletionChunk, index: int, delta: ChatCompletionDelta, lp: dict[str, object] | None,
                finish: ChatFinishReason | None) -> ChatCompletionChunk:
    return {"id": "chat" + src["id"], "object": "chat.completion.chunk", "created": src["created"],
            "model": src["model"], "choices": [{"index": index, "delta": delta, "logprobs": lp,
                                                "finish_reason": finish}]}


def chat_chunks(chunks: Iterator[CompletionChunk],
                parser: ToolCallParser | None = None) -> Iterator[ChatCompletionChunk]:
    """A completion stream as a chat stream (:class:`ChatChunker`)."""
    chunker = ChatChunker(parser)
    try:
        for chunk in chunks:
            yield from chunker.feed(chunk)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def achat_chunks(chunks: AsyncIterator[CompletionChunk],
                       parser: ToolCallParser | None = None) -> AsyncIterator[ChatCompletionChunk]:
    """:func:`chat_chunks` for an async stream."""
    chunker = ChatChunker(parser)
    try:
        async for chunk in chunks:
            for out in chunker.feed(chunk):
                yield out
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


# --- embeddings ----------------------------------------------------------------------------


def embeddings(model: str, vectors: Sequence[npt.NDArray[np.float32]], n_tokens: int,
               encoding_format: str = "float") -> CreateEmbeddingResponse:
    """OpenAI's embeddings list; ``encoding_format="base64"`` sends each vector as the
    base64 of its little-endian float32 bytes, as OpenAI's API does."""
    def encode(v: npt.NDArray[np.float32]) -> Any:
        if encoding_format == "base64":
            return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
        return v.tolist()

    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "embedding": encode(v), "index": i} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    }


def models(ids: Sequence[str], created: int, meta: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """OpenAI's model list (``GET /v1/models``); ``meta[i]``, when given, is model ``i``'s
    ``meta`` field (llama-server's place for what OpenAI's card lacks)."""
    cards = [{"id": i, "object": "model", "created": created, "owned_by": "llama-binding"} for i in ids]
    for card, m in zip(cards, meta or ()):
        card["meta"] = m
    return {"object": "list", "data": cards}
