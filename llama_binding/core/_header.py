"""Checks of a GGUF header before llama.cpp loads it: values on which llama.cpp would stop
the whole process (``GGML_ASSERT``), and ``kv_overrides`` it would silently ignore."""

from __future__ import annotations

import ctypes
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import capi
from ..errors import ModelLoadError
from . import _native

if TYPE_CHECKING:
    from .model import KVValue, ModelParams

__all__ = ["HeaderFacts", "check_gguf_path", "check_header"]

#: ``LLAMA_MAX_LAYERS`` and ``LLAMA_MAX_EXPERTS`` of llama.cpp's src/llama-hparams.h (not in llama.h)
_MAX_LAYERS = 512
_MAX_EXPERTS = 1024
#: ``TENSOR_ALIGNMENT`` of ggml (ggml-impl.h): what ggml asserts of a mapped tensor's address
_MMAP_ALIGNMENT = 32
#: the value of ``tokenizer.ggml.model`` -> which byte fallback its tokenizer needs
_BYTE_FALLBACK = {"llama": _native.SPM_BYTES, "rwkv": _native.RWKV_BYTES}
_TOKEN_TYPE_BYTE = 6  # LLAMA_TOKEN_TYPE_BYTE
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
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ModelLoadError(f"{what} file not found: {p}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {what} file {p}: {exc}") from exc
    if stat.S_ISDIR(mode):
        raise ModelLoadError(f"{what} path is a directory, not a GGUF file: {p}")
    if not stat.S_ISREG(mode):  # opening a FIFO would wait for a writer; /dev/zero never ends
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a special file")
        raise ModelLoadError(f"{what} path is {kind}, not a regular file: {p}")
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {what} file {p}: {exc}") from exc
    if magic != b"GGUF":
        raise ModelLoadError(f"not a GGUF file (magic {magic!r}), so not a {what}: {p}")
    return p


@dataclass(frozen=True)
class HeaderFacts:
    """What the header says about how the file can be loaded."""

    #: the first tensor whose data does not start at a multiple of 32 bytes in the file
    #: (a ``general.alignment`` of 1, 8 or 16): ggml asserts on such a tensor when mapped
    unaligned_tensor: str | None = None


def check_header(path: Path, params: ModelParams) -> HeaderFacts:
    """Refuse, before llama.cpp sees them, header values that it would not refuse cleanly.

    ``llama_model::load_hparams`` stops the whole process (``GGML_ASSERT``) on a block count
    outside 1..512 and on inconsistent expert counts, whether they come from a damaged file
    or from ``kv_overrides``; ggml asserts at the first decode on a NaN or negative norm
    epsilon and on a head count that the KV head count does not divide; and llama.cpp
    ignores, with only a warning, an override whose type differs from the file's.
    ``llama_vocab::load`` asserts on two vocabulary entries with the same text, and its
    tokenizers abort on a vocabulary without the byte tokens they fall back to (see
    :func:`_vocab_problem`). All become exceptions here. A header that cannot be read at
    all is left to llama.cpp, whose error says why. (Reading the header costs about 12 ms
    for a 49k-token vocabulary.)
    """
    overrides: Mapping[str, KVValue] = params.kv_overrides or {}
    gparams = capi.gguf_init_params()
    gparams.no_alloc = True
    gparams.ctx = None
    ctx = capi.gguf_init_from_file(os.fsencode(path), gparams)
    if not ctx:
        return HeaderFacts()
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
        problem = (_repeated_token(ctx) or _vocab_problem(ctx, overrides)
                   or (None if params.vocab_only else _hparams_problem(ctx, overrides)))
        if problem:
            raise ModelLoadError(f"cannot load {path}: {problem} (a damaged file or a bad kv_overrides "
                                 "value; llama.cpp would abort the process)")
        return HeaderFacts(unaligned_tensor=_unaligned_tensor(ctx))
    finally:
        capi.gguf_free(ctx)


def _unaligned_tensor(ctx: Any) -> str | None:
    """The name of the first tensor whose data is not 32-byte aligned in the file."""
    base = int(capi.gguf_get_data_offset(ctx))
    for i in range(int(capi.gguf_get_n_tensors(ctx))):
        if (base + int(capi.gguf_get_tensor_offset(ctx, i))) % _MMAP_ALIGNMENT:
            return (capi.gguf_get_tensor_name(ctx, i) or b"").decode("utf-8", "replace")
    return None


def _str_value(ctx: Any, overrides: Mapping[str, KVValue], key: str) -> str | None:
    """A string as llama.cpp's loader reads it: a str override first, else the file's value
    (``None`` when absent or not a string)."""
    value = overrides.get(key)
    if isinstance(value, str):
        return value
    kid = int(capi.gguf_find_key(ctx, key.encode()))
    if kid < 0 or capi.gguf_get_kv_type(ctx, kid) != capi.GGUF_TYPE_STRING:
        return None
    return (capi.gguf_get_val_str(ctx, kid) or b"").decode("utf-8", "replace")


def _vocab_problem(ctx: Any, overrides: Mapping[str, KVValue]) -> str | None:
    """What of the vocabulary llama.cpp would abort on, at load or at the first tokenize.

    - ``tokenizer.ggml.model`` ``none``/``no_vocab``: the model loads without a tokenizer,
      and the first tokenize asserts ("Tokenizer not initialized");
    - an empty ``tokenizer.ggml.tokens``;
    - an SPM vocabulary (``llama``) without a ``<0xXX>`` or one-byte token for some byte:
      text that no token covers is spelled byte by byte with ``unordered_map::at``, which
      throws through the C API (also the case of every token text empty, or of a BPE
      vocabulary labelled ``llama``);
    - an RWKV vocabulary without a token for some single byte: its tokenizer returns id -1
      for it, or loops forever;
    - a WordPiece vocabulary (``bert``) with tokens of type BYTE: building the piece cache
      aborts (``token_to_byte`` has no WordPiece case).
    Special tokens (BOS, EOS, SEP) are checked after the load, where llama.cpp has resolved
    them (``model._vocab_problem``).
    """
    model = _str_value(ctx, overrides, "tokenizer.ggml.model")
    if model is None:
        return None  # llama.cpp refuses a missing key itself
    if model in ("none", "no_vocab"):
        return (f"tokenizer.ggml.model is {model!r}: the model has no tokenizer, and llama.cpp aborts "
                "on the first tokenize or detokenize")
    kid = int(capi.gguf_find_key(ctx, b"tokenizer.ggml.tokens"))
    if (kid < 0 or capi.gguf_get_kv_type(ctx, kid) != capi.GGUF_TYPE_ARRAY
            or capi.gguf_get_arr_type(ctx, kid) != capi.GGUF_TYPE_STRING):
        return None  # llama.cpp refuses these itself
    if int(capi.gguf_get_arr_n(ctx, kid)) == 0:
        return "tokenizer.ggml.tokens is empty (a vocabulary of 0 tokens)"
    kind = _BYTE_FALLBACK.get(model)
    if kind is not None:
        byte = _native.missing_byte_token(ctx, kid, kind)
        if byte >= 0:
            token = f"'<0x{byte:02X}>' or one-byte" if kind == _native.SPM_BYTES else "one-byte"
            return (f"tokenizer.ggml.model is {model!r}, but tokenizer.ggml.tokens has no {token} token for "
                    f"byte 0x{byte:02X}, which its tokenizer falls back to (a vocabulary that does not "
                    f"match tokenizer.ggml.model, or damaged token texts)")
    if model == "bert":
        tid = int(capi.gguf_find_key(ctx, b"tokenizer.ggml.token_type"))
        if (tid >= 0 and capi.gguf_get_kv_type(ctx, tid) == capi.GGUF_TYPE_ARRAY
                and capi.gguf_get_arr_type(ctx, tid) == capi.GGUF_TYPE_INT32):
            n = min(int(capi.gguf_get_arr_n(ctx, tid)), int(capi.gguf_get_arr_n(ctx, kid)))
            addr = capi.gguf_get_arr_data(ctx, tid)
            if n and addr:
                types = memoryview((ctypes.c_int32 * n).from_address(addr)).cast("B").cast("i")
                if _TOKEN_TYPE_BYTE in types:
                    return ("tokenizer.ggml.model is 'bert' (WordPiece), but tokenizer.ggml.token_type marks "
                            "byte tokens, which WordPiece has none of (a vocabulary that does not match "
                            "tokenizer.ggml.model)")
    return None


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
    problem = _epsilon_problem(ctx, overrides, arch)
    if problem:
        return problem

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
    return _heads_problem(ctx, overrides, arch, n_layer)


def _per_layer(ctx: Any, overrides: Mapping[str, KVValue], key: str, n_layer: int) -> list[int] | None:
    """A count that llama.cpp reads with ``get_key_or_arr``: one value per layer from an
    array of ``n_layer`` integers, else the int override or the file's UINT32 for every
    layer. ``None`` when absent or of a shape llama.cpp refuses itself."""
    kid = int(capi.gguf_find_key(ctx, key.encode()))
    if kid >= 0 and capi.gguf_get_kv_type(ctx, kid) == capi.GGUF_TYPE_ARRAY:
        n, sub = int(capi.gguf_get_arr_n(ctx, kid)), int(capi.gguf_get_arr_type(ctx, kid))
        addr = capi.gguf_get_arr_data(ctx, kid) if sub in (capi.GGUF_TYPE_UINT32, capi.GGUF_TYPE_INT32) else 0
        if n != n_layer or not addr:
            return None
        return list((ctypes.c_uint32 * n).from_address(addr))  # read as uint32_t, as llama.cpp does
    value = overrides.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return [value & 0xFFFFFFFF] * n_layer
    if kid < 0 or capi.gguf_get_kv_type(ctx, kid) != capi.GGUF_TYPE_UINT32:
        return None
    return [int(capi.gguf_get_val_u32(ctx, kid))] * n_layer


def _heads_problem(ctx: Any, overrides: Mapping[str, KVValue], arch: str, n_layer: int) -> str | None:
    """Attention head counts that build a graph ggml asserts on (``ggml_can_mul_mat``) when
    the context is made: KV heads that do not divide the query heads of a layer; and, for
    the ``llama`` architecture, whose K/V tensors are made with layer 0's KV head count, a
    per-layer ``head_count_kv`` that varies."""
    heads = _per_layer(ctx, overrides, f"{arch}.attention.head_count", n_layer)
    if heads is None:
        return None
    kv_heads = _per_layer(ctx, overrides, f"{arch}.attention.head_count_kv", n_layer)
    if kv_heads is None:
        if int(capi.gguf_find_key(ctx, f"{arch}.attention.head_count_kv".encode())) >= 0:
            return None
        kv_heads = heads  # llama.cpp's default
    for il, (n_head, n_head_kv) in enumerate(zip(heads, kv_heads)):
        if n_head and n_head_kv and n_head % n_head_kv:
            return (f"{arch}.attention.head_count_kv is {n_head_kv} at layer {il}, which does not divide "
                    f"{arch}.attention.head_count {n_head}")
    if arch == "llama" and len(set(kv_heads)) > 1:
        return (f"{arch}.attention.head_count_kv varies by layer ({kv_heads}), which the {arch} "
                "architecture does not support")
    return None


def _epsilon_problem(ctx: Any, overrides: Mapping[str, KVValue], arch: str) -> str | None:
    """A norm epsilon (``{arch}.attention.layer_norm_rms_epsilon`` and the like) that is NaN,
    infinite or negative: ggml asserts ``eps >= 0`` at the first decode."""
    values: dict[str, float] = {}
    for i in range(int(capi.gguf_get_n_kv(ctx))):
        key = (capi.gguf_get_key(ctx, i) or b"").decode("utf-8", "replace")
        if not (key.startswith(arch + ".") and "epsilon" in key):
            continue
        vtype = capi.gguf_get_kv_type(ctx, i)
        if vtype == capi.GGUF_TYPE_FLOAT32:
            values[key] = float(capi.gguf_get_val_f32(ctx, i))
        elif vtype == capi.GGUF_TYPE_FLOAT64:
            values[key] = float(capi.gguf_get_val_f64(ctx, i))
    for key, value in overrides.items():
        if "epsilon" in key and isinstance(value, float):
            values[key] = value
    for key, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            return f"{key} is {value}: a norm epsilon must be a finite number >= 0"
    return None
