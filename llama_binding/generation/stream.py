"""Token ids -> text chunks: incremental UTF-8 detokenizing, stop strings, finish reasons.

The middle of the stacked generators: :func:`stream_text` consumes the token ids of
:func:`~llama_binding.generation.steps.generate_tokens` and yields :class:`TextChunk`
objects; :func:`collect` joins them. The OpenAI dict shapes are made at the edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Optional

from ..core.vocab import Vocab
from .detokenizer import IncrementalDetokenizer
from .stopping import StopMatcher

__all__ = ["Completion", "FinishReason", "TextChunk", "collect", "stream_text"]

FinishReason = Literal["stop", "length"]


@dataclass
class TextChunk:
    """New text, the tokens that produced it, and the finish reason on the last chunk."""

    text: str
    tokens: list[int] = field(default_factory=list)
    finish_reason: Optional[FinishReason] = None


@dataclass
class Completion:
    text: str
    tokens: list[int]
    finish_reason: FinishReason


def stream_text(tokens: Iterable[int], vocab: Vocab, stop: StopMatcher,
                max_tokens: int | None, stop_token: Callable[[int], bool] | None = None
                ) -> Iterator[TextChunk]:
    """Text chunks of ``tokens``; the last chunk carries ``finish_reason``.

    "stop": an end-of-generation token, a stop string, or ``stop_token(token)`` returned
    True (that token is dropped); "length": ``max_tokens`` or the context ran out.
    End-of-generation tokens add no text.
    """
    detok = IncrementalDetokenizer()
    pending: list[int] = []
    produced = 0
    reason: FinishReason = "length"
    for tok in tokens:
        produced += 1
        if vocab.is_eog(tok) or (stop_token is not None and stop_token(tok)):
            reason = "stop"
            break
        pending.append(tok)
        text, hit = stop.feed(detok.feed(vocab.token_to_piece(tok)))
        if hit:
            yield TextChunk(text, pending, "stop")
            return
        if text:
            yield TextChunk(text, pending)
            pending = []
        if max_tokens is not None and produced >= max_tokens:
            break
    text, hit = stop.feed(detok.flush())
    if not hit:
        text += stop.flush()
    yield TextChunk(text, pending, "stop" if hit else reason)


def collect(chunks: Iterable[TextChunk]) -> Completion:
    """Join a stream into one :class:`Completion`."""
    texts: list[str] = []
    toks: list[int] = []
    reason: FinishReason = "length"
    for chunk in chunks:
        texts.append(chunk.text)
        toks.extend(chunk.tokens)
        if chunk.finish_reason is not None:
            reason = chunk.finish_reason
    return Completion("".join(texts), toks, reason)
