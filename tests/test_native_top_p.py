"""The host's leading top-p (``native/top_p.c``: llama.cpp's softmax in token order, the 256
largest, then a radix sort of the whole row only when they hold less than p), checked
against llama.cpp's own top-p sampler over the same logits: the same candidates in the same
order with bit-identical logits and p (on equal logits the order may differ: there ours
takes the lower id first), on flat and peaked rows, rows with -inf, ties, and where it must
step aside (NaN, small rows, p outside (0, 1))."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from llama_binding.capi import llama as capi
from llama_binding.core import _native
from llama_binding.core.sampler import top_p_cut

DTYPE = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


def llama_top_p(x: np.ndarray, p: float) -> np.ndarray:
    """llama.cpp's top-p sampler over candidates built in token order, as a chain gets them."""
    n = len(x)
    arr = (capi.llama_token_data * n)()
    view = np.ctypeslib.as_array(ctypes.cast(arr, ctypes.POINTER(ctypes.c_uint8)), (n * DTYPE.itemsize,))
    cand = view.view(DTYPE)
    cand["id"], cand["logit"], cand["p"] = np.arange(n), x, 0.0
    cur = capi.llama_token_data_array(arr, n, -1, False)
    smpl = capi.llama_sampler_init_top_p(p, 1)
    try:
        capi.llama_sampler_apply(smpl, ctypes.byref(cur))
    finally:
        capi.llama_sampler_free(smpl)
    assert cur.sorted
    return cand[:cur.size].copy()


def assert_same(got: np.ndarray | None, want: np.ndarray) -> None:
    assert got is not None
    assert len(got) == len(want)
    assert (got["logit"].view(np.uint32) == want["logit"].view(np.uint32)).all()
    assert (got["p"].view(np.uint32) == want["p"].view(np.uint32)).all()
    moved = got["id"] != want["id"]  # only among equal logits, where ours has the lower id first
    assert (got["logit"][moved] == want["logit"][moved]).all()
    above = got["logit"] > got["logit"][-1]  # (at the last logit kept, equal ones may be others)
    assert sorted(got["id"][above].tolist()) == sorted(want["id"][want["logit"] > want["logit"][-1]].tolist())
    for v in np.unique(got["logit"][moved]):
        ids = got["id"][got["logit"] == v]
        assert (np.diff(ids) > 0).all()


@pytest.mark.parametrize("n", [1025, 32000, 49152, 128256])
@pytest.mark.parametrize("scale", [0.3, 1.0, 2.0, 4.0, 8.0, 30.0])
@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.95, 0.99])
def test_the_same_candidates_p_and_order_as_llama_cpp(n: int, scale: float, p: float) -> None:
    """Flat rows keep most of the vocabulary (the whole-row sort), peaked ones a handful
    (the first 256); random normal float32 logits hold some equal values too."""
    x = (np.random.default_rng(n + int(scale * 10)).standard_normal(n) * scale).astype(np.float32)
    assert_same(_native.top_p(x, p), llama_top_p(x, p))


def test_minus_infinity_ties_and_a_single_winner() -> None:
    n = 128256
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, n).astype(np.float32)  # thousands of equal values
    x[::3] = -np.inf
    for p in (0.1, 0.5, 0.9, 0.999):
        assert_same(_native.top_p(x, p), llama_top_p(x, p))
    one = np.full(n, -np.inf, dtype=np.float32)
    one[777] = 2.0
    got = _native.top_p(one, 0.9)
    assert got is not None and got["id"].tolist() == [777]
    assert_same(got, llama_top_p(one, 0.9))


def test_where_it_steps_aside() -> None:
    x = np.random.default_rng(4).standard_normal(4096).astype(np.float32)
    assert _native.top_p(x[:1024], 0.9) is None  # llama.cpp sorts small rows in place
    assert _native.top_p(x, 1.0) is None and _native.top_p(x, 0.0) is None
    nan = x.copy()
    nan[10] = np.nan
    assert _native.top_p(nan, 0.9) is None
    assert _native.top_p(np.full(4096, -np.inf, dtype=np.float32), 0.9) is None


def test_the_code_a_chain_passes() -> None:
    assert top_p_cut(0.9) < 0 and top_p_cut(0.9, 0) == top_p_cut(0.9)
    assert top_p_cut(0.9, 2) == 0  # min_keep > 1: llama.cpp's own
    assert top_p_cut(1.0) == top_p_cut(0.0) == top_p_cut(1.0 - 1e-12) == top_p_cut(-0.5) == 0
    assert top_p_cut(1e-60) == 0  # 0 as a float
