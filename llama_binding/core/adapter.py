"""LoRA adapters: one ``llama_adapter_lora *`` per file, loaded for one model, freed once.

An adapter belongs to the model it was loaded for (llama.cpp matches its tensors to that
model's weights by name and shape); :func:`set_adapters` applies any number of them to a
context of that model, each with its own scale, and can change the scales between decodes
without reloading anything. A scale of 0 is the same as leaving the adapter out.

Lifetimes: an adapter keeps its model alive. A context keeps the adapters set on it alive
(llama.cpp holds only raw pointers to them), and closing an adapter first takes it off every
open context that uses it, so a later decode never reads freed weights. Closing the model
closes its adapters and contexts first.

Safety: llama.cpp reports most bad adapter files as errors, but some it does not refuse at
load time and instead stops the whole process (``GGML_ASSERT`` or a segfault), either while
loading or at the first decode that uses the adapter. :func:`_check_adapter_file` refuses
those in Python before llama.cpp sees the file; see its docstring for the list.
"""

from __future__ import annotations

import ctypes
import math
import numbers
import os
import re
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import _log, capi
from ..errors import LlamaError, ModelLoadError
from ._handle import NativeHandle
from ._header import check_gguf_path
from .model import Model

if TYPE_CHECKING:
    from .context import Context

__all__ = ["LoraAdapter", "set_adapters"]


class LoraAdapter(NativeHandle[Any]):
    """A LoRA adapter loaded from a GGUF file for ``model`` (``llama_adapter_lora_init``).

    Apply it with :func:`set_adapters`; it only ever works with contexts of ``model``.
    A missing or malformed file, or an adapter made for another model, raises
    :class:`~llama_binding.errors.ModelLoadError` naming the file and the reason.
    """

    _kind = "LoRA adapter"

    def __init__(self, model: Model, path: str | os.PathLike[str]) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be a Model, not {type(model).__name__}")
        model.ptr  # noqa: B018 - raises ClosedError for a closed model
        p = _check_path(path)
        _check_adapter_file(p, model)
        _log.sync_level()
        mark = _log.error_mark()
        ptr = capi.llama_adapter_lora_init(model.ptr, os.fsencode(p))
        if not ptr:
            detail = _log.errors_since(mark)
            raise ModelLoadError(f"llama.cpp could not load the LoRA adapter {p}"
                                 + (f": {detail}" if detail else ""))
        super().__init__(ptr, capi.llama_adapter_lora_free, parent=model)
        self.model = model
        self._path = p
        # contexts this adapter is set on; close() takes it off them before freeing it
        self._contexts: weakref.WeakSet[Context] = weakref.WeakSet()

    @property
    def path(self) -> Path:
        """The file the adapter was loaded from."""
        return self._path

    @property
    def metadata(self) -> dict[str, str]:
        """The adapter's GGUF scalar metadata, each value as llama.cpp renders it as text
        (arrays are left out by llama.cpp), e.g. ``{"adapter.type": "lora", ...}``."""
        ptr = self.ptr
        out: dict[str, str] = {}
        for i in range(int(capi.llama_adapter_meta_count(ptr))):
            key = _read_str(lambda buf, n, i=i: capi.llama_adapter_meta_key_by_index(ptr, i, buf, n))
            out[key] = _read_str(lambda buf, n, i=i: capi.llama_adapter_meta_val_str_by_index(ptr, i, buf, n))
        return out

    @property
    def alora_invocation_tokens(self) -> list[int]:
        """For an activated LoRA (aLoRA), the tokens whose appearance switches it on; empty
        for a plain LoRA."""
        ptr = self.ptr
        n = int(capi.llama_adapter_get_alora_n_invocation_tokens(ptr))
        if n == 0:
            return []
        data = capi.llama_adapter_get_alora_invocation_tokens(ptr)
        return [int(data[i]) for i in range(n)]

    def close(self) -> None:
        """Take the adapter off every open context that uses it, then free it (idempotent)."""
        for ctx in list(self._contexts):
            if not ctx.closed:
                set_adapters(ctx, [(a, s) for a, s in _active(ctx) if a is not self])
        self._contexts.clear()
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<LoraAdapter {self._path.name} {state}>"


# --- applying adapters to a context -------------------------------------------------------


def _active(ctx: Context) -> tuple[tuple[LoraAdapter, float], ...]:
    return ctx._adapters


def set_adapters(ctx: Context, adapters: Sequence[tuple[LoraAdapter, float]]) -> None:
    """Make ``adapters`` the LoRA adapters of ``ctx``, each ``(adapter, scale)``, replacing
    whatever was set before; an empty sequence removes them all (the base model again).

    Every adapter must have been loaded for ``ctx.model`` (llama.cpp would apply another
    model's tensors by name and abort on the first shape that differs), hence
    :class:`ValueError` otherwise. Scales must be finite as 32-bit floats. Changing only the
    scales is cheap: nothing is reloaded, the next decode rebuilds its graph. The context
    keeps the adapters alive while they are set.
    """
    if isinstance(adapters, (str, bytes)) or not isinstance(adapters, Sequence):
        raise TypeError(f"adapters must be a sequence of (LoraAdapter, scale) pairs, "
                        f"not {type(adapters).__name__}")
    pairs: list[tuple[LoraAdapter, float]] = []
    seen: set[int] = set()
    model = ctx.model
    for item in adapters:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], LoraAdapter)):
            raise TypeError(f"each entry must be a (LoraAdapter, scale) pair, not {item!r}")
        adapter, scale = item
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(f"the scale of {adapter!r} must be a number, not {type(scale).__name__}")
        c_scale = ctypes.c_float(float(scale)).value  # what llama.cpp will see
        if not math.isfinite(c_scale):
            raise ValueError(f"the scale of {adapter!r} must be finite as a 32-bit float, got {scale!r}")
        adapter.ptr  # noqa: B018 - raises ClosedError for a closed adapter
        if adapter.model is not model:
            raise ValueError(f"{adapter!r} was loaded for another model than this context's; "
                             "load the adapter with the context's model")
        if id(adapter) in seen:
            raise ValueError(f"{adapter!r} is listed twice; give it once, with the sum of the scales")
        seen.add(id(adapter))
        pairs.append((adapter, c_scale))
    n = len(pairs)
    if n:
        ptrs = (ctypes.POINTER(capi.llama_adapter_lora) * n)(*(a.ptr for a, _ in pairs))
        scales = (ctypes.c_float * n)(*(s for _, s in pairs))
        code = int(capi.llama_set_adapters_lora(ctx.ptr, ptrs, n, scales))
    else:
        code = int(capi.llama_set_adapters_lora(ctx.ptr, None, 0, None))
    if code != 0:
        raise LlamaError(f"llama_set_adapters_lora failed (return code {code})")
    for old, _ in _active(ctx):
        old._contexts.discard(ctx)
    for adapter, _ in pairs:
        adapter._contexts.add(ctx)
    ctx._adapters = tuple(pairs)


# --- checks before llama.cpp reads a file --------------------------------------------------


def _read_str(call: Any) -> str:
    """Text from a C function that fills ``(buf, size)`` and returns the full length."""
    buf = ctypes.create_string_buffer(256)
    n = int(call(buf, len(buf)))
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        n = int(call(buf, len(buf)))
    return buf.raw[: max(n, 0)].decode("utf-8", "replace")


def _check_path(path: str | os.PathLike[str]) -> Path:
    return check_gguf_path(path, "LoRA adapter")


class _TensorInfo(NamedTuple):
    type: int
    ne: tuple[int, int, int, int]


def _open_gguf(path: Path) -> Any:
    """A metadata-only ``gguf_context`` of ``path`` (free it), or None if it does not parse."""
    params = capi.gguf_init_params()
    params.no_alloc = True
    params.ctx = None
    ctx = capi.gguf_init_from_file(os.fsencode(path), params)
    return ctx or None


def _tensors(ctx: Any) -> dict[str, _TensorInfo]:
    out: dict[str, _TensorInfo] = {}
    for i in range(int(capi.gguf_get_n_tensors(ctx))):
        name = (capi.gguf_get_tensor_name(ctx, i) or b"").decode("utf-8", "replace")
        ne = capi.gguf_get_tensor_ne(ctx, i)
        out[name] = _TensorInfo(int(capi.gguf_get_tensor_type(ctx, i)), (ne[0], ne[1], ne[2], ne[3]))
    return out


def _base_tensors(model: Model) -> dict[str, _TensorInfo] | None:
    """Types and shapes of the base model's weights, read from its GGUF file (all split
    parts), or None where a file can no longer be read."""
    path = Path(model.path)
    ctx = _open_gguf(path)
    if ctx is None:
        return None
    try:
        kid = int(capi.gguf_find_key(ctx, b"split.count"))
        n_split = (int(capi.gguf_get_val_u16(ctx, kid))
                   if kid >= 0 and capi.gguf_get_kv_type(ctx, kid) == capi.GGUF_TYPE_UINT16 else 1)
        out = _tensors(ctx)
    finally:
        capi.gguf_free(ctx)
    if n_split > 1:  # the parts are named as llama_split_path names them
        suffix = f"-00001-of-{n_split:05d}.gguf"
        if not path.name.endswith(suffix):
            return None
        prefix = str(path)[: -len(suffix)]
        for i in range(2, n_split + 1):
            part = _open_gguf(Path(f"{prefix}-{i:05d}-of-{n_split:05d}.gguf"))
            if part is None:
                return None
            try:
                out.update(_tensors(part))
            finally:
                capi.gguf_free(part)
    return out


#: ggml types that the CPU backend can use as the weight of a matrix product (those with a
#: ``vec_dot`` in ggml-cpu.c's type_traits_cpu); llama.cpp multiplies by both LoRA tensors,
#: and segfaults on any other type (I8..I64, F64, Q8_1, Q8_K) at the first decode
_MATMUL_TYPES = frozenset(
    int(getattr(capi.ggml_type, f"GGML_TYPE_{name}"))
    for name in ("F32", "F16", "BF16", "Q1_0", "Q2_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "MXFP4",
                 "NVFP4", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
                 "IQ3_S", "IQ2_S", "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0")
    if hasattr(capi.ggml_type, f"GGML_TYPE_{name}")
)

#: the metadata llama.cpp reads with gguf_get_val_str / gguf_get_val_f32, which assert the type
_TYPED_KEYS = {
    "general.type": int(capi.GGUF_TYPE_STRING),
    "general.architecture": int(capi.GGUF_TYPE_STRING),
    "adapter.type": int(capi.GGUF_TYPE_STRING),
    "adapter.lora.alpha": int(capi.GGUF_TYPE_FLOAT32),
}

#: weights that llm_graph_context::build_ffn takes with a "<name>.scale" tensor
_FFN_WEIGHT = re.compile(r"(^|\.)ffn_(up|gate|down)(_(?!exps)[a-z]+)?\.weight$")


def _type_name(t: int) -> str:
    return (capi.ggml_type_name(t) or b"?").decode() if 0 <= t < int(capi.GGML_TYPE_COUNT) else str(t)


def _check_adapter_file(path: Path, model: Model) -> None:
    """Refuse, with :class:`ModelLoadError`, an adapter file on which llama.cpp would stop the
    process instead of reporting an error (checked against src/llama-adapter.cpp and
    llama-graph.cpp of the pinned llama.cpp):

    * ``general.type``, ``general.architecture`` or ``adapter.type`` stored as anything but a
      string, or ``adapter.lora.alpha`` as anything but a float32: the loader reads them with
      ``gguf_get_val_str`` / ``gguf_get_val_f32``, which ``GGML_ASSERT`` the type;
    * a LoRA tensor of a type without a CPU matrix product (integers, F64, Q8_1, Q8_K): the
      first decode segfaults;
    * ``lora_a`` / ``lora_b`` with more dimensions than the weight they adapt (a 3-D pair on
      a 2-D weight; an expert weight's pair must have its expert count): the loader checks
      only the first two dimensions, and the decode asserts in ``ggml_mul_mat``;
    * a ``token_embd.weight`` pair whose two tensors disagree on the rank (unchecked by the
      loader, asserted at decode), or any ``token_embd.weight`` pair when the base model has
      no ``output.weight``: then its output layer *is* ``token_embd.weight``, the adapter is
      applied there too with the embedding's transposed layout, and the decode asserts;
    * a pair on an NVFP4 feed-forward weight that has a ``.scale`` tensor
      (``build_ffn`` asserts that no LoRA touches it).

    Everything else (a wrong architecture, missing pair halves, shapes that do not match the
    model, a truncated file) llama.cpp refuses cleanly, and its reason ends up in the error.
    """
    ctx = _open_gguf(path)
    if ctx is None:
        return  # llama.cpp fails to parse it too, and logs why
    try:
        for key, want in _TYPED_KEYS.items():
            kid = int(capi.gguf_find_key(ctx, key.encode()))
            if kid < 0:
                continue
            kv_type = int(capi.gguf_get_kv_type(ctx, kid))
            # gguf reads an array of exactly one element of the right type as a scalar
            ok = kv_type == want or (kv_type == int(capi.GGUF_TYPE_ARRAY)
                                     and int(capi.gguf_get_arr_type(ctx, kid)) == want
                                     and int(capi.gguf_get_arr_n(ctx, kid)) == 1)
            if not ok:
                got = (capi.gguf_type_name(kv_type) or b"?").decode()
                raise ModelLoadError(
                    f"cannot load the LoRA adapter {path}: its {key!r} is stored as {got}, not "
                    f"{(capi.gguf_type_name(want) or b'?').decode()} (llama.cpp would abort the process)")
        # llama.cpp refuses this too, but its message does not say that it got a model file
        kid = int(capi.gguf_find_key(ctx, b"general.type"))
        kind = (capi.gguf_get_val_str(ctx, kid) or b"").decode("utf-8", "replace") if kid >= 0 else None
        if kind != "adapter":
            what = "has no general.type" if kind is None else f"has general.type {kind!r}"
            hint = " (a model file, not an adapter?)" if kind in (None, "model") else ""
            raise ModelLoadError(f"not a LoRA adapter: {path} {what}, not 'adapter'{hint}")
        tensors = _tensors(ctx)
    finally:
        capi.gguf_free(ctx)
    _check_tensors(path, model, tensors)


def _check_tensors(path: Path, model: Model, tensors: dict[str, _TensorInfo]) -> None:
    def refuse(why: str) -> ModelLoadError:
        return ModelLoadError(f"cannot load the LoRA adapter {path}: {why} "
                              "(llama.cpp would abort the process)")

    pairs: dict[str, dict[str, _TensorInfo]] = {}
    for name, info in tensors.items():  # paired by name as llama_adapter_lora_init_impl does
        for half in ("a", "b"):
            if name.endswith(f".lora_{half}"):
                if info.type not in _MATMUL_TYPES:
                    raise refuse(f"tensor {name!r} has type {_type_name(info.type)}, which llama.cpp "
                                 "cannot multiply by")
                pairs.setdefault(name.replace(f".lora_{half}", ""), {})[half] = info
    pairs = {k: v for k, v in pairs.items() if len(v) == 2}  # llama.cpp refuses a lone half
    if not pairs:
        return
    base = _base_tensors(model)
    known = base or {}
    for name, halves in pairs.items():
        a, b = halves["a"], halves["b"]
        if name.endswith("token_embd.weight"):
            if a.ne[2:] != (1, 1) or b.ne[2:] != (1, 1) or a.ne[0] != b.ne[0]:
                raise refuse(f"the LoRA pair of {name!r} has shapes {list(a.ne)} and {list(b.ne)}; "
                             "it must be 2-D with lora_a [rank, n_vocab] and lora_b [rank, n_embd]")
            if name in known and "output.weight" not in known:
                raise refuse(f"it adapts {name!r}, and the base model has no output.weight, so its "
                             "output layer shares the token embeddings (tied embeddings), which "
                             "llama.cpp cannot adapt")
            continue
        weight = known.get(name)
        extra = weight.ne[2:] if weight is not None else (1, 1)
        if a.ne[2:] != extra or b.ne[2:] != extra:
            raise refuse(f"the LoRA pair of {name!r} has shapes {list(a.ne)} and {list(b.ne)}, "
                         f"but the weight's dimensions beyond the second are {list(extra)}"
                         + ("" if base is not None else " (the base model file could not be read)"))
        if (weight is not None and weight.type == int(capi.GGML_TYPE_NVFP4)
                and _FFN_WEIGHT.search(name) and name[: -len(".weight")] + ".scale" in known):
            raise refuse(f"it adapts {name!r}, an NVFP4 feed-forward weight with a scale tensor, "
                         "which llama.cpp cannot combine with a LoRA")
