"""The token step generator: prompt in, sampled token ids out, one decode per token.

:class:`SequenceState` remembers which tokens one sequence holds in the context's KV
memory, so that a new prompt reuses the longest common prefix and evaluates only the rest.
:func:`generate_tokens` is the bottom of the stacked generators (step -> stream ->
collect): it prefills the prompt in ``n_batch`` chunks, then per token samples inside the
native chain, yields the id, and decodes it only when the caller asks for the next one,
so a caller that stops early (a stop string, EOS) leaves the KV memory exactly in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from ..core.batch import Batch
from ..core.context import Context
from ..core.sampler import SamplerChain
from ..core.vocab import Vocab
from ..errors import ContextOverflowError

__all__ = ["SequenceState", "common_prefix", "decode_in_step", "generate_tokens", "prefill"]


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int | None = None) -> int:
    """Length of the longest common prefix of two token lists, at most ``limit`` (a binary
    search over slice comparisons: C loops, not one Python step per token)."""
    if type(a) is not list or type(b) is not list:  # (a list never equals a tuple)
        a, b = list(a), list(b)
    lo, hi = 0, min(len(a), len(b)) if limit is None else min(len(a), len(b), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class SequenceState:
    """The tokens that sequence ``seq_id`` of ``ctx`` holds in KV memory, in order."""

    __slots__ = ("ctx", "seq_id", "tokens")

    def __init__(self, ctx: Context, seq_id: int = 0) -> None:
        self.ctx = ctx
        self.seq_id = seq_id
        self.tokens: list[int] = []

    def reset(self) -> None:
        self.ctx.seq_rm(self.seq_id, -1, -1)
        self.tokens.clear()

    def reuse(self, prompt: Sequence[int]) -> int:
        """Keep the common prefix with ``prompt`` in memory, drop the rest; return its length.

        The last prompt token is always evaluated again, since its logits are needed.
        """
        n = min(common_prefix(self.tokens, prompt), len(prompt) - 1)
        if n < len(self.tokens):
            if not self.ctx.seq_rm(self.seq_id, n, -1):  # e.g. recurrent memory: all or nothing
                self.reset()
                return 0
            del self.tokens[n:]
        return n


def decode_in_step(ctx: Context, batch: Batch, state: SequenceState) -> None:
    """Decode; on any failure (an abort, Ctrl-C, a full cache) drop what the batch may
    have left in memory, so memory and ``state.tokens`` stay in step."""
    try:
        ctx.decode(batch)
    except BaseException:
        ctx.seq_rm(state.seq_id, len(state.tokens), -1)
        raise


def prefill(ctx: Context, batch: Batch, prompt: Sequence[int], state: SequenceState,
            prompt_logits: Callable[[int, int], None] | None = None) -> None:
    """Bring ``prompt`` into sequence ``state.seq_id``'s KV memory, reusing the common prefix
    already there, in chunks of ``n_batch``; the last prompt token's logits are left as the
    last output. ``prompt_logits`` (see :func:`generate_tokens`) re-evaluates it all."""
    if not prompt:
        raise ValueError("the prompt is empty: give at least one token (for example BOS)")
    limit = ctx.n_ctx_seq
    if len(prompt) > limit:
        raise ContextOverflowError(
            f"the prompt has {len(prompt)} tokens but the context holds {limit} per sequence")
    n_batch = ctx.n_batch
    if prompt_logits is not None:
        state.reset()
        i = 0
    else:
        i = state.reuse(prompt)
    last = len(prompt) - 1
    all_logits = prompt_logits is not None
    while i < len(prompt):
        chunk = prompt[i : i + min(n_batch, batch.capacity)]
        batch.clear()
        batch.add_sequence(chunk, i, state.seq_id, logits_last=i + len(chunk) - 1 == last,
                           logits_all=all_logits)
        decode_in_step(ctx, batch, state)
        state.tokens.extend(chunk)
        if prompt_logits is not None:
            prompt_logits(i, len(chunk))
        i += len(chunk)


def generate_tokens(
    ctx: Context,
    vocab: Vocab,
    chain: SamplerChain | None,
    prompt: Sequence[int],
    state: SequenceState,
    max_tokens: int | None = None,
    batch: Batch | None = None,
    *,
    logits_hook: Callable[[Sequence[int], npt.NDArray[np.float32]], None] | None = None,
    prompt_logits: Callable[[int, int], None] | None = None,
    prefilled: Callable[[], None] | None = None,
    lookahead: bool = False,
) -> Iterator[int]:
    """Yield sampled token ids after ``prompt``; stops at end-of-generation, after
    ``max_tokens`` (None: until the context is full) or when the caller stops. ``chain``
    samples each token; None means plain greedy: the argmax of the logits.

    ``logits_hook(tokens, logits)`` may change the next token's logits in place before
    each sample. ``prompt_logits(start, n)`` asks for the logits of every prompt token:
    the whole prompt is evaluated again (no prefix reuse) and after each chunk it is
    called while the chunk's ``n`` rows (batch outputs 0..n-1, prompt positions
    ``start..start+n-1``) can be read from the context.

    ``prefilled()`` is called once the prompt is in memory, before the first sample (a
    prompt cache stores the state there).

    ``lookahead=True`` starts the decode of each token before yielding it, so that an
    asynchronous backend (CUDA) computes it while the caller detokenizes and checks stop
    strings: the Python work of a token hides behind the GPU's. A caller that stops then
    leaves that one token decoded in memory (it is in ``state.tokens`` too, so prefix reuse
    stays exact), and the logits of the yielded token are gone once it is yielded: use
    it only when nobody reads logits after sampling.
    """
    limit = ctx.n_ctx_seq
    if batch is None:
        batch = Batch(min(ctx.n_batch, max(1, len(prompt))))
    prefill(ctx, batch, prompt, state, prompt_logits)
    if prefilled is not None:
        prefilled()
    pos = len(prompt)
    produced = 0
    seq_id = state.seq_id
    while max_tokens is None or produced < max_tokens:
        if logits_hook is not None:
            logits_hook(state.tokens, ctx.logits(-1))
        produced += 1
        last = pos >= limit or (max_tokens is not None and produced >= max_tokens)
        if chain is None:  # plain greedy: the argmax of the logits, in C, with the next decode
            try:
                tok, decoded = ctx.argmax_decode(vocab, batch, pos, seq_id, lookahead and not last)
            except BaseException:
                ctx.seq_rm(seq_id, len(state.tokens), -1)
                raise
            if decoded:
                state.tokens.append(tok)
                pos += 1
                yield tok
                continue
        elif lookahead and not last:
            # sample and start decoding the token in one native call, then yield it
            try:
                tok, decoded = ctx.sample_decode(chain, vocab, batch, pos, seq_id)
            except BaseException:
                ctx.seq_rm(seq_id, len(state.tokens), -1)
                raise
            if not decoded:  # end of generation
                yield tok
                return
            state.tokens.append(tok)
            pos += 1
            yield tok
            continue
        else:
            tok = chain.sample(ctx, -1)
        yield tok
        if last or vocab.is_eog(tok):
            return
        _decode_token(ctx, batch, tok, pos, state)
        pos += 1


def _decode_token(ctx: Context, batch: Batch, tok: int, pos: int, state: SequenceState) -> None:
    """Decode ``tok`` at ``pos`` of the sequence and record it; on a failure drop what the
    decode may have left in memory (as :func:`decode_in_step`)."""
    try:
        ctx.decode_token(batch, tok, pos, state.seq_id)
    except BaseException:
        ctx.seq_rm(state.seq_id, len(state.tokens), -1)
        raise
    state.tokens.append(tok)
