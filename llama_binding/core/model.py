"""The model: one ``llama_model *``, loaded from a GGUF file, freed once."""

from __future__ import annotations

import ctypes
import enum
import numbers
import operator
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Union

from .. import _backend, _log, capi
from ..errors import ModelLoadError, RpcError
from . import _rpc_relay
from ._handle import NativeHandle
from ._header import check_gguf_path, check_header

__all__ = ["LoadMode", "Model", "ModelParams", "SplitMode"]

KVValue = Union[bool, int, float, str]
ProgressCallback = Callable[[float], object]


class LoadMode(enum.IntEnum):
    """How the weights are read (``enum llama_load_mode``)."""

    AUTO = -1
    NONE = 0
    MMAP = 1
    MLOCK = 2
    MMAP_MLOCK = 3
    DIRECT_IO = 4


class SplitMode(enum.IntEnum):
    """How layers are split over several GPUs (``enum llama_split_mode``)."""

    NONE = 0
    LAYER = 1
    ROW = 2
    TENSOR = 3


#: fields of :class:`ModelParams` that are not scalar C fields: :meth:`ModelParams.to_c`
#: builds the arrays they point to
_POINTER_FIELDS = frozenset({"tensor_split", "kv_overrides", "devices"})


@dataclass(frozen=True)
class ModelParams:
    """Options of :class:`Model`. ``None`` keeps llama.cpp's default from
    ``llama_model_default_params()``, read when the model is loaded."""

    n_gpu_layers: int | None = None
    split_mode: SplitMode | int | None = None
    main_gpu: int | None = None
    tensor_split: Sequence[float] | None = None
    vocab_only: bool | None = None
    load_mode: LoadMode | int | None = None
    check_tensors: bool | None = None
    #: False: no extra CPU weight buffers (llama.cpp's ``--no-repack``): the repacked
    #: AVX2/AVX-512/NEON kernels are off, weights stay in the file's layout
    use_extra_bufts: bool | None = None
    #: True: read only the metadata and size the buffers without allocating them (a dry
    #: run: a context of such a model tells what loading for real would take, see
    #: :meth:`~llama_binding.core.Context.memory_use`)
    no_alloc: bool | None = None
    kv_overrides: Mapping[str, KVValue] | None = None
    #: the devices (``ggml_backend_dev_t``) to split the model over, in order (None: every
    #: GPU of ggml's registry); RPC workers' devices come from :func:`llama_binding.rpc.remote_devices`
    devices: Sequence[Any] | None = None

    def to_c(self) -> tuple[Any, list[Any]]:
        """The C struct, and the buffers it points into (keep them alive while loading)."""
        params = capi.llama_model_default_params()
        keep: list[Any] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and f.name not in _POINTER_FIELDS:
                if isinstance(value, enum.Enum):
                    value = value.value
                set_c_field(params, f.name, value)
        if self.tensor_split is not None:
            n = int(capi.llama_max_devices())
            if len(self.tensor_split) > n:
                raise ValueError(
                    f"tensor_split has {len(self.tensor_split)} entries; this build has {n} devices")
            arr = (ctypes.c_float * n)(*self.tensor_split)
            keep.append(arr)
            params.tensor_split = arr
        if self.kv_overrides:
            arr = _kv_overrides(self.kv_overrides)
            keep.append(arr)
            params.kv_overrides = arr
        if self.devices is not None:  # NULL-terminated
            devs = (capi.ggml_backend_dev_t * (len(self.devices) + 1))(*self.devices)  # the last: NULL
            keep.append(devs)
            params.devices = devs
        return params, keep


_C_INT_RANGES: dict[Any, tuple[int, int]] = {
    ctypes.c_int8: (-(2**7), 2**7 - 1), ctypes.c_uint8: (0, 2**8 - 1),
    ctypes.c_int16: (-(2**15), 2**15 - 1), ctypes.c_uint16: (0, 2**16 - 1),
    ctypes.c_int32: (-(2**31), 2**31 - 1), ctypes.c_uint32: (0, 2**32 - 1),
    ctypes.c_int64: (-(2**63), 2**63 - 1), ctypes.c_uint64: (0, 2**64 - 1),
}


def set_c_field(struct: Any, name: str, value: Any) -> None:
    """``setattr(struct, name, value)`` for a scalar field of a ctypes parameter struct,
    refusing what ctypes would silently truncate (``n_ctx=2**33``, ``-1`` in an unsigned
    field) or reject with a message that does not name the option."""
    ctype = next(f[1] for f in type(struct)._fields_ if f[0] == name)
    if ctype in _C_INT_RANGES:
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})") from None
        lo, hi = _C_INT_RANGES[ctype]
        if not lo <= value <= hi:
            raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    elif ctype in (ctypes.c_float, ctypes.c_double):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, not {type(value).__name__} ({value!r})")
    elif ctype is ctypes.c_bool and not isinstance(value, (bool, int)):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__} ({value!r})")
    setattr(struct, name, value)


def _kv_overrides(overrides: Mapping[str, KVValue]) -> Any:
    if not isinstance(overrides, Mapping):
        raise TypeError(f"kv_overrides must be a mapping of str to bool/int/float/str, "
                        f"not {type(overrides).__name__}")
    items = list(overrides.items())
    arr = (capi.llama_model_kv_override * (len(items) + 1))()  # zeroed end marker
    for slot, (key, value) in zip(arr, items):
        if not isinstance(key, str):
            raise TypeError(f"kv_overrides keys must be str, not {type(key).__name__} ({key!r})")
        raw = key.encode()
        if not raw or len(raw) >= 128:
            raise ValueError(f"kv_overrides key {key!r} must be 1 to 127 bytes")
        slot.key = raw
        if isinstance(value, bool):
            slot.tag, slot.val_bool = capi.LLAMA_KV_OVERRIDE_TYPE_BOOL, value
        elif isinstance(value, int):
            slot.tag, slot.val_i64 = capi.LLAMA_KV_OVERRIDE_TYPE_INT, value
        elif isinstance(value, float):
            slot.tag, slot.val_f64 = capi.LLAMA_KV_OVERRIDE_TYPE_FLOAT, value
        elif isinstance(value, str):
            sval = value.encode()
            if len(sval) >= 128:
                raise ValueError(f"kv_overrides value for {key!r} must be under 128 bytes")
            slot.tag, slot.val_str = capi.LLAMA_KV_OVERRIDE_TYPE_STR, sval
        else:
            raise TypeError(
                f"kv_overrides[{key!r}] must be bool, int, float or str, not {type(value).__name__}")
    return arr


#: load modes that map the file -> the same without mapping
_MAPPED_MODES = {int(LoadMode.AUTO): int(LoadMode.NONE), int(LoadMode.MMAP): int(LoadMode.NONE),
                 int(LoadMode.MMAP_MLOCK): int(LoadMode.MLOCK)}


def _vocab_problem(model: Any) -> str | None:
    """What of the loaded vocabulary the tokenizer would assert on: adding a BOS, EOS or
    (WordPiece) SEP token that llama.cpp resolved to none, which happens when the file's id
    and the tokenizer's default id are both outside the vocabulary (a 0- or 1-token
    vocabulary, a ``tokenizer.ggml.model`` that does not match the tokens)."""
    vocab = capi.llama_model_get_vocab(model)
    vtype = int(capi.llama_vocab_type(vocab))
    n = int(capi.llama_vocab_n_tokens(vocab))
    if vtype in (capi.LLAMA_VOCAB_TYPE_NONE, capi.LLAMA_VOCAB_TYPE_RWKV, capi.LLAMA_VOCAB_TYPE_PLAMO2,
                 capi.LLAMA_VOCAB_TYPE_TEST):
        return None  # no special tokens added (NONE is refused before the load)
    wpm = vtype == capi.LLAMA_VOCAB_TYPE_WPM
    needs = [("BOS", "tokenizer.ggml.bos_token_id", wpm or bool(capi.llama_vocab_get_add_bos(vocab)),
              int(capi.llama_vocab_bos(vocab))),
             ("EOS", "tokenizer.ggml.eos_token_id", not wpm and bool(capi.llama_vocab_get_add_eos(vocab)),
              int(capi.llama_vocab_eos(vocab))),
             ("SEP", "tokenizer.ggml.seperator_token_id", wpm, int(capi.llama_vocab_sep(vocab)))]
    for name, key, added, token in needs:
        if added and token < 0:
            return (f"its tokenizer adds a {name} token, but the vocabulary of {n} tokens has none "
                    f"({key} is missing or out of range)")
    return None


def _raise_interrupt(ptr: Any, interrupts: int, raised: list[BaseException]) -> None:
    """Raise, after the load, a KeyboardInterrupt (or SystemExit, ...) that came while C code
    ran one of our callbacks (the progress or the log callback), freeing what was loaded."""
    fatal = next((e for e in raised if not isinstance(e, Exception)), None)
    if fatal is None and _log.interrupts() == interrupts:
        return
    if ptr:
        capi.llama_model_free(ptr)
    raise fatal if fatal is not None else KeyboardInterrupt


def _check_workers(link: _rpc_relay.Link, ptr: Any) -> None:
    """:class:`RpcError` (the model freed) when a worker was lost while it loaded."""
    try:
        link.check()
    except RpcError:
        if ptr:
            capi.llama_model_free(ptr)
        raise


def _check_path(path: str | os.PathLike[str]) -> Path:
    return check_gguf_path(path, "model")


class Model(NativeHandle[Any]):
    """A loaded model. ``Model(path, ModelParams(n_gpu_layers=-1))``.

    Split GGUF files (``name-00001-of-00003.gguf``) load from their first part.
    ``progress`` is called with a value in [0, 1] while loading; returning ``False``
    cancels the load (which then raises :class:`ModelLoadError`).
    """

    _kind = "model"
    rpc_link: _rpc_relay.Link | None = None

    def __init__(
        self,
        path: str | os.PathLike[str],
        params: ModelParams | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        p = _check_path(path)
        params = params or ModelParams()
        _backend.init_backends()
        cparams, keep = params.to_c()
        facts = check_header(p, params)
        if facts.unaligned_tensor is not None and cparams.load_mode in _MAPPED_MODES:
            # ggml asserts that mapped tensor data is 32-byte aligned; read it into (aligned)
            # buffers instead, which any general.alignment allows
            _log.logger.info("%s: tensor %r is not 32-byte aligned in the file (general.alignment); "
                             "loading without mmap", p.name, facts.unaligned_tensor)
            cparams.load_mode = _MAPPED_MODES[cparams.load_mode]
        cb = None
        cancelled: list[BaseException | None] = []
        if progress is not None:

            @_log.quiet_callback
            def on_progress(value: float, _user: Any) -> bool:
                try:
                    go = progress(float(value)) is not False
                except BaseException as exc:  # never raise into C: cancel, raise it after the call
                    cancelled.append(exc)
                    return False
                if not go:
                    cancelled.append(None)
                return go

            cb = capi.llama_progress_callback(on_progress)
            cparams.progress_callback = cb
        _log.sync_level()  # the C log filter follows the logging configuration of now
        mark, interrupts = _log.error_mark(), _log.interrupts()
        link = _rpc_relay.link_for(params.devices)  # RPC workers' devices: watch their relays
        ptr = capi.llama_model_load_from_file(os.fsencode(p), cparams)
        del keep, cb
        _raise_interrupt(ptr, interrupts, [e for e in cancelled if e is not None])
        if link is not None:
            _check_workers(link, ptr)
        if not ptr:
            if cancelled:
                raise ModelLoadError(f"loading {p} was cancelled by the progress callback") from cancelled[0]
            detail = _log.errors_since(mark)
            raise ModelLoadError(f"llama.cpp could not load {p}" + (f": {detail}" if detail else ""))
        problem = _vocab_problem(ptr)
        if problem:
            capi.llama_model_free(ptr)
            raise ModelLoadError(f"cannot use {p}: {problem} (llama.cpp would abort the process on the "
                                 "first tokenize)")
        super().__init__(ptr, capi.llama_model_free)
        self.path = p
        self.params = params
        #: the RPC workers of its devices (None: none), checked after every decode
        self.rpc_link = link

    # --- properties read from the model --------------------------------------------------

    @property
    def n_ctx_train(self) -> int:
        return int(capi.llama_model_n_ctx_train(self.ptr))

    @property
    def n_embd(self) -> int:
        return int(capi.llama_model_n_embd(self.ptr))

    @property
    def n_layer(self) -> int:
        return int(capi.llama_model_n_layer(self.ptr))

    @property
    def n_params(self) -> int:
        return int(capi.llama_model_n_params(self.ptr))

    @property
    def size(self) -> int:
        return int(capi.llama_model_size(self.ptr))

    @property
    def has_encoder(self) -> bool:
        return bool(capi.llama_model_has_encoder(self.ptr))

    @property
    def has_decoder(self) -> bool:
        return bool(capi.llama_model_has_decoder(self.ptr))

    @property
    def can_rewind(self) -> bool:
        """Whether a sequence's last positions can be removed from the KV memory alone
        (not for recurrent or hybrid models, whose state has no positions to drop)."""
        return not (capi.llama_model_is_recurrent(self.ptr) or capi.llama_model_is_hybrid(self.ptr))

    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        n = capi.llama_model_desc(self.ptr, buf, len(buf))
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def chat_template(self, name: str | None = None) -> str | None:
        """The GGUF's ``tokenizer.chat_template`` (or its named variant), if any."""
        raw = capi.llama_model_chat_template(self.ptr, name.encode() if name else None)
        return raw.decode("utf-8", "replace") if raw else None

    def meta(self) -> dict[str, str]:
        """Every scalar metadata key as llama.cpp renders it (arrays are abbreviated)."""
        out: dict[str, str] = {}
        buf = ctypes.create_string_buffer(1 << 14)
        for i in range(int(capi.llama_model_meta_count(self.ptr))):
            n = capi.llama_model_meta_key_by_index(self.ptr, i, buf, len(buf))
            key = buf.raw[: max(n, 0)].decode("utf-8", "replace")
            n = capi.llama_model_meta_val_str_by_index(self.ptr, i, buf, len(buf))
            if n >= len(buf):
                big = ctypes.create_string_buffer(n + 1)
                n = capi.llama_model_meta_val_str_by_index(self.ptr, i, big, len(big))
                out[key] = big.raw[:n].decode("utf-8", "replace")
            else:
                out[key] = buf.raw[: max(n, 0)].decode("utf-8", "replace")
        return out
