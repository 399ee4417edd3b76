"""Will a context's KV memory fit? A cheap lower bound, checked before llama.cpp allocates.

``llama_init_from_model`` sizes the KV cache from ``n_ctx`` and allocates it at once: with
``n_ctx=10**9`` it first builds its per-cell bookkeeping (about 52 bytes a cell: position,
shift, 2-D position, a 256-bit sequence set) and touches many GB of memory before
``std::bad_alloc`` ends it. :func:`check_kv_fits` estimates, from the model's
hyperparameters and the context options, a *lower bound* of that memory and refuses the
context when even the bound exceeds the memory there is. Each uncertain term is rounded
down (sliding-window layers count at the window's size, per-layer head counts we cannot
read count as nothing), so a context that would fit is never refused; one that does not
is refused in milliseconds, with the numbers in the message.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any

from .. import _backend, capi
from ..errors import ContextCreateError

__all__ = ["KVEstimate", "available_memory", "check_kv_fits", "estimate_kv", "model_arch"]

#: bytes of llama.cpp's bookkeeping per KV cell (llama-kv-cells.h: pos, shift, ext, seq bitset)
CELL_BYTES = 4 + 4 + 12 + 256 // 8
#: llama.cpp pads n_ctx (and n_ctx_seq) to this many cells (llama-context.cpp)
CTX_PAD = 256
#: positions are int32: a larger context has no meaning (and n_ctx would wrap when padded)
MAX_N_CTX = 2**31 - CTX_PAD

#: architectures that llama.cpp runs without a KV cache (llama_model::create_memory)
_NO_MEMORY = frozenset({
    "bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2", "jina-bert-v3",
    "eurobert", "gemma-embedding", "wavtokenizer-dec", "dream", "llada", "llada-moe", "rnd1",
})


@dataclass(frozen=True)
class KVEstimate:
    """A lower bound of the memory a context's KV cache takes (bytes)."""

    cells: int  # KV cells over all streams
    host: int  # bookkeeping, always in host memory
    tensors: int  # K and V tensors (host memory, or a GPU's when offloaded)

    @property
    def total(self) -> int:
        return self.host + self.tensors


def _meta(model: Any, key: str) -> str | None:
    buf = ctypes.create_string_buffer(64)
    n = capi.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode("utf-8", "replace") if n >= 0 else None


def model_arch(model: Any) -> str:
    """``general.architecture`` of a ``llama_model *`` ("" when absent)."""
    return _meta(model, "general.architecture") or ""


def _meta_int(model: Any, key: str) -> int | None:
    value = _meta(model, key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _pad(n: int, to: int = CTX_PAD) -> int:
    return (n + to - 1) // to * to


def estimate_kv(model: Any, cparams: Any) -> KVEstimate:
    """A lower bound of the KV memory of a context of ``model`` (a ``llama_model *``) with
    ``cparams`` (a ``llama_context_params``), laid out as llama.cpp does."""
    n_ctx = int(cparams.n_ctx) or int(capi.llama_model_n_ctx_train(model))
    arch = model_arch(model)
    if arch in _NO_MEMORY or capi.llama_model_is_recurrent(model) or n_ctx <= 0:
        return KVEstimate(0, 0, 0)  # recurrent state: per sequence, not per cell
    n_seq = max(1, int(cparams.n_seq_max))
    n_ctx = _pad(n_ctx)
    if cparams.kv_unified:
        streams, per_stream = 1, n_ctx
    else:
        streams, per_stream = n_seq, _pad(max(1, n_ctx // n_seq))
    cells = streams * per_stream
    tensors = 0
    n_head_kv = _meta_int(model, f"{arch}.attention.head_count_kv")  # absent as a scalar: per layer
    if n_head_kv is None and _meta_int(model, f"{arch}.attention.head_count") is not None:
        n_head_kv = int(capi.llama_model_n_head(model))  # llama.cpp's default: no GQA
    mla = _meta(model, f"{arch}.attention.kv_lora_rank") is not None
    if n_head_kv and not mla and not capi.llama_model_is_hybrid(model):
        n_head = max(1, int(capi.llama_model_n_head(model)))
        n_embd = int(capi.llama_model_n_embd(model))
        head_k = _meta_int(model, f"{arch}.attention.key_length") or n_embd // n_head
        head_v = _meta_int(model, f"{arch}.attention.value_length") or n_embd // n_head
        row = (capi.ggml_row_size(int(cparams.type_k), head_k * n_head_kv)
               + capi.ggml_row_size(int(cparams.type_v), head_v * n_head_kv))
        n_swa = int(capi.llama_model_n_swa(model))
        layer_cells = cells if n_swa <= 0 or cparams.swa_full else streams * min(per_stream, n_swa)
        tensors = int(capi.llama_model_n_layer(model)) * layer_cells * row
    return KVEstimate(cells, cells * CELL_BYTES, tensors)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> tuple[int | None, str]:
    """(bytes of host memory this process could still take, how that was measured); None
    when it cannot be told. Linux: MemAvailable plus free swap, within the cgroup's limit."""
    avail: int | None = None
    how = ""
    try:
        with open("/proc/meminfo") as fh:
            info = {k.strip(): v.split() for k, _, v in (line.partition(":") for line in fh)}
        avail = (int(info["MemAvailable"][0]) + int(info.get("SwapFree", ["0"])[0])) * 1024
        how = "MemAvailable + SwapFree"
    except (OSError, KeyError, ValueError, IndexError):
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            how = "physical memory"
        except (AttributeError, ValueError, OSError):
            return None, ""
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None and limit - used < avail:
        avail, how = max(0, limit - used), "the cgroup's memory.max - memory.current"
    return avail, how


def _device_free() -> int:
    """Free memory of the GPU-like devices (0 without any)."""
    free_total = 0
    for i in range(int(capi.ggml_backend_dev_count())):
        dev = capi.ggml_backend_dev_get(i)
        if int(capi.ggml_backend_dev_type(dev)) == int(capi.GGML_BACKEND_DEVICE_TYPE_CPU):
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        capi.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        free_total += int(free.value)
    return free_total


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_kv_fits(model: Any, cparams: Any) -> KVEstimate:
    """Raise :class:`ContextCreateError` when the KV cache of this context certainly does
    not fit in the memory there is (host memory, plus the GPUs' free memory when the cache
    may be offloaded); returns the estimate otherwise."""
    n_ctx = int(cparams.n_ctx)
    if n_ctx > MAX_N_CTX:
        raise ContextCreateError(f"n_ctx={n_ctx} is larger than any context can be ({MAX_N_CTX}: "
                                 "positions are 32-bit)")
    est = estimate_kv(model, cparams)
    if est.total == 0:
        return est
    host, how = available_memory()
    if host is None:
        return est
    offload = _backend.has_local_gpu() and bool(cparams.offload_kqv)
    device = _device_free() if offload else 0
    if est.host <= host and est.total <= host + device:
        return est
    train = int(capi.llama_model_n_ctx_train(model))
    where = f"{_gib(host)} of host memory ({how})"
    if device:
        where += f" and {_gib(device)} free on the GPUs"
    raise ContextCreateError(
        f"the KV cache of n_ctx={n_ctx or train} does not fit: it needs at least {_gib(est.total)} "
        f"({est.cells} cells: {_gib(est.host)} of bookkeeping + {_gib(est.tensors)} of K/V tensors), "
        f"but only {where} is available; use a smaller n_ctx (the model was trained with {train}), "
        "or a quantized type_k/type_v")
