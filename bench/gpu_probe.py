"""Where does a decode token's time go? Variants of the per-token loop on one model.

    python bench/gpu_probe.py MODEL.gguf [--depth 512] [--gen 128] [--reps 3] [--ngl 99]

Each variant prefills ``depth`` tokens, then decodes ``gen`` single tokens and reports,
as medians over ``reps`` runs: wall us/token, the time inside the decode call (CPU: graph
build or reuse, launch), the time waiting in the synchronize after it, llama.cpp's own
eval time per token, and how many graphs llama.cpp reused. Variants:

- ``ext``: llama-bench's loop (``llama_batch_ext`` + ``llama_process`` + synchronize);
- ``batch``: the same with a ``llama_batch`` through ``llama_decode`` (what we use);
- ``sampler``: ``batch`` with a greedy GPU-side sampler attached, reading the sampled token;
- ``ours``: ``Llama.create_completion(stream=True)``, greedy.

Run with LLAMA_GRAPH_REUSE_DISABLE=1 to see what rebuilding the graph per token costs.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from llama_binding import Llama, capi
from llama_binding.core import Batch, Sampler, SamplerChain


def _prefill(llm: Llama, depth: int) -> list[int]:
    ctx = llm.engine.context
    ctx.memory_clear()
    llm.engine.sequence.tokens.clear()
    prompt = [llm.token_bos()] + [(i * 7919) % (llm.n_vocab() - 100) + 50 for i in range(depth - 1)]
    batch = Batch(len(prompt))
    batch.add_sequence(prompt, 0, 0, logits_last=True)
    ctx.decode(batch)
    ctx.synchronize()
    return prompt


Step = Callable[[int, int], tuple[float, float]]


def _loop(llm: Llama, depth: int, gen: int, step: Step) -> dict[str, float]:
    _prefill(llm, depth)
    ctx = llm.engine.context
    ctx.perf_reset()
    t_call = t_sync = 0.0
    tok = 50
    t0 = time.perf_counter()
    for i in range(gen):
        a, b = step(tok, depth + i)
        t_call += a
        t_sync += b
        tok = (tok * 31 + 7) % (llm.n_vocab() - 100) + 50
    wall = time.perf_counter() - t0
    perf = ctx.perf()
    return {"wall_us": wall / gen * 1e6, "call_us": t_call / gen * 1e6, "sync_us": t_sync / gen * 1e6,
            "eval_us": perf["t_eval_ms"] * 1e3 / max(perf["n_eval"], 1), "n_reused": perf["n_reused"],
            "n_eval": perf["n_eval"]}


def variant_ext(llm: Llama, depth: int, gen: int) -> dict[str, float]:
    ptr = llm.engine.context.ptr
    b = capi.llama_batch_ext_init(ptr)
    pos = capi.llama_pos(0)
    pc = time.perf_counter

    def step(tok: int, p: int) -> tuple[float, float]:
        capi.llama_batch_ext_clear(b)
        idx = capi.llama_batch_ext_add_token(b, 0, tok)
        pos.value = p
        capi.llama_batch_ext_set_pos(b, idx, ctypes.byref(pos))
        capi.llama_batch_ext_set_output_logits(b, idx, True)
        t0 = pc()
        rc = capi.llama_process(ptr, capi.LLAMA_PROCESS_TYPE_DECODE, b)
        t1 = pc()
        capi.llama_synchronize(ptr)
        if rc:
            raise RuntimeError(f"llama_process: {rc}")
        return t1 - t0, pc() - t1

    try:
        return _loop(llm, depth, gen, step)
    finally:
        capi.llama_batch_ext_free(b)


def variant_batch(llm: Llama, depth: int, gen: int, sampler: bool = False) -> dict[str, float]:
    ctx = llm.engine.context
    ptr = ctx.ptr
    batch = Batch(512)
    pc = time.perf_counter
    chain = None
    if sampler:
        llm.engine.detach_chain()
        chain = SamplerChain([Sampler.greedy()])
        if not ctx.attach_sampler(0, chain):
            raise RuntimeError("attach failed")

    def step(tok: int, p: int) -> tuple[float, float]:
        batch.clear()
        batch.add(tok, p, (0,), True)
        t0 = pc()
        rc = capi.llama_decode(ptr, batch.struct)
        t1 = pc()
        if chain is not None:
            capi.llama_get_sampled_token_ith(ptr, -1)
        else:
            capi.llama_synchronize(ptr)
        if rc:
            raise RuntimeError(f"llama_decode: {rc}")
        return t1 - t0, pc() - t1

    try:
        return _loop(llm, depth, gen, step)
    finally:
        if chain is not None:
            ctx.detach_sampler(0)
            chain.close()


def variant_ours(llm: Llama, depth: int, gen: int) -> dict[str, float]:
    prompt = [llm.token_bos()] + [(i * 7919) % (llm.n_vocab() - 100) + 50 for i in range(depth - 1)]
    llm.reset()
    ctx = llm.engine.context
    ctx.perf_reset()
    t_first = 0.0
    n_first = 0
    for n, _ in enumerate(llm.create_completion(prompt, max_tokens=gen, stream=True, temperature=0.0,
                                                logit_bias={llm.token_eos(): -1e9})):
        if n == 0:
            t_first, n_first = time.perf_counter(), llm.n_tokens
            ctx.perf_reset()
    wall = (time.perf_counter() - t_first) / max(llm.n_tokens - n_first, 1)
    perf = ctx.perf()
    return {"wall_us": wall * 1e6, "call_us": 0.0, "sync_us": 0.0,
            "eval_us": perf["t_eval_ms"] * 1e3 / max(perf["n_eval"], 1), "n_reused": perf["n_reused"],
            "n_eval": perf["n_eval"]}


def variant_cloop(llm: Llama, depth: int, gen: int) -> dict[str, float]:
    """bench/native/decode_loop.c's loop (llama-bench's, in C) called once from Python."""
    lib = ctypes.CDLL(os.environ["LB_PROBE_LOOP_LIB"])
    out = (ctypes.c_double * 3)()
    llm.engine.sequence.tokens.clear()
    ctx = llm.engine.context
    ctx.perf_reset()
    if lib.lb_probe_loop(ctypes.cast(ctx.ptr, ctypes.c_void_p), depth, gen, out) != 0:
        raise RuntimeError("lb_probe_loop failed")
    perf = ctx.perf()
    return {"wall_us": out[0], "call_us": out[1], "sync_us": out[2],
            "eval_us": perf["t_eval_ms"] * 1e3 / max(perf["n_eval"], 1), "n_reused": perf["n_reused"],
            "n_eval": perf["n_eval"]}


VARIANTS: dict[str, Callable[[Llama, int, int], dict[str, float]]] = {
    "ext": variant_ext,
    "batch": variant_batch,
    "sampler": lambda llm, d, g: variant_batch(llm, d, g, sampler=True),
    "ours": variant_ours,
}
if os.environ.get("LB_PROBE_LOOP_LIB"):
    VARIANTS["cloop"] = variant_cloop


def diagnose(model: str, depth: int, gen: int, reps: int) -> None:
    """Our greedy loop under settings that differ from llama-bench's context: llama.cpp's
    perf counters on/off, our abort callback set/removed, and native DEBUG lines dropped
    in C (the default) or passed to Python (a DEBUG-level logger), with their count."""
    import logging

    from llama_binding import _log

    lines = [0]
    emit = _log._emit

    def counting(level: int, text: str) -> None:
        lines[0] += 1
        emit(level, text)

    _log._emit = counting  # type: ignore[assignment]
    native = logging.getLogger("llama_binding.native")
    configs = [(False, True, False), (True, True, False), (False, False, False), (True, False, False),
               (False, True, True)]
    for no_perf, abort, debug in configs:
        native.setLevel(logging.DEBUG if debug else logging.NOTSET)
        llm = Llama(model, n_ctx=depth + gen + 16, n_gpu_layers=99, flash_attn=True, no_perf=no_perf)
        if not abort:
            capi.llama_set_abort_callback(llm.engine.context.ptr, capi.ggml_abort_callback(), None)
        variant_ours(llm, depth, 8)
        rs = []
        for _ in range(reps):
            lines[0] = 0
            rs.append(variant_ours(llm, depth, gen)["wall_us"])
        print(f"no_perf {no_perf!s:5}  abort callback {abort!s:5}  debug lines to Python {debug!s:5}  "
              f"wall {statistics.median(rs):8.1f} us/token  native log lines in the last run: {lines[0]}",
              flush=True)
        llm.close()
    native.setLevel(logging.NOTSET)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--depth", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--n-ctx", type=int, nargs="+", default=[640, 656])
    ap.add_argument("--threads", type=int, nargs="+", default=[0],
                    help="generation threads to try (0: the default, physical cores)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--diagnose", action="store_true", help="run diagnose() instead of the variants")
    args = ap.parse_args()
    if args.diagnose:
        diagnose(args.model, args.depth, args.gen, args.reps)
        return
    out: dict[str, Any] = {"reuse_disabled": os.environ.get("LLAMA_GRAPH_REUSE_DISABLE", "0")}
    for n_ctx, threads in [(c, t) for c in args.n_ctx for t in args.threads]:
        llm = Llama(args.model, n_ctx=n_ctx, n_gpu_layers=args.ngl, flash_attn=True,
                    n_threads=threads or None)
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in VARIANTS}
        for fn in VARIANTS.values():
            fn(llm, args.depth, 8)  # warm-up of this variant's graphs
        for _ in range(args.reps):
            for name, fn in VARIANTS.items():
                runs[name].append(fn(llm, args.depth, args.gen))
        for name, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            out[f"{name}@{n_ctx}/t{threads}"] = med
            print(f"n_ctx {n_ctx:5d} t{threads:<2d} {name:8s} wall {med['wall_us']:8.1f} us  "
                  f"call {med['call_us']:7.1f}  "
                  f"sync {med['sync_us']:7.1f}  eval {med['eval_us']:8.1f}  "
                  f"reused {med['n_reused']:.0f}/{med['n_eval']:.0f}", flush=True)
        llm.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
