"""Whether llama.cpp's grammar engine takes a text in full, token by token (shared by the
grammar and compatibility tests)."""

from __future__ import annotations

import ctypes
import math

from llama_binding import capi
from llama_binding.core import Sampler, Vocab

__all__ = ["Acceptor"]


class Acceptor:
    """Whether llama.cpp's grammar engine accepts a text in full: each token of the text
    must keep its logit, and end-of-text must be allowed after the last one."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    def __call__(self, gbnf: str, text: str) -> bool:
        eos = self.vocab.eos()
        with Sampler.grammar(self.vocab, gbnf) as smpl:
            for tok in [*self.vocab.tokenize(text, add_special=False), eos]:
                data = (capi.llama_token_data * 1)(capi.llama_token_data(tok, 0.0, 0.0))
                cur = capi.llama_token_data_array(data, 1, -1, False)
                capi.llama_sampler_apply(smpl.ptr, ctypes.byref(cur))
                if math.isinf(data[0].logit):
                    return False
                if tok != eos:
                    capi.llama_sampler_accept(smpl.ptr, tok)
        return True
