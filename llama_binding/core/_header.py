"""Checks of a GGUF header before llama.cpp loads it: values on which llama.cpp would stop
the whole process (``GGML_ASSERT``), and ``kv_overrides`` it would silently ignore."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import capi
from ..errors import ModelLoadError
from . import _native

if TYPE_CHECKING:
    from .model import KVValue, ModelParams

__all__ = ["check_gguf_path", "check_header"]

#: ``LLAMA_MAX_LAYERS`` and ``LLAMA_MAX_EXPERTS`` of llama.cpp's src/llama-hparams.h (not in llama.h)
_MAX_LAYERS = 512
_MAX_EXPERTS = 1024
_KIND_OF_GGUF_TYPE: dict[int, str] = {
    **{int(t): "int" for t in (capi.GGUF_TYPE_UINT8, capi.GGUF_TYPE_INT8, capi.GGUF_TYPE_UINT16,
                               capi.GGUF_TYPE_INT16, capi.GGUF_TYPE_UINT32, capi.GGUF_TYPE_INT32,
                               capi.GGUF_TYPE_UINT64, capi.GGUF_TYPE_INT64)},
    int(capi.GGUF_TYPE_FLOAT32): "float", int(capi.GGUF_TYPE_FLOAT64): "float",
    int(capi.GGUF_TYPE_BOOL): "bool", int(capi.GGUF_TYPE_STRING): "str", int(capi.GGUF_TYPE_ARRAY): "array",
}


def check_gguf_path(path: str | os.PathLike[str], what: str = "model") -> Path:
    """``path`` as a Path, once it names a readable file that starts with GGUF's magic;
    else ModelLoadError saying which of those it is not (``what`` names the file's role)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"the {what} path must be a str or os.PathLike, not {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{what} file not found: {p}")
    if p.is_dir():
        raise ModelLoadError(f"{what} path is a directory, not a GGUF file: {p}")
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {what} file {p}: {exc}") from exc
    if magic != b"GGUF":
        raise ModelLoadError(f"not a GGUF file (magic {magic!r}), so not a {what}: {p}")
    return p


def check_header(path: Path, params: ModelParams) -> None:
    """Refuse, before llama.cpp sees them, header values that it would not refuse cleanly.

    ``llama_model::load_hparams`` stops the whole process (``GGML_ASSERT``) on a block count
    outside 1..512 and on inconsistent expert counts, whether they come from a damaged file
    or from ``kv_overrides``; and llama.cpp ignores, with only a warning, an override whose
    type differs from the file's. ``llama_vocab::load`` asserts too, on two vocabulary
    entries with the same text. All become exceptions here. A header that cannot be read
    at all is left to llama.cpp, whose error says why. (Reading the header costs about 12 ms
    for a 49k-token vocabulary.)
    """
    overrides: Mapping[str, KVValue] = params.kv_overrides or {}
    gparams = capi.gguf_init_params()
    gparams.no_alloc = True
    gparams.ctx = None
    ctx = capi.gguf_init_from_file(os.fsencode(path), gparams)
    if not ctx:
        return
    try:
        for key, value in overrides.items():
            kid = int(capi.gguf_find_key(ctx, key.encode()))
            if kid < 0:
                continue
            stored = _KIND_OF_GGUF_TYPE.get(int(capi.gguf_get_kv_type(ctx, kid)), "unknown")
            given = ("bool" if isinstance(value, bool) else "int" if isinstance(value, int)
                     else "float" if isinstance(value, float) else "str")
            if stored != given:
                raise TypeError(f"kv_overrides[{key!r}] = {value!r} is {given}, but {path.name} stores "
                                f"{key!r} as {stored} (llama.cpp would ignore the override)")
        problem = _repeated_token(ctx) or (None if params.vocab_only else _hparams_problem(ctx, overrides))
        if problem:
            raise ModelLoadError(f"cannot load {path}: {problem} (a damaged file or a bad kv_overrides "
                                 "value; llama.cpp would abort the process)")
    finally:
        capi.gguf_free(ctx)


def _repeated_token(ctx: Any) -> str | None:
    """llama.cpp asserts that no two vocabulary entries have the same text."""
    kid = int(capi.gguf_find_key(ctx, b"tokenizer.ggml.tokens"))
    if kid < 0:
        return None
    i = _native.first_repeated_token(ctx, kid)
    if i < 0:
        return None
    text = (capi.gguf_get_arr_str(ctx, kid, i) or b"").decode("utf-8", "replace")
    return f"token {i} of tokenizer.ggml.tokens repeats the text of an earlier token ({text!r})"


def _hparams_problem(ctx: Any, overrides: Mapping[str, KVValue]) -> str | None:
    """What ``GGML_ASSERT`` of ``llama_model::load_hparams`` would fail, read the same way
    (an int override first, else the file's UINT32; ``None`` where llama.cpp throws instead)."""

    def find(key: str) -> int:
        return int(capi.gguf_find_key(ctx, key.encode()))

    arch = overrides.get("general.architecture")
    if not isinstance(arch, str):
        kid = find("general.architecture")
        if kid < 0 or capi.gguf_get_kv_type(ctx, kid) != capi.GGUF_TYPE_STRING:
            return None
        arch = (capi.gguf_get_val_str(ctx, kid) or b"").decode("utf-8", "replace")
    if arch == "clip":
        return None

    def u32(name: str) -> int | None:  # -1: absent (llama.cpp's default), None: llama.cpp throws
        value = overrides.get(f"{arch}.{name}")
        if isinstance(value, int) and not isinstance(value, bool):
            return value & 0xFFFFFFFF
        kid = find(f"{arch}.{name}")
        if kid < 0:
            return -1
        if capi.gguf_get_kv_type(ctx, kid) != capi.GGUF_TYPE_UINT32:
            return None
        return int(capi.gguf_get_val_u32(ctx, kid))

    n_layer = u32("block_count")
    if n_layer is None or n_layer == -1:
        return None
    if not 0 < n_layer <= _MAX_LAYERS:
        return f"{arch}.block_count is {n_layer}, outside 1..{_MAX_LAYERS}"
    nextn = u32("nextn_predict_layers")
    if nextn is None:
        return None
    if nextn > n_layer:
        return f"{arch}.nextn_predict_layers is {nextn}, more than the {n_layer} blocks"
    counts = [u32(n) for n in ("expert_count", "expert_group_count", "expert_group_used_count")]
    if None in counts:
        return None
    n_expert, groups, group_used = (max(c or 0, 0) for c in counts)
    kid = find(f"{arch}.expert_used_count")
    if kid < 0:
        used: int | None = 0  # an override of a key the file lacks is not read (get_key_or_arr)
    elif capi.gguf_get_kv_type(ctx, kid) == capi.GGUF_TYPE_ARRAY:
        n, sub = int(capi.gguf_get_arr_n(ctx, kid)), int(capi.gguf_get_arr_type(ctx, kid))
        if n != n_layer or sub not in (capi.GGUF_TYPE_UINT32, capi.GGUF_TYPE_INT32, capi.GGUF_TYPE_BOOL):
            return None  # llama.cpp throws; and gguf_get_arr_data aborts on a string array
        addr = capi.gguf_get_arr_data(ctx, kid)
        if not addr:
            return None
        if sub == capi.GGUF_TYPE_BOOL:
            used = int(any((ctypes.c_uint8 * n).from_address(addr)))
        else:  # read as uint32_t, as llama.cpp does
            used = max((ctypes.c_uint32 * n).from_address(addr))
    else:
        used = u32("expert_used_count")
    if used is None:
        return None
    if arch in ("hunyuan_vl", "hunyuan-dense") and n_expert <= 1:
        n_expert = used = 0
    if n_expert > _MAX_EXPERTS:
        return f"{arch}.expert_count is {n_expert}, more than {_MAX_EXPERTS}"
    if used > n_expert:
        return f"{arch}.expert_used_count is {used}, more than expert_count {n_expert}"
    if n_expert > 0 and used == 0:
        return f"{arch}.expert_count is {n_expert} but expert_used_count is 0"
    if groups and groups >= n_expert:
        return f"{arch}.expert_group_count is {groups}, not fewer than expert_count {n_expert}"
    if groups > 1 and (n_expert % groups or not 0 < group_used < groups):
        return (f"{arch}: {n_expert} experts in {groups} groups with {group_used} used groups is "
                "not a valid grouping")
    return None
