"""A greedy chain with a logit bias picks its token in numpy (SamplerChain.greedy_bias): the
same token as llama.cpp's chain on every row, including ties, banned maxima, -inf and NaN."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llama_binding import Llama
from llama_binding.core.sampler import biased_argmax
from llama_binding.errors import ClosedError, SamplerError
from llama_binding.generation.sampling import SamplingParams, build_chain


def reference(row: np.ndarray, ids: np.ndarray, bias: np.ndarray) -> int:
    """llama.cpp's logit bias then greedy (strict >, from candidate 0), -1 for a pick that is
    not finite (the chain raises there)."""
    x = row.copy()
    x[ids] += bias
    best = 0
    for i in range(1, len(x)):
        if x[i] > x[best]:
            best = i
    return best if math.isfinite(x[best]) else -1


def test_random_rows_with_ties_bans_and_boosts() -> None:
    rng = np.random.default_rng(5)
    for _ in range(3000):
        n = int(rng.integers(1, 40))
        row = rng.integers(-3, 4, n).astype(np.float32)  # few values: many ties
        if rng.random() < 0.2:
            row[rng.integers(0, n, 3)] = -np.inf
        ids = rng.choice(n, int(rng.integers(1, n + 1)), replace=False).astype(np.int32)
        if rng.random() < 0.5:
            ids[0] = int(row.argmax())  # the largest logit biased too
        bias = rng.choice(np.array([-np.inf, -2.0, -1.0, 0.0, 1.0, 2.5], np.float32), len(ids))
        want = reference(row, ids, bias)
        got = biased_argmax(row, ids, bias)
        assert got == want, (row, ids, bias)  # (no NaN here: -1 only where nothing finite wins)


@pytest.mark.parametrize("row, bias, want", [
    ([1.0, math.nan, 3.0], [0.0], -1),  # a NaN: the chain decides (llama.cpp skips it)
    ([-math.inf, -math.inf], [0.0], -1),  # nothing finite: the chain raises
    ([1.0, 2.0], [math.inf], -1),  # +inf picked: not finite, the chain raises
    ([1.0, 5.0, 5.0], [0.0], 1),  # ties: the first
    ([5.0, 1.0, 5.0], [-math.inf], 2),  # the banned maximum's tie further on
])
def test_edges(row: list[float], bias: list[float], want: int) -> None:
    r = np.array(row, np.float32)
    assert biased_argmax(r, np.array([0], np.int32), np.array(bias, np.float32)) == want


@pytest.fixture(scope="module")
def llm(smollm2: Path) -> Iterator[Llama]:
    with Llama(smollm2, n_ctx=256, verbose=False) as m:  # (49k logits: the numpy path's vocabulary)
        yield m


def test_same_token_as_the_native_chain(llm: Llama) -> None:
    ctx, vocab = llm.engine.context, llm.engine.vocab
    llm.create_completion("Once upon a time", max_tokens=1, temperature=0.0)
    row = ctx.logits(-1)
    order = np.argsort(-row, kind="stable")
    rng = np.random.default_rng(1)
    biases = [{int(order[0]): -math.inf}, {int(order[0]): -math.inf, int(order[1]): -math.inf},
              {int(order[5]): 100.0}, {int(order[3]): float(row[order[0]] - row[order[3]])}]
    biases += [{int(t): float(rng.normal(0, 3)) for t in rng.choice(vocab.n_tokens, 20, replace=False)}
               for _ in range(20)]
    for bias in biases:
        fast = build_chain(SamplingParams(temperature=0.0, logit_bias=bias), vocab, 256)
        slow = build_chain(SamplingParams(temperature=0.0, logit_bias=bias), vocab, 256)
        assert fast.greedy_bias is not None
        slow.greedy_bias = None
        assert fast.sample(ctx, -1) == slow.sample(ctx, -1), bias
        fast.close()
        slow.close()
    assert build_chain(SamplingParams(temperature=0.0, logit_bias=bias, repeat_penalty=1.1), vocab,
                       256).greedy_bias is None  # another sampler between: the chain as it is


def test_every_token_banned_still_raises(llm: Llama) -> None:
    ctx, vocab = llm.engine.context, llm.engine.vocab
    llm.create_completion("Once upon a time", max_tokens=1, temperature=0.0)
    bias = {t: -math.inf for t in range(vocab.n_tokens - 1)}
    chain = build_chain(SamplingParams(temperature=0.0, logit_bias=bias), vocab, 256)
    assert chain.sample(ctx, -1) == vocab.n_tokens - 1
    ctx.logits(-1)[vocab.n_tokens - 1] = -math.inf  # (the view is the context's row)
    with pytest.raises(SamplerError):
        chain.sample(ctx, -1)


def test_a_closed_chain_refuses(llm: Llama) -> None:
    llm.create_completion("Once upon a time", max_tokens=1, temperature=0.0)
    chain = build_chain(SamplingParams(temperature=0.0, logit_bias={1: -math.inf}), llm.engine.vocab, 256)
    chain.close()
    with pytest.raises(ClosedError):
        chain.sample(llm.engine.context, -1)


def test_small_vocabularies_keep_the_chain(stories260k: Path) -> None:
    """With 512 logits llama.cpp's chain is cheaper than numpy's fixed cost (bench/biased_argmax.py)."""
    with Llama(stories260k, n_ctx=64, verbose=False) as small:
        p = SamplingParams(temperature=0.0, logit_bias={1: -math.inf})
        chain = build_chain(p, small.engine.vocab, 64)
        assert chain.greedy_bias is None
        chain.close()
