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
- ``raw context``: llama-bench's own context parameters and pool (16 and 1 threads), and one
  thread a token on a 16-thread pool (our Context before ContextPools);
- ``decode+sync, no abort callback``: the first, after ``llama_set_abort_callback(NULL)``.

and llama-bench's tg at the same depth three ways: its default threads, ``-t 1``, and ``-t 1
--poll 0``, alternating with ours. Prints t/s and the ratio against llama-bench's default.
"""

from __future__ import annotations

import ctypes
import logging
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from token_loop import loaded, loop_host, parser, prefill

from llama_binding import _log, benchmark
from llama_binding.capi import llama as capi
from llama_binding.core.batch import Batch
from llama_binding.core.context import Context
from llama_binding.core.threadpool import ThreadPool


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


def raw_context(model_ptr: object, n_ctx: int, flash_attn: int, threads: int,
                pool_threads: int) -> tuple[object, ThreadPool]:
    """A context made as llama-bench makes its own: llama.cpp's default parameters with its
    n_ctx, n_batch 2048, n_ubatch 512, flash attention and threads, and a pool of
    ``pool_threads`` attached (llama-bench's: as many as its threads), nothing else of ours
    (no abort callback, no sampler)."""
    params = capi.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, 2048, 512
    params.flash_attn_type = flash_attn
    params.n_threads = threads
    params.n_threads_batch = pool_threads
    params.no_perf = True
    ptr = capi.llama_init_from_model(model_ptr, params)
    if not ptr:
        raise RuntimeError("llama_init_from_model failed")
    pool = ThreadPool(pool_threads)
    if pool.ptr:
        capi.llama_attach_threadpool(ptr, ctypes.cast(pool.ptr, capi.ggml_threadpool_t), None)
    return ptr, pool


def raw_decode_sync(ptr: object, prompt: list[int], gen: int, token: int) -> float:
    """llama-bench's tg loop on a raw context: llama_batch_get_one of one token, decode, sync."""
    capi.llama_memory_clear(capi.llama_get_memory(ptr), True)
    toks = (ctypes.c_int32 * len(prompt))(*prompt)
    for at in range(0, len(prompt), 512):  # (n_ubatch 512: llama-bench's prompt in batches too)
        part = (ctypes.c_int32 * min(512, len(prompt) - at)).from_buffer(toks, 4 * at)
        if capi.llama_decode(ptr, capi.llama_batch_get_one(part, len(part))) != 0:
            raise RuntimeError("llama_decode failed (prompt)")
    capi.llama_synchronize(ptr)
    one = (ctypes.c_int32 * 1)(token)
    t0 = time.perf_counter()
    for _ in range(gen):
        if capi.llama_decode(ptr, capi.llama_batch_get_one(one, 1)) != 0:
            raise RuntimeError("llama_decode failed")
        capi.llama_synchronize(ptr)
    return gen / (time.perf_counter() - t0)


def cuda_graph_log(ctx: Context, prompt: list[int], token: int) -> dict[str, int]:
    """ggml-cuda's debug lines on its CUDA graphs (reused, warm-up, update) over 16 decodes
    (with the debug log on: not timed)."""
    seen: dict[str, int] = {}

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = re.sub(r"\d+", "N", record.getMessage().strip())
            if re.search(r"graph", text, re.I):
                seen[text] = seen.get(text, 0) + 1

    native, handler = logging.getLogger("llama_binding.native"), Count()
    level = native.level
    native.setLevel(logging.DEBUG)
    native.addHandler(handler)
    _log.sync_level()
    try:
        decode_sync(ctx, prompt, 16, token)
    finally:
        native.removeHandler(handler)
        native.setLevel(level)
        _log.sync_level()
    return seen


def main() -> None:
    args = parser().parse_args()
    lines: list[str] = []  # llama.cpp's own account of the devices, the layers and the graph splits
    wanted = re.compile(r"splits =|sched copies|compute buffer|offloaded|using device|CUDA\d|model buffer"
                        r"|output buffer|n_ctx|n_seq|n_batch|n_ubatch|causal|flash_attn|kv_unified|type_k"
                        r"|graph|reserv", re.I)

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage().strip()
            if wanted.search(text):
                lines.append(text)

    native = logging.getLogger("llama_binding.native")
    native.setLevel(logging.INFO)
    native.addHandler(Keep())
    llm, prompt = loaded(args)
    ctx, vocab = llm.engine.context, llm.engine.vocab
    token = prompt[-1]
    fa = benchmark.FLASH_ATTN[args.fa]
    tools = {"llama-bench": [], "llama-bench -t 1": ["-t", "1"],
             "llama-bench -t 1 --poll 0": ["-t", "1", "--poll", "0"]}
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    fa_type = {"on": 1, "off": 0, "auto": -1}[args.fa]
    n_ctx = args.depth + args.gen
    # llama-bench's context at 16 and 1 threads, and one thread a token on a 16-thread pool
    # (what our Context attached before ContextPools: ggml's kickoff wakes the whole pool)
    model = llm.engine.model.ptr
    raws = {f"raw context (llama-bench's), {t} threads": raw_context(model, n_ctx, fa_type, t, t)
            for t in (16, 1)}
    raws["raw context, 1 thread on a 16-thread pool"] = raw_context(model, n_ctx, fa_type, 1, 16)
    for _ in range(args.reps):
        for name, (ptr, _) in raws.items():
            add(name, raw_decode_sync(ptr, prompt, args.gen, token))
        add("decode+sync", decode_sync(ctx, prompt, args.gen, token))
        add("process+sync (llama_batch_ext)", process_sync(ctx, prompt, args.gen, token))
        add("host argmax", loop_host(ctx, vocab, prompt, args.gen))
        for name, extra in tools.items():
            (speed,) = benchmark.llama_bench(args.model, n_prompt=0, n_gen=args.gen, depth=args.depth, reps=3,
                                             n_gpu_layers=args.ngl, flash_attn=fa, extra=extra)
            add(name, speed.median)
    for ptr, pool in raws.values():
        capi.llama_free(ptr)
        pool.free()
    graph_lines = cuda_graph_log(ctx, prompt, token)
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
    for text, n in graph_lines.items():
        print(f"  ggml-cuda debug over 16 decodes: {n:3d}x {text}")
    for name, runs in results.items():
        med = statistics.median(runs)
        print(f"{name:32s} {med:8.1f} t/s  ratio {med / tg:5.3f}x  ({', '.join(f'{r:.1f}' for r in runs)})")


if __name__ == "__main__":
    main()
