"""Tiny multimodal projectors (mmproj GGUFs) and PNG images, written on the fly for tests.

The projector is a LLaVA-style ``mlp`` projector (``clip.projector_type = "mlp"``) over a
tiny CLIP ViT with random (seeded) weights. What libmtmd's ``clip.cpp`` reads for it:

keys
    ``clip.projector_type``, ``clip.has_vision_encoder``, ``clip.use_gelu``,
    ``clip.vision.{image_size, patch_size, embedding_length, feed_forward_length,
    block_count, projection_dim, attention.head_count, attention.layer_norm_epsilon,
    image_mean, image_std}``
tensors (numpy shapes, i.e. reversed ggml ``ne``)
    ``v.patch_embd.weight`` (n_embd, 3, patch, patch), ``v.patch_embd.bias`` (n_embd,),
    ``v.position_embd.weight`` (n_patches, n_embd), ``v.pre_ln.{weight,bias}``,
    per block ``v.blk.N.{attn_q, attn_k, attn_v, attn_out, ffn_up, ffn_down}.{weight,bias}``
    and ``v.blk.N.{ln1, ln2}.{weight,bias}``; the projector ``mm.0.{weight,bias}``
    (n_embd -> proj_hidden) and ``mm.2.{weight,bias}`` (proj_hidden -> LLM n_embd).

The projector's output dimension (``mm.2.weight`` rows) must equal the text model's
``n_embd``; libmtmd checks it at init. The images are produced with the stdlib only
(zlib + struct), so no imaging library is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from _tinymodel import finish_gguf

#: layers the multimodal tests offload (and whether the projector runs on the GPU): 0 here;
#: bench/gpu_p13.sh runs the same tests on the GPU machine with LLAMA_BINDING_TEST_NGL=-1
NGL = int(os.environ.get("LLAMA_BINDING_TEST_NGL", "0"))


def same_logits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit on the CPU; on a GPU within 1e-2 (its kernels differ with the batch's and
    the context's shape, and the tiny random models' logits carry that)."""
    return bool(np.array_equal(a, b)) if NGL == 0 else bool(np.allclose(a, b, rtol=1e-2, atol=1e-2))


def same_top(a: dict[str, float], b: dict[str, float]) -> bool:
    """Two first-token top-logprob tables: the same tokens, within 1e-2 on the CPU (a context
    of other cells and slots sums in another order: differences up to 7e-4 were seen);
    on a GPU, 4 of 5 tokens shared, within 0.05."""
    shared = set(a) & set(b)
    if NGL == 0:
        return set(a) == set(b) and all(abs(a[k] - b[k]) < 1e-2 for k in shared)
    return len(shared) >= min(len(a), len(b)) - 1 and all(abs(a[k] - b[k]) < 0.05 for k in shared)


@dataclass(frozen=True)
class TinyProjectorSpec:
    """Shape and seed of a tiny random CLIP + MLP projector."""

    n_embd_text: int = 64  # must match the LLM's n_embd (TinySpec.n_embd)
    image_size: int = 32
    patch_size: int = 8
    n_embd: int = 32
    n_ff: int = 64
    n_layer: int = 2  # the llava graph runs n_layer - 1 blocks
    n_head: int = 4
    proj_hidden: int = 64
    seed: int = 0
    scale: float = 0.5

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _write_keys(writer: object, spec: TinyProjectorSpec) -> None:
    w = writer
    w.add_string("general.name", f"tiny-mmproj-{spec.key()}")  # type: ignore[attr-defined]
    w.add_string("clip.projector_type", "mlp")  # type: ignore[attr-defined]
    w.add_bool("clip.has_vision_encoder", True)  # type: ignore[attr-defined]
    w.add_bool("clip.use_gelu", True)  # type: ignore[attr-defined]
    v = "clip.vision."
    for name, value in (
        ("image_size", spec.image_size),
        ("patch_size", spec.patch_size),
        ("embedding_length", spec.n_embd),
        ("feed_forward_length", spec.n_ff),
        ("block_count", spec.n_layer),
        ("projection_dim", spec.n_embd_text),
        ("attention.head_count", spec.n_head),
    ):
        w.add_uint32(v + name, value)  # type: ignore[attr-defined]
    w.add_float32(v + "attention.layer_norm_epsilon", 1e-5)  # type: ignore[attr-defined]
    w.add_array(v + "image_mean", [0.5, 0.5, 0.5])  # type: ignore[attr-defined]
    w.add_array(v + "image_std", [0.5, 0.5, 0.5])  # type: ignore[attr-defined]


def _tensors(spec: TinyProjectorSpec) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    d = spec.n_embd

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * spec.scale / np.sqrt(cols)).astype(np.float32)

    def vec(n: int, fill: float = 0.0) -> np.ndarray:
        return np.full(n, fill, dtype=np.float32)

    n_patches = (spec.image_size // spec.patch_size) ** 2
    p = spec.patch_size
    out: dict[str, np.ndarray] = {
        "v.patch_embd.weight": (rng.standard_normal((d, 3, p, p)) / p).astype(np.float32),
        "v.patch_embd.bias": vec(d),
        "v.position_embd.weight": mat(n_patches, d),
        "v.pre_ln.weight": vec(d, 1.0),
        "v.pre_ln.bias": vec(d),
    }
    for i in range(spec.n_layer):
        b = f"v.blk.{i}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            out[b + name + ".weight"] = mat(d, d)
            out[b + name + ".bias"] = vec(d)
        out[b + "ffn_up.weight"] = mat(spec.n_ff, d)
        out[b + "ffn_up.bias"] = vec(spec.n_ff)
        out[b + "ffn_down.weight"] = mat(d, spec.n_ff)
        out[b + "ffn_down.bias"] = vec(d)
        for name in ("ln1", "ln2"):
            out[b + name + ".weight"] = vec(d, 1.0)
            out[b + name + ".bias"] = vec(d)
    out["mm.0.weight"] = mat(spec.proj_hidden, d)
    out["mm.0.bias"] = vec(spec.proj_hidden)
    out["mm.2.weight"] = mat(spec.n_embd_text, spec.proj_hidden) * np.float32(4.0)
    out["mm.2.bias"] = vec(spec.n_embd_text)
    return out


def write_tiny_mmproj(path: Path, spec: TinyProjectorSpec = TinyProjectorSpec()) -> Path:
    """Write a tiny random ``mlp`` projector with ``spec`` to ``path``."""
    return write_tensors(path, spec, _tensors(spec))


def write_tensors(path: Path, spec: TinyProjectorSpec, tensors: dict[str, np.ndarray]) -> Path:
    """Write a projector with ``spec``'s keys and the given ``tensors`` (tests damage them)."""
    import gguf

    tmp = path.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(tmp), "clip")
    _write_keys(writer, spec)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    return finish_gguf(writer, tmp, path)


# --- PNG images, stdlib only ------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """The PNG signature and an IHDR chunk for an 8-bit RGB image of ``width`` x ``height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)


def make_png(width: int, height: int, seed: int = 0) -> bytes:
    """An 8-bit RGB PNG of random pixels (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))
    return png_header(width, height) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but holds almost no data."""
    return png_header(width, height) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b"")
