"""Drafters: the guessing half of speculative decoding.

A drafter proposes the next few tokens cheaply; the verify loop (elsewhere) checks them all
in one batched decode and keeps the longest prefix the target model agrees with. Nothing here
touches llama.cpp, so drafters are pure, fast to test and swappable.

:class:`LlamaPromptLookupDecoding` (named as in llama-cpp-python, so it is a drop-in for its
``draft_model=``) guesses by *prompt lookup*: if the last few tokens already occurred earlier,
whatever followed them then is a good guess now. This pays off on summarising, editing and
code, where the output copies spans of the input.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..core.batch import Batch
from ..core.context import Context
from ..core.vocab import Vocab
from .steps import SequenceState, prefill

if TYPE_CHECKING:
    from .batching import BatchRequest

__all__ = ["AdaptiveLength", "Drafter", "LlamaPromptLookupDecoding", "ModelDrafter", "request_draft"]


@runtime_checkable
class Drafter(Protocol):
    """What the verify loop needs from a drafter: a guess, then feedback on how it went."""

    def draft(self, tokens: Sequence[int], max_tokens: int) -> list[int]:
        """Propose up to ``max_tokens`` tokens to follow ``tokens`` (prompt + generated so far).

        May return ``[]`` when there is no good guess; the loop then decodes normally.
        """
        ...

    def accepted(self, n_drafted: int, n_accepted: int) -> None:
        """Report that ``n_accepted`` of the ``n_drafted`` proposed tokens were verified.

        Lets a drafter tune itself (e.g. its draft length) to what actually gets accepted.
        """
        ...


def request_draft(r: BatchRequest, room: int, n_cells: int, max_outputs: int) -> list[int]:
    """A batched request's drafter's tokens to follow its pending one, as many as fit the
    batch's ``room``, the request's ``n_cells``, its token limit and, where its sequence has a
    backend sampler, the ``max_outputs`` a sequence may have in a decode (0: no such bound);
    the verify samples one more."""
    if r.drafter is None:
        return []
    n = min(room, n_cells - len(r.prompt) - len(r.output) - 1)
    if max_outputs:
        n = min(n, max_outputs - 1)
    if r.max_tokens is not None:
        n = min(n, r.max_tokens - len(r.output) - 1)
    if n <= 0:
        return []
    draft = r.drafter.draft(r.prompt + r.output, n)[:n]
    if r.media is not None and any(t < 0 for t in draft):  # an image's stand-in ids: no tokens
        draft = draft[: next(i for i, t in enumerate(draft) if t < 0)]
    return draft


def _positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1; bools are refused because ``True`` as a size is a bug."""
    n = _int(name, value)
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def _int(name: str, value: object) -> int:
    """``value`` as a plain int (numpy integers welcome), refusing bools and floats."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


class AdaptiveLength:
    """A draft length that follows acceptance: a draft accepted in full doubles it (up to
    ``maximum``), a partly rejected one sets it to ``n_accepted + 1`` (never above the
    current length, never below 1). Rejected tokens cost verify work, so shrinking is fast
    and growing back is geometric."""

    __slots__ = ("adaptive", "maximum", "value")

    def __init__(self, maximum: int, adaptive: bool = True) -> None:
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be a bool, not {type(adaptive).__name__}")
        self.maximum = maximum
        self.adaptive = adaptive
        self.value = maximum

    def reset(self) -> None:
        self.value = self.maximum

    def update(self, n_drafted: int, n_accepted: int) -> None:
        drafted = _int("n_drafted", n_drafted)
        ok = _int("n_accepted", n_accepted)
        if not 0 <= ok <= drafted:
            raise ValueError(f"need 0 <= n_accepted <= n_drafted, got {ok} of {drafted}")
        if not self.adaptive or drafted == 0:
            return
        if ok == drafted:
            self.value = min(self.maximum, 2 * self.value)
        else:
            self.value = max(1, min(self.value, ok + 1))


class LlamaPromptLookupDecoding:
    """Prompt-lookup drafter with an incremental n-gram index and an adaptive draft length.

    **Lookup.** For ``n`` from ``max_ngram_size`` down to ``min_ngram_size``, take the last
    ``n`` tokens; if they occurred earlier (followed by at least one token), propose what
    followed their *most recent* earlier occurrence: recent context predicts better than
    old, and the longest n-gram wins because a longer match is more specific. A draft
    that reaches the end of the history continues the pattern (``x[end + j] = x[start + j]``),
    so a loop of period ``p`` is drafted in full, not ``p`` tokens at a time.

    **Index.** One dict per n-gram size maps an n-gram to the position just after its most
    recent occurrence. When ``tokens`` extends the previous call's list, only the new
    positions are indexed (``max - min + 1`` dict writes per token), so a draft costs
    ``O(max_ngram_size)`` lookups instead of a scan of the history. A list that is *not* an
    extension (a new prompt, a rewind) is detected with one C-level list comparison and the
    index is rebuilt from it.

    **Adaptive length** (when ``adaptive``). The draft length starts at ``num_pred_tokens``.
    After :meth:`accepted`: a draft accepted in full doubles it (capped at
    ``num_pred_tokens``), since longer guesses are evidently paying off; a partly rejected
    one sets it to ``n_accepted + 1`` (never above the current length, never below 1), the
    smallest length that would have covered what was accepted plus one more try. Rejected
    tokens cost verify work, so shrinking is fast and growing back is geometric.
    """

    def __init__(
        self,
        max_ngram_size: int = 3,
        num_pred_tokens: int = 10,
        *,
        min_ngram_size: int = 1,
        adaptive: bool = True,
    ) -> None:
        self.max_ngram_size = _positive_int("max_ngram_size", max_ngram_size)
        self.min_ngram_size = _positive_int("min_ngram_size", min_ngram_size)
        self.num_pred_tokens = _positive_int("num_pred_tokens", num_pred_tokens)
        if self.max_ngram_size < self.min_ngram_size:
            raise ValueError(
                f"max_ngram_size ({self.max_ngram_size}) must be >= min_ngram_size ({self.min_ngram_size})"
            )
        self._length = AdaptiveLength(self.num_pred_tokens, adaptive)
        self._tokens: list[int] = []
        # _index[n - min_ngram_size]: n-gram -> position right after its latest occurrence
        self._index: list[dict[tuple[int, ...], int]] = [
            {} for _ in range(self.max_ngram_size - self.min_ngram_size + 1)
        ]

    @property
    def draft_length(self) -> int:
        """The current (adaptive) number of tokens a draft proposes at most."""
        return self._length.value

    @property
    def adaptive(self) -> bool:
        return self._length.adaptive

    def fresh(self) -> LlamaPromptLookupDecoding:
        """A new drafter with these settings and no history (one per request of a batch)."""
        return LlamaPromptLookupDecoding(self.max_ngram_size, self.num_pred_tokens,
                                         min_ngram_size=self.min_ngram_size, adaptive=self.adaptive)

    def reset(self) -> None:
        """Forget the history and restore the full draft length (e.g. between requests)."""
        self._length.reset()
        self._tokens = []
        for d in self._index:
            d.clear()

    def draft(self, tokens: Sequence[int] | npt.NDArray[np.integer[Any]], max_tokens: int) -> list[int]:
        """Propose up to ``min(max_tokens, draft_length)`` tokens to follow ``tokens``."""
        limit = _int("max_tokens", max_tokens)
        if limit < 0:
            raise ValueError(f"max_tokens must be >= 0, got {limit}")
        toks = self._sync(tokens)
        limit = min(limit, self._length.value)
        if limit == 0:
            return []
        end = len(toks)
        for n in range(self.max_ngram_size, self.min_ngram_size - 1, -1):
            if n > end:
                continue
            start = self._index[n - self.min_ngram_size].get(tuple(toks[end - n :]))
            if start is not None:
                out = toks[start : start + limit]
                period = end - start
                while len(out) < limit:  # past the end of the history: the pattern repeats
                    out.append(out[len(out) - period])
                return out
        return []

    def accepted(self, n_drafted: int, n_accepted: int) -> None:
        """Adapt the draft length to the verify result (see the class docstring for the rule)."""
        self._length.update(n_drafted, n_accepted)

    def __call__(
        self, input_ids: npt.NDArray[np.integer[Any]], /, scores: Any = None, **kwargs: Any
    ) -> npt.NDArray[np.intc]:
        """llama-cpp-python's ``LlamaDraftModel`` call form: the history in, the draft out.

        ``scores`` and other keywords are accepted and ignored (prompt lookup needs no logits).
        llama-cpp-python gives no acceptance feedback, so the length adapts only through
        :meth:`accepted`.
        """
        return np.asarray(self.draft(input_ids, self.num_pred_tokens), dtype=np.intc)

    def _sync(self, tokens: Sequence[int] | npt.NDArray[np.integer[Any]]) -> list[int]:
        """Bring the index up to ``tokens``, incrementally when it extends the last history."""
        toks: list[int] = tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)
        old = self._tokens
        if len(toks) >= len(old) and toks[: len(old)] == old:
            done = len(old)
            old.extend(toks[done:])
        else:
            for d in self._index:
                d.clear()
            self._tokens = toks
            done = 0
        toks = self._tokens
        # index every n-gram ending at e for e < len(toks): each has a following token
        for n, d in enumerate(self._index, start=self.min_ngram_size):
            for e in range(max(done, n), len(toks)):
                d[tuple(toks[e - n : e])] = e
        return toks


class ModelDrafter:
    """Drafts with a (smaller) model's greedy tokens, keeping its KV memory in step.

    Each :meth:`draft` brings the draft context up to ``tokens`` with prefix reuse (so only
    the tokens accepted since the last call, and the target's correction, are evaluated;
    rejected draft tokens are removed with ``llama_memory_seq_rm``), then decodes its argmax
    token by token. ``p_min`` > 0 stops a draft at the first token the draft model gives
    less than that probability (a guess it doubts is likely rejected). The length adapts
    to acceptance as :class:`AdaptiveLength` says. The caller checks that the two models
    share a vocabulary (:meth:`~llama_binding.core.vocab.Vocab.mismatch`).
    """

    def __init__(self, ctx: Context, vocab: Vocab, num_pred_tokens: int = 8, *,
                 p_min: float = 0.0, adaptive: bool = True, seq_id: int = 0,
                 state: SequenceState | None = None) -> None:
        self.num_pred_tokens = _positive_int("num_pred_tokens", num_pred_tokens)
        if isinstance(p_min, bool) or not isinstance(p_min, (int, float)) or not 0.0 <= p_min <= 1.0:
            raise ValueError(f"p_min must be a number in [0, 1], got {p_min!r}")
        self.ctx = ctx
        self.vocab = vocab
        self.p_min = float(p_min)
        self.state = state if state is not None else SequenceState(ctx, seq_id)
        self._length = AdaptiveLength(self.num_pred_tokens, adaptive)
        self._batch = Batch(max(1, ctx.n_batch))

    @property
    def draft_length(self) -> int:
        return self._length.value

    def reset(self) -> None:
        self._length.reset()

    def draft(self, tokens: Sequence[int], max_tokens: int) -> list[int]:
        ctx, state = self.ctx, self.state
        limit = min(_int("max_tokens", max_tokens), self._length.value)
        toks = tokens if isinstance(tokens, list) else list(tokens)
        if limit <= 0 or not toks or len(toks) + limit > ctx.n_ctx_seq:
            return []  # nothing asked, or the draft context is too small for this history
        prefill(ctx, self._batch, toks, state)
        out: list[int] = []
        pos = len(toks)
        seq_id = state.seq_id
        for j in range(limit):
            if self.p_min > 0.0 and not self._confident():
                break
            more = j + 1 < limit
            try:
                tok, decoded = ctx.argmax_decode(self.vocab, self._batch, pos, seq_id, more)
            except BaseException:
                ctx.seq_rm(seq_id, len(state.tokens), -1)
                raise
            out.append(tok)
            if not decoded:  # the last one, or end of generation
                break
            state.tokens.append(tok)
            pos += 1
        return out

    def _confident(self) -> bool:
        """Whether the draft model's top token has probability >= p_min."""
        x = self.ctx.logits(-1)
        m = float(x.max())
        return 1.0 / float(np.exp(x - m).sum()) >= self.p_min

    def accepted(self, n_drafted: int, n_accepted: int) -> None:
        self._length.update(n_drafted, n_accepted)
