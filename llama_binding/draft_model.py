"""What ``Llama(draft_model=...)`` accepts, turned into a :class:`~.generation.drafters.Drafter`.

- a second :class:`~llama_binding.Llama` (or :class:`LlamaDraftModel` wrapping one, to set the
  draft length and ``p_min``): drafts its greedy tokens, in its own context;
- :class:`~llama_binding.generation.drafters.LlamaPromptLookupDecoding`, or any object with
  ``draft(tokens, max_tokens)`` and ``accepted(n_drafted, n_accepted)``;
- any callable with llama-cpp-python's draft-model signature,
  ``draft(input_ids: np.ndarray[intc], /, **kwargs) -> np.ndarray`` of token ids.

A draft model must tokenize exactly as the target: same tokenizer type, size, special ids
and token texts, or :class:`ValueError` says where they differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from .core.vocab import Vocab
from .generation.drafters import Drafter, LlamaPromptLookupDecoding, ModelDrafter
from .generation.engine import Engine

if TYPE_CHECKING:
    from .llama import Llama

__all__ = ["DraftModelArg", "LlamaDraftModel", "as_drafter"]


class LlamaDraftModel:
    """A second (smaller) :class:`~llama_binding.Llama` that drafts for a target.

    It drafts its greedy (argmax) tokens, up to ``num_pred_tokens`` at a time, adapting the
    length to acceptance (``adaptive``); ``p_min`` > 0 stops a draft at a token the draft
    model gives less probability than that. It keeps its own KV memory in step with the
    target's history (only new tokens are evaluated; rejected ones are removed). The draft
    ``Llama`` should not be used for anything else while the target generates.
    """

    def __init__(self, model: Llama, num_pred_tokens: int = 10, *, p_min: float = 0.0,
                 adaptive: bool = True) -> None:
        engine = _engine_of(model)
        if engine is None:
            raise TypeError(f"LlamaDraftModel needs a Llama, not {type(model).__name__}")
        self.model = model
        self._engine = engine
        self._drafter = ModelDrafter(engine.context, engine.vocab, num_pred_tokens, p_min=p_min,
                                     adaptive=adaptive, state=engine.sequence)

    @property
    def vocab(self) -> Vocab:
        return self._engine.vocab

    @property
    def draft_length(self) -> int:
        return self._drafter.draft_length

    def draft(self, tokens: Sequence[int], max_tokens: int) -> list[int]:
        with self._engine.guard.held():
            return self._drafter.draft(tokens, max_tokens)

    def accepted(self, n_drafted: int, n_accepted: int) -> None:
        self._drafter.accepted(n_drafted, n_accepted)

    def reset(self) -> None:
        self._drafter.reset()

    def __call__(self, input_ids: npt.NDArray[np.integer[Any]], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        """llama-cpp-python's draft-model call form: the history in, the draft out."""
        return np.asarray(self.draft(input_ids.tolist(), self._drafter.num_pred_tokens), dtype=np.intc)


class _CallableDrafter:
    """A llama-cpp-python style draft callable as a :class:`Drafter` (no feedback)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def draft(self, tokens: Sequence[int], max_tokens: int) -> list[int]:
        out = self.fn(np.asarray(tokens, dtype=np.intc))
        try:
            toks = [int(t) for t in np.asarray(out).reshape(-1)[:max_tokens]]
        except (TypeError, ValueError):
            raise TypeError(f"the draft model returned {type(out).__name__}, not token ids") from None
        return toks

    def accepted(self, n_drafted: int, n_accepted: int) -> None:
        pass


DraftModelArg = Union["Llama", LlamaDraftModel, LlamaPromptLookupDecoding, Drafter,
                      Callable[..., Any]]


def as_drafter(draft_model: DraftModelArg, target: Vocab) -> Drafter:
    """The :class:`Drafter` for ``draft_model``; a draft model's vocabulary is checked."""
    if _engine_of(draft_model) is not None:  # a Llama
        draft_model = LlamaDraftModel(draft_model)  # type: ignore[arg-type]
    if isinstance(draft_model, LlamaDraftModel):
        why = target.mismatch(draft_model.vocab)
        if why is not None:
            raise ValueError(f"the draft model's vocabulary differs from the target's: {why}")
        return draft_model
    if isinstance(draft_model, Drafter):
        return draft_model
    if callable(draft_model):
        return _CallableDrafter(draft_model)
    raise TypeError("draft_model must be a Llama, a LlamaDraftModel, a drafter or a callable, "
                    f"not {type(draft_model).__name__}")


def _engine_of(model: object) -> Engine | None:
    """The engine of a ``Llama`` (any object with an :class:`Engine` as ``engine``): this
    module cannot import ``llama.py``, which imports it."""
    engine = getattr(model, "engine", None)
    return engine if isinstance(engine, Engine) else None
