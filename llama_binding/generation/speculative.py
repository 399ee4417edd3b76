"""Speculative decoding: a drafter guesses the next tokens, one batched decode checks them.

:class:`SpeculativeSteps` is a drop-in for :func:`~.steps.generate_tokens` (same prompt
handling, same stopping rules, same ``state`` bookkeeping) that decodes ``[token, *draft]``
in one ``llama_decode`` with logits for every row, then walks the rows: row ``i`` holds the
target's prediction after ``draft[:i]``; the token sampled there either equals ``draft[i]``
(accepted, walk on) or replaces it (the correction, and the walk ends). When every draft
token is accepted, the last row gives one more token for free. Rejected tokens are removed
from the KV memory with ``llama_memory_seq_rm`` before the next decode.

**Exactness.** Each token is sampled by the same chain, from the target's logits for the
same history, as without speculation; the draft only decides how many rows one decode
computes. With greedy sampling the output is therefore the plain greedy output, up to the
tiny logit differences of batched kernels (a near-tie may flip). With a sampling chain the
tokens follow the target's distribution exactly: sampling ``s ~ p`` and accepting the draft
``d`` when ``s == d`` accepts with probability ``p(d)`` and, on rejection, yields ``s``
distributed as ``p`` restricted to tokens other than ``d`` - which is the standard
speculative-sampling rule (accept with ``min(1, p(d)/q(d))``, resample from
``max(0, p - q)``) for a drafter whose proposal ``q`` is a point mass on ``d``. Both our
drafters propose that way: prompt lookup copies tokens and the draft model drafts its
argmax. Stateful samplers (penalties, grammars, mirostat) see exactly the accepted
history, since the chain accepts only tokens that are output.

The logits of the token just yielded stay readable (:meth:`SpeculativeSteps.logits`) until
the caller asks for the next one, so log-probabilities and stopping criteria work as with
the plain loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..core.batch import Batch
from ..core.context import Context
from ..core.sampler import SamplerChain
from ..core.vocab import Vocab
from .drafters import Drafter
from .steps import SequenceState, decode_in_step, prefill

__all__ = ["DraftBudget", "SpeculativeStats", "SpeculativeSteps"]

logger = logging.getLogger("llama_binding")

Logits = npt.NDArray[np.float32]


# --- the draft length worth verifying ---------------------------------------------------------
#
# How many draft tokens one verify decode is worth, on this machine, for this drafter.
#
# A verify decode of ``1 + k`` tokens costs ``t(1) * (1 + c*k)``: ``c`` is about 0.02 on a
# GPU (a batch costs little more than one token) and about 0.5 for SmolLM2 on a 2-core CPU.
# With a per-token acceptance ``a`` (a draft is accepted up to its first wrong token), a
# draft of ``k`` yields ``1 + a + a^2 + ... + a^k`` tokens on average, so the rate is
#
#     gain(k) = (1 + a + ... + a^k) / (1 + c*k)
#
# :class:`DraftBudget` measures both from the run itself: ``c`` by a least-squares line
# through (tokens in the decode, seconds), ``a`` from the verify results (accepted tokens over
# accepted tokens plus rejections), both with exponential forgetting. :meth:`limit` is the
# ``k`` that maximises ``gain``. When no draft pays (``k = 0``), drafting pauses for a few
# steps, doubling up to 16, with a one-token probe in between, so a drafter that stops
# being right costs little and one that becomes right again is noticed.

_MAX_PAUSE = 16


class DraftBudget:
    """Measured verify cost and acceptance -> the draft length worth verifying."""

    __slots__ = ("_accepted", "_decay", "_pause", "_rejected", "_s", "_skip")

    def __init__(self, decay: float = 0.9) -> None:
        self._decay = decay
        self._s = [0.0] * 5  # weighted sums of 1, n, n^2, t, n*t over the decodes seen
        self._accepted = 1.6  # a prior of acceptance 0.8 worth two verifies
        self._rejected = 0.4
        self._skip = 0
        self._pause = 1

    def observe_decode(self, n_tokens: int, seconds: float) -> None:
        s, d = self._s, self._decay
        for i in range(5):
            s[i] *= d
        s[0] += 1.0
        s[1] += n_tokens
        s[2] += n_tokens * n_tokens
        s[3] += seconds
        s[4] += n_tokens * seconds

    def observe_verify(self, n_drafted: int, n_accepted: int) -> None:
        if n_drafted <= 0:
            return
        self._accepted = self._accepted * self._decay + n_accepted
        self._rejected = self._rejected * self._decay + (1.0 if n_accepted < n_drafted else 0.0)

    @property
    def acceptance(self) -> float:
        """The per-token acceptance estimate."""
        return self._accepted / (self._accepted + self._rejected)

    @property
    def cost_per_token(self) -> float | None:
        """``c``: the cost of one more token in a decode, relative to a one-token decode;
        None until decodes of different sizes were seen."""
        s0, sn, snn, st, snt = self._s
        den = s0 * snn - sn * sn
        if s0 < 1.5 or den <= 1e-9 * max(1.0, s0 * snn):
            return None
        slope = (s0 * snt - sn * st) / den
        one = (st - slope * sn) / s0 + slope  # the line at n = 1
        if one <= 0.0:
            return None
        return max(slope, 0.0) / one

    def limit(self, cap: int) -> int:
        """The draft length to ask for now (at most ``cap``)."""
        c = self.cost_per_token
        if c is None or cap <= 0:
            return max(cap, 0)
        a = self.acceptance
        best, best_gain = 0, 1.0
        tokens, term = 1.0, 1.0
        for k in range(1, cap + 1):
            term *= a
            tokens += term
            gain = tokens / (1.0 + c * k)
            if gain > best_gain:
                best, best_gain = k, gain
            elif term < 1e-3:
                break
        if best > 0:
            self._pause = 1
            self._skip = 0
            return best
        if self._skip > 0:
            self._skip -= 1
            return 0
        self._skip = self._pause
        self._pause = min(2 * self._pause, _MAX_PAUSE)
        return 1  # a probe, so the acceptance estimate can recover


@dataclass
class SpeculativeStats:
    """Counts of one speculative generation (or, summed, of many)."""

    drafted: int = 0
    """Draft tokens proposed and verified."""
    accepted: int = 0
    """Draft tokens the target agreed with."""
    generated: int = 0
    """Tokens produced (accepted drafts plus the target's own)."""
    target_decodes: int = 0
    """Decodes of the target after the prompt (each verifies a draft, possibly empty)."""

    @property
    def acceptance_rate(self) -> float:
        """accepted / drafted (0.0 before anything was drafted)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_decode(self) -> float:
        """Generated tokens per target decode after the prompt's (whose logits give the first
        token, so without drafts this is N/(N-1) for N tokens)."""
        return self.generated / self.target_decodes if self.target_decodes else float(self.generated)

    def add(self, other: SpeculativeStats) -> None:
        self.drafted += other.drafted
        self.accepted += other.accepted
        self.generated += other.generated
        self.target_decodes += other.target_decodes

    def as_dict(self) -> dict[str, float]:
        return {"drafted": self.drafted, "accepted": self.accepted, "generated": self.generated,
                "target_decodes": self.target_decodes, "acceptance_rate": self.acceptance_rate,
                "tokens_per_decode": self.tokens_per_decode}


class SpeculativeSteps:
    """An iterator of sampled token ids, like :func:`~.steps.generate_tokens`, that lets
    ``drafter`` propose tokens and verifies them in one decode of the target.

    ``chain`` None is plain greedy (the argmax of each row); ``logits_hook``,
    ``prompt_logits`` and ``prefilled`` are as for ``generate_tokens``. ``max_draft`` caps a draft
    (besides the batch's capacity, the context and ``max_tokens``); a ``budget`` also caps
    it at what the measured verify cost and acceptance make worth it. While the caller holds
    a token, :attr:`history` is the sequence before it and :meth:`logits` its logits row.
    ``stats`` is filled in as tokens are produced and logged at debug level at the end.
    """

    def __init__(
        self,
        ctx: Context,
        vocab: Vocab,
        chain: SamplerChain | None,
        prompt: Sequence[int],
        state: SequenceState,
        drafter: Drafter,
        max_tokens: int | None = None,
        batch: Batch | None = None,
        *,
        max_draft: int = 64,
        budget: DraftBudget | None = None,
        logits_hook: Callable[[Sequence[int], Logits], None] | None = None,
        prompt_logits: Callable[[int, int], None] | None = None,
        prefilled: Callable[[], None] | None = None,
        stats: SpeculativeStats | None = None,
    ) -> None:
        self.ctx = ctx
        self.vocab = vocab
        self.chain = chain
        self.state = state
        self.drafter = drafter
        self.max_tokens = max_tokens
        self.batch = batch if batch is not None else Batch(max(ctx.n_batch, 1))
        self.max_draft = max_draft
        self.budget = budget
        self.logits_hook = logits_hook
        self.stats = stats if stats is not None else SpeculativeStats()
        self.history: list[int] = list(prompt)
        self._row = -1
        self._n_vocab = vocab.n_tokens
        self._it = self._run(prompt, prompt_logits, prefilled)

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        return next(self._it)

    def close(self) -> None:
        self._it.close()

    def logits(self) -> Logits:
        """The logits the token last yielded was sampled from (raw, unless a hook changed them)."""
        return self.ctx.logits(self._row)

    def _sample(self, row: int) -> int:
        """The target's token at output ``row``, for the history so far."""
        if self.logits_hook is not None:
            self.logits_hook(self.history, self.ctx.logits(row))
        if self.chain is None:
            return int(np.argmax(self.ctx.logits(row)))
        return self.chain.sample(self.ctx, row)

    def _run(self, prompt: Sequence[int], prompt_logits: Callable[[int, int], None] | None,
             prefilled: Callable[[], None] | None) -> Generator[int, None, None]:
        ctx, state, batch, stats = self.ctx, self.state, self.batch, self.stats
        prefill(ctx, batch, prompt, state, prompt_logits)
        if prefilled is not None:
            prefilled()
        limit = ctx.n_ctx_seq
        max_tokens = self.max_tokens
        is_eog = self.vocab.is_eog
        history = self.history
        pos = len(prompt)  # where the next token goes; state.tokens[:pos] is the output so far
        produced = 0
        if max_tokens is not None and max_tokens <= 0:
            return
        try:
            tok, self._row = self._sample(-1), -1
            while True:
                produced += 1  # counted as handed out, so a caller that stops early sees it counted
                stats.generated += 1
                yield tok
                history.append(tok)
                if is_eog(tok) or pos >= limit or (max_tokens is not None and produced >= max_tokens):
                    return
                # drafts go at pos+1.. and are output tokens: leave room for both limits
                room = min(limit - pos - 1, batch.capacity - 1, self.max_draft)
                if max_tokens is not None:
                    room = min(room, max_tokens - produced - 1)
                budget = self.budget
                if budget is not None:
                    room = budget.limit(room)
                draft = self._draft(room)
                batch.clear()
                batch.add_sequence([tok, *draft], pos, state.seq_id, logits_all=True)
                t0 = time.perf_counter()
                decode_in_step(ctx, batch, state)
                if budget is not None:
                    ctx.synchronize()  # the logits are read next anyway
                    budget.observe_decode(1 + len(draft), time.perf_counter() - t0)
                state.tokens += [tok, *draft]
                stats.target_decodes += 1
                pos += 1
                n_ok = 0
                for i, d in enumerate(draft):
                    s = self._sample(i)
                    stats.drafted += 1
                    if s != d:
                        tok, self._row = s, i
                        self._feedback(i + 1, n_ok)
                        break
                    n_ok += 1
                    stats.accepted += 1
                    self._row = i
                    produced += 1
                    stats.generated += 1
                    yield d
                    history.append(d)
                    pos += 1
                    if is_eog(d) or (max_tokens is not None and produced >= max_tokens):
                        self._feedback(i + 1, n_ok)
                        return
                else:
                    tok, self._row = self._sample(len(draft)), len(draft)
                    if draft:
                        self._feedback(len(draft), n_ok)
                self._trim(pos)
        finally:
            self._trim(pos)
            if stats.drafted:
                logger.debug("speculative: %d drafted, %d accepted (%.0f%%), %.2f tokens per decode",
                             stats.drafted, stats.accepted, 100 * stats.acceptance_rate,
                             stats.tokens_per_decode)

    def _feedback(self, n_drafted: int, n_accepted: int) -> None:
        self.drafter.accepted(n_drafted, n_accepted)
        if self.budget is not None:
            self.budget.observe_verify(n_drafted, n_accepted)

    def _draft(self, n: int) -> list[int]:
        """Up to ``n`` draft tokens after the history, as plain ints."""
        if n <= 0:
            return []
        draft = [int(t) for t in self.drafter.draft(self.history, n)[:n]]
        if draft and not (0 <= min(draft) and max(draft) < self._n_vocab):
            raise ValueError(f"the drafter proposed token ids outside the vocabulary: {draft}")
        return draft

    def _trim(self, pos: int) -> None:
        """Drop rejected draft tokens (at ``pos`` and after) from the KV memory."""
        state = self.state
        if len(state.tokens) > pos:
            if not self.ctx.seq_rm(state.seq_id, pos, -1):
                state.reset()
                return
            del state.tokens[pos:]
