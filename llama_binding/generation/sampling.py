"""Sampling options -> a native sampler chain.

:class:`SamplingParams` holds the options with llama-cpp-python's names and defaults.
:func:`plan` turns them into an ordered list of :class:`SamplerStep` (pure logic, tested
without a model); :func:`build_chain` makes the native chain from a plan. The order follows
llama.cpp's own tools: logit bias, grammar, penalties, DRY, top-n-sigma, top-k, typical,
top-p, min-p, XTC, temperature, then the final pick (greedy, mirostat or a seeded draw).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..core.context import Context
from ..core.sampler import DEFAULT_SEED, Sampler, SamplerChain
from ..core.vocab import Vocab
from ..errors import SamplerError
from ..grammar import checked

__all__ = ["BACKEND_STEPS", "CHAT_TEMPERATURE", "ChainSlot", "SamplerStep", "SamplingParams", "build_chain",
           "is_plain_greedy", "plan"]

_VOCAB_STEPS = frozenset({"grammar", "grammar_lazy", "dry", "infill"})

#: samplers that this llama.cpp can run inside the decode graph ("backend sampling")
BACKEND_STEPS = frozenset({"logit_bias", "penalties", "greedy", "dist", "top_k", "top_p", "min_p",
                           "temp", "temp_ext"})


#: ``create_chat_completion``'s temperature (llama-cpp-python's chat default); every other
#: sampling default of the facades' signatures is :class:`SamplingParams`' own
CHAT_TEMPERATURE = 0.2


@dataclass(frozen=True)
class SamplingParams:
    """Sampling options; names and defaults follow llama-cpp-python's ``create_completion``."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    mirostat_mode: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    top_n_sigma: float = -1.0
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1
    dry_sequence_breakers: Sequence[str] = ("\n", ":", '"', "*")
    min_keep: int = 1
    seed: int | None = None
    logit_bias: Mapping[int, float] | None = None
    grammar: str | None = None
    grammar_root: str = "root"
    grammar_trigger_patterns: Sequence[str] = field(default_factory=tuple)
    grammar_trigger_tokens: Sequence[int] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # (a plain float or int is checked without the numbers ABCs: every request builds
        # these, on the way to its first token)
        for name in _FLOAT_OPTIONS:
            value = getattr(self, name)
            if type(value) is float and math.isfinite(value):
                continue
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in _INT_OPTIONS:
            if type(getattr(self, name)) is not int:
                object.__setattr__(self, name, _int_option(name, getattr(self, name)))
        if self.seed is not None and type(self.seed) is not int:
            object.__setattr__(self, "seed", _int_option("seed", self.seed, " or None"))
        if self.mirostat_mode not in (0, 1, 2):
            raise ValueError(f"mirostat_mode must be 0, 1 or 2, got {self.mirostat_mode!r}")
        if self.repeat_penalty <= 0:
            raise ValueError("repeat_penalty must be > 0 (1.0 disables it)")
        if self.min_keep < 1:
            raise ValueError("min_keep must be >= 1")
        if self.logit_bias is not None:
            object.__setattr__(self, "logit_bias", _logit_bias(self.logit_bias))
        if self.grammar is not None and not isinstance(self.grammar, str):
            raise TypeError(f"grammar must be a GBNF string or None, not {type(self.grammar).__name__}")
        if not isinstance(self.grammar_root, str):
            raise TypeError(f"grammar_root must be a str, not {type(self.grammar_root).__name__}")
        for name in ("dry_sequence_breakers", "grammar_trigger_patterns"):
            object.__setattr__(self, name, _strings(name, getattr(self, name)))
        object.__setattr__(self, "grammar_trigger_tokens", tuple(
            _int_option(f"grammar_trigger_tokens[{i}]", t)
            for i, t in enumerate(_sequence("grammar_trigger_tokens", self.grammar_trigger_tokens))))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SamplingParams:
        """Sampling options given by keyword (``create_completion``'s): an unknown name raises
        TypeError naming it; a bad value raises as the constructor does, naming the option."""
        unknown = sorted(set(options) - _OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown sampling option{'s' if len(unknown) > 1 else ''}: "
                            f"{', '.join(map(repr, unknown))}")
        return cls(**options)

    @property
    def is_greedy(self) -> bool:
        return self.temperature <= 0 and self.mirostat_mode == 0


_FLOAT_OPTIONS = ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "frequency_penalty",
                  "presence_penalty", "mirostat_tau", "mirostat_eta", "xtc_probability", "xtc_threshold",
                  "top_n_sigma", "dynatemp_range", "dynatemp_exponent", "dry_multiplier", "dry_base")
_INT_OPTIONS = ("top_k", "penalty_last_n", "mirostat_mode", "dry_allowed_length", "dry_penalty_last_n",
                "min_keep")


def _int_option(name: str, value: object, alternative: str = "") -> int:
    """``value`` as an int (numpy integers too); a float, a str or a bool is refused by name."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int{alternative}, not {type(value).__name__} ({value!r})")
    return int(value)


def _sequence(name: str, value: object) -> Sequence[object]:
    if type(value) is tuple or type(value) is list:
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list, not {type(value).__name__}")
    return value


def _strings(name: str, value: object) -> tuple[str, ...]:
    items = _sequence(name, value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, not {type(item).__name__} ({item!r})")
    return tuple(items)  # type: ignore[arg-type]


def _logit_bias(bias: object) -> dict[int, float]:
    """``logit_bias`` with int keys (OpenAI's JSON gives them as strings: "15" is token 15)
    and float values; -inf bans a token, NaN and +inf mean nothing and are refused."""
    if not isinstance(bias, Mapping):
        raise TypeError(f"logit_bias must be a mapping of token id to bias, not {type(bias).__name__}")
    out: dict[int, float] = {}
    for key, value in bias.items():
        if isinstance(key, str) and key.strip().lstrip("-").isdigit():
            tok = int(key)
        elif isinstance(key, numbers.Integral) and not isinstance(key, bool):
            tok = int(key)
        else:
            raise TypeError(f"logit_bias keys must be token ids (ints, or digit strings), got {key!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"logit_bias[{key!r}] must be a number, not {type(value).__name__} ({value!r})")
        b = float(value)
        if math.isnan(b) or b == math.inf:
            raise ValueError(f"logit_bias[{key!r}] is {b}: a bias must be a finite number, or -inf to ban "
                             "the token")
        out[tok] = b
    return out


_OPTION_NAMES = frozenset(f.name for f in fields(SamplingParams))


@dataclass(frozen=True)
class SamplerStep:
    """One sampler of a plan: the :class:`Sampler` factory name and its arguments."""

    name: str
    args: tuple[Any, ...] = ()


def _last_n(value: int, n_ctx: int, name: str) -> int:
    """``-1`` means the whole context, as in llama.cpp's tools."""
    if value != -1:
        return value
    if n_ctx <= 0:
        raise ValueError(f"{name}=-1 (the whole context) needs the context size")
    return n_ctx


def plan(p: SamplingParams, n_vocab: int, n_ctx: int = 0) -> list[SamplerStep]:
    """The samplers, in order, that implement ``p`` (no sampler that would do nothing).

    ``n_ctx`` resolves ``penalty_last_n=-1`` and ``dry_penalty_last_n=-1``.
    """
    seed = DEFAULT_SEED if p.seed is None else p.seed & 0xFFFFFFFF
    steps: list[SamplerStep] = []
    if p.logit_bias:
        banned = sum(1 for t, b in p.logit_bias.items() if b == -math.inf and 0 <= t < n_vocab)
        if banned >= n_vocab:  # caught before sampling; on a GPU the backend would pick token 0
            raise SamplerError(f"logit_bias bans every token of the vocabulary (-inf for all {n_vocab}): "
                               "nothing can be sampled")
        steps.append(SamplerStep("logit_bias", (n_vocab, dict(p.logit_bias))))
    if p.grammar is not None:
        if p.grammar_trigger_patterns or p.grammar_trigger_tokens:
            steps.append(SamplerStep("grammar_lazy", (p.grammar, tuple(p.grammar_trigger_patterns),
                                                      tuple(p.grammar_trigger_tokens), p.grammar_root)))
        else:
            steps.append(SamplerStep("grammar", (p.grammar, p.grammar_root)))
    if p.repeat_penalty != 1.0 or p.frequency_penalty != 0.0 or p.presence_penalty != 0.0:
        last_n = _last_n(p.penalty_last_n, n_ctx, "penalty_last_n")
        steps.append(SamplerStep("penalties", (n_vocab, last_n, p.repeat_penalty,
                                               p.frequency_penalty, p.presence_penalty)))
    if p.dry_multiplier > 0:
        last_n = _last_n(p.dry_penalty_last_n, n_ctx, "dry_penalty_last_n")
        steps.append(SamplerStep("dry", (p.dry_multiplier, p.dry_base, p.dry_allowed_length,
                                         last_n, tuple(p.dry_sequence_breakers))))
    if p.is_greedy:
        steps.append(SamplerStep("greedy"))
        return steps
    if p.mirostat_mode == 1:
        steps.append(SamplerStep("temp", (p.temperature,)))
        steps.append(SamplerStep("mirostat", (n_vocab, p.mirostat_tau, p.mirostat_eta, 100, seed)))
        return steps
    if p.mirostat_mode == 2:
        steps.append(SamplerStep("temp", (p.temperature,)))
        steps.append(SamplerStep("mirostat_v2", (p.mirostat_tau, p.mirostat_eta, seed)))
        return steps
    if p.top_n_sigma > 0:
        steps.append(SamplerStep("top_n_sigma", (p.top_n_sigma,)))
    if 0 < p.top_k < n_vocab:
        steps.append(SamplerStep("top_k", (p.top_k,)))
    if p.typical_p < 1.0:
        steps.append(SamplerStep("typical", (p.typical_p, p.min_keep)))
    if p.top_p < 1.0:
        steps.append(SamplerStep("top_p", (p.top_p, p.min_keep)))
    if p.min_p > 0.0:
        steps.append(SamplerStep("min_p", (p.min_p, p.min_keep)))
    if p.xtc_probability > 0.0:
        steps.append(SamplerStep("xtc", (p.xtc_probability, p.xtc_threshold, p.min_keep, seed)))
    if p.dynatemp_range > 0:
        steps.append(SamplerStep("temp_ext", (p.temperature, p.dynatemp_range, p.dynatemp_exponent)))
    else:
        steps.append(SamplerStep("temp", (p.temperature,)))
    steps.append(SamplerStep("dist", (seed,)))
    return steps


# the vocabulary from which SamplerChain.greedy_bias (numpy, ~12 us a call whatever the row)
# beats llama.cpp's chain (~1.4 ns a logit): bench/biased_argmax.py, 2.7 against 12.3 us for
# 512 logits, 71 against 18 us for 49k
_BIASED_ARGMAX_MIN_VOCAB = 16384


def build_chain(p: SamplingParams, vocab: Vocab, n_ctx: int) -> SamplerChain:
    """The native chain for ``p`` in a context of ``n_ctx`` tokens (an invalid grammar
    raises :class:`~llama_binding.errors.SamplerError` here, at once)."""
    if p.grammar is not None:
        checked(p.grammar, p.grammar_root)  # llama.cpp can hang or crash on some grammars
    made: list[Sampler] = []
    try:
        steps = plan(p, vocab.n_tokens, n_ctx)
        for i, step in enumerate(steps):
            factory = getattr(Sampler, step.name)
            args = (vocab, *step.args) if step.name in _VOCAB_STEPS else step.args
            if step.name == "penalties" and i == 0 and i + 1 < len(steps) and steps[i + 1].name == "top_k":
                n, last_n, repeat, freq, present = args  # (window: the native step's cut)
                made.append(Sampler.penalties(n, last_n, repeat, freq, present, window=True))
                continue
            made.append(factory(*args))
        chain = SamplerChain(made)
        greedy_bias = [st.name for st in steps] == ["logit_bias", "greedy"]
        if greedy_bias and vocab.n_tokens >= _BIASED_ARGMAX_MIN_VOCAB:
            bias: dict[int, float] = steps[0].args[1]
            chain.greedy_bias = (np.fromiter(bias, np.int32, len(bias)),
                                 np.fromiter(bias.values(), np.float32, len(bias)))
        return chain
    except BaseException:
        for s in made:
            s.close()
        raise


class ChainSlot:
    """The sampler chain of one sequence, sampled on the backend (GPU-side) when that is
    faster.

    With ``backend=True``, a chain whose leading samplers the backend supports is attached
    to the context, so that a decode brings back a token instead of the whole vocabulary's
    logits. Attaching makes llama.cpp rebuild its graphs, so an attached chain stays
    attached between calls with equal options and is only reset. Two kinds of call sample
    on the host instead and detach it:

    - a chain that begins with a top-k (llama-cpp-python's defaults: top-k 40, then top-p,
      min-p, temperature and a seeded draw): the host takes the k largest logits without
      sorting the row (``native/step.c``, about 1.6x an argmax: 14 us for 128k logits on
      a 2-core EPYC) and runs the rest of the chain over them, the same result. On an
      H200 that costs less per token than llama.cpp's chain on the GPU (which sorts the
      whole row for its top-k and still copies logits back), and options can change from
      call to call with nothing to attach; penalties then a top-k likewise (the k + window
      largest logits and the window's tokens: ``native/penalties.c``);
    - a call that needs the raw logits (logprobs, a Python logits processor).
    """

    def __init__(self, ctx: Context, vocab: Vocab, seq_id: int = 0, backend: bool = False) -> None:
        self.ctx = ctx
        self.vocab = vocab
        self.seq_id = seq_id
        self.backend = backend
        self._attached: tuple[SamplingParams, SamplerChain] | None = None

    def chain(self, p: SamplingParams, raw_logits: bool = False) -> SamplerChain:
        """A fresh (or reset) chain for ``p``; an invalid grammar raises here, at once."""
        cur = self._attached
        if cur is not None and not raw_logits and cur[0] == p and cur[1].attached:
            cur[1].reset()
            return cur[1]
        chain = build_chain(p, self.vocab, self.ctx.n_ctx)
        self.detach()
        if self.backend and not raw_logits and chain.leading_top_k == 0 and not chain.host_only \
                and on_backend(p, self.vocab.n_tokens) and self.ctx.attach_sampler(self.seq_id, chain):
            self._attached = (p, chain)
        return chain

    def chain_or_argmax(self, p: SamplingParams, raw_logits: bool = False) -> SamplerChain | None:
        """:meth:`chain`, or None for plain greedy (no bias, penalty or grammar): then the
        caller takes the argmax of the logits on the host (``Context.argmax_decode``, a
        SIMD loop in our C: about 2 us for 49k logits) instead of llama.cpp's greedy
        sampler (34 us on the CPU: it builds a candidate array) or its GPU-side graph
        (30-40 us of GPU time per token; in this llama.cpp a backend chain still copies its
        final logits to the host every token, so greedy on the GPU saves no transfer)."""
        if is_plain_greedy(p, self.vocab.n_tokens):
            self.detach()
            return None
        return self.chain(p, raw_logits)

    @property
    def on_backend(self) -> bool:
        """True while a chain samples on the backend."""
        return self._attached is not None and self._attached[1].attached

    def detach(self) -> None:
        if self._attached is not None:
            self._attached = None
            self.ctx.detach_sampler(self.seq_id)


def is_plain_greedy(p: SamplingParams, n_vocab: int) -> bool:
    """Whether ``p`` is the argmax of the logits and nothing else."""
    return p.is_greedy and [s.name for s in plan(p, n_vocab, 1)] == ["greedy"]


def on_backend(p: SamplingParams, n_vocab: int) -> bool:
    """Whether the chain for ``p`` starts with samplers the backend runs (so attaching it
    saves copying the logits to the host)."""
    steps = plan(p, n_vocab, 1)
    return bool(steps) and steps[0].name in BACKEND_STEPS
