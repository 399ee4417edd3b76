"""Native samplers and the sampler chain.

Every llama.cpp sampler has a factory here returning an owned :class:`Sampler`.
:meth:`SamplerChain.add` moves it into the chain (``llama_sampler_chain_add`` takes
ownership), after which the :class:`Sampler` object is empty and its finalizer frees
nothing. The chain samples inside C: ``sample(ctx, i)`` is one ctypes call per token.
"""

from __future__ import annotations

import ctypes
import math
import struct
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .. import _log, capi
from ..errors import ClosedError, SamplerError
from . import _native
from ._handle import NativeHandle

if TYPE_CHECKING:  # context.py imports this module (for sample_failure)
    from .context import Context
    from .vocab import Vocab

__all__ = ["GreedyGroup", "Sampler", "SamplerChain", "TopKGroup", "biased_argmax", "sample_failure"]

DEFAULT_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: a random seed

#: why nothing could be sampled when every candidate's logit was -inf or NaN (native/step.c)
NOTHING_TO_SAMPLE = ("nothing can be sampled: every token's logit is -inf or NaN after logit_bias, "
                     "the logits processors and the grammar (or the model's logits hold NaN/+inf)")
#: why nothing could be sampled when the chain selected no token
NO_TOKEN_SELECTED = "the sampler chain selected no token (a grammar that allows none?)"


def sample_failure(code: int) -> Exception:
    """The exception for a native sampling answer that is no token: a code of
    ``native/step.c`` (``NOT_FINITE``, ``NO_TOKEN``, ``NO_LOGITS``, ``NO_MEMORY``) or a
    negative token that a rows function wrote (``TOKEN_NOT_FINITE``, ``LLAMA_TOKEN_NULL``)."""
    if code in (_native.NOT_FINITE, _native.TOKEN_NOT_FINITE):
        return SamplerError(NOTHING_TO_SAMPLE)
    if code == _native.NO_LOGITS:
        return IndexError("no logits for that output of the last decode")
    if code == _native.NO_MEMORY:
        return MemoryError("sampling: out of memory")
    return SamplerError(NO_TOKEN_SELECTED)


def top_p_cut(p: float, min_keep: int = 1) -> int:
    """The code by which the native step knows a chain's leading top-p (``native/top_p.c``:
    llama.cpp's result without its sort of the whole row): minus the bits of ``p`` as a C
    float; 0 where that does not apply (``p`` not in (0, 1) as a float, ``min_keep`` > 1)."""
    if not 0.0 < p < 1.0 or min_keep > 1:
        return 0
    (bits,) = struct.unpack("<i", struct.pack("<f", p))
    return -bits if 0 < bits < 0x3F800000 else 0


def _made(ptr: Any, what: str, mark: int | None = None) -> Sampler:
    if not ptr:
        detail = _log.errors_since(mark) if mark is not None else ""
        raise SamplerError(f"could not create the {what} sampler" + (f": {detail}" if detail else ""))
    return Sampler(ptr)


def _cstrings(items: Sequence[str]) -> Any:
    arr = (ctypes.c_char_p * max(1, len(items)))()
    for i, s in enumerate(items):
        arr[i] = s.encode()
    return arr


_fn: list[Any] = []


def _sample_fn() -> Any:
    if not _fn:
        _fn.append(_native.sample())
    return _fn[0]


class Sampler(NativeHandle[Any]):
    """One native sampler (``llama_sampler *``)."""

    _kind = "sampler"

    def __init__(self, ptr: Any) -> None:
        super().__init__(ptr, capi.llama_sampler_free)
        self.top_k_value = 0  # k of a top-k sampler (0: another kind)
        #: what the native step may do itself when this sampler leads a chain: k of a top-k,
        #: a top-p's :func:`top_p_cut` (negative), 0: nothing
        self.host_cut = 0
        self.window = False  # penalties whose window the native step reads (host only)
        #: changes no logit until its chain accepts a token (penalties: an empty window)
        self.idle_until_accept = False

    def release(self) -> Any:
        """Give up ownership: return the pointer and leave this object empty."""
        ptr = self.ptr
        self._box.ptr = None
        self._finalizer.detach()
        return ptr

    @property
    def name(self) -> str:
        raw = capi.llama_sampler_name(self.ptr)
        return raw.decode() if raw else ""

    # --- factories, one per llama.cpp sampler -------------------------------------------

    @classmethod
    def greedy(cls) -> Sampler:
        return _made(capi.llama_sampler_init_greedy(), "greedy")

    @classmethod
    def dist(cls, seed: int = DEFAULT_SEED) -> Sampler:
        return _made(capi.llama_sampler_init_dist(seed & 0xFFFFFFFF), "dist")

    @classmethod
    def top_k(cls, k: int) -> Sampler:
        made = _made(capi.llama_sampler_init_top_k(k), "top-k")
        made.top_k_value = made.host_cut = max(0, k)
        return made

    @classmethod
    def top_p(cls, p: float, min_keep: int = 1) -> Sampler:
        made = _made(capi.llama_sampler_init_top_p(p, min_keep), "top-p")
        made.host_cut = top_p_cut(p, min_keep)
        return made

    @classmethod
    def min_p(cls, p: float, min_keep: int = 1) -> Sampler:
        return _made(capi.llama_sampler_init_min_p(p, min_keep), "min-p")

    @classmethod
    def typical(cls, p: float, min_keep: int = 1) -> Sampler:
        return _made(capi.llama_sampler_init_typical(p, min_keep), "typical")

    @classmethod
    def temp(cls, t: float) -> Sampler:
        return _made(capi.llama_sampler_init_temp(t), "temperature")

    @classmethod
    def temp_ext(cls, t: float, delta: float, exponent: float) -> Sampler:
        return _made(capi.llama_sampler_init_temp_ext(t, delta, exponent), "dynamic temperature")

    @classmethod
    def xtc(cls, p: float, t: float, min_keep: int = 1, seed: int = DEFAULT_SEED) -> Sampler:
        return _made(capi.llama_sampler_init_xtc(p, t, min_keep, seed & 0xFFFFFFFF), "XTC")

    @classmethod
    def top_n_sigma(cls, n: float) -> Sampler:
        return _made(capi.llama_sampler_init_top_n_sigma(n), "top-n-sigma")

    @classmethod
    def adaptive_p(cls, target: float, decay: float, seed: int = DEFAULT_SEED) -> Sampler:
        return _made(capi.llama_sampler_init_adaptive_p(target, decay, seed & 0xFFFFFFFF), "adaptive-p")

    @classmethod
    def mirostat(cls, n_vocab: int, tau: float, eta: float, m: int = 100,
                 seed: int = DEFAULT_SEED) -> Sampler:
        return _made(capi.llama_sampler_init_mirostat(n_vocab, seed & 0xFFFFFFFF, tau, eta, m), "mirostat")

    @classmethod
    def mirostat_v2(cls, tau: float, eta: float, seed: int = DEFAULT_SEED) -> Sampler:
        return _made(capi.llama_sampler_init_mirostat_v2(seed & 0xFFFFFFFF, tau, eta), "mirostat v2")

    @classmethod
    def penalties(cls, n_vocab: int, last_n: int = 64, repeat: float = 1.0, freq: float = 0.0,
                  present: float = 0.0, window: bool = False) -> Sampler:
        """llama.cpp's penalties; ``window=True``: wrapped so that the native step sees the
        tokens it penalises (``native/penalties.c``): followed by a top-k, a chain then
        takes its candidates from the k + window largest logits and the window's tokens,
        the same result without a lookup per vocabulary entry; such a sampler has no GPU
        half (a chain that leads with it samples on the host)."""
        init = _native.penalties_new if window else capi.llama_sampler_init_penalties
        made = _made(init(n_vocab, last_n, repeat, freq, present), "penalties")
        made.idle_until_accept = True  # it penalises the tokens accepted so far: none yet
        made.window = window
        return made

    @classmethod
    def dry(cls, vocab: Vocab, multiplier: float = 0.0, base: float = 1.75,
            allowed_length: int = 2, penalty_last_n: int = -1,
            seq_breakers: Sequence[str] = ("\n", ":", '"', "*")) -> Sampler:
        arr = _cstrings(seq_breakers)
        ptr = capi.llama_sampler_init_dry(vocab.ptr, multiplier, base, allowed_length,
                                          penalty_last_n, arr, len(seq_breakers))
        return _made(ptr, "DRY")

    @classmethod
    def logit_bias(cls, n_vocab: int, bias: Mapping[int, float]) -> Sampler:
        arr = (capi.llama_logit_bias * max(1, len(bias)))()
        for slot, (tok, b) in zip(arr, bias.items()):
            if not 0 <= int(tok) < n_vocab:
                raise ValueError(f"logit_bias token {tok} is outside the vocabulary")
            slot.token, slot.bias = int(tok), float(b)
        return _made(capi.llama_sampler_init_logit_bias(n_vocab, len(bias), arr), "logit-bias")

    @classmethod
    def grammar(cls, vocab: Vocab, grammar: str, root: str = "root") -> Sampler:
        """A GBNF grammar; an invalid grammar raises :class:`SamplerError` here."""
        mark = _log.error_mark()
        ptr = capi.llama_sampler_init_grammar(vocab.ptr, grammar.encode(), root.encode())
        return _made(ptr, "grammar", mark)

    @classmethod
    def grammar_without_vocab(cls, grammar: bytes, root: bytes = b"root") -> Sampler:
        """A GBNF grammar parsed by llama.cpp with no vocabulary (a NULL ``llama_vocab *``),
        to check a grammar without a model: llama.cpp parses it, checks the start rule and
        left recursion and builds the first parse stacks. ``grammar`` must hold no token
        reference written ``<name>`` (the parser would read the missing vocabulary; token ids
        ``<[N]>`` are fine). A grammar llama.cpp refuses raises :class:`SamplerError`; its
        reason is in the native log (:func:`llama_binding._log.errors_since`)."""
        mark = _log.error_mark()
        return _made(capi.llama_sampler_init_grammar(None, grammar, root), "grammar", mark)

    @classmethod
    def grammar_lazy(cls, vocab: Vocab, grammar: str, trigger_patterns: Sequence[str] = (),
                     trigger_tokens: Sequence[int] = (), root: str = "root") -> Sampler:
        """A grammar that starts constraining once a trigger pattern or token appears."""
        pats = _cstrings(trigger_patterns)
        toks = (capi.llama_token * max(1, len(trigger_tokens)))(*trigger_tokens)
        mark = _log.error_mark()
        ptr = capi.llama_sampler_init_grammar_lazy_patterns(
            vocab.ptr, grammar.encode(), root.encode(), pats, len(trigger_patterns),
            toks, len(trigger_tokens))
        return _made(ptr, "lazy grammar", mark)

    @classmethod
    def infill(cls, vocab: Vocab) -> Sampler:
        return _made(capi.llama_sampler_init_infill(vocab.ptr), "infill")


class GreedyGroup(NativeHandle[Any]):
    """Greedy samplers for the backend that share one argmax (``native/batch_greedy.c``).

    Attach a chain of one :meth:`sampler` to each sequence of a context: a decode then
    computes the argmax of every output row in one node and brings back one token per
    sequence (``Context.sampled_rows``) instead of each row's logits. llama.cpp's own greedy
    sampler adds a node and two copies per row and still copies every row's logits.
    """

    _kind = "greedy group"

    def __init__(self) -> None:
        ptr = _native.greedy_group_new()
        if not ptr:
            raise MemoryError("could not create a greedy group")
        super().__init__(ptr, _native.greedy_group_release)

    def sampler(self) -> Sampler:
        """A new greedy sampler of this group (it keeps the group's native part alive)."""
        return _made(_native.greedy_sampler_new(self.ptr), "batched greedy")


class TopKGroup(NativeHandle[Any]):
    """Top-k samplers for the backend that share one staged top-k (``native/batch_topk.c``).

    Attach a chain of one :meth:`sampler` to a sequence: its decodes then bring back the
    :attr:`k` largest logits of each of its output rows and their token ids instead of the
    row, and a request's own chain runs over those on the host (``Context.sample_rows``,
    ``Context.sample_decode``) with the same result as over the whole row, provided the chain
    begins with a top-k of at most :attr:`k`. The attached sampler does not depend on the
    request's options: changing them attaches nothing, so llama.cpp keeps its graphs.
    """

    _kind = "top-k group"
    #: the candidates a row keeps (a chain whose top-k is larger cannot use the group)
    K = 64

    def __init__(self, k: int = K) -> None:
        ptr = _native.topk_group_new(k)
        if not ptr:
            raise ValueError(f"a top-k group keeps 1 to 512 candidates, not {k}")
        super().__init__(ptr, _native.topk_group_release)
        self.k = k

    def sampler(self) -> Sampler:
        """A new top-k sampler of this group (it keeps the group's native part alive)."""
        return _made(_native.topk_sampler_new(self.ptr), "batched top-k")


class SamplerChain(NativeHandle[Any]):
    """A chain of samplers, applied in order, that picks one token per call."""

    _kind = "sampler chain"

    def __init__(self, samplers: Sequence[Sampler] = (), no_perf: bool = True) -> None:
        params = capi.llama_sampler_chain_default_params()
        params.no_perf = no_perf
        ptr = capi.llama_sampler_chain_init(params)
        if not ptr:
            raise SamplerError("could not create a sampler chain")
        super().__init__(ptr, capi.llama_sampler_free)
        # (ctypes.cast per read cost 0.85 us: 55 us a step of a batch of 64 sampled rows)
        self._address = int(ctypes.cast(ptr, ctypes.c_void_p).value or 0)
        self._ctx: weakref.ref[Context] | None = None  # the context it is attached to
        self._seq_id = -1
        self._picked = ctypes.c_int32(0)  # the token of sample(): the C call releases the GIL
        self._picked_ref = ctypes.byref(self._picked)
        #: k of a top-k sampler that comes first in the chain, else 0: ``Context.sample_rows``
        #: then takes the k candidates straight from the logits (same result, far less work)
        self.leading_top_k = 0
        #: the same for the first token a chain samples, before it accepts any: k of a top-k
        #: that follows only samplers that change nothing until then (penalties, whose window
        #: is still empty), else :attr:`leading_top_k` (a chat's first token with a repeat
        #: penalty: 40 candidates instead of llama.cpp's pass over the whole vocabulary)
        self.first_top_k = 0
        #: what the native step cuts the candidates to before the chain runs: the leading
        #: sampler's ``host_cut`` (a top-k's k; a top-p's code: llama.cpp's top-p without
        #: sorting the whole row, then the chain's other samplers), and the same for a
        #: chain's first token (``first_top_k``, or a leading top-p's code)
        self.leading_cut = 0
        self.first_cut = 0
        #: the leading sampler has no backend (GPU) half: never attach this chain
        self.host_only = False
        self._idle_so_far = True  # every sampler added so far idle until an accept
        #: for a chain of only a logit bias and greedy: the bias's token ids and values, so
        #: that :meth:`sample` takes the biased row's argmax itself (set by whoever built the
        #: chain from its plan; llama.cpp's chain builds a candidate per vocabulary entry
        #: first: 71 against 18 us a row of 49k logits, bench/biased_argmax.py)
        self.greedy_bias: tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]] | None = None
        for s in samplers:
            self.add(s)

    def _attached_to(self, ctx: Context | None, seq_id: int) -> None:
        """Called by :meth:`Context.attach_sampler` / ``detach_sampler``."""
        self._ctx = None if ctx is None else weakref.ref(ctx)
        self._seq_id = seq_id

    @property
    def address(self) -> int:
        """The ``llama_sampler *`` as an int (for ``Context.sample_rows``); raises
        :class:`ClosedError` after :meth:`close`."""
        self.ptr  # noqa: B018 (the closed check)
        return self._address

    @property
    def attached(self) -> bool:
        """True while a context samples with this chain on its backend."""
        return self._ctx is not None and self._ctx() is not None

    def close(self) -> None:
        """Detach from its context (if attached), then free."""
        ctx = self._ctx() if self._ctx is not None else None
        if ctx is not None:
            ctx.detach_sampler(self._seq_id)
        super().close()

    def add(self, sampler: Sampler) -> SamplerChain:
        """Move ``sampler`` into the chain (the chain owns it from now on)."""
        if sampler.closed:
            raise ClosedError("this sampler is closed or already in a chain")
        n = capi.llama_sampler_chain_n(self.ptr)
        leading = n == 0
        if leading:
            self.leading_top_k, self.leading_cut = sampler.top_k_value, sampler.host_cut
            self.host_only = sampler.window
        elif n == 1 and self.host_only and sampler.top_k_value > 0:  # penalties (their window), then top-k
            self.leading_cut = _native.CUT_PENALTIES | sampler.top_k_value
        if self._idle_so_far:
            self.first_top_k = sampler.top_k_value
            self.first_cut = sampler.host_cut if leading else sampler.top_k_value
            self._idle_so_far = sampler.idle_until_accept
        capi.llama_sampler_chain_add(self.ptr, sampler.release())
        return self

    def __len__(self) -> int:
        return int(capi.llama_sampler_chain_n(self.ptr))

    def names(self) -> list[str]:
        chain = self.ptr
        out = []
        for i in range(len(self)):
            raw = capi.llama_sampler_name(capi.llama_sampler_chain_get(chain, i))
            out.append(raw.decode() if raw else "")
        return out

    def sample(self, ctx: Context, i: int = -1) -> int:
        """Sample from output ``i`` of the last decode and accept the token; raises
        :class:`SamplerError` when nothing can be sampled (every logit -inf or NaN, or the
        chain selected nothing) and IndexError when output ``i`` has no logits, where
        ``llama_sampler_sample`` would abort or answer an arbitrary token."""
        if self.greedy_bias is not None and self._ctx is None:  # (attached: the backend picked)
            self.ptr  # noqa: B018 (the closed check)
            tok = biased_argmax(ctx.logits(i), *self.greedy_bias)
            if tok >= 0:
                return tok  # (a logit bias and greedy accept nothing)
        code = _sample_fn()(ctx.ptr, self.ptr, i, self.host_cut, self._picked_ref)
        if code:
            raise sample_failure(code)
        return self._picked.value

    @property
    def host_cut(self) -> int:
        """:attr:`leading_cut` for a chain sampling on the host (0 while attached: the
        backend's samplers then ran first)."""
        return 0 if self._ctx is not None else self.leading_cut

    def accept(self, token: int) -> None:
        """Tell the chain that ``token`` was chosen (penalties, grammars advance). A grammar
        of the chain that does not allow ``token`` raises :class:`SamplerError`: llama.cpp
        would throw across its C API and end the process."""
        chain = self.ptr
        for i in range(len(self)):
            sampler = capi.llama_sampler_chain_get(chain, i)
            raw = capi.llama_sampler_name(sampler)
            if raw == b"grammar" and not _grammar_allows(sampler, token):
                raise SamplerError(f"token {token} is not allowed by the chain's grammar here: accepting it "
                                   "would leave the grammar with nothing to match")
        capi.llama_sampler_accept(chain, token)

    def reset(self) -> None:
        capi.llama_sampler_reset(self.ptr)

    @property
    def seed(self) -> int:
        return int(capi.llama_sampler_get_seed(self.ptr))


def _grammar_allows(grammar: Any, token: int) -> bool:
    """Whether a grammar sampler leaves ``token`` a finite logit (one candidate, applied)."""
    cand = capi.llama_token_data(token, 0.0, 0.0)
    arr = capi.llama_token_data_array(ctypes.pointer(cand), 1, -1, False)
    capi.llama_sampler_apply(grammar, ctypes.byref(arr))
    return math.isfinite(arr.data[0].logit)


def biased_argmax(row: npt.NDArray[np.float32], ids: npt.NDArray[np.int32],
                  bias: npt.NDArray[np.float32]) -> int:
    """What llama.cpp's logit bias then greedy pick from ``row`` (``bias[j]`` added to
    ``row[ids[j]]``, in float32; the first of equal largest logits), without building a
    candidate per vocabulary entry; -1 where the chain must decide (a NaN, no finite pick)."""
    j = int(row.argmax())
    best = row[j]
    if not math.isfinite(best):  # a NaN (argmax's pick) or every logit -inf
        return -1
    biased = row[ids] + bias
    if j in ids:  # the largest unbiased logit is unknown: bias a copy of the whole row
        full = row.copy()
        full[ids] = biased
        j = int(full.argmax())
        return j if math.isfinite(full[j]) else -1
    top = biased.max(initial=-math.inf)
    if top < best:
        return j
    if not math.isfinite(top):  # (NaN too)
        return -1
    k = int(ids[biased == top].min())
    return k if top > best else min(j, k)
