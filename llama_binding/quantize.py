"""Quantize a GGUF model: ``llama_binding.quantize(src, dst, "Q4_K_M")``, what llama.cpp's
``llama-quantize`` does, through ``llama_model_quantize`` (the same code: for the same
options the output is the same bytes).

Types by llama.cpp's names: the file types of ``llama_ftype`` (``Q4_K_M``, ``Q8_0``,
``F16``, ``BF16``, ...; :func:`file_types` lists them) and, for ``output_tensor_type`` /
``token_embedding_type``, ggml's tensor types (``q8_0``, ``f16``, ...). An importance
matrix is not taken yet (llama-quantize reads its file format in its own code).
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional, Union

from . import capi
from ._backend import init_backends
from .errors import ModelLoadError

__all__ = ["file_types", "quantize"]

_FTYPE_PREFIX = "LLAMA_FTYPE_MOSTLY_"


def file_types() -> dict[str, int]:
    """The file types ``quantize`` takes, by name (``{"Q4_K_M": 15, ...}``)."""
    out = {name[len(_FTYPE_PREFIX):]: int(getattr(capi, name)) for name in dir(capi)
           if name.startswith(_FTYPE_PREFIX)}
    out["F32"] = int(capi.LLAMA_FTYPE_ALL_F32)
    return out


def _tensor_type(name: Optional[str]) -> int:
    if name is None:
        return int(capi.GGML_TYPE_COUNT)  # llama.cpp's "not set"
    value = getattr(capi, f"GGML_TYPE_{name.upper()}", None)
    if value is None or name.upper() == "COUNT":
        raise ValueError(f"unknown tensor type {name!r} (ggml's names: q8_0, q4_k, f16, bf16, ...)")
    return int(value)


def quantize(src: Union[str, os.PathLike[str]], dst: Union[str, os.PathLike[str]],
             type: Union[str, int] = "Q4_K_M", *, threads: int = 0, allow_requantize: bool = False,
             leave_output_tensor: bool = False, pure: bool = False, keep_split: bool = False,
             output_tensor_type: Optional[str] = None, token_embedding_type: Optional[str] = None) -> None:
    """Write ``src`` quantized to ``type`` into ``dst`` (replaced if it exists). The options
    are llama-quantize's (``--allow-requantize``, ``--leave-output-tensor``, ``--pure``,
    ``--keep-split``, ``--output-tensor-type``, ``--token-embedding-type``); ``threads`` 0:
    every core. Raises ValueError for an unknown type, ModelLoadError when llama.cpp fails
    (a missing or unreadable input, a type it cannot produce from it)."""
    only_copy = isinstance(type, str) and type.upper() == "COPY"  # llama-quantize's COPY: tensors as they are
    if only_copy:
        ftype = int(capi.LLAMA_FTYPE_ALL_F32)
    elif isinstance(type, str):
        types = file_types()
        if type.upper() not in types:
            raise ValueError(f"unknown type {type!r}; one of: COPY, {', '.join(sorted(types))}")
        ftype = types[type.upper()]
    else:
        ftype = int(type)
    if not os.path.isfile(src):
        raise ModelLoadError(f"no model file at {os.fspath(src)}")
    params = capi.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = ftype
    params.allow_requantize = allow_requantize
    params.quantize_output_tensor = not leave_output_tensor
    params.pure = pure
    params.keep_split = keep_split
    params.only_copy = only_copy
    params.output_tensor_type = _tensor_type(output_tensor_type)
    params.token_embedding_type = _tensor_type(token_embedding_type)
    init_backends()
    code = capi.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
    if code != 0:
        raise ModelLoadError(f"quantizing {os.fspath(src)} to {type} failed (llama_model_quantize returned "
                             f"{code}; the log says why)")
