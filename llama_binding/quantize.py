"""Quantize a GGUF model: ``llama_binding.quantize(src, dst, "Q4_K_M")``, what llama.cpp's
``llama-quantize`` does, through ``llama_model_quantize`` (the same code: for the same
options the output is the same bytes).

Types by llama.cpp's names: the file types of ``llama_ftype`` (``Q4_K_M``, ``Q8_0``,
``F16``, ``BF16``, ...; :func:`file_types` lists them) and, for ``output_tensor_type`` /
``token_embedding_type``, ggml's tensor types (``q8_0``, ``f16``, ...). An importance
matrix is not taken yet (llama-quantize reads its file format in its own code).

``llama_model_quantize`` reports no progress, so ``progress=True`` (or a callable) follows
the output file's size against an estimate of its final size (:func:`estimated_size`) from
a thread: a bar on stderr when it is a terminal, or the fraction given to the callable.
"""

from __future__ import annotations

import ctypes
import glob
import math
import os
import re
import threading
from collections.abc import Callable
from typing import Optional, Union

from . import capi
from ._backend import init_backends
from ._progress import ProgressArg, TerminalBar, progress_callback
from .core.metadata import read_tensors
from .errors import LlamaError, ModelLoadError

__all__ = ["estimated_size", "file_types", "quantize"]

_FTYPE_PREFIX = "LLAMA_FTYPE_MOSTLY_"
_Q6_K_BITS = 210 * 8 / 256  # ggml's block_q6_K: 210 bytes a block of 256 weights


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
             output_tensor_type: Optional[str] = None, token_embedding_type: Optional[str] = None,
             progress: ProgressArg = False) -> None:
    """Write ``src`` quantized to ``type`` into ``dst`` (replaced if it exists). The options
    are llama-quantize's (``--allow-requantize``, ``--leave-output-tensor``, ``--pure``,
    ``--keep-split``, ``--output-tensor-type``, ``--token-embedding-type``); ``threads`` 0:
    every core. ``progress=True`` draws a bar on stderr when it is a terminal; a callable
    gets the estimated fraction done, about ten times a second and 1.0 at the end (its
    result is ignored: a quantization cannot be cancelled). Raises ValueError for an unknown
    type, ModelLoadError when llama.cpp fails (a missing or unreadable input, a type it
    cannot produce from it)."""
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
    report = progress_callback(progress, f"quantizing {os.path.basename(src)}")
    poller = None if report is None else _SizePoller(_outputs(dst, keep_split),
                                                     _estimate(src, "COPY" if only_copy else ftype, pure,
                                                               leave_output_tensor), report)
    code = -1
    try:
        code = capi.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
    finally:
        if poller is not None:
            poller.finish(code == 0)
    if code != 0:
        raise ModelLoadError(f"quantizing {os.fspath(src)} to {type} failed (llama_model_quantize returned "
                             f"{code}; the log says why)")


def _bits_per_weight(type: Union[str, int]) -> Optional[float]:
    """Bits per weight of the ggml type that makes up most of file type ``type`` (``Q4_K``
    for ``Q4_K_M``); None for COPY and F32."""
    if not isinstance(type, str):
        type = {v: k for k, v in file_types().items()}.get(int(type), "")
    parts = type.upper().split("_")
    while parts and parts != ["COPY"]:
        value = getattr(capi, "GGML_TYPE_" + "_".join(parts), None)
        if value is not None and parts != ["F32"]:
            return int(capi.ggml_type_size(value)) * 8 / int(capi.ggml_blck_size(value))
        parts.pop()
    digits = re.search(r"Q(\d)", type.upper())  # a mixture without a type of its name (IQ2_M)
    return int(digits.group(1)) + 0.5 if digits else None


def estimated_size(src: Union[str, os.PathLike[str]], type: Union[str, int], *, pure: bool = False,
                   leave_output_tensor: bool = False) -> int:
    """About how many bytes quantizing ``src`` to ``type`` writes (for a progress bar): the
    metadata as they are, vectors (norms, biases) as they are, the output tensor (or the
    token embeddings that serve as one) in Q6_K as llama.cpp makes it for every quantized
    type but Q8_0, every other tensor at the bits per weight of the type's main ggml type
    (llama.cpp's mixtures raise a few more tensors, so a bar may end short of 100%)."""
    tensors = read_tensors(src)
    total = max(os.path.getsize(src) - sum(t.nbytes for t in tensors), 0)
    bpw = _bits_per_weight(type)
    names = {t.name for t in tensors}
    output = "output.weight" if "output.weight" in names else "token_embd.weight"
    for t in tensors:
        vector = t.name.endswith((".bias", "norm.weight")) or "_norm" in t.name
        bits = bpw
        if t.name == output and bpw is not None and bpw < 8:
            bits = None if leave_output_tensor else bpw if pure else _Q6_K_BITS
        total += t.nbytes if bits is None or vector else math.ceil(t.elements * bits / 8)
    return max(total, 1)


def _estimate(src: Union[str, os.PathLike[str]], type: Union[str, int], pure: bool,
              leave_output_tensor: bool) -> int:
    """:func:`estimated_size`, or the input's size for a file it cannot read (llama.cpp
    then says what is wrong with it)."""
    try:
        return estimated_size(src, type, pure=pure, leave_output_tensor=leave_output_tensor)
    except (LlamaError, OSError, ValueError):
        return max(os.path.getsize(src), 1)


def _outputs(dst: Union[str, os.PathLike[str]], keep_split: bool) -> Callable[[], list[str]]:
    """The files the quantization writes: ``dst``, or its shards with ``keep_split``
    (llama_split_path's ``DST-00001-of-00003.gguf``)."""
    path = os.fspath(dst)
    if keep_split:
        return lambda: glob.glob(glob.escape(path) + "-*-of-*.gguf")
    return lambda: [path]


class _SizePoller:
    """Reports ``written / estimate`` (at most 0.99; 1.0 when done) from a thread, every
    ``interval`` seconds; files that were there before and are untouched yet count 0."""

    def __init__(self, paths: Callable[[], list[str]], estimate: int, report: Callable[[float], object],
                 interval: float = 0.1) -> None:
        self.paths, self.estimate, self.report, self.interval = paths, estimate, report, interval
        self.before = {p: self._key(p) for p in paths()}
        self.reported = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="quantize-progress", daemon=True)
        self.thread.start()

    @staticmethod
    def _key(path: str) -> Optional[tuple[int, int, int]]:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def written(self) -> int:
        total = 0
        for path in self.paths():
            key = self._key(path)
            if key is not None and key != self.before.get(path):
                total += key[1]
        return total

    def _run(self) -> None:
        while True:
            self.report(min(self.written() / self.estimate, 0.99))
            self.reported = True
            if self.stop.wait(self.interval):
                return

    def finish(self, ok: bool) -> None:
        self.stop.set()
        self.thread.join()
        if ok:
            self.report(1.0)
        elif self.reported and isinstance(self.report, TerminalBar):
            self.report.stream.write("\n")  # the error that follows starts a line of its own
            self.report.stream.flush()
