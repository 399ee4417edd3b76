"""llama-cpp-python's tokenizer objects: :class:`LlamaTokenizer` (the model's own
vocabulary, what ``Llama.tokenizer()`` returns) and :class:`LlamaHFTokenizer` (a Hugging
Face tokenizer, for ``Llama(tokenizer=...)``), both :class:`BaseLlamaTokenizer`.

Tokens are bytes in and bytes out, as in llama-cpp-python: ``tokenize(b"text")`` and
``detokenize(ids)`` (``encode``/``decode`` take and give ``str``).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

from .core import Model, ModelParams
from .core.vocab import Vocab

if TYPE_CHECKING:
    from .llama import Llama

__all__ = ["BaseLlamaTokenizer", "LlamaHFTokenizer", "LlamaTokenizer"]


class BaseLlamaTokenizer(abc.ABC):
    """What ``Llama(tokenizer=...)`` takes: text bytes to token ids and back."""

    @abc.abstractmethod
    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        """The token ids of ``text`` (UTF-8 bytes); ``add_bos`` adds the model's BOS,
        ``special`` parses special-token text (``<|im_start|>``) as those tokens."""

    @abc.abstractmethod
    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        """The bytes of ``tokens``; ``prev_tokens`` are the tokens before them (a tokenizer
        whose pieces depend on what precedes them uses them), ``special`` renders special
        tokens as their text."""


class LlamaTokenizer(BaseLlamaTokenizer):
    """The model's own vocabulary (llama.cpp's tokenizer) of a :class:`~llama_binding.Llama`,
    or of a GGUF file with :meth:`from_ggml_file` (vocabulary only, no weights)."""

    def __init__(self, llama: Llama) -> None:
        self._vocab: Any = llama.engine  # its tokenize/detokenize wait for a close in another thread

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        return list(self._vocab.tokenize(text, add_special=add_bos, parse_special=special))

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        return bytes(self._vocab.detokenize(tokens, special=special))

    def encode(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        return self.tokenize(text.encode("utf-8", errors="ignore"), add_bos=add_bos, special=special)

    def decode(self, tokens: Sequence[int]) -> str:
        return self.detokenize(tokens).decode("utf-8", errors="ignore")

    @classmethod
    def from_ggml_file(cls, path: Union[str, os.PathLike[str]]) -> LlamaTokenizer:
        """The tokenizer of a GGUF file, loading its vocabulary only."""
        tokenizer = cls.__new__(cls)
        model = Model(path, ModelParams(vocab_only=True))
        tokenizer._vocab = Vocab(model)  # holds the model, so the vocabulary outlives nothing
        return tokenizer


class LlamaHFTokenizer(BaseLlamaTokenizer):
    """A Hugging Face ``transformers`` tokenizer (``hf_tokenizer``) as a llama tokenizer."""

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf_tokenizer = hf_tokenizer

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        text_str = text.decode("utf-8", errors="ignore")
        return list(self.hf_tokenizer.encode(text_str, add_special_tokens=special))

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        def decode(ids: Sequence[int]) -> bytes:
            text = self.hf_tokenizer.decode(list(ids), skip_special_tokens=not special)
            return str(text).encode("utf-8", "ignore")

        if prev_tokens is None:
            return decode(tokens)
        return decode([*prev_tokens, *tokens])[len(decode(prev_tokens)):]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str) -> LlamaHFTokenizer:
        """``transformers.AutoTokenizer.from_pretrained(...)`` wrapped (needs ``transformers``)."""
        try:
            from transformers import AutoTokenizer  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise ImportError("LlamaHFTokenizer.from_pretrained needs the transformers package "
                              "(pip install transformers)") from None
        return cls(AutoTokenizer.from_pretrained(pretrained_model_name_or_path=pretrained_model_name_or_path))
