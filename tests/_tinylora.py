"""Tiny LoRA adapters in GGUF for the tiny models of ``_tinymodel``, written on the fly for tests.

The file is what llama.cpp's ``convert_lora_to_gguf.py`` writes and ``src/llama-adapter.cpp``
reads: ``general.type = "adapter"``, ``general.architecture`` equal to the base model's
(the loader refuses another architecture), ``adapter.type = "lora"``, ``adapter.lora.alpha``
(F32), and for each adapted weight ``W`` a pair ``W.lora_a`` / ``W.lora_b``.

Shapes, in ggml order (``ne``, the reverse of numpy's): a base weight ``[n_in, n_out]`` gets
``lora_a: [n_in, rank]`` and ``lora_b: [rank, n_out]`` (the loader checks ``W.ne[0] == a.ne[0]``,
``W.ne[1] == b.ne[1]`` and ``a.ne[1] == b.ne[0]``). In numpy that is ``A: (rank, n_in)`` and
``B: (n_out, rank)``, and the update is ``W + scale * (alpha / rank) * B @ A`` (``alpha = 0``
means no ``alpha / rank`` factor). ``token_embd.weight`` is the exception: its pair is flipped,
``lora_a: [rank, n_vocab]`` and ``lora_b: [rank, n_embd]`` (llama.cpp gathers rows of ``lora_a``
by token). The weights are random but seeded, so a file is the same for the same arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _tinymodel import TinySpec, finish_gguf, vocab_path

__all__ = ["TARGETS", "write_tiny_lora"]

#: the adaptable weights of a tiny model: those of every block, and ``token_embd`` (which
#: llama.cpp cannot adapt in a model with tied embeddings, the default of :class:`TinySpec`)
TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "token_embd")


def _dims(spec: TinySpec, target: str) -> tuple[int, int]:
    n_embd_kv = spec.n_embd // spec.n_head * spec.n_head_kv
    return {
        "attn_q": (spec.n_embd, spec.n_embd),
        "attn_k": (spec.n_embd, n_embd_kv),
        "attn_v": (spec.n_embd, n_embd_kv),
        "attn_output": (spec.n_embd, spec.n_embd),
        "ffn_gate": (spec.n_embd, spec.n_ff),
        "ffn_up": (spec.n_embd, spec.n_ff),
        "ffn_down": (spec.n_ff, spec.n_embd),
    }[target]


def _n_vocab(spec: TinySpec) -> int:
    import gguf

    return len(gguf.GGUFReader(vocab_path(spec.vocab)).fields["tokenizer.ggml.tokens"].data)


def write_tiny_lora(
    path: Path | str,
    base_spec: TinySpec,
    rank: int = 4,
    seed: int = 0,
    alpha: float | None = None,
    targets: Sequence[str] = ("attn_q", "attn_v"),
    *,
    architecture: str = "llama",
    invocation_tokens: Sequence[int] | None = None,
    magnitude: float = 1.0,
) -> Path:
    """Write a LoRA adapter for the tiny model of ``base_spec`` to ``path``.

    ``alpha`` defaults to ``rank`` (an effective factor of 1). ``targets`` are names of
    :data:`TARGETS`, adapted in every block. ``invocation_tokens`` makes it an aLoRA (the
    ``adapter.alora.invocation_tokens`` array). ``magnitude`` scales the random update,
    relative to the base weights' own scale, so that its effect on the logits is plain.
    """
    import gguf

    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown LoRA targets {unknown}; choose from {TARGETS}")
    path = Path(path)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(tmp), architecture)  # writes general.architecture
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank if alpha is None else alpha))
    if invocation_tokens is not None:
        writer.add_key_value(gguf.Keys.Adapter.ALORA_INVOCATION_TOKENS, list(invocation_tokens),
                             gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT32)
    if "token_embd" in targets:
        # flipped and transposed: llm_build_inp_embd gathers rows of lora_a by token, then
        # multiplies by lora_b, so lora_a is [rank, n_vocab] and lora_b [rank, n_embd]
        n_vocab = _n_vocab(base_spec)
        a = rng.standard_normal((n_vocab, rank)) * (magnitude * base_spec.scale / np.sqrt(rank))
        b = rng.standard_normal((base_spec.n_embd, rank)) / np.sqrt(rank)
        writer.add_tensor("token_embd.weight.lora_a", a.astype(np.float32))  # ggml [rank, n_vocab]
        writer.add_tensor("token_embd.weight.lora_b", b.astype(np.float32))  # ggml [rank, n_embd]
    for i in range(base_spec.n_layer):
        for target in targets:
            if target == "token_embd":
                continue
            n_in, n_out = _dims(base_spec, target)
            # B @ A has entries of about magnitude * scale / sqrt(n_in), like the base weights
            a = rng.standard_normal((rank, n_in)) / np.sqrt(n_in)
            b = rng.standard_normal((n_out, rank)) * (magnitude * base_spec.scale / np.sqrt(rank))
            name = f"blk.{i}.{target}.weight"
            writer.add_tensor(name + ".lora_a", a.astype(np.float32))  # ggml [n_in, rank]
            writer.add_tensor(name + ".lora_b", b.astype(np.float32))  # ggml [rank, n_out]
    return finish_gguf(writer, tmp, path)
