"""Our speculative decoding beside llama.cpp's own, same build, same model, same prompts, same
draft settings, in one run: generated tokens/s after the first token (what llama.cpp's tools
print as "decoded ... speed") and the acceptance, for

- ``self``: the model drafts for itself (a draft model on the same file): every draft is
  accepted on both sides, so this compares the mechanics at equal acceptance. Ours:
  ``LlamaDraftModel``; llama.cpp: ``llama-speculative-simple -md MODEL`` (draft-simple,
  ``--spec-draft-p-min 0`` so that it drafts as far as ours does);
- ``draft``: a draft model made of the first k layers of the model (bench/make_draft_model.py);
- ``lookup``: n-gram lookup in the prompt and the text so far. Ours: ``LlamaPromptLookupDecoding``
  (n-grams of up to 3 tokens); llama.cpp: ``llama-speculative-simple --spec-type ngram-simple``
  (an n-gram of 3, drafts of up to --num-pred tokens) and ``llama-lookup`` (its n-gram cache).

Every side gets the same prompt tokens (the chat template applied, as text with special
tokens, which the tools tokenize as we do), greedy decoding, the same context and threads.

    python bench/speculative_vs_llama.py [--model M.gguf] [--cases self,lookup,draft] [--num-pred 16]
    python bench/speculative_vs_llama.py --model M.gguf --ngl 99 --fa on     # GPU
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speculative import DEFAULT_MODEL, PROMPTS

from llama_binding import Llama
from llama_binding.capi import _loader
from llama_binding.draft_model import LlamaDraftModel
from llama_binding.generation.drafters import LlamaPromptLookupDecoding

DECODED = re.compile(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s")


def tool(name: str) -> Path:
    path = _loader.lib_dir().parent / "bin" / name
    if not path.is_file():
        sys.exit(f"{path} is missing: build with LLAMA_BINDING_TOOLS=ON")
    return path


def end_tokens(llm: Llama) -> dict[int, float]:
    """A bias that bans every end-of-generation token (not only EOS: a random model's vocabulary
    has EOT and others too), as the tools' --ignore-eos does."""
    vocab = llm.engine.vocab
    return {t: float("-inf") for t in range(vocab.n_tokens) if vocab.is_eog(t)}


def ours(llm: Llama, tokens: list[int], max_tokens: int, bias: dict[int, float] | None) -> dict[str, float]:
    """One streamed greedy completion of ``tokens``: tokens/s after the first token, counting the
    tokens the usage chunk reports (text may hold fewer: control tokens print nothing)."""
    start = time.perf_counter()
    first, n = None, 0
    for chunk in llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, stream=True,
                                       logit_bias=bias, stream_options={"include_usage": True}):
        if chunk["choices"] and first is None:
            first = time.perf_counter()
        if chunk.get("usage"):
            n = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    stats = llm.speculative_stats.as_dict() if llm.speculative_stats is not None else {}
    return {"tokens": n, "tps": (n - 1) / (end - (first or start)),
            "acceptance": float(stats.get("acceptance_rate", 0.0))}


def theirs(cmd: list[str]) -> dict[str, float]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    m = DECODED.search(text)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({out.returncode}):\n{text[-3000:]}")
    drafted = re.search(r"n_drafted\s*=\s*(\d+)", text)
    accepted = re.search(r"n_accept\s*=\s*(\d+)", text)
    rate = int(accepted.group(1)) / max(1, int(drafted.group(1))) if drafted and accepted else 0.0
    # "decoded N tokens" counts from the prompt's last token on: the first is the prompt's
    return {"tokens": int(m.group(1)), "tps": float(m.group(3)), "acceptance": rate}


def common_args(args: argparse.Namespace, prompt_file: Path) -> list[str]:
    return ["-m", str(args.model), "-f", str(prompt_file), "-n", str(args.max_tokens), "-c", str(args.n_ctx),
            "-ngl", str(args.ngl), "-fa", args.fa, "-t", str(args.threads), "--temp", "0", "--seed", "1",
            *(["--ignore-eos"] if args.ignore_eos else [])]


def draft_args(draft: Path, ngl: int, n: int) -> list[str]:
    """llama-speculative-simple's draft model, drafting up to n tokens whatever its confidence
    (--spec-draft-p-min 0), as ours does."""
    return ["-md", str(draft), "-ngld", str(ngl), "--spec-type", "draft-simple", "--spec-draft-n-max", str(n),
            "--spec-draft-n-min", "0", "--spec-draft-p-min", "0"]


def measure(name: str, run_ours: Any, cmd: list[str], reps: int) -> dict[str, Any]:
    a, b = [], []
    run_ours()  # warm-up
    for _ in range(reps):
        a.append(run_ours())
        b.append(theirs(cmd))
    mo = statistics.median(x["tps"] for x in a)
    mt = statistics.median(x["tps"] for x in b)
    # the best rep too: a tool's process starting and stopping between reps slows either
    # side's next reps at random by up to 35% on a GPU (bench/lookup_reps.py, p16/gpu-16)
    bo, bt = max(x["tps"] for x in a), max(x["tps"] for x in b)
    row = {"case": name, "ours_tps": mo, "llama_tps": mt, "ratio": mo / mt,
           "ours_best_tps": bo, "llama_best_tps": bt, "ratio_best": bo / bt,
           "ours_acceptance": a[-1]["acceptance"], "llama_acceptance": b[-1]["acceptance"],
           "ours_tokens": a[-1]["tokens"], "llama_tokens": b[-1]["tokens"]}
    print(f"{name:44s} ours {mo:8.1f} t/s  llama.cpp {mt:8.1f} t/s  ratio {mo / mt:5.2f}x (best of "
          f"{reps}: {bo / bt:5.2f}x)  accepted {100 * row['ours_acceptance']:5.1f}% / "
          f"{100 * row['llama_acceptance']:5.1f}%  tokens {row['ours_tokens']} / {row['llama_tokens']}",
          flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--cases", default="self,lookup", help="comma-separated: self, lookup, draft")
    ap.add_argument("--draft-layers", type=int, default=4)
    ap.add_argument("--num-pred", type=int, default=16, help="the longest draft")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--ngl", type=int, default=0)
    ap.add_argument("--fa", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", default=",".join(PROMPTS))
    ap.add_argument("--ignore-eos", action="store_true",
                    help="generate --max-tokens on both sides (a random model ends anywhere)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    fa: Any = {"auto": "auto", "on": True, "off": False}[args.fa]
    kw: dict[str, Any] = dict(n_ctx=args.n_ctx, n_gpu_layers=args.ngl, flash_attn=fa, n_threads=args.threads,
                              n_threads_batch=args.threads, verbose=False)
    spec_simple, lookup = tool("llama-speculative-simple"), tool("llama-lookup")
    cases = args.cases.split(",")
    n = args.num_pred
    print(f"model {args.model.name}  reps {args.reps}  max_tokens {args.max_tokens}  num_pred {n}  "
          f"ngl {args.ngl}  threads {args.threads}", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Llama(args.model, **kw)
        prompts = {}
        for name in args.prompts.split(","):
            if base.metadata.get("tokenizer.chat_template"):
                tokens = base.chat_setup.prompt([{"role": "user", "content": PROMPTS[name]}]).tokens
            else:  # (the synthetic GPU model has no template: the text as it is)
                tokens = base.tokenize(PROMPTS[name].encode(), add_bos=True)
            path = Path(tmp) / f"{name}.txt"  # the tools tokenize the text with its special tokens
            path.write_bytes(base.detokenize(tokens, special=True))
            prompts[name] = (path, tokens)
        bias = end_tokens(base) if args.ignore_eos else None
        base.close()
        if "self" in cases:
            draft = Llama(args.model, **kw)
            spec = Llama(args.model, **kw, draft_model=LlamaDraftModel(draft, n))
            for name, (path, tokens) in prompts.items():
                cmd = [str(spec_simple), *common_args(args, path), *draft_args(args.model, args.ngl, n)]
                run = (lambda t=tokens: ours(spec, t, args.max_tokens, bias))  # noqa: E731
                rows.append(measure(f"self-draft  {name}", run, cmd, args.reps))
            spec.close()
            draft.close()
        if "lookup" in cases:
            spec = Llama(args.model, **kw, draft_model=LlamaPromptLookupDecoding(3, n))
            for name, (path, tokens) in prompts.items():
                run = (lambda t=tokens: ours(spec, t, args.max_tokens, bias))  # noqa: E731
                cmd = [str(spec_simple), *common_args(args, path), "--spec-type", "ngram-simple",
                       "--spec-ngram-simple-size-n", "3", "--spec-ngram-simple-size-m", str(n)]
                rows.append(measure(f"lookup vs ngram-simple  {name}", run, cmd, args.reps))
                cmd = [str(lookup), *common_args(args, path), "--spec-draft-n-max", str(n)]
                rows.append(measure(f"lookup vs llama-lookup  {name}", run, cmd, args.reps))
            spec.close()
        if "draft" in cases:
            from make_draft_model import write_truncated

            k = args.draft_layers
            draft_path = Path(tmp) / f"draft{k}.gguf"
            write_truncated(args.model, draft_path, k)
            draft = Llama(draft_path, **kw)
            spec = Llama(args.model, **kw, draft_model=LlamaDraftModel(draft, n))
            for name, (path, tokens) in prompts.items():
                cmd = [str(spec_simple), *common_args(args, path), *draft_args(draft_path, args.ngl, n)]
                run = (lambda t=tokens: ours(spec, t, args.max_tokens, bias))  # noqa: E731
                rows.append(measure(f"draft {k} layers  {name}", run, cmd, args.reps))
            spec.close()
            draft.close()
    if args.json:
        settings = {k: str(v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"model": str(args.model), "args": settings, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
