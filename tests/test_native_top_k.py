"""The host's leading top-k (``native/step.c``: block maxima bound the k-th largest logit,
then only the SIMD lanes that reach the bound are scanned), checked against numpy on arrays
that reach every path: whole and partial blocks, wide and narrow blocks, ties, NaN, -inf."""

from __future__ import annotations

import numpy as np
import pytest

from llama_binding.core import _native


def reference(x: np.ndarray, k: int) -> list[int]:
    """The k largest, largest first, the lower id first on ties; NaN never taken."""
    ids = np.arange(len(x))
    keep = ~np.isnan(x)
    order = np.lexsort((ids[keep], -x[keep].astype(np.float64)))
    return ids[keep][order][:k].tolist()


@pytest.mark.parametrize("n", [64, 1000, 32000, 49152, 50257, 128256, 151936, 256 * 40 + 17])
@pytest.mark.parametrize("k", [1, 2, 40, 64, 300, 1000])
def test_the_k_largest_in_order(n: int, k: int) -> None:
    rng = np.random.default_rng(n * 1009 + k)
    x = rng.standard_normal(n).astype(np.float32)
    got = _native.top_k(x, k)
    if k >= n or n // 64 < k:  # too few blocks for k: the chain's own top-k runs instead
        assert got is None
        return
    assert got == reference(x, k)


def test_the_best_logits_in_the_tail_after_the_last_whole_block() -> None:
    n = 256 * 200 + 37
    x = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    x[-37:] += 10.0  # every tail logit above every other
    assert _native.top_k(x, 40) == reference(x, 40)
    assert set(reference(x, 40)[:37]) == set(range(n - 37, n))


@pytest.mark.parametrize("clustered", [False, True])
def test_ties_take_the_lower_id_first(clustered: bool) -> None:
    n = 128256
    x = np.random.default_rng(2).integers(0, 4, n).astype(np.float32)  # thousands of equal values
    if clustered:  # all the maxima in one block, several in one lane
        x[:] = 0.0
        x[5000:5000 + 256:3] = 1.0
    for k in (1, 40, 64):
        assert _native.top_k(x, k) == reference(x, k)


def test_nan_and_minus_infinity() -> None:
    n = 4096
    x = np.full(n, -np.inf, dtype=np.float32)
    x[::7] = np.nan
    x[100:150] = np.linspace(0, 1, 50, dtype=np.float32)
    assert _native.top_k(x, 40) == reference(x, 40)
    x[:] = np.nan
    x[:10] = 1.0
    assert _native.top_k(x, 40) is None  # fewer than k not NaN: every candidate, as llama.cpp
    with pytest.raises(ValueError):
        _native.top_k(x.astype(np.float64), 4)
