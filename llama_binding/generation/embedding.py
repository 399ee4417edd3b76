"""Embeddings and rerank scores: many inputs packed into few decodes.

Each input gets its own sequence id, and inputs are packed into one batch while their
tokens fit in one micro-batch (``n_ubatch``) and their count in ``n_seq_max``. A batch
must be one micro-batch: llama.cpp's encoder (BERT) stops the process on a batch larger
than ``n_ubatch``, and a pooled sequence split over two micro-batches would be pooled in
parts. The memory is cleared before each batch, so inputs never see each other.

Pooling is the context's (the model's, or the ``pooling_type`` it was made with): with a
pooling type each input gives one vector (``RANK``: its ``n_cls_out`` scores), with
``NONE`` one row per token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from ..core.batch import Batch
from ..core.context import Context, PoolingType
from ..errors import ContextOverflowError

__all__ = ["embed_tokens", "fit", "normalized", "rerank_tokens"]


def fit(tokens: list[int], limit: int, truncate: bool, index: int) -> list[int]:
    """``tokens`` cut to ``limit`` when ``truncate``, else an error naming the input."""
    if len(tokens) <= limit:
        return tokens
    if truncate:
        return tokens[:limit]
    raise ContextOverflowError(
        f"input {index} has {len(tokens)} tokens, more than the {limit} one batch of this context holds "
        "(n_ubatch, n_ctx); pass truncate=True to cut it, or make the Llama with larger n_ctx/n_ubatch")


def _groups(inputs: Sequence[list[int]], max_tokens: int, max_seqs: int) -> Iterator[range]:
    """Consecutive runs of inputs whose tokens fit ``max_tokens`` and count ``max_seqs``."""
    start, used = 0, 0
    for i, toks in enumerate(inputs):
        if i > start and (used + len(toks) > max_tokens or i - start >= max_seqs):
            yield range(start, i)
            start, used = i, 0
        used += len(toks)
    if start < len(inputs):
        yield range(start, len(inputs))


def normalized(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``v`` scaled to unit Euclidean length (rows separately for a 2-D array); zeros stay."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    out: npt.NDArray[np.float32] = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    return out


def embed_tokens(ctx: Context, inputs: Sequence[list[int]], normalize: bool,
                 batch: Batch | None = None) -> list[npt.NDArray[np.float32]]:
    """The embedding of each token list: a vector with a pooling type, else a matrix with a
    row per token. Every list must fit one micro-batch (see :func:`fit`)."""
    pooling = ctx.pooling_type
    limit = min(ctx.n_ubatch, ctx.n_batch)
    batch = batch or Batch(limit, 1)
    out: list[npt.NDArray[np.float32]] = []
    for group in _groups(inputs, limit, max(ctx.n_seq_max, 1)):
        ctx.memory_clear()
        batch.clear()
        for seq, i in enumerate(group):
            batch.add_sequence(inputs[i], 0, seq, logits_all=True)
        ctx.decode(batch)
        row = 0
        for seq, i in enumerate(group):
            n = len(inputs[i])
            if pooling == PoolingType.NONE:
                v = np.stack([ctx.embeddings(row + k) for k in range(n)])
            else:
                v = ctx.seq_embeddings(seq).copy()
            row += n
            out.append(normalized(v) if normalize and pooling != PoolingType.RANK else v)
    ctx.memory_clear()
    return out


def rerank_tokens(bos: list[int], query: list[int], sep: list[int], eos: list[int],
                  document: list[int]) -> list[int]:
    """llama.cpp's rerank input without a template: BOS query EOS SEP document EOS."""
    return [*bos, *query, *eos, *sep, *document, *eos]
