"""Speculative decoding: generated tokens/s with and without a drafter, same prompts, same build.

    python bench/speculative.py                                   # SmolLM2: prompt lookup + truncated drafts
    python bench/speculative.py --cases lookup --reps 5
    python bench/speculative.py --model M.gguf --ngl 99 --fa on --cases self   # GPU: self-draft

Cases (greedy, temperature 0, streamed; each call in a warm context, so the prompt prefix is
reused by both variants; alternating repetitions, medians). Two rates: tokens over the whole
call (template, prompt's last token, generation) and "generation only", the tokens after the
first text chunk over the time after it (what llama.cpp's tools report as eval speed):

- ``lookup``: LlamaPromptLookupDecoding (max_ngram_size 3, --num-pred tokens) on the
  copy-heavy chat prompts below (``PROMPTS``: a paragraph rewritten with one word changed, a
  function edited, a list reformatted).
- ``draft``: a draft model made of the first k of the model's layers (bench/make_draft_model.py,
  --draft-layers), drafting its greedy tokens for the full model.
- ``self``: the model drafts for itself (a second Llama on the same file): every draft is
  accepted, so this is the upper bound of the mechanics on this machine.

Each line prints plain and speculative tokens/s, the ratio, the acceptance rate, tokens per
target decode, and whether the texts are equal; where not, the first differing token and the
plain top-1/top-2 logit gap there (batched kernels change logits slightly, so a near-tie can
flip; a warm context re-evaluates only the prompt's last token, which moves logits as well).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_binding import Llama
from llama_binding.draft_model import LlamaDraftModel
from llama_binding.generation.drafters import LlamaPromptLookupDecoding

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "shared/models/SmolLM2-135M-Instruct.Q4_1.gguf"

PARAGRAPH = (
    "The old lighthouse stood on the northern cliff for nearly two hundred years. Every night its "
    "keeper climbed the narrow spiral stairs, trimmed the wick, and polished the great brass lens "
    "until it shone. Ships passing through the strait relied on its steady beam to avoid the jagged "
    "rocks below. When the keeper finally retired, the town voted to keep the light burning, and "
    "volunteers took turns tending it through the long winter months."
)
FUNCTION = '''def moving_average(values, window):
    if window <= 0:
        raise ValueError("window must be positive")
    result = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        if i >= window - 1:
            result.append(total / window)
    return result
'''
LIST = "\n".join(f"- {name}: {qty} units at ${price:.2f}" for name, qty, price in [
    ("apples", 12, 0.5), ("bread", 2, 3.25), ("cheese", 1, 7.8), ("dates", 30, 0.2),
    ("eggs", 12, 0.3), ("flour", 3, 1.9), ("grapes", 2, 4.1), ("honey", 1, 6.5)])

#: the copy-heavy prompts (name -> user message)
PROMPTS = {
    "paragraph-one-word": "Rewrite the following paragraph exactly, but replace the word 'northern' "
                          "with 'southern'. Output only the paragraph.\n\n" + PARAGRAPH,
    "function-rename": "Rewrite this Python function with the parameter 'values' renamed to 'xs'. "
                       "Output only the code.\n\n" + FUNCTION,
    "list-copy": "Copy this shopping list exactly, then add a line for milk.\n\n" + LIST,
}


def run_once(llm: Llama, prompt: str,
             max_tokens: int) -> tuple[float, float, str, int, dict[str, float] | None]:
    """One streamed greedy chat completion: (seconds in all, seconds after the first text
    chunk, text, completion tokens, speculative stats)."""
    t = time.perf_counter()
    first = None
    parts: list[str] = []
    for chunk in llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                            temperature=0.0, stream=True):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            if first is None:
                first = time.perf_counter()
            parts.append(text)
    end = time.perf_counter()
    stats = llm.speculative_stats.as_dict() if llm.speculative_stats is not None else None
    n = len(llm.tokenize("".join(parts).encode(), add_bos=False))
    return end - t, end - (first or t), "".join(parts), n, stats


def first_divergence(plain: Llama, prompt: str, spec_text: str, max_tokens: int) -> str:
    """Where the speculative text leaves the plain one, and the plain top-1/top-2 logit gap
    there (an untimed plain call with a logits hook): batched verification may flip a near-tie."""
    gaps: list[float] = []

    def record(ids: Any, logits: Any) -> Any:
        top2 = np.partition(logits, -2)[-2:]
        gaps.append(float(abs(top2[1] - top2[0])))
        return logits

    r = plain.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                     temperature=0.0, logits_processor=record)
    a = plain.tokenize(str(r["choices"][0]["message"]["content"]).encode(), add_bos=False)
    b = plain.tokenize(spec_text.encode(), add_bos=False)
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    if i is None:
        if len(a) == len(b):
            return "equal"
        i = min(len(a), len(b))  # one of them ended there (end of generation)
    gap = f"{gaps[i]:.3f}" if i < len(gaps) else "?"
    return f"differs from token {i} (plain top-1/top-2 gap there {gap})"


def compare(name: str, plain: Llama, spec: Llama, prompt: str, args: argparse.Namespace) -> dict[str, Any]:
    """Alternate plain and speculative calls; medians of generated tokens/s."""
    run_once(plain, prompt, args.max_tokens)  # warm-up: the prompt is in both contexts now
    run_once(spec, prompt, args.max_tokens)
    tp: list[tuple[float, float]] = []
    ts: list[tuple[float, float]] = []
    for _ in range(args.reps):
        dt, gen, text_p, n_p, _ = run_once(plain, prompt, args.max_tokens)
        tp.append((n_p / dt, (n_p - 1) / gen))
        dt, gen, text_s, n_s, stats = run_once(spec, prompt, args.max_tokens)
        ts.append((n_s / dt, (n_s - 1) / gen))
    p, s = (statistics.median(x[0] for x in tp), statistics.median(x[0] for x in ts))
    pg, sg = (statistics.median(x[1] for x in tp), statistics.median(x[1] for x in ts))
    st = stats or {}
    row = {"case": name, "plain_tps": p, "spec_tps": s, "ratio": s / p,
           "plain_gen_tps": pg, "spec_gen_tps": sg, "gen_ratio": sg / pg, "tokens": n_s,
           "acceptance": st.get("acceptance_rate", 0.0),
           "tokens_per_decode": st.get("tokens_per_decode", 1.0),
           "equal_text": text_p == text_s}
    if not row["equal_text"]:
        row["divergence"] = first_divergence(plain, prompt, text_s, args.max_tokens)
    print(f"{name:38s} plain {p:8.1f} t/s  spec {s:8.1f} t/s  ratio {s / p:5.2f}x  "
          f"(generation only: {pg:7.1f} / {sg:7.1f} t/s, {sg / pg:5.2f}x)  "
          f"accepted {100 * row['acceptance']:5.1f}%  {row['tokens_per_decode']:5.2f} tok/decode  "
          f"{n_s:4d} tokens  text {row.get('divergence', 'equal')}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--cases", default="lookup,draft", help="comma-separated: lookup, draft, self")
    ap.add_argument("--draft-layers", default="4,16", help="k for the truncated drafts")
    ap.add_argument("--num-pred", type=int, default=16, help="the longest draft")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--ngl", type=int, default=-1)
    ap.add_argument("--fa", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    fa: Any = {"auto": "auto", "on": True, "off": False}[args.fa]
    kw: dict[str, Any] = dict(n_ctx=args.n_ctx, n_gpu_layers=args.ngl, flash_attn=fa, verbose=False)
    cases = args.cases.split(",")
    print(f"model {args.model.name}  reps {args.reps}  max_tokens {args.max_tokens}  "
          f"num_pred {args.num_pred}", flush=True)
    plain = Llama(args.model, **kw)
    rows: list[dict[str, Any]] = []
    if "lookup" in cases:
        spec = Llama(args.model, **kw, draft_model=LlamaPromptLookupDecoding(3, args.num_pred))
        for name, prompt in PROMPTS.items():
            rows.append(compare(f"lookup  {name}", plain, spec, prompt, args))
        spec.close()
    if "self" in cases:
        draft = Llama(args.model, **kw)
        spec = Llama(args.model, **kw, draft_model=LlamaDraftModel(draft, args.num_pred))
        for name, prompt in PROMPTS.items():
            rows.append(compare(f"self-draft  {name}", plain, spec, prompt, args))
        spec.close()
        draft.close()
    if "draft" in cases:
        from make_draft_model import write_truncated

        with tempfile.TemporaryDirectory() as tmp:
            for k in (int(x) for x in args.draft_layers.split(",")):
                path = Path(tmp) / f"draft{k}.gguf"
                write_truncated(args.model, path, k)
                draft = Llama(path, **kw)
                spec = Llama(args.model, **kw, draft_model=LlamaDraftModel(draft, args.num_pred))
                for name, prompt in PROMPTS.items():
                    rows.append(compare(f"draft {k} layers  {name}", plain, spec, prompt, args))
                spec.close()
                draft.close()
    if args.json:
        settings = {k: str(v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"model": str(args.model), "args": settings, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
