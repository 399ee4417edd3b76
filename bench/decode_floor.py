"""Where our single-stream decode's floor lies against llama-bench's tg (a diagnostic for P16's
1B decode gap: run 22's bare native loop was 0.943x of tg128 on an H200, the 8B shape 0.98x, a
fixed ~50-70 us a token).

    python bench/decode_floor.py M.gguf --ngl 99 --fa on [--depth 512 --gen 128 --reps 3]

Each loop decodes one token at a time at the prompt's depth, in the same process and context:

- ``decode+sync``: llama-bench's own loop (decode one token, ``llama_synchronize``, nothing
  read back) on our context: what a decode costs there with no sampling at all;
- ``process+sync``: the same with llama-bench's ``llama_batch_ext`` and ``llama_process``
  (six ctypes calls a token where ``decode+sync`` makes two native ones);
- ``host argmax``: what ``Llama`` does for plain greedy (``Context.argmax_decode``);
- ``decode+sync, pool detached``: the first, after ``llama_detach_threadpool`` (ggml then
  computes a one-thread graph inline, with no pool to wake);
- ``decode+sync, no abort callback``: the first, after ``llama_set_abort_callback(NULL)``.

and llama-bench's tg at the same depth three ways: its default threads, ``-t 1``, and ``-t 1
--poll 0``, alternating with ours. Prints t/s and the ratio against llama-bench's default.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from token_loop import loop_host, prefill

from llama_binding import Llama, benchmark
from llama_binding.capi import llama as capi
from llama_binding.core.batch import Batch
from llama_binding.core.context import Context


def decode_sync(ctx: Context, prompt: list[int], gen: int, token: int) -> float:
    prefill(ctx, prompt)
    batch, pos = Batch(1), len(prompt)
    t0 = time.perf_counter()
    for _ in range(gen):
        ctx.decode_token(batch, token, pos, 0)
        ctx.synchronize()
        pos += 1
    return gen / (time.perf_counter() - t0)


def process_sync(ctx: Context, prompt: list[int], gen: int, token: int) -> float:
    """llama-bench's loop as llama-bench writes it: a ``llama_batch_ext`` and ``llama_process``
    (``llama_decode`` converts its ``llama_batch`` into a new ``llama_batch_ext`` each call)."""
    prefill(ctx, prompt)
    ptr, pos = ctx.ptr, len(prompt)
    b = capi.llama_batch_ext_init(ptr)
    p = ctypes.c_int32(0)
    decode = capi.LLAMA_PROCESS_TYPE_DECODE
    try:
        t0 = time.perf_counter()
        for _ in range(gen):
            capi.llama_batch_ext_clear(b)
            i = capi.llama_batch_ext_add_token(b, 0, token)
            p.value = pos
            capi.llama_batch_ext_set_pos(b, i, ctypes.byref(p))
            capi.llama_batch_ext_set_output_logits(b, i, True)
            if capi.llama_process(ptr, decode, b) != 0:
                raise RuntimeError("llama_process failed")
            capi.llama_synchronize(ptr)
            pos += 1
        return gen / (time.perf_counter() - t0)
    finally:
        capi.llama_batch_ext_free(b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--fa", choices=["auto", "on", "off"], default="on")
    ap.add_argument("--depth", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    lines: list[str] = []  # llama.cpp's own account of the devices, the layers and the graph splits
    wanted = re.compile(r"splits =|sched copies|compute buffer|offloaded|using device|CUDA\d|model buffer"
                        r"|output buffer", re.I)

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage().strip()
            if wanted.search(text):
                lines.append(text)

    native = logging.getLogger("llama_binding.native")
    native.setLevel(logging.INFO)
    native.addHandler(Keep())
    llm = Llama(args.model, n_ctx=args.depth + args.gen + 16, n_gpu_layers=args.ngl,
                flash_attn=benchmark.FLASH_ATTN[args.fa], verbose=False)
    ctx, vocab = llm.engine.context, llm.engine.vocab
    prompt = [llm.token_bos()] + [(i * 7919) % (llm.n_vocab() - 100) + 50 for i in range(args.depth - 1)]
    token = prompt[-1]
    fa = benchmark.FLASH_ATTN[args.fa]
    tools = {"llama-bench": [], "llama-bench -t 1": ["-t", "1"],
             "llama-bench -t 1 --poll 0": ["-t", "1", "--poll", "0"]}
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    for _ in range(args.reps):
        add("decode+sync", decode_sync(ctx, prompt, args.gen, token))
        add("process+sync (llama_batch_ext)", process_sync(ctx, prompt, args.gen, token))
        add("host argmax", loop_host(ctx, vocab, prompt, args.gen))
        for name, extra in tools.items():
            (speed,) = benchmark.llama_bench(args.model, n_prompt=0, n_gen=args.gen, depth=args.depth, reps=3,
                                             n_gpu_layers=args.ngl, flash_attn=fa, extra=extra)
            add(name, speed.median)
    capi.llama_set_abort_callback(ctx.ptr, None, None)  # (for the rest of this process)
    for _ in range(args.reps):
        add("decode+sync, no abort callback", decode_sync(ctx, prompt, args.gen, token))
    capi.llama_detach_threadpool(ctx.ptr)
    for _ in range(args.reps):
        add("decode+sync, pool detached too", decode_sync(ctx, prompt, args.gen, token))
    tg = statistics.median(results["llama-bench"])
    for text in lines:
        print(f"  llama.cpp: {text}")
    print(f"model {args.model}  ngl {args.ngl}  fa {args.fa}  depth {args.depth}  reps {args.reps}  "
          f"ours: {ctx.n_threads} thread(s) a token")
    for name, runs in results.items():
        med = statistics.median(runs)
        print(f"{name:32s} {med:8.1f} t/s  ratio {med / tg:5.3f}x  ({', '.join(f'{r:.1f}' for r in runs)})")


if __name__ == "__main__":
    main()
