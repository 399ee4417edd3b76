"""Every GGUF metadata key of a file, arrays included, through ggml's GGUF reader.

``llama_model_meta_*`` renders arrays as an abbreviated string; the GGUF reader of
``gguf.h`` gives the real values. Numeric arrays come back as numpy arrays (copied out of
the reader before it is freed), string arrays as lists of str.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import capi
from ..errors import ModelLoadError

__all__ = ["TensorInfo", "read_metadata", "read_tensors"]

_SCALARS: dict[int, Callable[[Any, int], Any]] = {
    int(capi.GGUF_TYPE_UINT8): capi.gguf_get_val_u8, int(capi.GGUF_TYPE_INT8): capi.gguf_get_val_i8,
    int(capi.GGUF_TYPE_UINT16): capi.gguf_get_val_u16, int(capi.GGUF_TYPE_INT16): capi.gguf_get_val_i16,
    int(capi.GGUF_TYPE_UINT32): capi.gguf_get_val_u32, int(capi.GGUF_TYPE_INT32): capi.gguf_get_val_i32,
    int(capi.GGUF_TYPE_FLOAT32): capi.gguf_get_val_f32, int(capi.GGUF_TYPE_UINT64): capi.gguf_get_val_u64,
    int(capi.GGUF_TYPE_INT64): capi.gguf_get_val_i64, int(capi.GGUF_TYPE_FLOAT64): capi.gguf_get_val_f64,
    int(capi.GGUF_TYPE_BOOL): capi.gguf_get_val_bool,
}
_ARRAY_DTYPES: dict[int, Any] = {
    int(capi.GGUF_TYPE_UINT8): np.uint8, int(capi.GGUF_TYPE_INT8): np.int8,
    int(capi.GGUF_TYPE_UINT16): np.uint16, int(capi.GGUF_TYPE_INT16): np.int16,
    int(capi.GGUF_TYPE_UINT32): np.uint32, int(capi.GGUF_TYPE_INT32): np.int32,
    int(capi.GGUF_TYPE_FLOAT32): np.float32, int(capi.GGUF_TYPE_UINT64): np.uint64,
    int(capi.GGUF_TYPE_INT64): np.int64, int(capi.GGUF_TYPE_FLOAT64): np.float64,
    int(capi.GGUF_TYPE_BOOL): np.bool_,
}


def _value(ctx: Any, i: int) -> Any:
    kind = int(capi.gguf_get_kv_type(ctx, i))
    if kind == capi.GGUF_TYPE_STRING:
        return (capi.gguf_get_val_str(ctx, i) or b"").decode("utf-8", "replace")
    if kind != capi.GGUF_TYPE_ARRAY:
        getter = _SCALARS.get(kind)
        if getter is None:
            raise ModelLoadError(f"unknown GGUF value type {kind}")
        value = getter(ctx, i)
        return bool(value) if kind == capi.GGUF_TYPE_BOOL else value
    n = int(capi.gguf_get_arr_n(ctx, i))
    sub = int(capi.gguf_get_arr_type(ctx, i))
    if sub == capi.GGUF_TYPE_STRING:
        return [(capi.gguf_get_arr_str(ctx, i, j) or b"").decode("utf-8", "replace") for j in range(n)]
    dtype = _ARRAY_DTYPES.get(sub)
    if dtype is None:
        raise ModelLoadError(f"unsupported GGUF array element type {sub}")
    if n == 0:
        return np.empty(0, dtype=dtype)
    addr = capi.gguf_get_arr_data(ctx, i)
    if not addr:
        raise ModelLoadError(f"GGUF array {i} has no data")
    raw = ctypes.string_at(addr, n * np.dtype(dtype).itemsize)
    return np.frombuffer(raw, dtype=dtype).copy()


def _open(path: str | os.PathLike[str]) -> Any:
    params = capi.gguf_init_params()
    params.no_alloc = True
    params.ctx = None
    ctx = capi.gguf_init_from_file(os.fsencode(path), params)
    if not ctx:
        raise ModelLoadError(f"cannot read GGUF metadata from {os.fspath(path)}")
    return ctx


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """All metadata of the GGUF file at ``path`` (no tensor data is read)."""
    ctx = _open(path)
    try:
        return {(capi.gguf_get_key(ctx, i) or b"").decode("utf-8", "replace"): _value(ctx, i)
                for i in range(int(capi.gguf_get_n_kv(ctx)))}
    finally:
        capi.gguf_free(ctx)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file: its name, ggml type name, element count and data bytes."""

    name: str
    type: str
    elements: int
    nbytes: int


def read_tensors(path: str | os.PathLike[str]) -> list[TensorInfo]:
    """The tensors of the GGUF file at ``path`` (their headers; no data is read)."""
    ctx = _open(path)
    try:
        out = []
        for i in range(int(capi.gguf_get_n_tensors(ctx))):
            ne = capi.gguf_get_tensor_ne(ctx, i)
            elements = 1
            for d in range(4):
                elements *= int(ne[d])
            kind = capi.ggml_type_name(int(capi.gguf_get_tensor_type(ctx, i))) or b"?"
            out.append(TensorInfo((capi.gguf_get_tensor_name(ctx, i) or b"").decode("utf-8", "replace"),
                                  kind.decode(), elements, int(capi.gguf_get_tensor_size(ctx, i))))
        return out
    finally:
        capi.gguf_free(ctx)
