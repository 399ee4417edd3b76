"""The server's load test without HTTP: closed-loop clients on AsyncLlama in this process.

    python bench/engine_load.py --model M.gguf --clients 16,64 --seconds 10 --ngl 99 --fa on

Each of --clients coroutines sends one streaming request after another for --seconds, as
bench/server_load.py's clients do over HTTP (a --npp-token prompt of random token ids, no
shared prefix; --ntg tokens out, end-of-generation ignored; greedy, or --temperature with
top-k 40 / top-p 0.95), on an AsyncLlama with as many slots as the most clients, the
context and batch sizes of bench/server_vs_llama_server.py. Beside it, llama-batched-bench
of the same build and options: its S_TG and its rate with the prompts (pl x ntg / (t_pp +
t_tg)), from the best of --bb-reps runs (its S_TG moved by up to 20% between runs of one
GPU call, ours did not). What the engine thread did comes with it: decodes with and
without prompt tokens (how many, ms each, rows), and per step the time in prepare /
decode / collect and the rest (handing tokens on, commands, waiting for the GIL). Set
against the server's figures at the same point, it separates what HTTP costs from what
the scheduling costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batched import run_tool

from llama_binding import AsyncLlama


async def load(allm: AsyncLlama, clients: int, seconds: float, npp: int, ntg: int, temperature: float,
               seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    n_vocab = allm.engine.vocab.n_tokens
    ttft: list[float] = []
    gaps: list[float] = []
    tokens = 0
    opts: dict[str, Any] = {"temperature": temperature}
    if temperature > 0:
        opts.update(top_k=40, top_p=0.95, min_p=0.0)
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        nonlocal tokens
        while time.perf_counter() < deadline:
            prompt = [rng.randrange(100, n_vocab) for _ in range(npp)]
            t0 = last = time.perf_counter()
            it = await allm.acreate_completion(prompt, max_tokens=ntg, stream=True, ignore_eos=True,
                                               seed=seed + i, **opts)
            n = 0
            async for _ in it:  # type: ignore[union-attr]
                now = time.perf_counter()
                (ttft if n == 0 else gaps).append(now - (t0 if n == 0 else last))
                last, n = now, n + 1
            tokens += n

    sched = allm.scheduler
    log: list[tuple[int, int, float]] = []
    before, steps0 = dict(sched.timings), sched.steps
    sched.step_log = log
    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    sched.step_log = None
    steps = max(1, sched.steps - steps0)
    per_step = {k: (v - before[k]) / steps * 1e3 for k, v in sched.timings.items()}
    # ("gil", the wait to hold the GIL after the device finished, is part of "decode")
    per_step["rest"] = wall * 1e3 / steps - sum(v for k, v in per_step.items() if k != "gil")
    plain = [s for s in log if s[1] == 0]
    mixed = [s for s in log if s[1] > 0]

    def mean(xs: list[float]) -> float:
        return statistics.fmean(xs) if xs else 0.0

    return {
        "tps": tokens / wall, "requests": len(ttft), "ttft_p50_ms": statistics.median(ttft) * 1e3,
        "itl_p50_ms": statistics.median(gaps) * 1e3, "steps": steps,
        "per_step_ms": per_step,
        "decode_only": {"n": len(plain), "ms": mean([s[2] for s in plain]) * 1e3,
                        "rows": mean([s[0] for s in plain]), "s": sum(s[2] for s in plain)},
        "with_prompt": {"n": len(mixed), "ms": mean([s[2] for s in mixed]) * 1e3,
                        "rows": mean([s[0] for s in mixed]), "prompt_tokens": mean([s[1] for s in mixed]),
                        "s": sum(s[2] for s in mixed)},
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--clients", default="16,64")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--npp", type=int, default=128)
    ap.add_argument("--ntg", type=int, default=128)
    ap.add_argument("--n-ctx", type=int, default=0, help="0: the server benchmark's (slots x 324)")
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--fa", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--no-kv-unified", action="store_true")
    ap.add_argument("--bb-reps", type=int, default=3,
                    help="llama-batched-bench runs; per point the one with the highest S_TG is the bar")
    ap.add_argument("--pipeline", default="on",
                    help="comma-separated on/unfused/off, a run of each point for each, in order (on: "
                         "BatchEngine.pipeline as AsyncLlama sets it, its wait, picks and next decode "
                         "in one native call; unfused: the same from Python; off: never), "
                         "e.g. on,unfused,on,unfused")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    slots = max(clients)
    n_ctx = args.n_ctx or slots * 324
    fa: Any = {"auto": "auto", "on": True, "off": False}[args.fa]
    kw: dict[str, Any] = dict(n_gpu_layers=args.ngl, flash_attn=fa, verbose=False)
    if args.threads:
        kw.update(n_threads=args.threads, n_threads_batch=args.threads)
    args.npl = args.clients
    runs = [run_tool(args.model, args, n_ctx) for _ in range(max(1, args.bb_reps))]
    tool = {n: max((r[n] for r in runs if n in r), key=lambda t: t["gen_tps"])
            for n in clients if any(n in r for r in runs)}
    allm = AsyncLlama(args.model, n_seq_max=slots, n_ctx=n_ctx, n_batch=2048, n_ubatch=512, max_waiting=0,
                      kv_unified=not args.no_kv_unified, **kw)
    results: dict[str, Any] = {"model": str(args.model), "n_ctx": n_ctx, "slots": slots,
                               "temperature": args.temperature, "points": {}}
    layout = "per slot (batched-bench: unified)" if args.no_kv_unified else "unified"
    print(f"model {args.model.name}  n_ctx {n_ctx}  slots {slots}  temperature {args.temperature}  "
          f"{args.seconds} s per point  KV cache {layout}", flush=True)
    try:
        asyncio.run(load(allm, min(clients), 2.0, args.npp, args.ntg, args.temperature, 1))  # warm-up
        asynchronous = allm.engine.asynchronous
        for n, pipe in [(n, p) for n in clients for p in args.pipeline.split(",")]:
            allm.scheduler.pipeline = asynchronous and pipe != "off"
            allm.scheduler.fuse = pipe == "on"
            queued0 = allm.scheduler.pipelined_steps
            r = asyncio.run(load(allm, n, args.seconds, args.npp, args.ntg, args.temperature, n))
            r["pipeline"], r["pipelined"] = pipe, allm.scheduler.pipelined_steps - queued0
            # (a point llama-batched-bench did not print: no ratio, the load's figures still)
            t = tool.get(n, {"gen_tps": math.nan, "all_tps": math.nan})
            s_tg, with_pp = t["gen_tps"], t["all_tps"] * args.ntg / (args.npp + args.ntg)
            r.update(s_tg=s_tg, batched_bench_with_prompts=with_pp)
            results["points"].setdefault(n, []).append(r)
            d, m, p = r["decode_only"], r["with_prompt"], r["per_step_ms"]
            print(f"clients {n:3d}  pipeline {pipe:7s} ({r['pipelined']} of {r['steps']} decodes queued)  "
                  f"{r['tps']:8.1f} t/s  S_TG {s_tg:8.1f} ({r['tps'] / s_tg:.3f})  "
                  f"with prompts {with_pp:8.1f} ({r['tps'] / with_pp:.3f})  requests {r['requests']}  "
                  f"TTFT p50 {r['ttft_p50_ms']:.1f} ms  inter-token p50 {r['itl_p50_ms']:.2f} ms", flush=True)
            print(f"    decodes without prompt tokens {d['n']} x {d['ms']:.2f} ms ({d['rows']:.1f} rows, "
                  f"{d['s']:.2f} s); with {m['n']} x {m['ms']:.2f} ms ({m['rows']:.1f} rows + "
                  f"{m['prompt_tokens']:.0f} prompt tokens, {m['s']:.2f} s) of {r['wall_s']:.2f} s; "
                  f"batched-bench step {n / s_tg * 1e3:.2f} ms", flush=True)
            print("    per step (ms): " + "  ".join(f"{k} {v:.3f}" for k, v in p.items()), flush=True)
    finally:
        allm.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
