"""Tokenizing a prompt that extends a recent one: only what follows the shared part.

A chat's next turn sends the whole conversation again: the last prompt, its answer and a
new message. llama.cpp tokenizes all of it every time (llama-server too): on this
project's 2-core machine 0.5 us a token with Llama 3's vocabulary and 1.7-1.9 us with
GPT-2's or Qwen's, so an 8,000-token conversation costs 4-15 ms before its first decode.
:class:`PrefixTokenizer` keeps the last few texts it tokenized with their tokens; a text
that shares a long beginning with one of them takes that one's tokens up to a cut inside
the shared part and tokenizes only the rest.

The cut is a token boundary of the remembered text where a line ends and a letter begins
(``"\\n"`` then ``[A-Za-z]``), at least :attr:`PrefixTokenizer.MARGIN` bytes before the end
of the shared part. For a byte-level BPE vocabulary (Llama 3, GPT-2, Qwen, ...) that is
exact: llama.cpp first cuts the text at special tokens, then its pre-tokenizer splits each
piece by a regular expression scanned left to right (a match never takes a newline
together with the letter after it), and the merges stay within a split; what decides the
tokens before the cut is the text before it and a few characters after it, the same in
both texts. Other vocabularies (SentencePiece adds a space at the start of every piece of
text; WordPiece, Unigram) and those that add a token at the end are tokenized whole, and
so is text tokenized without its special tokens parsed (documents to embed, a caller's
own ``tokenize``): only prompts are remembered.
``tests/core/test_prefix_tokens.py`` compares the two ways on every vocabulary of
llama.cpp's ``models/`` folder.
"""

from __future__ import annotations

import bisect
import threading
from array import array
from dataclasses import dataclass, field
from itertools import accumulate

from .. import capi
from .vocab import Vocab, text_bytes

__all__ = ["PrefixTokenizer"]

_UNSPELLED = array("i")  # an entry's ends when its tokens' pieces do not spell its text


@dataclass
class _Entry:
    text: bytes
    # a list, not an int32 array: a next turn's tokens are then a slice of these and the tail
    # (an array's tolist() made new int objects for all of them, 60 us for 4,000 tokens)
    tokens: list[int]
    add_special: bool
    ends: array[int] | None = field(default=None)  # each token's end in text (bytes), once needed


def _shared(a: bytes, b: bytes) -> int:
    """The length of the longest common beginning of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _is_letter(byte: int) -> bool:
    return 65 <= byte <= 90 or 97 <= byte <= 122


class PrefixTokenizer:
    """``vocab.tokenize`` for prompts (special tokens parsed), reusing the tokens of a recent
    text that begins the same (thread-safe; see the module docstring for when and why it is
    exact). Other texts are tokenized whole and not remembered."""

    #: the shortest text worth the bookkeeping
    MIN_BYTES = 1024
    #: the cut lies at least this many bytes before the end of the shared part
    MARGIN = 64
    #: texts remembered
    KEEP = 8
    #: token boundaries tried, back from the margin, for a line's end before a letter
    SEARCH = 512

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self._bpe = vocab.type == capi.LLAMA_VOCAB_TYPE_BPE
        self._recent: list[_Entry] = []
        self._lock = threading.Lock()
        #: tokens taken from remembered texts, in all (not tokenized again)
        self.reused_tokens = 0

    def tokenize(self, text: str | bytes, add_special: bool = True, parse_special: bool = True,
                 what: str = "prompt") -> list[int]:
        """The tokens of ``text``, as ``vocab.tokenize(text, add_special, parse_special)``."""
        v = self.vocab
        if isinstance(text, str):
            text = text_bytes(text, what)
        if not isinstance(text, (bytes, bytearray)) or len(text) < self.MIN_BYTES or not self._bpe \
                or not parse_special or (add_special and (v.add_eos() or v.add_sep())):
            # (a wrong type gets vocab.tokenize's error; without special tokens parsed it is not
            # a prompt but text: documents to embed, a caller's own tokenize)
            return v.tokenize(text, add_special=add_special, parse_special=parse_special, what=what)
        with self._lock:
            recent = list(self._recent)
        best, n_best = None, 0
        head = text[:self.MARGIN]
        for e in recent:
            if e.add_special == add_special and e.text.startswith(head):
                n = _shared(e.text, text)
                if n > n_best:
                    best, n_best = e, n
        cut = self._cut(best, text, n_best - self.MARGIN) if best is not None else None
        if cut is None:
            tokens = v.tokenize(text, add_special=add_special, parse_special=parse_special, what=what)
            entry = _Entry(bytes(text), tokens, add_special)
            tokens = list(tokens)  # (the caller's copy: the entry keeps its own)
        else:
            assert best is not None and best.ends is not None
            j, at = cut
            tail = v.tokenize(text[at:], add_special=False, parse_special=True, what=what)
            ends = self._ends(tail, text[at:], at)
            entry = _Entry(bytes(text), best.tokens[:j] + tail, add_special,
                           _UNSPELLED if ends is None else best.ends[:j] + ends)
            tokens = list(entry.tokens)
            self.reused_tokens += j
        with self._lock:
            self._recent = [*[e for e in self._recent if e is not best][-(self.KEEP - 1):], entry]
        return tokens

    def _cut(self, e: _Entry, text: bytes, limit: int) -> tuple[int, int] | None:
        """``(j, at)``: ``e``'s first ``j`` tokens are the bytes ``text[:at]``, ``at`` at most
        ``limit`` and a line's end before a letter; None where there is none."""
        if limit <= 0:
            return None
        if e.ends is None:  # once per entry (its text's first reuse)
            e.ends = self._ends(e.tokens, e.text, 0, added_bos=e.add_special) or _UNSPELLED
        ends = e.ends
        if not ends:
            return None
        j = bisect.bisect_right(ends, limit)  # ends[j - 1] <= limit
        for k in range(j, max(0, j - self.SEARCH), -1):
            at = ends[k - 1]
            if 0 < at and text[at - 1] == 10 and _is_letter(text[at]):
                return k, at
        return None

    def _ends(self, tokens: list[int], text: bytes, start: int, added_bos: bool = False) -> array[int] | None:
        """Each token's end offset (plus ``start``) in ``text``, None unless the tokens' pieces
        spell ``text`` exactly; ``added_bos``: the tokens of a text tokenized with its special
        tokens added, whose first is then the BOS llama.cpp put there when the model asks for one
        (it spells nothing, also before a text that begins with the BOS's own text: two BOS).
        (One join and one running sum, not a check per token: a third of the time.)"""
        piece = self.vocab.token_to_piece
        skip = added_bos and self.vocab.add_bos() and tokens[:1] == [self.vocab.bos()]
        pieces = [piece(t, True) for t in (tokens[1:] if skip else tokens)]
        if b"".join(pieces) != text:
            return None
        ends = array("i", accumulate(map(len, pieces), initial=start))
        return ends if skip else ends[1:]
