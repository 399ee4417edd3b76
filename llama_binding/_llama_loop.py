"""The part of :class:`~llama_binding.Llama` that is llama-cpp-python's low-level loop:
``eval`` tokens, ``sample`` one, ``generate`` a stream of ids, and the logits kept
(``scores``, ``eval_tokens``, ``eval_logits``), all through the Llama's engine."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _dropin
from ._args import SAMPLING_ARGS, grammar_fields
from .generation.hooks import LogitsProcessor, StoppingCriteria, as_logits_hook
from .generation.sampling import SamplingParams as _D
from .grammar import LlamaGrammar

if TYPE_CHECKING:
    from .generation.engine import Engine

__all__ = ["LlamaLoop"]


class LlamaLoop:
    """eval / sample / generate of a :class:`~llama_binding.Llama` (a base class of it;
    ``engine`` is the Llama's)."""

    engine: Engine

    @property
    def scores(self) -> npt.NDArray[np.float32]:
        """Logits kept by :meth:`eval`: one row per evaluated token with ``logits_all=True``,
        else the last token's row only (shape ``(rows, n_vocab)``, a copy)."""
        return self.engine.scores

    @property
    def eval_tokens(self) -> deque[int]:
        """The tokens the context holds (llama-cpp-python's deque, bounded by ``n_ctx``)."""
        return deque(self.engine.tokens, maxlen=self.engine.context.n_ctx)

    @property
    def eval_logits(self) -> deque[list[float]]:
        """The rows of :attr:`scores` as lists (llama-cpp-python's deque: at most ``n_ctx``
        rows with ``logits_all=True``, else the last one)."""
        return deque(self.scores.tolist(), maxlen=self.engine.context.n_ctx if self.engine.logits_all else 1)

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` after those already in the context (appends to ``input_ids``)."""
        self.engine.eval(tokens)

    def sample(self, *, idx: int = -1, logits_processor: LogitsProcessor | None = None,
               grammar: str | LlamaGrammar | None = None, **sampling: Any) -> int:
        """Sample one token from the logits of the last :meth:`eval` (output ``idx``);
        ``sampling`` takes the options of :meth:`create_completion` (``temp`` too)."""
        if "temp" in sampling:
            sampling["temperature"] = sampling.pop("temp")
        sampling.pop("penalize_nl", None)  # llama-cpp-python's; no such option in llama.cpp now
        params = self.engine.sampling(dict(sampling, **grammar_fields(grammar)))
        return self.engine.sample(params, idx, as_logits_hook(logits_processor))

    def set_seed(self, seed: int) -> None:
        """The seed of later calls that do not pass one."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, not {type(seed).__name__} ({seed!r})")
        self.engine.seed = seed

    def generate(
        self,
        tokens: Sequence[int],
        top_k: int = _D.top_k,
        top_p: float = _D.top_p,
        min_p: float = _D.min_p,
        typical_p: float = _D.typical_p,
        temp: float = _D.temperature,
        repeat_penalty: float = _D.repeat_penalty,
        reset: bool = True,
        frequency_penalty: float = _D.frequency_penalty,
        presence_penalty: float = _D.presence_penalty,
        tfs_z: float | None = None,
        mirostat_mode: int = _D.mirostat_mode,
        mirostat_tau: float = _D.mirostat_tau,
        mirostat_eta: float = _D.mirostat_eta,
        penalize_nl: bool = True,
        logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None = None,
        stopping_criteria: StoppingCriteria | Sequence[StoppingCriteria] | None = None,
        grammar: str | LlamaGrammar | None = None,
        *,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> Iterator[int]:
        """Yield sampled token ids after ``tokens`` (a custom loop's building block), with
        llama-cpp-python's arguments in its order.

        ``reset=True`` generates after ``tokens`` alone (the context keeps the prefix they
        share with what it holds); ``reset=False`` after what the context holds, then
        ``tokens``. ``stopping_criteria`` ends it before a token for which it returns True
        (it gets the ids including that token and the logits it was sampled from).
        ``max_tokens`` bounds it (None: until end of generation or a full context).
        ``kwargs`` may hold other sampling options (``temperature``, which wins over
        ``temp``, ``seed``, ``logit_bias``, ...); others are warned about and ignored.
        ``penalize_nl`` has no effect (llama.cpp has no such option now)."""
        options = {k: v for k, v in locals().items() if k in SAMPLING_ARGS}
        options["temperature"] = temp
        known = _dropin.names_of(LlamaLoop.generate)
        options.update(_dropin.sampling_extras("Llama.generate()", kwargs, known))
        params = self.engine.sampling(dict(options, **grammar_fields(grammar)))
        prompt = list(tokens) if reset else [*self.engine.tokens, *tokens]
        hook, stops = _dropin.generate_hooks(logits_processor, stopping_criteria)
        yield from _dropin.until(self.engine.generate(prompt, params, max_tokens, hook), stops)
