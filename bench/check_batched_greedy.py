"""Do the two greedy modes of BatchEngine pick the same tokens on this machine's backend?

    python bench/check_batched_greedy.py --model M.gguf --ngl 99 --n 64 --ntg 32

Runs the same random prompts (more requests than slots, so slots are reused) through a
BatchEngine with the host argmax and with the slots' batched greedy backend samplers, in
contexts of equal shape, and prints how many sequences agree token for token (the same
batches give the same logits, so all of them should). Exits 1 when one differs. The GPU
run of the tests carries no real model; this checks the backend sampler on the GPU.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_binding.core import Context, ContextParams, Model, Vocab
from llama_binding.core.context import FlashAttnType
from llama_binding.core.model import ModelParams
from llama_binding.generation.batching import BatchEngine, BatchRequest, Greedy


def run(model: Model, vocab: Vocab, prompts: list[list[int]], ntg: int, slots: int,
        greedy: Greedy) -> tuple[list[list[int]], str]:
    ctx = Context(model, ContextParams(n_ctx=slots * 512, n_seq_max=slots, kv_unified=True,
                                       flash_attn_type=FlashAttnType.AUTO))
    engine = BatchEngine(ctx, vocab, greedy=greedy, host_threads=ctx.n_threads_batch)
    reqs = [engine.submit(BatchRequest(p, ntg, ignore_eos=True)) for p in prompts]
    engine.run()
    mode = engine.greedy
    engine.close()
    ctx.close()
    return [r.output for r in reqs], mode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--n", type=int, default=64, help="requests")
    ap.add_argument("--slots", type=int, default=48)
    ap.add_argument("--ntg", type=int, default=32)
    args = ap.parse_args()
    model = Model(args.model, ModelParams(n_gpu_layers=args.ngl))
    vocab = Vocab(model)
    rng = random.Random(11)
    prompts = [[rng.randrange(100, vocab.n_tokens) for _ in range(rng.randint(8, 200))]
               for _ in range(args.n)]
    host, mode_h = run(model, vocab, prompts, args.ntg, args.slots, "host")
    backend, mode_b = run(model, vocab, prompts, args.ntg, args.slots, "backend")
    same = sum(a == b for a, b in zip(host, backend))
    print(f"greedy modes {mode_h} vs {mode_b}: {same}/{len(prompts)} sequences equal token for token "
          f"({args.ntg} tokens each, {args.slots} slots)")
    model.close()
    sys.exit(0 if same == len(prompts) and mode_b == "backend" else 1)


if __name__ == "__main__":
    main()
