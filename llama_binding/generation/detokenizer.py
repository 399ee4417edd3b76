"""UTF-8-safe incremental detokenizing.

Tokens carry bytes, and one character can be split over several tokens (an emoji over
three byte-level BPE tokens, say). :class:`IncrementalDetokenizer` turns the pieces into
text as they come, holding back only the bytes of an unfinished character: at most three
bytes, and never longer than the character needs. Bytes that can never form valid UTF-8
come out as U+FFFD at once, so nothing is withheld for ever.
"""

from __future__ import annotations

import codecs

__all__ = ["IncrementalDetokenizer"]


class IncrementalDetokenizer:
    """Feed token pieces (bytes), get the text that is complete so far."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        """Text completed by ``piece`` (may be empty while a character is unfinished)."""
        text: str = self._decoder.decode(piece, final=False)
        return text

    def flush(self) -> str:
        """The end of the stream: unfinished bytes become U+FFFD."""
        text: str = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished character are held back."""
        buffered, _ = self._decoder.getstate()
        return bool(buffered)
