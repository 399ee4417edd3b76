"""Log-probabilities of sampled tokens, read from the logits view only when asked for.

:func:`with_logprobs` sits between the step generator and the text stream: for each token
it reads the zero-copy logits view of the output the token was sampled from (the step
generator says which; still valid, since the next decode happens only when the stream
asks for the next token), computes
the token's log-softmax and the top ``n`` alternatives with ``argpartition``, and records
them. Nothing is computed when logprobs were not requested.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..core.context import Context

__all__ = ["TokenLogprob", "log_softmax_at", "prompt_logprobs", "with_logprobs"]


@dataclass(frozen=True)
class TokenLogprob:
    """A token's log-probability and its alternatives' (None for a prompt's first token)."""

    token: int
    logprob: float | None
    top: dict[int, float] | None


def log_softmax_at(logits: npt.NDArray[np.float32], token: int, n_top: int) -> TokenLogprob:
    """log p(token) and the ``n_top`` most likely tokens' log p, from raw logits."""
    x = logits.astype(np.float64, copy=False)
    m = float(x.max())
    lse = m + float(np.log(np.exp(x - m).sum()))
    top: dict[int, float] = {}
    if n_top > 0:
        k = min(n_top, x.shape[0])
        idx = np.argpartition(-x, k - 1)[:k]
        idx = idx[np.argsort(-x[idx], kind="stable")]
        top = {int(i): float(x[i]) - lse for i in idx}
    return TokenLogprob(token, float(x[token]) - lse, top)


def with_logprobs(tokens: Iterable[int], logits: Callable[[], npt.NDArray[np.float32]], n_top: int,
                  sink: deque[TokenLogprob]) -> Iterator[int]:
    """Pass ``tokens`` through, appending each one's :class:`TokenLogprob` to ``sink``;
    ``logits()`` gives the logits the token just received was sampled from."""
    for tok in tokens:
        sink.append(log_softmax_at(logits(), tok, n_top))
        yield tok


def prompt_logprobs(ctx: Context, prompt: Sequence[int], n_top: int,
                    out: list[TokenLogprob]) -> Callable[[int, int], None]:
    """A ``prompt_logits`` reader for :func:`~.steps.generate_tokens` that appends one
    entry per prompt token to ``out`` (the first has no log-probability: nothing
    predicts it)."""
    out.append(TokenLogprob(prompt[0], None, None))

    def read(start: int, n: int) -> None:
        for j in range(n):
            nxt = start + j + 1
            if nxt < len(prompt):
                out.append(log_softmax_at(ctx.logits(j), prompt[nxt], n_top))

    return read
