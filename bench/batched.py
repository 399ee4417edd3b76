"""Aggregate generation speed of many concurrent requests through AsyncLlama (asyncio, streaming
to every caller, as the server uses it) beside llama-batched-bench of the same build.

    python bench/batched.py                               # a small synthetic model on this CPU
    python bench/batched.py --model M.gguf --ngl 99 --fa on --npl 1,4,16,64   # the GPU machine

For each N in --npl: N callers each stream a completion of a --npp-token prompt (random
token ids) with --ntg tokens (greedy unless --temperature, end-of-generation ignored, as
llama-batched-bench generates a fixed count), all started at once on an AsyncLlama with N
slots. "gen t/s" counts the tokens after each caller's first one over the time from the
moment every caller has its first token to the last token: what llama-batched-bench
reports as S_TG (its generation phase starts when every prompt is evaluated). "all t/s" is
prompt + generated tokens over the whole run (its S). llama-batched-bench runs with
-npp/-ntg/-npl the same, -kvu (unified KV cache), the same context size, batch sizes,
threads, offload and flash attention. Runs alternate; medians. --greedy compares ways of
taking the greedy tokens (each line is marked with its mode); host1 also samples a
--temperature run's chains on one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llama_binding import AsyncLlama
from llama_binding.capi import _loader


def synthetic_model(directory: Path) -> Path:
    """A small random Llama (llama-spm vocabulary, 8 layers, n_embd 512): the CPU case."""
    from _tinymodel import TinySpec, write_tiny_llama

    path = directory / "synthetic-small.gguf"
    spec = TinySpec(n_embd=512, n_layer=8, n_head=8, n_head_kv=4, n_ff=1536, n_ctx_train=8192, seed=3)
    write_tiny_llama(path, spec)
    return path


async def run_ours(allm: AsyncLlama, n: int, npp: int, ntg: int, seed: int,
                   temperature: float = 0.0) -> dict[str, float]:
    rng = random.Random(seed)
    n_vocab = allm.engine.vocab.n_tokens
    prompts = [[rng.randrange(100, n_vocab) for _ in range(npp)] for _ in range(n)]
    firsts: list[float] = []
    counts = [0] * n

    async def one(i: int) -> None:
        it = await allm.acreate_completion(prompts[i], max_tokens=ntg, temperature=temperature,
                                           seed=seed + i, stream=True, ignore_eos=True)
        async for _ in it:  # type: ignore[union-attr]
            if counts[i] == 0:
                firsts.append(time.perf_counter())
            counts[i] += 1

    before = dict(allm.scheduler.timings), allm.scheduler.steps
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    t1 = time.perf_counter()
    steps = max(1, allm.scheduler.steps - before[1])
    per_step = {k: (v - before[0][k]) / steps * 1e3 for k, v in allm.scheduler.timings.items()}
    gen_tokens = n * (ntg - 1)  # ignore_eos: every caller gets exactly ntg tokens
    return {"gen_tps": gen_tokens / (t1 - max(firsts)), "all_tps": n * (npp + ntg) / (t1 - t0),
            "chunks": float(sum(counts)), "wall_ms_per_step": (t1 - t0) / steps * 1e3,
            **{f"{k}_ms_per_step": v for k, v in per_step.items()}}


def run_tool(model: Path, args: argparse.Namespace, n_ctx: int) -> dict[int, dict[str, float]]:
    tool = _loader.lib_dir().parent / "bin" / "llama-batched-bench"
    if not tool.exists():
        raise SystemExit("llama-batched-bench not built: install with LLAMA_BINDING_TOOLS=ON")
    cmd = [str(tool), "-m", str(model), "-c", str(n_ctx), "-b", "2048", "-ub", "512",
           "-npp", str(args.npp), "-ntg", str(args.ntg), "-npl", args.npl, "-kvu",
           "-ngl", str(args.ngl), "-fa", args.fa, "--output-format", "jsonl"]
    if args.threads:
        cmd += ["-t", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {int(r["pl"]): {"gen_tps": r["speed_tg"], "all_tps": r["speed"]} for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--npl", default="1,4")
    ap.add_argument("--npp", type=int, default=128)
    ap.add_argument("--ntg", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--fa", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--greedy", default="auto",
                    help="comma-separated greedy modes of the engine to compare: auto (AsyncLlama's default: "
                         "backend when the output layer is on a GPU, else host), host (argmax on the host, "
                         "on the context's threads), host1 (on one thread), backend (in the decode)")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="> 0: every caller samples (top-k 40, top-p 0.95, min-p 0.05, seeded) on the host")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or synthetic_model(Path(tmp))
        npl = [int(x) for x in args.npl.split(",")]
        n_ctx = max(npl) * (args.npp + args.ntg) + 256
        fa: Any = {"auto": "auto", "on": True, "off": False}[args.fa]
        kw: dict[str, Any] = dict(n_gpu_layers=args.ngl, flash_attn=fa, verbose=False)
        if args.threads:
            kw.update(n_threads=args.threads, n_threads_batch=args.threads)
        print(f"model {model.name}  npp {args.npp}  ntg {args.ntg}  reps {args.reps}  n_ctx {n_ctx}",
              flush=True)
        modes = args.greedy.split(",")
        ours: dict[tuple[str, int], list[dict[str, float]]] = {(m, n): [] for m in modes for n in npl}
        tool: dict[int, list[dict[str, float]]] = {n: [] for n in npl}
        for rep in range(args.reps):
            for n, r in run_tool(model, args, n_ctx).items():
                tool[n].append(r)
            for m in modes:
                for n in npl:
                    backend = {"auto": None, "backend": True}.get(m, False)  # host, host1: False
                    allm = AsyncLlama(model, n_seq_max=n, n_ctx=n_ctx, n_batch=2048, n_ubatch=512,
                                      max_waiting=0, backend_sampling=backend, **kw)
                    if m in ("host", "host1"):  # AsyncLlama gives a CPU decode's host one thread
                        sched = allm.scheduler
                        sched.host_threads = 1 if m == "host1" else sched.ctx.n_threads_batch
                    try:
                        t = args.temperature
                        asyncio.run(run_ours(allm, n, args.npp, args.ntg, 1, t))  # warm-up
                        ours[m, n].append(asyncio.run(run_ours(allm, n, args.npp, args.ntg, rep + 2, t)))
                    finally:
                        allm.close()
        rows = []
        for m in modes:
            for n in npl:
                got = ours[m, n]
                o = statistics.median(r["gen_tps"] for r in got)
                t = statistics.median(r["gen_tps"] for r in tool[n])
                oa = statistics.median(r["all_tps"] for r in got)
                ta = statistics.median(r["all_tps"] for r in tool[n])
                rows.append({"greedy": m, "npl": n, "ours_gen_tps": o, "tool_gen_tps": t, "gen_ratio": o / t,
                             "ours_all_tps": oa, "tool_all_tps": ta, "all_ratio": oa / ta})
                print(f"[{m}] npl {n:3d}  gen: ours {o:9.1f} t/s  llama-batched-bench S_TG {t:9.1f} t/s  "
                      f"ratio {o / t:5.3f}x   |  all: ours {oa:9.1f}  S {ta:9.1f}  ratio {oa / ta:5.3f}x",
                      flush=True)
                ms = {k: statistics.median(r[k] for r in got) for k in got[0] if k.endswith("_ms_per_step")}
                rows[-1].update(ms)
                print("          engine ms/step: " + "  ".join(f"{k[:-12]} {v:.3f}" for k, v in ms.items()),
                      flush=True)
        if args.json:
            settings = {k: str(v) for k, v in vars(args).items()}
            args.json.write_text(json.dumps({"model": str(model), "args": settings, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
