"""The cost of a greedy pick with a logit bias, a row at a time: llama.cpp's chain (a candidate
per vocabulary entry, the bias, greedy) against ``SamplerChain.greedy_bias`` (the biased
row's argmax in numpy), on one real row of the model's logits; and the plain argmax.

    python bench/biased_argmax.py [--model M.gguf] [--n 2000]

The bias bans the model's end-of-generation tokens, as ``--ignore-eos`` does.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llama_binding import Llama
from llama_binding.generation.sampling import SamplingParams, build_chain

DEFAULT_MODEL = Path(__file__).resolve().parents[1].parent / "shared/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def per_row_us(pick: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        pick()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    with Llama(args.model, n_ctx=512, verbose=False) as llm:
        ctx, vocab = llm.engine.context, llm.engine.vocab
        n_vocab = vocab.n_tokens
        llm.create_completion("Hello there", max_tokens=1, temperature=0.0)
        bias = {t: float("-inf") for t in range(vocab.n_tokens) if vocab.is_eog(t)}
        fast = build_chain(SamplingParams(temperature=0.0, logit_bias=bias), vocab, 512)
        chain = build_chain(SamplingParams(temperature=0.0, logit_bias=bias), vocab, 512)
        chain.greedy_bias = None
        assert fast.sample(ctx, -1) == chain.sample(ctx, -1)
        t_chain = per_row_us(lambda: chain.sample(ctx, -1), args.n)
        t_fast = per_row_us(lambda: fast.sample(ctx, -1), args.n)
        t_argmax = per_row_us(lambda: int(np.argmax(ctx.logits(-1))), args.n)
    print(f"{args.model.name}: {n_vocab} logits, {len(bias)} banned   llama.cpp's chain {t_chain:6.1f} us"
          f"   biased argmax {t_fast:6.1f} us ({t_fast / t_chain:.2f}x)   plain argmax {t_argmax:6.1f} us")


if __name__ == "__main__":
    main()
