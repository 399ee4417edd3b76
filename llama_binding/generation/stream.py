"""Token ids -> text chunks: incremental UTF-8 detokenizing, stop strings, finish reasons.

The middle of the stacked generators: :func:`stream_text` consumes the token ids of
:func:`~llama_binding.generation.steps.generate_tokens` and yields :class:`TextChunk`
objects; :func:`collect` joins them. The OpenAI dict shapes are made at the edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Optional, Protocol, Union

from ..core.vocab import Vocab
from .detokenizer import IncrementalDetokenizer
from .logprobs import TokenLogprob
from .stopping import StopMatcher

__all__ = ["Completion", "FinishReason", "TextAssembler", "TextChunk", "TokenPieces", "collect",
           "stream_text"]

FinishReason = Literal["stop", "length"]


class TokenPieces(Protocol):
    """What detokenizing reads of a vocabulary (a :class:`Vocab`, or a guarded view of one)."""

    def is_eog(self, token: int) -> bool: ...

    def token_to_piece(self, token: int) -> bytes: ...


@dataclass
class TextChunk:
    """New text, the tokens that produced it, and the finish reason on the last chunk;
    ``logprobs``: one entry per token when the request asked for them (the first chunk of
    a request for the prompt's too starts with the prompt's entries)."""

    text: str
    tokens: list[int] = field(default_factory=list)
    finish_reason: Optional[FinishReason] = None
    logprobs: Optional[list[TokenLogprob]] = None


@dataclass
class Completion:
    text: str
    tokens: list[int]
    finish_reason: FinishReason
    logprobs: Optional[list[TokenLogprob]] = None


class TextAssembler:
    """One completion's token ids -> text chunks, a token at a time (the body of
    :func:`stream_text`, for loops that are not a generator: the asyncio front end).

    :meth:`feed` returns a chunk with text (or the stopping chunk) or None, and sets
    :attr:`finish_reason` once the completion is over; :meth:`end` flushes the last chunk.
    """

    __slots__ = ("_detok", "_pending", "_stop", "finish_reason", "vocab")

    def __init__(self, vocab: Union[Vocab, TokenPieces], stop: StopMatcher) -> None:
        self.vocab = vocab
        self._stop = stop
        self._detok = IncrementalDetokenizer()
        self._pending: list[int] = []
        self.finish_reason: Optional[FinishReason] = None

    def feed(self, tok: int, stop_token: bool = False) -> TextChunk | None:
        """Add ``tok``; an end-of-generation token or ``stop_token=True`` ends it ("stop",
        the token dropped); so does a stop string (the chunk returned is the last one)."""
        if self.vocab.is_eog(tok) or stop_token:
            self.finish_reason = "stop"
            return None
        self._pending.append(tok)
        text, hit = self._stop.feed(self._detok.feed(self.vocab.token_to_piece(tok)))
        if hit:
            self.finish_reason = "stop"
            return TextChunk(text, self._pending, "stop")
        if text:
            chunk, self._pending = TextChunk(text, self._pending), []
            return chunk
        return None

    def end(self, reason: FinishReason) -> TextChunk:
        """The last chunk: what the detokenizer and the stop matcher still hold."""
        text, hit = self._stop.feed(self._detok.flush())
        if not hit:
            text += self._stop.flush()
        reason = "stop" if hit else (self.finish_reason or reason)
        self.finish_reason = reason
        return TextChunk(text, self._pending, reason)


def stream_text(tokens: Iterable[int], vocab: Vocab, stop: StopMatcher,
                max_tokens: int | None, stop_token: Callable[[int], bool] | None = None
                ) -> Iterator[TextChunk]:
    """Text chunks of ``tokens``; the last chunk carries ``finish_reason``.

    "stop": an end-of-generation token, a stop string, or ``stop_token(token)`` returned
    True (that token is dropped); "length": ``max_tokens`` or the context ran out.
    End-of-generation tokens add no text.
    """
    text = TextAssembler(vocab, stop)
    produced = 0
    for tok in tokens:
        produced += 1
        chunk = text.feed(tok, stop_token is not None and stop_token(tok))
        if text.finish_reason is not None:
            if chunk is not None:  # a stop string: that chunk is the last
                yield chunk
                return
            break
        if chunk is not None:
            yield chunk
        if max_tokens is not None and produced >= max_tokens:
            break
    yield text.end("length")


def collect(chunks: Iterable[TextChunk]) -> Completion:
    """Join a stream into one :class:`Completion`."""
    texts: list[str] = []
    toks: list[int] = []
    logprobs: Optional[list[TokenLogprob]] = None
    reason: FinishReason = "length"
    for chunk in chunks:
        texts.append(chunk.text)
        toks.extend(chunk.tokens)
        if chunk.logprobs is not None:
            logprobs = (logprobs or []) + chunk.logprobs
        if chunk.finish_reason is not None:
            reason = chunk.finish_reason
    return Completion("".join(texts), toks, reason, logprobs)
