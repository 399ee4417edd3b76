"""Prompt-lookup speculative decoding in the continuous-batching engine (AsyncLlama, as the
server runs it): N concurrent greedy callers, with and without
``draft_model=LlamaPromptLookupDecoding(num_pred_tokens=K)``, on prompts whose answers
repeat their own text (rewriting a list, continuing a counted sequence, copying code) and
on prompts whose answers do not.

    python bench/batched_lookup.py --model ../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf --npl 1,4

Prints, per N and prompt kind: generated tokens/s without and with drafting (medians of
--reps alternating runs), their ratio, the decodes each needed, the share of drafted tokens
accepted, and how many outputs differ (greedy either way: near ties may flip, as between
batch sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_binding import AsyncLlama
from llama_binding.generation.drafters import LlamaPromptLookupDecoding

REPETITIVE = [
    "Rewrite this list in the same order, one item per line:\napples\nbananas\ncherries\ndates\n"
    "elderberries\nfigs\ngrapes\nhoneydew\n\nThe list:\n",
    "Count from 1 to 60, separated by commas: 1, 2, 3,",
    "Copy this code exactly:\n\ndef add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
    "def mul(a, b):\n    return a * b\n\nCopy:\n",
    "Repeat after me three times: the quick brown fox jumps over the lazy dog.",
]
FREE = ["Once upon a time,", "The history of the bicycle", "Photosynthesis is", "My favourite city is"]


async def one_run(llm: AsyncLlama, prompts: list[str], n_gen: int) -> tuple[float, list[str], int]:
    t0 = time.perf_counter()
    calls = [llm.acreate_completion(p, max_tokens=n_gen, temperature=0.0) for p in prompts]
    outs = await asyncio.gather(*calls)
    elapsed = time.perf_counter() - t0
    tokens = sum(int(o["usage"]["completion_tokens"]) for o in outs)
    return tokens / elapsed, [str(o["choices"][0]["text"]) for o in outs], tokens


def measure(args: argparse.Namespace, n: int, prompts: list[str], draft: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {"draft_model": LlamaPromptLookupDecoding(num_pred_tokens=args.k)} if draft else {}
    llm = AsyncLlama(args.model, n_seq_max=n, n_ctx=1024 * n, n_gpu_layers=args.ngl, flash_attn="auto",
                     n_threads=args.threads or None, n_threads_batch=args.threads or None, **kw)
    try:
        asyncio.run(one_run(llm, prompts[:1], 4))  # warm-up
        before = llm.stats()
        rates, texts = [], []
        for _ in range(args.reps):
            rate, texts, _ = asyncio.run(one_run(llm, prompts, args.ntg))
            rates.append(rate)
        after = llm.stats()
        return {"rate": statistics.median(rates), "texts": texts,
                "decodes": (after.decodes - before.decodes) / args.reps,
                "drafted": after.drafted_tokens - before.drafted_tokens,
                "accepted": after.accepted_tokens - before.accepted_tokens}
    finally:
        llm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--npl", default="1,4")
    ap.add_argument("--ntg", type=int, default=96)
    ap.add_argument("-k", type=int, default=8, help="draft tokens at most (num_pred_tokens)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    print(f"{args.model.name}: {args.ntg} tokens each, num_pred_tokens {args.k}, median of {args.reps}")
    print("   N  prompts     | plain t/s  lookup t/s  ratio | decodes plain/lookup | accepted | differ")
    for n in [int(x) for x in args.npl.split(",")]:
        for kind, pool in (("repetitive", REPETITIVE), ("free", FREE)):
            prompts = [pool[i % len(pool)] for i in range(n)]
            plain, look = measure(args, n, prompts, False), measure(args, n, prompts, True)
            differ = sum(a != b for a, b in zip(plain["texts"], look["texts"]))
            share = look["accepted"] / look["drafted"] if look["drafted"] else 0.0
            ratio = look["rate"] / plain["rate"]
            print(f"{n:4d}  {kind:<11} | {plain['rate']:9.1f}  {look['rate']:10.1f}  {ratio:5.2f}"
                  f" | {plain['decodes']:7.0f} / {look['decodes']:<7.0f}     | {share:8.2f} | {differ}/{n}",
                  flush=True)


if __name__ == "__main__":
    main()
