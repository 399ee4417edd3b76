"""Python hooks into the token loop: logits processors and stopping criteria.

They have llama-cpp-python's signatures: a processor takes the token ids so far and the
logits of the next token and returns new logits; a stopping criterion takes the same two
arrays and returns True to stop. They cost nothing when unused: the loop calls them only
when given, and only then are the logits read on the host (no backend sampling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import numpy as np
import numpy.typing as npt

__all__ = [
    "LogitsProcessor",
    "LogitsProcessorList",
    "MinTokensLogitsProcessor",
    "StoppingCriteria",
    "StoppingCriteriaList",
    "as_logits_hook",
    "as_stop_hook",
]

Ids = npt.NDArray[np.intc]
Logits = npt.NDArray[np.single]
LogitsProcessor = Callable[[Ids, Logits], Logits]
StoppingCriteria = Callable[[Ids, Logits], bool]


class LogitsProcessorList(list[LogitsProcessor]):
    """Processors applied in order, each to the previous one's output."""

    def __call__(self, input_ids: Ids, scores: Logits) -> Logits:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


class MinTokensLogitsProcessor:
    """llama-cpp-python's: forbids ``token_eos`` until ``min_tokens`` tokens are generated
    (counted from the length of the first ``input_ids`` it sees, the prompt; use a fresh
    one per completion)."""

    def __init__(self, min_tokens: int, token_eos: int) -> None:
        self.min_tokens = min_tokens
        self.token_eos = token_eos
        self.prompt_tokens: int | None = None

    def __call__(self, input_ids: Ids, scores: Logits) -> Logits:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        if len(input_ids) - self.prompt_tokens < self.min_tokens:
            scores[self.token_eos] = -np.inf
        return scores


class StoppingCriteriaList(list[StoppingCriteria]):
    """Stops when any criterion says so."""

    def __call__(self, input_ids: Ids, logits: Logits) -> bool:
        return any(criterion(input_ids, logits) for criterion in self)


def _one(hooks: Union[Callable[[Ids, Logits], object], Sequence[Callable[[Ids, Logits], object]], None],
         kind: type[list[object]]) -> Callable[[Ids, Logits], object] | None:
    if hooks is None:
        return None
    if callable(hooks):
        return hooks
    items = list(hooks)
    if not all(callable(h) for h in items):
        raise TypeError(f"{kind.__name__} items must be callables")
    return kind(items) if items else None  # type: ignore[return-value]


def as_logits_hook(
    processor: Union[LogitsProcessor, Sequence[LogitsProcessor], None],
) -> Callable[[Sequence[int], Logits], None] | None:
    """The loop's in-place hook for ``processor`` (a callable or a list of them), or None."""
    fn = _one(processor, LogitsProcessorList)  # type: ignore[arg-type]
    if fn is None:
        return None

    def hook(tokens: Sequence[int], logits: Logits) -> None:
        out = fn(np.asarray(tokens, dtype=np.intc), logits)
        if out is not logits:
            out = np.asarray(out, dtype=np.single)
            if out.shape != logits.shape:
                raise ValueError(f"a logits processor returned shape {out.shape}, expected {logits.shape}")
            logits[:] = out

    return hook


def as_stop_hook(
    criteria: Union[StoppingCriteria, Sequence[StoppingCriteria], None],
) -> Callable[[Sequence[int], Logits], bool] | None:
    """The loop's stop hook for ``criteria`` (a callable or a list of them), or None."""
    fn = _one(criteria, StoppingCriteriaList)  # type: ignore[arg-type]
    if fn is None:
        return None

    def hook(tokens: Sequence[int], logits: Logits) -> bool:
        return bool(fn(np.asarray(tokens, dtype=np.intc), logits))

    return hook
