"""The vocabulary of a model: tokenize, detokenize, pieces, special tokens.

A ``llama_vocab *`` belongs to its model and is never freed on its own; :class:`Vocab`
holds the :class:`~llama_binding.core.model.Model` so the model outlives it, and refuses use
once the model is closed.
"""

from __future__ import annotations

import ctypes
import numbers
import threading
from collections.abc import Iterable
from typing import Any

from .. import capi
from ..capi import _loader
from ..errors import TokenizeError
from .model import Model

__all__ = ["Vocab", "text_bytes"]

_INT32_MIN = -(2**31)
_PIECE_BUF = 256  # bytes; a longer piece is asked for again with its size
_piece_fn: Any = None


def _token_to_piece() -> Any:
    """``llama_token_to_piece`` keeping the GIL: a call of a microsecond (llama.cpp keeps
    every token's text), made per new token on the event loop's thread of an
    :class:`~llama_binding.AsyncLlama`; releasing the GIL there meant waiting for the
    engine thread's Python to give it back."""
    global _piece_fn
    if _piece_fn is None:
        fn = _loader.load_keeping_gil("llama").llama_token_to_piece
        fn.restype = ctypes.c_int32
        fn.argtypes = [ctypes.POINTER(capi.llama_vocab), ctypes.c_int32, ctypes.c_char_p, ctypes.c_int32,
                       ctypes.c_int32, ctypes.c_bool]
        _piece_fn = fn
    return _piece_fn


class Vocab:
    """Tokenizer of ``model`` (thread-safe, like llama.cpp's tokenizer API)."""

    __slots__ = ("_buffers", "_eog", "_model", "_n_tokens", "_piece_cache", "_vptr")

    def __init__(self, model: Model) -> None:
        self._model = model
        self._vptr = capi.llama_model_get_vocab(model.ptr)  # lives as long as the model
        self._piece_cache: dict[tuple[int, bool], bytes] = {}
        self._eog: dict[int, bool] = {}
        self._n_tokens = int(capi.llama_vocab_n_tokens(self._vptr))  # fixed for the model's life
        self._buffers = threading.local()

    @property
    def ptr(self) -> Any:
        self._model.ptr  # noqa: B018 - raises ClosedError once the model is closed
        return self._vptr

    @property
    def n_tokens(self) -> int:
        self._model.ptr  # noqa: B018 - raises ClosedError once the model is closed
        return self._n_tokens

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

    def known_eog(self, token: int) -> bool | None:
        """:meth:`is_eog`'s memoised answer, None before the first (no native call)."""
        return self._eog.get(token)

    def known_piece(self, token: int) -> bytes | None:
        """:meth:`token_to_piece`'s cached bytes (default form), None before the first read."""
        return self._piece_cache.get((token, False))

    def is_control(self, token: int) -> bool:
        return bool(capi.llama_vocab_is_control(self.ptr, token))

    def special_tokens(self) -> dict[str, tuple[int, bool, bool]]:
        """Control and unknown tokens by text: ``{text: (id, lstrip, rstrip)}``."""
        special = capi.LLAMA_TOKEN_ATTR_CONTROL | capi.LLAMA_TOKEN_ATTR_UNKNOWN
        lstrip, rstrip = capi.LLAMA_TOKEN_ATTR_LSTRIP, capi.LLAMA_TOKEN_ATTR_RSTRIP
        found = {}
        for t in range(self.n_tokens):
            attr = int(capi.llama_vocab_get_attr(self.ptr, t))
            if attr & special:
                found[self.text(t).decode("utf-8", "replace")] = (t, bool(attr & lstrip), bool(attr & rstrip))
        return found

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

    def tokenize(self, text: bytes | str, add_special: bool = True, parse_special: bool = False,
                 what: str = "text") -> list[int]:
        """Tokens of ``text``; ``add_special`` adds BOS/EOS as the model asks. ``what`` names
        the argument in error messages (``"prompt"``, ...).

        A ``str`` is encoded as UTF-8 (lone surrogates as :func:`text_bytes` says). Bytes
        that are not valid UTF-8 survive a round trip through :meth:`detokenize` only with
        a vocabulary that has byte tokens for them: an SPM vocabulary with byte fallback
        (``<0xFF>``, llama and mistral models) keeps them; a byte-level BPE vocabulary
        (GPT-2, SmolLM2, Llama 3, Qwen) does not: llama.cpp's BPE pre-tokenizer first
        decodes the text, turning each invalid sequence into U+FFFD, so ``b"\xff\xfe"``
        comes back as ``"\ufffd\ufffd"`` encoded (``b"\xef\xbf\xbd\xef\xbf\xbd"``).
        """
        if isinstance(text, str):
            text = text_bytes(text, what)
        if not isinstance(text, (bytes, bytearray)):
            raise TypeError(f"{what} must be bytes or str, not {type(text).__name__}")
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
        tokens = list(buf[:n])
        if tokens and min(tokens) < 0:
            # a vocabulary without an unknown token (WordPiece, T5) answers -1 for text it
            # cannot map; that id would crash or corrupt a decode
            at = next(i for i, t in enumerate(tokens) if t < 0)
            raise TokenizeError(f"{what} holds text that this vocabulary cannot tokenize (token {at} has "
                                "no id and the vocabulary has no unknown token)")
        return tokens

    def token_to_piece(self, token: int, special: bool = False, lstrip: int = 0) -> bytes:
        """The bytes of one token (cached: this sits in the per-token loop)."""
        if lstrip == 0:
            cached = self._piece_cache.get((token, special))
            if cached is not None:
                return cached
        ptr = self.ptr
        if not 0 <= token < self._n_tokens:
            self._check(token)
        buf = getattr(self._buffers, "piece", None)  # one per thread
        if buf is None:
            buf = self._buffers.piece = ctypes.create_string_buffer(_PIECE_BUF)
        n = _token_to_piece()(ptr, token, buf, _PIECE_BUF, lstrip, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = capi.llama_token_to_piece(self.ptr, token, buf, len(buf), lstrip, special)
        piece = buf.raw[:n]
        if lstrip == 0:
            self._piece_cache[(token, special)] = piece
        return piece

    def detokenize(self, tokens: Iterable[int], special: bool = False,
                   remove_special: bool = False, what: str = "tokens") -> bytes:
        """The bytes of ``tokens`` as llama.cpp joins them (``llama_detokenize``): raw bytes,
        not necessarily valid UTF-8 (a token may hold part of a character). Bytes that
        :meth:`tokenize` turned into U+FFFD (invalid UTF-8 with a byte-level BPE
        vocabulary) come back as U+FFFD's UTF-8 encoding, not as the original bytes."""
        toks = self.check_tokens(tokens, what)
        n_tokens = len(toks)
        if n_tokens == 0:
            return b""
        arr = (capi.llama_token * n_tokens)(*toks)
        cap = max(16, n_tokens * 8)
        buf = ctypes.create_string_buffer(cap)
        n = capi.llama_detokenize(self.ptr, arr, n_tokens, buf, cap, remove_special, special)
        if n < 0:
            cap = -n
            buf = ctypes.create_string_buffer(cap)
            n = capi.llama_detokenize(self.ptr, arr, n_tokens, buf, cap, remove_special, special)
        return buf.raw[:n]

    def check_tokens(self, tokens: Iterable[int], what: str = "tokens") -> list[int]:
        """``tokens`` as a list of ints, each a token id of this vocabulary (numpy integers
        are fine); anything else raises TypeError or ValueError naming ``what`` and the
        position of the offending item."""
        if isinstance(tokens, (str, bytes, bytearray)):
            raise TypeError(f"{what} must be a list of token ids, not {type(tokens).__name__} (text)")
        try:
            items = list(tokens)
        except TypeError:
            raise TypeError(f"{what} must be a list of token ids, not {type(tokens).__name__}") from None
        n_vocab = self.n_tokens
        if items and set(map(type, items)) == {int} and 0 <= min(items) and max(items) < n_vocab:
            return items  # (the common case, without a Python step per token: 15 us for 512)
        out: list[int] = []
        for i, t in enumerate(items):
            if type(t) is not int:
                if isinstance(t, bool) or not isinstance(t, numbers.Integral):
                    raise TypeError(f"{what}[{i}] must be a token id (an int), "
                                    f"not {type(t).__name__} ({t!r})")
                t = int(t)
            if not 0 <= t < n_vocab:
                raise ValueError(f"{what}[{i}] = {t} is not a token id of this vocabulary (0..{n_vocab - 1})")
            out.append(t)
        return out

    def _check(self, token: int) -> None:
        if not 0 <= token < self.n_tokens:
            raise ValueError(f"token id {token} is outside the vocabulary (0..{self.n_tokens - 1})")


def text_bytes(text: str, what: str = "text") -> bytes:
    """``text`` as UTF-8, with what a ``str`` can hold that UTF-8 cannot: a surrogate pair
    written as two code points (``"\ud83d\ude00"``, as UTF-16 sources give) becomes the
    character it stands for, and a lone ``\udc80``-``\udcff`` becomes the raw byte it
    escapes (Python's ``surrogateescape``, as ``os.fsdecode`` and
    ``bytes.decode("utf-8", "surrogateescape")`` make them). Any other lone surrogate is no
    text at all: :class:`~llama_binding.errors.TokenizeError` (a ValueError) names ``what``
    and the position."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    try:
        return joined.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        bad = joined[exc.start]
        raise TokenizeError(
            f"{what} holds a lone surrogate {bad!r} at position {text.find(bad)}: that is no Unicode text "
            "(a broken UTF-16 pair?); fix the string, or pass bytes") from None
