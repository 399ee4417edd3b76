"""A chain that leads with top-p (top-k 0): llama.cpp's top-p sampler over a whole row of
logits beside the native step's (native/top_p.c: the same candidates, order and p, without
sorting the whole row unless the result needs it).

    python bench/top_p.py [--vocab 128256] [--reps 7]

Rows of random normal logits times a scale: a small scale is a flat distribution (top-p
keeps most of the vocabulary: llama.cpp sorts every candidate), a large one a peaked
distribution (the 256 largest hold p). Printed per row: the candidates kept, the best of
--reps for each side (llama.cpp's from candidates built in token order, as a chain gets
them; ours from the logits), and ours / llama.cpp (below 1: ours faster).
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_binding.capi import llama as capi
from llama_binding.core import _native

DTYPE = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


def llama_cpp_s(x: np.ndarray, p: float, reps: int) -> tuple[float, int]:
    n = len(x)
    arr = (capi.llama_token_data * n)()
    raw = ctypes.cast(arr, ctypes.POINTER(ctypes.c_uint8))
    cand = np.ctypeslib.as_array(raw, (n * DTYPE.itemsize,)).view(DTYPE)
    smpl = capi.llama_sampler_init_top_p(p, 1)
    best, kept = float("inf"), 0
    try:
        for _ in range(reps):
            cand["id"], cand["logit"], cand["p"] = np.arange(n), x, 0.0
            cur = capi.llama_token_data_array(arr, n, -1, False)
            t0 = time.perf_counter()
            capi.llama_sampler_apply(smpl, ctypes.byref(cur))
            best, kept = min(best, time.perf_counter() - t0), int(cur.size)
    finally:
        capi.llama_sampler_free(smpl)
    return best, kept


def ours_s(x: np.ndarray, p: float, reps: int) -> tuple[float, int]:
    best, kept = float("inf"), 0
    for _ in range(reps):
        t0 = time.perf_counter()
        got = _native.top_p(x, p)
        best = min(best, time.perf_counter() - t0)
        kept = 0 if got is None else len(got)
    return best, kept


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    ratios = []
    print(f"top-p over {args.vocab:,} logits, best of {args.reps}")
    for scale in (0.3, 1.0, 2.0, 4.0, 8.0):
        for p in (0.9, 0.95):
            rng = np.random.default_rng(int(scale * 100))
            x = (rng.standard_normal(args.vocab) * scale).astype(np.float32)
            theirs, kept = llama_cpp_s(x, p, args.reps)
            ours, ours_kept = ours_s(x, p, args.reps)
            if ours_kept != kept:
                raise SystemExit(f"scale {scale} p {p}: ours kept {ours_kept}, llama.cpp {kept}")
            ratios.append(ours / theirs)
            print(f"scale {scale:4.1f} p {p:4.2f}: kept {kept:7,}   llama.cpp {theirs * 1e3:6.2f} ms   ours "
                  f"{ours * 1e3:6.2f} ms   ratio {ours / theirs:5.3f}x")
    print(f"geometric mean ratio {float(np.exp(np.mean(np.log(ratios)))):.3f}x (below 1: ours faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
