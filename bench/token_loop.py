"""Where a single stream's greedy token goes on a GPU: the bare token loop in three ways beside
llama-bench's tg at the same depth, same process, same context (a diagnostic for P16's decode
gap on slow hosts; no Python generator, detokenizer or stop check in the loop).

    python bench/token_loop.py M.gguf --ngl 99 --fa on [--depth 512 --gen 128 --reps 3]

- ``host argmax``: what ``Llama`` does for plain greedy now: each decode copies the last
  row's logits to the host, our C takes their argmax and decodes the next token in the same
  native call (``Context.argmax_decode``);
- ``greedy group``: the batching engine's sampler (``native/batch_greedy.c``) attached to the
  sequence: the argmax runs in the decode's graph and only the token comes back;
- ``top-k group``: the top-k group's sampler attached (``native/batch_topk.c``): the 64 largest
  logits and their ids come back, the host reads them (any valid token will do for the timing);
- each with 1 CPU thread and with ``--threads`` for the token decodes.

Prints t/s and the ratio against llama-bench's tg``gen`` at depth ``depth``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_binding import Llama, benchmark
from llama_binding.capi import llama as capi
from llama_binding.core.batch import Batch
from llama_binding.core.context import Context
from llama_binding.core.sampler import GreedyGroup, SamplerChain, TopKGroup
from llama_binding.core.vocab import Vocab


def prefill(ctx: Context, prompt: list[int]) -> None:
    ctx.seq_rm(0, -1, -1)
    batch = Batch(len(prompt))
    batch.add_sequence(prompt, 0, 0)
    ctx.decode(batch)
    ctx.synchronize()


def loop_host(ctx: Context, vocab: Vocab, prompt: list[int], gen: int) -> float:
    prefill(ctx, prompt)
    batch, pos = Batch(1), len(prompt)
    t0 = time.perf_counter()
    for _ in range(gen):
        ctx.argmax_decode(vocab, batch, pos, 0, True)
        pos += 1
    ctx.synchronize()
    return gen / (time.perf_counter() - t0)


def loop_attached(ctx: Context, prompt: list[int], gen: int, read: Callable[[], int]) -> float:
    prefill(ctx, prompt)
    batch, pos = Batch(1), len(prompt)
    tok = read()
    t0 = time.perf_counter()
    for _ in range(gen):
        ctx.decode_token(batch, tok, pos, 0)
        tok = read()  # (waits for the decode)
        pos += 1
    return gen / (time.perf_counter() - t0)


def parser() -> argparse.ArgumentParser:
    """The flags of this bench and bench/decode_floor.py: the model, its offload, the depth,
    the tokens decoded and the repetitions."""
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--fa", choices=["auto", "on", "off"], default="on")
    ap.add_argument("--depth", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    return ap


def loaded(args: argparse.Namespace) -> tuple[Llama, list[int]]:
    """The model of ``args`` with room for the depth and the tokens decoded, and a prompt of
    ``--depth`` tokens (BOS, then ids spread over the vocabulary)."""
    llm = Llama(args.model, n_ctx=args.depth + args.gen + 16, n_gpu_layers=args.ngl,
                flash_attn=benchmark.FLASH_ATTN[args.fa], verbose=False)
    return llm, [llm.token_bos()] + [(i * 7919) % (llm.n_vocab() - 100) + 50 for i in range(args.depth - 1)]


def main() -> None:
    ap = parser()
    ap.add_argument("--threads", type=int, default=16)
    args = ap.parse_args()
    llm, prompt = loaded(args)
    ctx, vocab = llm.engine.context, llm.engine.vocab
    ptr = ctx.ptr

    def read_token() -> int:
        return int(capi.llama_get_sampled_token_ith(ptr, -1))

    def read_topk() -> int:
        # (the row's layout is batch_topk.c's: for the loop's timing any valid token will do)
        n = capi.llama_get_sampled_logits_count_ith(ptr, -1)
        vals = np.ctypeslib.as_array(capi.llama_get_sampled_logits_ith(ptr, -1), shape=(n,))
        return int(vals.argmax())

    results: dict[str, list[float]] = {}
    bench: list[float] = []
    for _ in range(args.reps):
        for threads in sorted({1, args.threads}):
            ctx.set_threads(threads, ctx.n_threads_batch)
            results.setdefault(f"host argmax, {threads} threads", []).append(
                loop_host(ctx, vocab, prompt, args.gen))
            for name, group, read in (("greedy group", GreedyGroup(), read_token),
                                      ("top-k group", TopKGroup(), read_topk)):
                chain = SamplerChain([group.sampler()])
                try:
                    if not ctx.attach_sampler(0, chain):
                        results.setdefault(f"{name}: not attached", []).append(0.0)
                        continue
                    loop_attached(ctx, prompt, args.gen, read)  # the new graph's warm-up
                    results.setdefault(f"{name}, {threads} threads", []).append(
                        loop_attached(ctx, prompt, args.gen, read))
                finally:
                    chain.close()  # (detaches it first)
                    group.close()
        (speed,) = benchmark.llama_bench(args.model, n_prompt=0, n_gen=args.gen, depth=args.depth, reps=3,
                                         threads=args.threads, n_gpu_layers=args.ngl,
                                         flash_attn=benchmark.FLASH_ATTN[args.fa])
        bench.append(speed.median)
    tg = statistics.median(bench)
    print(f"model {args.model}  ngl {args.ngl}  fa {args.fa}  depth {args.depth}  reps {args.reps}")
    reps = ", ".join(f"{b:.1f}" for b in bench)
    print(f"llama-bench tg{args.gen} @ d{args.depth}: {tg:8.1f} t/s  (reps {reps})")
    for name, runs in results.items():
        med = statistics.median(runs)
        print(f"{name:28s} {med:8.1f} t/s  ratio {med / tg:5.3f}x  ({', '.join(f'{r:.1f}' for r in runs)})")


if __name__ == "__main__":
    main()
