"""Tiny Llama-architecture GGUF models, written on the fly for tests.

Random weights (seeded), a real tokenizer copied from one of llama.cpp's vocab-only GGUFs
(``vendor/llama.cpp/models/ggml-vocab-*.gguf``), and a configurable shape. The output is
deterministic for a given spec, so tests can cache it per session.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

VOCAB_DIR = Path(__file__).resolve().parents[1] / "vendor" / "llama.cpp" / "models"


@dataclass(frozen=True)
class TinySpec:
    """Shape and seed of a tiny random model."""

    vocab: str = "llama-spm"  # ggml-vocab-<vocab>.gguf
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx_train: int = 2048
    seed: int = 0
    tied_embeddings: bool = True
    scale: float = 0.5
    chat_template: str | None = None

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def vocab_path(name: str) -> Path:
    return VOCAB_DIR / f"ggml-vocab-{name}.gguf"


def _copy_tokenizer(writer: object, source: Path) -> int:
    """Copy every ``tokenizer.*`` key of a vocab-only GGUF; return the vocab size."""
    import gguf

    reader = gguf.GGUFReader(source)
    n_vocab = 0
    for name, fld in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = gguf.GGUFValueType(fld.types[0])
        value = fld.contents()
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = gguf.GGUFValueType(fld.types[-1])
            writer.add_key_value(name, value, vtype, sub_type=sub)  # type: ignore[attr-defined]
            if name == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            writer.add_key_value(name, value, vtype)  # type: ignore[attr-defined]
    return n_vocab


def finish_gguf(writer: Any, tmp: Path, path: Path) -> Path:
    """Write ``writer``'s header, metadata and tensors to ``tmp``, then move it to ``path``
    (whole or not at all: a test run stopped halfway leaves no broken model in the cache)."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if tmp != path:
        tmp.replace(path)
    return path


def write_tiny_llama(path: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a tiny random Llama model with ``spec`` to ``path``."""
    import gguf

    rng = np.random.default_rng(spec.seed)
    tmp = path.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(f"tiny-llama-{spec.vocab}-{spec.key()}")
    n_vocab = _copy_tokenizer(writer, vocab_path(spec.vocab))
    head_dim = spec.n_embd // spec.n_head
    n_embd_kv = head_dim * spec.n_head_kv
    writer.add_context_length(spec.n_ctx_train)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    if spec.chat_template is not None:
        writer.add_chat_template(spec.chat_template)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * spec.scale / np.sqrt(cols)).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    writer.add_tensor("token_embd.weight", mat(n_vocab, spec.n_embd) * np.float32(np.sqrt(spec.n_embd)))
    writer.add_tensor("output_norm.weight", ones(spec.n_embd))
    if not spec.tied_embeddings:
        writer.add_tensor("output.weight", mat(n_vocab, spec.n_embd))
    for i in range(spec.n_layer):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", ones(spec.n_embd))
        writer.add_tensor(p + "attn_q.weight", mat(spec.n_embd, spec.n_embd))
        writer.add_tensor(p + "attn_k.weight", mat(n_embd_kv, spec.n_embd))
        writer.add_tensor(p + "attn_v.weight", mat(n_embd_kv, spec.n_embd))
        writer.add_tensor(p + "attn_output.weight", mat(spec.n_embd, spec.n_embd))
        writer.add_tensor(p + "ffn_norm.weight", ones(spec.n_embd))
        writer.add_tensor(p + "ffn_gate.weight", mat(spec.n_ff, spec.n_embd))
        writer.add_tensor(p + "ffn_up.weight", mat(spec.n_ff, spec.n_embd))
        writer.add_tensor(p + "ffn_down.weight", mat(spec.n_embd, spec.n_ff))

    return finish_gguf(writer, tmp, path)
