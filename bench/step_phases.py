"""Where a batching-engine step's host time goes with the GPU's samplers attached, on any machine.

    python bench/step_phases.py --mode t0.8 --rows 64 --host-threads 1
    python bench/step_phases.py --mode greedy --rows 64

Writes (once, under --dir) a tiny model with Llama 3's 128,256-token vocabulary, so that
the decode is cheap but each row's logits are as wide as the 1B and 8B shapes', and runs a
BatchEngine over --rows sequences with greedy="backend": plain greedy requests take the
greedy group's argmax in the decode, sampled ones (t0.8: top-k 40, top-p 0.95, seeded) the
top-k group's 512 candidates and their chains on the host (native/batch_topk.c), exactly as
on a GPU; here the CPU backend runs those nodes. Prints milliseconds a step for prepare,
decode and collect, averaged over --steps steps after a warm-up. Collect is host work alone
(the chains over each row's candidates, the tokens handed on), as on a GPU, where the
device's copies back finish inside the decode; this machine's caches are colder after a
CPU decode than after a GPU one.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _tinymodel import TinySpec, write_tiny_llama  # noqa: E402

from llama_binding.core import Context, ContextParams, Model, Vocab  # noqa: E402
from llama_binding.generation.batching import BatchEngine, BatchRequest  # noqa: E402
from llama_binding.generation.sampling import SamplingParams, build_chain  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["greedy", "t0.8"], default="t0.8")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--host-threads", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="the context's CPU threads")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/llama-binding-bench"))
    args = ap.parse_args()
    path = args.dir / "tiny-llama-bpe-64.gguf"
    if not path.exists():
        args.dir.mkdir(parents=True, exist_ok=True)
        write_tiny_llama(path, TinySpec(vocab="llama-bpe", n_embd=64, n_layer=2, seed=7))
    model = Model(path)
    vocab = Vocab(model)
    ctx = Context(model, ContextParams(n_ctx=args.rows * 512, n_seq_max=args.rows, n_batch=2048,
                                       n_threads=args.threads, n_threads_batch=args.threads))
    engine = BatchEngine(ctx, vocab, greedy="backend", host_threads=args.host_threads)
    sampling = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.0)
    sampled = args.mode == "t0.8"
    for i in range(args.rows):
        chain = build_chain(dataclasses.replace(sampling, seed=i), vocab, ctx.n_ctx) if sampled else None
        engine.submit(BatchRequest(prompt=[1, *range(100 + i, 132 + i)], max_tokens=args.steps + 20,
                                   chain=chain, ignore_eos=True))
    for _ in range(5):  # the prompts, then a few decodes
        engine.step()
    before, steps = dict(engine.timings), engine.steps
    t0 = time.perf_counter()
    for _ in range(args.steps):
        engine.step()
    n = engine.steps - steps
    ms = {k: (engine.timings[k] - before[k]) / n * 1e3 for k in before}
    print(f"{args.mode}  rows {args.rows}  host threads {args.host_threads}  samplers attached: "
          f"{sorted({str(k) for k in engine._slot_kind})}  {n} steps  ms a step: wall "
          f"{(time.perf_counter() - t0) / n * 1e3:.3f}  prepare {ms['prepare']:.3f}  "
          f"decode {ms['decode']:.3f}  collect {ms['collect']:.3f}")
    engine.close()


if __name__ == "__main__":
    main()
