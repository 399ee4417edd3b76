"""Our prompt-lookup decoding's rate rep by rep, back to back and interleaved with llama-lookup
processes, to tell the method's speed from the spread that launching a tool's process brings.

    python bench/lookup_reps.py MODEL.gguf [--ngl 99] [--reps 8]

Phases, for each of two prompts of bench/speculative.py (greedy, 256 tokens, drafts of up to
16 tokens from 3-gram matches; tokens/s after the first token, as bench/speculative_vs_llama.py
measures both sides):

- back to back: ``--reps`` completions of ours in a row;
- interleaved: ours, then ``llama-lookup`` (a process of its own: load, prompt, decode), then
  ours again, ``--interleaved`` times;
- interleaved, warmed: an unmeasured completion of ours before each measured one.

bench/speculative_vs_llama.py interleaves the two sides rep by rep and takes medians; where
the phases here show the interleaved rates of both sides spread far wider than ours back to
back, its lookup ratios are that spread, not a difference of method.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import speculative_vs_llama as sv
from speculative import PROMPTS

from llama_binding import Llama
from llama_binding.generation.drafters import LlamaPromptLookupDecoding


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--interleaved", type=int, default=5)
    ap.add_argument("--prompts", default="function-rename,list-copy")
    args = ap.parse_args()
    # what bench/speculative_vs_llama.py's common_args reads, at its values there
    args.max_tokens, args.n_ctx, args.fa, args.ignore_eos = 256, 4096, "on", True
    kw = dict(n_ctx=4096, n_gpu_layers=args.ngl, flash_attn=True, n_threads=args.threads,
              n_threads_batch=args.threads, verbose=False)
    spec = Llama(args.model, **kw, draft_model=LlamaPromptLookupDecoding(3, 16))
    bias = sv.end_tokens(spec)
    lookup = sv.tool("llama-lookup")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.prompts.split(","):
            tokens = spec.tokenize(PROMPTS[name].encode(), add_bos=True)
            path = Path(tmp) / f"{name}.txt"
            path.write_bytes(spec.detokenize(tokens, special=True))
            cmd = [str(lookup), *sv.common_args(args, path), "--spec-draft-n-max", "16"]

            def ours(t: list[int] = tokens) -> int:
                return round(sv.ours(spec, t, 256, bias)["tps"])

            print(f"{name:16s} back to back: ours {[ours() for _ in range(args.reps)]}", flush=True)
            a, b, c = [], [], []
            for _ in range(args.interleaved):
                a.append(ours())
                b.append(round(sv.theirs(cmd)["tps"]))
                c.append(ours())
            print(f"{name:16s} interleaved: ours {a}  llama-lookup {b}  ours again {c}", flush=True)
            a, b = [], []
            for _ in range(args.interleaved):
                ours()  # unmeasured: the GPU busy again after the tool's process
                a.append(ours())
                b.append(round(sv.theirs(cmd)["tps"]))
            print(f"{name:16s} interleaved, warmed: ours {a}  llama-lookup {b}", flush=True)
    spec.close()


if __name__ == "__main__":
    main()
