"""The vocabulary of a model: tokenize, detokenize, pieces, special tokens.

A ``llama_vocab *`` belongs to its model and is never freed on its own; :class:`Vocab`
holds the :class:`~llama_binding.core.model.Model` so the model outlives it, and refuses use
once the model is closed.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from .. import capi
from ..errors import TokenizeError
from .model import Model

__all__ = ["Vocab"]

_INT32_MIN = -(2**31)


class Vocab:
    """Tokenizer of ``model`` (thread-safe, like llama.cpp's tokenizer API)."""

    __slots__ = ("_eog", "_model", "_piece_buf", "_piece_cache", "_vptr")

    def __init__(self, model: Model) -> None:
        self._model = model
        self._vptr = capi.llama_model_get_vocab(model.ptr)  # lives as long as the model
        self._piece_buf = ctypes.create_string_buffer(256)
        self._piece_cache: dict[tuple[int, bool], bytes] = {}
        self._eog: dict[int, bool] = {}

    @property
    def ptr(self) -> Any:
        self._model.ptr  # noqa: B018 - raises ClosedError once the model is closed
        return self._vptr

    @property
    def n_tokens(self) -> int:
        return int(capi.llama_vocab_n_tokens(self.ptr))

    # --- special tokens --------------------------------------------------------------------

    def bos(self) -> int:
        return int(capi.llama_vocab_bos(self.ptr))

    def eos(self) -> int:
        return int(capi.llama_vocab_eos(self.ptr))

    def eot(self) -> int:
        return int(capi.llama_vocab_eot(self.ptr))

    def nl(self) -> int:
        return int(capi.llama_vocab_nl(self.ptr))

    def sep(self) -> int:
        return int(capi.llama_vocab_sep(self.ptr))

    def pad(self) -> int:
        return int(capi.llama_vocab_pad(self.ptr))

    def fim_pre(self) -> int:
        return int(capi.llama_vocab_fim_pre(self.ptr))

    def fim_suf(self) -> int:
        return int(capi.llama_vocab_fim_suf(self.ptr))

    def fim_mid(self) -> int:
        return int(capi.llama_vocab_fim_mid(self.ptr))

    def add_bos(self) -> bool:
        return bool(capi.llama_vocab_get_add_bos(self.ptr))

    def add_eos(self) -> bool:
        return bool(capi.llama_vocab_get_add_eos(self.ptr))

    def add_sep(self) -> bool:
        return bool(capi.llama_vocab_get_add_sep(self.ptr))

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (EOS, EOT, ...); memoised, it runs per token."""
        answer = self._eog.get(token)
        if answer is None:
            answer = self._eog[token] = bool(capi.llama_vocab_is_eog(self.ptr, token))
        return answer

    def is_control(self, token: int) -> bool:
        return bool(capi.llama_vocab_is_control(self.ptr, token))

    def text(self, token: int) -> bytes:
        """The raw text of ``token`` in the vocabulary (SentencePiece ``▁`` and all)."""
        self._check(token)
        return capi.llama_vocab_get_text(self.ptr, token) or b""

    def mismatch(self, other: Vocab) -> str | None:
        """Why ``other`` does not tokenize like this vocabulary (None when it does): the
        type, the size, the special ids and add-BOS/EOS flags, and every token's text."""
        if self.type != other.type:
            return f"vocabulary types differ ({self.type} vs {other.type})"
        n = self.n_tokens
        if n != other.n_tokens:
            return f"vocabulary sizes differ ({n} vs {other.n_tokens} tokens)"
        for name in ("bos", "eos", "eot", "sep", "pad", "nl", "add_bos", "add_eos"):
            a, b = getattr(self, name)(), getattr(other, name)()
            if a != b:
                return f"{name} differs ({a} vs {b})"
        get_text = capi.llama_vocab_get_text
        mine, theirs = self.ptr, other.ptr
        for t in range(n):
            if get_text(mine, t) != get_text(theirs, t):
                return f"token {t} differs ({get_text(mine, t)!r} vs {get_text(theirs, t)!r})"
        return None

    @property
    def type(self) -> int:
        """The tokenizer type (``LLAMA_VOCAB_TYPE_*``)."""
        return int(capi.llama_vocab_type(self.ptr))

    # --- text <-> tokens ---------------------------------------------------------------------

    def tokenize(self, text: bytes | str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Tokens of ``text``; ``add_special`` adds BOS/EOS as the model asks."""
        if isinstance(text, str):
            text = text.encode("utf-8")
        if not isinstance(text, (bytes, bytearray)):
            raise TypeError(f"text must be bytes or str, not {type(text).__name__}")
        if len(text) >= 2**31 - 1:
            raise TokenizeError("text is too long to tokenize (2 GiB or more)")
        vocab = self.ptr
        cap = len(text) + 2 * int(add_special) + 1
        buf = (capi.llama_token * cap)()
        n = capi.llama_tokenize(vocab, bytes(text), len(text), buf, cap, add_special, parse_special)
        if n == _INT32_MIN:
            raise TokenizeError("tokenization overflows int32")
        if n < 0:
            cap = -n
            buf = (capi.llama_token * cap)()
            n = capi.llama_tokenize(vocab, bytes(text), len(text), buf, cap, add_special, parse_special)
            if n < 0:
                raise TokenizeError(f"llama_tokenize failed ({n})")
        return list(buf[:n])

    def token_to_piece(self, token: int, special: bool = False, lstrip: int = 0) -> bytes:
        """The bytes of one token (cached: this sits in the per-token loop)."""
        if lstrip == 0:
            cached = self._piece_cache.get((token, special))
            if cached is not None:
                return cached
        self._check(token)
        buf = self._piece_buf
        n = capi.llama_token_to_piece(self.ptr, token, buf, len(buf), lstrip, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = capi.llama_token_to_piece(self.ptr, token, buf, len(buf), lstrip, special)
        piece = buf.raw[:n]
        if lstrip == 0:
            self._piece_cache[(token, special)] = piece
        return piece

    def detokenize(self, tokens: Sequence[int], special: bool = False,
                   remove_special: bool = False) -> bytes:
        """The bytes of ``tokens`` as llama.cpp joins them (``llama_detokenize``)."""
        n_tokens = len(tokens)
        if n_tokens == 0:
            return b""
        n_vocab = self.n_tokens
        for t in tokens:
            if not 0 <= t < n_vocab:
                raise ValueError(f"token id {t} is outside the vocabulary (0..{n_vocab - 1})")
        arr = (capi.llama_token * n_tokens)(*tokens)
        cap = max(16, n_tokens * 8)
        buf = ctypes.create_string_buffer(cap)
        n = capi.llama_detokenize(self.ptr, arr, n_tokens, buf, cap, remove_special, special)
        if n < 0:
            cap = -n
            buf = ctypes.create_string_buffer(cap)
            n = capi.llama_detokenize(self.ptr, arr, n_tokens, buf, cap, remove_special, special)
        return buf.raw[:n]

    def _check(self, token: int) -> None:
        if not 0 <= token < self.n_tokens:
            raise ValueError(f"token id {token} is outside the vocabulary (0..{self.n_tokens - 1})")
