"""Write a Llama-3.1-8B-shaped GGUF with random F16 weights, for speed measurements only.

Usage: python bench/make_synthetic_8b.py OUT.gguf [--vocab PATH] [--layers 32]

The shape of Llama 3.1 8B (n_embd 4096, 32 layers, 32 heads / 8 KV heads, n_ff 14336, an
output head apart from the token embeddings, the Llama-3 BPE vocabulary of 128,256 tokens)
with random weights. One random set of layer weights is written for every layer (drawing
7 billion numbers would take minutes of the GPU machine's time; the cost of a decode does
not depend on the values). Quantize it with the same build's llama-quantize
(``bench/gpu_model.sh`` with SHAPE=8b does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gguf
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _tinymodel import _copy_tokenizer, finish_gguf, vocab_path

N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_CTX_TRAIN = 4096, 14336, 32, 8, 8192


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--vocab", type=Path, default=vocab_path("llama-bpe"))
    ap.add_argument("--layers", type=int, default=32)
    args = ap.parse_args()
    rng = np.random.default_rng(8)

    def mat(rows: int, cols: int, scale: float = 0.5) -> np.ndarray:
        m = rng.standard_normal((rows, cols), dtype=np.float32)
        m *= np.float32(scale / np.sqrt(cols))
        return m.astype(np.float16)

    tmp = args.out.with_suffix(".partial")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name("synthetic-llama-3.1-8b-shape")
    n_vocab = _copy_tokenizer(w, args.vocab)
    head_dim = N_EMBD // N_HEAD
    w.add_context_length(N_CTX_TRAIN)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(args.layers)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    ones = np.ones(N_EMBD, dtype=np.float32)
    w.add_tensor("token_embd.weight", mat(n_vocab, N_EMBD, 0.5 * np.sqrt(N_EMBD)))
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", mat(n_vocab, N_EMBD))
    layer = {"attn_q": mat(N_EMBD, N_EMBD), "attn_k": mat(head_dim * N_HEAD_KV, N_EMBD),
             "attn_v": mat(head_dim * N_HEAD_KV, N_EMBD), "attn_output": mat(N_EMBD, N_EMBD),
             "ffn_gate": mat(N_FF, N_EMBD), "ffn_up": mat(N_FF, N_EMBD), "ffn_down": mat(N_EMBD, N_FF)}
    for i in range(args.layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        for name, t in layer.items():
            w.add_tensor(f"blk.{i}.{name}.weight", t)
    finish_gguf(w, tmp, args.out)


if __name__ == "__main__":
    main()
