"""Tokenizing a chat's next turn: llama.cpp's ``llama_tokenize`` of the whole conversation
(what llama-server does every turn) beside ``PrefixTokenizer`` (llama_binding/core/
prefix_tokens.py: the last prompt's tokens up to a line's end, then only the rest).

    python bench/prefix_tokens.py --vocab vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf
    python bench/prefix_tokens.py --vocab ../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf

A conversation grows by --turn-words words of answer and a user line a turn, up to about
--tokens tokens; per turn llama_tokenize is timed (best of --reps) and ours once (a second call
would find the same text remembered), and the tokens compared.
Printed: the mean time per turn over the turns with at least 1,000 tokens, and the ratio.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_binding.core import Model, ModelParams, Vocab
from llama_binding.core.prefix_tokens import PrefixTokenizer

WORDS = ("the a river stone quiet garden letter morning window bright story small old friend house "
         "music light road evening blue green child found went said asked, 2024 3.5 it's").split()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=Path, required=True, help="a GGUF (only its vocabulary is read)")
    ap.add_argument("--tokens", type=int, default=8000)
    ap.add_argument("--turn-words", type=int, default=60)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    model = Model(str(args.vocab), ModelParams(vocab_only=True))
    vocab = Vocab(model)
    pt = PrefixTokenizer(vocab)
    rng = random.Random(1)
    text = "Conversation.\n"
    whole_s: list[float] = []
    prefix_s: list[float] = []
    n = 0
    while n < args.tokens:
        text += (" ".join(rng.choice(WORDS) for _ in range(args.turn_words)) + "\nUser: "
                 + " ".join(rng.choice(WORDS) for _ in range(12)) + "\nAssistant:")
        best_whole = float("inf")
        for _ in range(args.reps):
            t0 = time.perf_counter()
            want = vocab.tokenize(text, add_special=True, parse_special=True)
            best_whole = min(best_whole, time.perf_counter() - t0)
        t0 = time.perf_counter()  # once: a second call would find this very text remembered
        got = pt.tokenize(text)
        best_prefix = time.perf_counter() - t0
        if got != want:
            raise SystemExit(f"tokens differ at {n} tokens")
        n = len(want)
        if n >= 1000:
            whole_s.append(best_whole)
            prefix_s.append(best_prefix)
    whole, prefix = sum(whole_s) / len(whole_s) * 1e3, sum(prefix_s) / len(prefix_s) * 1e3
    print(f"vocab {args.vocab.name} (type {vocab.type}, {vocab.n_tokens} tokens)  {len(whole_s)} turns of "
          f"1,000-{n} tokens")
    print(f"llama_tokenize (the whole conversation) {whole:.3f} ms a turn   ours (PrefixTokenizer) "
          f"{prefix:.3f} ms   ratio {prefix / whole:.3f}x (below 1: ours faster)")
    model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
