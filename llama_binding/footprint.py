"""What a model will take loaded, estimated from its GGUF file before loading it.

:func:`estimate` reads only the file's metadata: the weights are the file's tensor data,
the KV cache is layers x cells x KV heads x (key + value length) in f16, and with a GPU the
offloaded layers' share of both counts there. Coarse on purpose (compute buffers and
per-architecture details are left out): the server's memory budgets and ``llama-binding
info`` use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

from . import _backend
from .core.metadata import read_metadata

__all__ = ["Footprint", "estimate"]


@dataclass(frozen=True)
class Footprint:
    """Bytes a loaded model takes in host memory and on the GPU (an estimate)."""

    host: int
    gpu: int

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(self.host + other.host, self.gpu + other.gpu)


def estimate(path: Union[str, os.PathLike[str]], *, n_ctx: int = 4096, n_gpu_layers: int = -1,
             embedding: bool = False, gpu: Optional[bool] = None) -> Footprint:
    """The :class:`Footprint` of the model at ``path`` with a context of ``n_ctx`` cells
    (none for an embedding model). With a GPU (``gpu``; default: whether this build
    offloads) ``n_gpu_layers`` layers (-1: all; the output layer counts as one) put their
    share of the weights and of the KV cache there, the rest stays on the host."""
    meta = read_metadata(path)
    arch = str(meta.get("general.architecture", ""))

    def number(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        return int(max(value)) if hasattr(value, "__len__") and len(value) else int(value or default)

    n_layer, n_embd = number("block_count"), number("embedding_length")
    n_head = max(1, number("attention.head_count", 1))
    n_head_kv = number("attention.head_count_kv", n_head)
    head_k = number("attention.key_length", n_embd // n_head)
    head_v = number("attention.value_length", head_k)
    kv = 0 if embedding else n_ctx * n_layer * n_head_kv * (head_k + head_v) * 2
    weights = os.path.getsize(path)
    if gpu is None:
        gpu = _backend.has_local_gpu()
    layers = n_layer + 1  # the output layer counts as one
    on_gpu = 0 if not gpu else layers if n_gpu_layers < 0 else min(n_gpu_layers, layers)
    if not on_gpu:
        return Footprint(weights + kv, 0)
    gpu_weights = weights * on_gpu // layers
    gpu_kv = kv * min(on_gpu, n_layer) // max(n_layer, 1)
    return Footprint(weights - gpu_weights + kv - gpu_kv, gpu_weights + gpu_kv)
