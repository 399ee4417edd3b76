"""Where single-stream decode time goes, beside llama-bench tg<gen> at depth <prompt>.

    python bench/decode_gap.py MODEL.gguf [--prompt 512] [--gen 128] [--reps 5] [--ngl 99] [--fa on]

Each variant prefills the same prompt and then times ``--gen`` decodes of one token, in
this process (us per token, the median of the repetitions; llama-bench runs between them):

- raw:        llama-bench's own loop through ctypes (llama_decode of llama_batch_get_one,
              llama_synchronize) on our Llama's context: what the process and the context
              cost beside llama-bench's;
- raw-fresh:  the same on a context made here with llama-bench's parameters alone;
- raw-logits: raw plus llama_get_logits_ith(-1) (what any host sampler reads);
- argmax:     our host argmax, then the decode (no lookahead): Context.argmax_decode;
- lookahead:  the argmax with the next decode started before Python sees the token
              (Llama.create_completion, greedy, as users call it);
- *-t1:       the same with one CPU thread for single-token decodes (llama_set_n_threads);
- llama-bench-t1: llama-bench itself with one thread (-t 1);
- group:      a GreedyGroup sampler attached (native/batch_greedy.c): the argmax on the
              device, no logits copied back;
- sampled:    create_completion at t0.8 / top-k 40 / top-p 0.95.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from llama_binding import Llama, benchmark, capi
from llama_binding.core import Batch
from llama_binding.core.context import physical_cores
from llama_binding.core.sampler import GreedyGroup, SamplerChain
from llama_binding.core.threadpool import ThreadPool

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode import stream_per_token


def _raw_loop(ctx_ptr: Any, prompt: list[int], gen: int, logits: bool) -> float:
    tok = (ctypes.c_int32 * 1)(prompt[1])
    t0 = time.perf_counter()
    for i in range(gen):
        if capi.llama_decode(ctx_ptr, capi.llama_batch_get_one(tok, 1)):
            raise RuntimeError("llama_decode failed")
        capi.llama_synchronize(ctx_ptr)
        if logits:
            capi.llama_get_logits_ith(ctx_ptr, -1)
        tok[0] = prompt[2 + i % (len(prompt) - 2)]
    return (time.perf_counter() - t0) / gen * 1e6


def _fresh_context(llm: Llama, n_ctx: int, threads: int) -> tuple[Any, ThreadPool]:
    p = capi.llama_context_default_params()
    p.n_ctx, p.n_threads, p.n_threads_batch = n_ctx, threads, threads
    p.flash_attn_type = llm.engine.context.params.to_c().flash_attn_type
    ptr = capi.llama_init_from_model(llm.engine.context.model.ptr, p)
    pool = ThreadPool(threads)
    capi.llama_attach_threadpool(ptr, ctypes.cast(pool.ptr, capi.ggml_threadpool_t), None)
    return ptr, pool


def variants(llm: Llama, prompt: list[int], gen: int, fresh: Any) -> dict[str, Callable[[], float]]:
    ctx, vocab = llm.engine.context, llm.engine.vocab
    batch = Batch(1)

    def prefill() -> None:
        llm.reset()
        llm.eval(prompt)

    def raw(logits: bool) -> float:
        prefill()
        return _raw_loop(ctx.ptr, prompt, gen, logits)

    def raw_fresh() -> float:
        capi.llama_memory_clear(capi.llama_get_memory(fresh), True)
        for i in range(0, len(prompt), 512):
            chunk = (ctypes.c_int32 * len(prompt[i:i + 512]))(*prompt[i:i + 512])
            if capi.llama_decode(fresh, capi.llama_batch_get_one(chunk, len(prompt[i:i + 512]))):
                raise RuntimeError("llama_decode failed")
        capi.llama_synchronize(fresh)
        return _raw_loop(fresh, prompt, gen, False)

    def argmax() -> float:
        prefill()
        t0 = time.perf_counter()
        for pos in range(len(prompt), len(prompt) + gen):
            tok, _ = ctx.argmax_decode(vocab, batch, pos, 0, decode_next=False)
            ctx.decode_token(batch, tok, pos, 0)
        return (time.perf_counter() - t0) / gen * 1e6

    def completion(**opts: Any) -> Callable[[], float]:
        def run() -> float:
            llm.reset()
            # (no logit bias against an early end: a bias is one more sampler, which takes the
            # call off the host argmax and the leading top-k; the time per token is what counts)
            return stream_per_token(llm, prompt, gen + 1, **opts) * 1e6
        return run

    def group() -> float:
        prefill()  # (resetting the Llama detaches what its sequence had attached)
        g = GreedyGroup()
        chain = SamplerChain([g.sampler()])
        if not ctx.attach_sampler(0, chain):  # (this backend cannot take it)
            chain.close()
            g.close()
            return float("nan")
        rows, out = np.zeros(1, np.int32), np.zeros(1, np.int32)
        try:
            tok = prompt[-1]
            ctx.decode_token(batch, tok, len(prompt), 0)  # the first sampled row
            t0 = time.perf_counter()
            for pos in range(len(prompt) + 1, len(prompt) + 1 + gen):
                ctx.sampled_rows(rows, out)
                ctx.decode_token(batch, int(out[0]), pos, 0)
            return (time.perf_counter() - t0) / gen * 1e6
        finally:
            ctx.detach_sampler(0)
            chain.close()
            g.close()

    def one_thread(fn: Callable[[], float]) -> Callable[[], float]:
        def run() -> float:
            ctx.set_threads(1, ctx.params.to_c().n_threads_batch)
            try:
                return fn()
            finally:
                ctx.set_threads(ctx.params.to_c().n_threads, ctx.params.to_c().n_threads_batch)
        return run

    greedy = completion(temperature=0.0)
    return {"raw": lambda: raw(False), "raw-fresh": raw_fresh, "raw-logits": lambda: raw(True),
            "raw-t1": one_thread(lambda: raw(False)), "argmax": argmax, "lookahead": greedy,
            "lookahead-t1": one_thread(greedy), "group": group,
            "sampled": completion(temperature=0.8, top_k=40, top_p=0.95, min_p=0.0, seed=1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--fa", choices=["auto", "on", "off"], default="on")
    ap.add_argument("--only", help="a comma list of the variants to run (default: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    threads = physical_cores()
    fa = benchmark.FLASH_ATTN[args.fa]
    n_ctx = args.prompt + args.gen + 16
    llm = Llama(args.model, n_ctx=n_ctx, n_gpu_layers=args.ngl, n_threads=threads, n_threads_batch=threads,
                flash_attn=fa, verbose=False)
    prompt = [llm.token_bos()] + [(i * 7919) % (llm.n_vocab() - 100) + 50 for i in range(args.prompt - 1)]
    fresh, pool = _fresh_context(llm, n_ctx, threads)
    runs = variants(llm, prompt, args.gen, fresh)

    def bench_us(n_threads: int) -> float:
        """llama-bench tg<gen> at depth <prompt>, us per token (median of its 3 repetitions)."""
        (tg,) = benchmark.llama_bench(args.model, n_prompt=0, n_gen=args.gen, depth=args.prompt, reps=3,
                                      threads=n_threads, n_gpu_layers=args.ngl, flash_attn=fa)
        return 1e6 / tg.median
    runs["llama-bench-t1"] = lambda: bench_us(1)
    if args.only:
        runs = {k: v for k, v in runs.items() if k in args.only.split(",")}
    times: dict[str, list[float]] = {k: [] for k in [*runs, "llama-bench"]}
    for fn in runs.values():
        fn()  # warm-up (graphs, CUDA graph capture, an attached sampler's rebuild)
    for _ in range(args.reps):
        for name, fn in runs.items():
            times[name].append(fn())
        times["llama-bench"].append(bench_us(threads))
    base = statistics.median(times["llama-bench"])
    print(f"model {args.model}  prompt {args.prompt}  gen {args.gen}  reps {args.reps}  threads {threads}")
    result = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        result[name] = med
        print(f"{name:12s} {med:8.1f} us/token   {base / med:6.3f}x of llama-bench tg{args.gen} "
              f"({' '.join(f'{t:.0f}' for t in ts)})")
    capi.llama_free(fresh)
    pool.free()
    if args.json:
        args.json.write_text(json.dumps({"us_per_token": result, "runs": times}, indent=2))
    llm.close()


if __name__ == "__main__":
    main()
