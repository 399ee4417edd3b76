"""A repeat penalty then top-k (Ollama's defaults: repeat 1.1 over the last 64 tokens, top-k
40, top-p, temperature, a seeded draw): llama.cpp's chain over a row of logits beside ours
(native/penalties.c: the chain over the k + window largest logits and the window's tokens).

    python bench/penalties.py --model ../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf

One decode of a short prompt gives the row; both chains accept the same --window tokens
first (a full window), then each draw is timed: llama.cpp's ``llama_sampler_sample`` (it
builds a candidate per vocabulary entry, the penalties look each one up) and ours
(``Context.sample_rows`` with the chain's cut). Both chains draw the same tokens (checked).
Printed: the median per draw of each and ours / llama.cpp (below 1: ours faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_binding import Llama
from llama_binding.capi import llama as capi
from llama_binding.core import Batch, Sampler, SamplerChain


def chain(n_vocab: int, last_n: int, window: bool, seed: int) -> SamplerChain:
    return SamplerChain([Sampler.penalties(n_vocab, last_n, 1.1, window=window), Sampler.top_k(40),
                         Sampler.top_p(0.95), Sampler.temp(0.8), Sampler.dist(seed)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()
    llm = Llama(str(args.model), n_ctx=256, n_gpu_layers=0, verbose=False)
    ctx, vocab = llm.engine.context, llm.engine.vocab
    prompt = llm.engine.prompt_tokens("The old house by the river had a garden where")
    batch = Batch(len(prompt))
    batch.add_sequence(prompt, 0, 0)
    ctx.decode(batch)
    row = len(prompt) - 1
    n = vocab.n_tokens
    theirs, ours = chain(n, args.window, False, 1), chain(n, args.window, True, 1)
    rng = np.random.default_rng(1)
    for t in rng.integers(0, n, args.window).tolist():
        theirs.accept(t)
        ours.accept(t)
    rows, out = np.array([row], dtype=np.int32), np.zeros(1, dtype=np.int32)
    cut = np.array([ours.leading_cut], dtype=np.int32)
    t_theirs, t_ours = [], []
    for _ in range(args.draws):
        t0 = time.perf_counter()
        want = int(capi.llama_sampler_sample(theirs.ptr, ctx.ptr, row))
        t1 = time.perf_counter()
        ctx.sample_rows(vocab, [ours.address], rows, out, 1, cut)
        t2 = time.perf_counter()
        if int(out[0]) != want:
            raise SystemExit(f"ours drew {int(out[0])}, llama.cpp {want}")
        t_theirs.append(t1 - t0)
        t_ours.append(t2 - t1)
    a, b = statistics.median(t_theirs), statistics.median(t_ours)
    print(f"{args.model.name}: {n:,} logits, a window of {args.window}, {args.draws} draws (the same tokens)")
    print(f"llama.cpp's chain {a * 1e3:.3f} ms a draw   ours {b * 1e3:.3f} ms   ratio {b / a:.3f}x "
          "(below 1: ours faster)")
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
