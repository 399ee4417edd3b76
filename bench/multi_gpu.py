"""Two GPUs of one host: ``Llama`` with the model on one GPU, split by layer and split by row,
beside ``llama-bench -sm none|layer|row`` of the same build in the same run; and
``AsyncLlama`` at --npl streams split by layer beside ``llama-batched-bench -sm layer``.

    python bench/multi_gpu.py --model M.gguf [--n-prompt 512 --n-gen 128 --reps 3 --npl 64]

Every layer offloaded, flash attention on, the same batch sizes for both. Prefill is
pp<n-prompt>, decode tg<n-gen> (``llama_binding.benchmark.measure`` against llama-bench's
median); batched is generated tokens/s after every stream's first token (bench/batched.py's
measure) against batched-bench's S_TG. Needs two GPUs that llama.cpp sees: with fewer it
says so and exits 2 (so a one-GPU machine runs nothing by mistake).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import batched as bb

from llama_binding import AsyncLlama, Llama, benchmark, system_info
from llama_binding.capi import _loader

#: the modes: llama.cpp's split_mode value (LLAMA_SPLIT_MODE_*) and llama-bench's -sm
MODES = {"one GPU": (0, "none"), "layer": (1, "layer"), "row": (2, "row")}


def gpus() -> list[str]:
    return [d.name for d in system_info().devices if d.type == "gpu"]


def ours_single(model: Path, split_mode: int, args: argparse.Namespace) -> tuple[float, float]:
    """Prefill and decode tokens/s of Llama in one split mode (median of --reps)."""
    with Llama(str(model), n_gpu_layers=-1, split_mode=split_mode, main_gpu=0, flash_attn=True,
               n_ctx=args.n_prompt + args.n_gen + 64, n_batch=2048, n_ubatch=512, verbose=False) as llm:
        pp, tg = benchmark.measure(llm, args.n_prompt, args.n_gen, args.reps)
    return pp.median, tg.median


def tool_single(model: Path, sm: str, args: argparse.Namespace) -> tuple[float, float]:
    pp, tg = benchmark.llama_bench(model, n_prompt=args.n_prompt, n_gen=args.n_gen, reps=args.reps,
                                   flash_attn=True, extra=["-sm", sm, "-mg", "0"])
    return pp.median, tg.median


def ours_batched(model: Path, args: argparse.Namespace, n_ctx: int) -> float:
    allm = AsyncLlama(str(model), n_seq_max=args.npl, n_ctx=n_ctx, n_batch=2048, n_ubatch=512,
                      n_gpu_layers=-1, split_mode=1, flash_attn=True, max_waiting=0, verbose=False)
    try:
        runs = [asyncio.run(bb.run_ours(allm, args.npl, args.npp, args.ntg, seed=rep))
                for rep in range(args.reps)]
    finally:
        allm.close()
    return statistics.median(r["gen_tps"] for r in runs)


def tool_batched(model: Path, args: argparse.Namespace, n_ctx: int) -> float:
    tool = _loader.lib_dir().parent / "bin" / "llama-batched-bench"
    cmd = [str(tool), "-m", str(model), "-c", str(n_ctx), "-b", "2048", "-ub", "512", "-npp", str(args.npp),
           "-ntg", str(args.ntg), "-npl", str(args.npl), "-kvu", "-ngl", "99", "-fa", "on", "-sm", "layer",
           "--output-format", "jsonl"]
    speeds = []
    for _ in range(args.reps):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        speeds += [json.loads(line)["speed_tg"] for line in out.splitlines() if line.startswith("{")]
    return statistics.median(speeds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--npl", type=int, default=64, help="streams of the batched run")
    ap.add_argument("--npp", type=int, default=128)
    ap.add_argument("--ntg", type=int, default=128)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    found = gpus()
    if len(found) < 2:
        print(f"needs two GPUs, llama.cpp sees {len(found)} ({', '.join(found) or 'none'})")
        return 2
    rows: list[dict[str, Any]] = []
    print(f"model {args.model.name}  GPUs {', '.join(found)}  pp{args.n_prompt} / tg{args.n_gen}, "
          f"median of {args.reps}")
    for name, (mode, sm) in MODES.items():
        (pp, tg), (tpp, ttg) = ours_single(args.model, mode, args), tool_single(args.model, sm, args)
        rows.append({"mode": name, "pp": pp, "tg": tg, "tool_pp": tpp, "tool_tg": ttg})
        print(f"{name:>8}: prefill {pp:9.1f} t/s  llama-bench {tpp:9.1f}  ratio {pp / tpp:5.3f}x   "
              f"decode {tg:7.1f} t/s  llama-bench {ttg:7.1f}  ratio {tg / ttg:5.3f}x", flush=True)
    n_ctx = args.npl * (args.npp + args.ntg) + 256
    ours, tool = ours_batched(args.model, args, n_ctx), tool_batched(args.model, args, n_ctx)
    rows.append({"mode": f"batched {args.npl} streams, layer", "gen_tps": ours, "tool_s_tg": tool})
    print(f"AsyncLlama {args.npl} streams, split by layer: {ours:9.1f} t/s  "
          f"llama-batched-bench S_TG {tool:9.1f}  ratio {ours / tool:5.3f}x")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "gpus": found, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
