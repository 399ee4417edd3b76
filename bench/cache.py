"""Prompt time with a cached 1,000-token prefix against evaluating it, in a fresh context.

    python bench/cache.py [MODEL.gguf] [--prefix 1000] [--reps 3] [--cache-dir DIR]

For each cache kind (RAM; disk, read back by a new process) a first Llama evaluates a
prefix-long prompt and stores its state; then a fresh Llama (a new process for the disk
cache, so nothing of the first one is reused) answers the prefix plus a short question with
max_tokens=1. The same call without a cache is the baseline. Prints the median prompt times
and the speed-up (target: at least 5x).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llama_binding import Llama, LlamaDiskCache, LlamaRAMCache

MODEL = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = " Question: what is this text about? Answer:"

CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[4])
from cache import timed_call
from llama_binding import Llama, LlamaDiskCache
llm = Llama(sys.argv[1], n_ctx=2048)
llm.set_cache(LlamaDiskCache(sys.argv[2], 4 << 30))
print(json.dumps(timed_call(llm, json.loads(sys.argv[3]))))
"""


def prefix_tokens(llm: Llama, n: int) -> list[int]:
    words = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
             "jovial packs of boxing frogs ").split()
    text = " ".join(words[i % len(words)] + str(i % 97) for i in range(n))
    return llm.tokenize(text.encode())[:n]


def timed_call(llm: Llama, tokens: list[int]) -> dict[str, float]:
    """Seconds of a max_tokens=1 completion of ``tokens`` and the prompt tokens evaluated."""
    llm.engine.context.perf_reset()
    t0 = time.perf_counter()
    llm.create_completion(tokens, max_tokens=1, temperature=0.0)
    return {"s": time.perf_counter() - t0, "evaluated": llm.engine.context.perf()["n_p_eval"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=str(MODEL))
    ap.add_argument("--prefix", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with Llama(args.model, n_ctx=2048) as llm:
        prefix = prefix_tokens(llm, args.prefix)
        query = prefix + llm.tokenize(QUESTION.encode(), add_bos=False)
    results: dict[str, object] = {"model": args.model, "prefix": len(prefix), "query": len(query)}

    cold = []
    for _ in range(args.reps):
        with Llama(args.model, n_ctx=2048) as llm:
            cold.append(timed_call(llm, query))
    ram = []
    cache = LlamaRAMCache(4 << 30)
    with Llama(args.model, n_ctx=2048) as first:
        first.set_cache(cache)
        first.create_completion(prefix, max_tokens=1, temperature=0.0)
    for _ in range(args.reps):
        with Llama(args.model, n_ctx=2048) as llm:  # a fresh context: no in-context reuse
            llm.set_cache(cache)
            ram.append(timed_call(llm, query))
    disk = []
    folder = Path(tempfile.mkdtemp(prefix="lb-cache-"))
    try:
        with Llama(args.model, n_ctx=2048) as first:
            first.set_cache(LlamaDiskCache(folder, 4 << 30))
            first.create_completion(prefix, max_tokens=1, temperature=0.0)
        for _ in range(args.reps):
            out = subprocess.run([sys.executable, "-c", CHILD, args.model, str(folder), json.dumps(query),
                                  str(Path(__file__).parent)], capture_output=True, text=True, check=True)
            disk.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    base = statistics.median(r["s"] for r in cold)
    print(f"model {args.model}  prefix {len(prefix)} tokens  query {len(query)} tokens  reps {args.reps}")
    print(f"no cache:            {base * 1e3:8.1f} ms  (evaluated {cold[0]['evaluated']:.0f} tokens)")
    for name, runs in (("RAM cache", ram), ("disk, new process", disk)):
        t = statistics.median(r["s"] for r in runs)
        print(f"{name + ':':20s} {t * 1e3:8.1f} ms  (evaluated {runs[0]['evaluated']:.0f} tokens)  "
              f"speed-up {base / t:5.1f}x")
        results[name] = {"ms": t * 1e3, "speedup": base / t, "evaluated": runs[0]["evaluated"]}
    results["no cache"] = {"ms": base * 1e3}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
