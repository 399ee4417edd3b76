"""Our own native helpers (``native/*.c``, built into ``libllama_binding_native``).

- the abort callback that reads a per-context flag (``abort_flag.c``): cancelling a decode
  costs two loads per graph node instead of a Python call;
- the per-token step of the generation loop (``step.c``): sample, then decode the sampled
  token, in one ctypes call;
- a greedy sampler for the backend whose samplers share one argmax over every output row
  (``batch_greedy.c``): many sequences' greedy tokens without copying their logits;
- a top-k sampler for the backend whose samplers share one set of nodes over every output
  row (``batch_topk.c``): a few hundred candidates that hold each row's 64 best logits,
  instead of its logits;
- vocabulary checks that llama.cpp makes only by aborting (``vocab_check.cpp``): a repeated
  token text, a byte the tokenizer cannot fall back to;
- the sizes of a context's buffers by device (``memory_breakdown.cpp``), for
  ``n_gpu_layers="auto"``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .. import capi
from ..capi import _loader

__all__ = [
    "NOT_DECODED",
    "NOT_FINITE",
    "NO_LOGITS",
    "NO_MEMORY",
    "NO_TOKEN",
    "TOKEN_NOT_FINITE",
    "AbortState",
    "PickLaunch",
    "abort_callback",
    "argmax_decode",
    "argmax_rows",
    "cpu_amx_requested",
    "decode_token",
    "first_repeated_token",
    "greedy_group_new",
    "greedy_group_release",
    "greedy_sampler_new",
    "interrupts",
    "memory_breakdown",
    "now",
    "penalties_new",
    "pick_launch",
    "sample",
    "sample_decode",
    "sample_rows",
    "sampled_rows",
    "synchronize",
    "top_k",
    "top_p",
    "topk_group_new",
    "topk_group_release",
    "topk_ids",
    "topk_sampler_new",
    "topk_unpack",
]

# llama_binding_sample_decode's answer when it sampled but decoded nothing
NOT_DECODED = -(2**31)
# llama_binding_argmax_decode's answer when the last decode has no logits
NO_LOGITS = NOT_DECODED + 1
# an allocation failed
NO_MEMORY = NOT_DECODED + 2
# a sampler chain selected no token
NO_TOKEN = NOT_DECODED + 3
# every candidate's logit was -inf or NaN: nothing could be sampled (nothing was accepted)
NOT_FINITE = NOT_DECODED + 4
# what the rows functions write for a row whose logits were all -inf or NaN
TOKEN_NOT_FINITE = -2


class AbortState(ctypes.Structure):
    """``struct llama_binding_abort``: ``cancel`` aborts the running decode; a decode also
    stops when the SIGINT counter moves past ``interrupts_seen``."""

    _fields_ = [("cancel", ctypes.c_int), ("interrupts_seen", ctypes.c_int)]


class PickLaunch(ctypes.Structure):
    """``struct llama_binding_pick_launch`` (``native/pick_launch.c``): the rows of a pipelined
    step, grouped (chains, backend samplers, argmax), what decides which go on, and the
    outputs (picked tokens, rows in the queued batch, codes and timings)."""

    _fields_ = [("n", ctypes.c_int32), ("n_chain", ctypes.c_int32), ("n_backend", ctypes.c_int32),
                ("n_threads", ctypes.c_int32), ("min_go", ctypes.c_int32), ("free_ending", ctypes.c_int32),
                ("rows", ctypes.c_void_p), ("chains", ctypes.c_void_p), ("top_k", ctypes.c_void_p),
                ("room", ctypes.c_void_p), ("ignore_eos", ctypes.c_void_p), ("pos", ctypes.c_void_p),
                ("seq_id", ctypes.c_void_p), ("order", ctypes.c_void_p), ("knock", ctypes.c_void_p),
                ("picked", ctypes.c_void_p), ("next_row", ctypes.c_void_p), ("pick_code", ctypes.c_int32),
                ("n_go", ctypes.c_int32),
                ("waited_s", ctypes.c_double), ("picked_s", ctypes.c_double), ("end", ctypes.c_double)]


_fns: dict[str, Any] = {}
_KEEP_GIL = frozenset({"argmax_rows", "sample_rows", "sampled_rows", "seq_rm"})


def _lib() -> dict[str, Any]:
    if not _fns:
        lib = _loader.load("llama_binding_native")
        addr = ctypes.cast(lib.llama_binding_abort_flag_cb, ctypes.c_void_p).value or 0
        _fns["abort_cb"] = ctypes.cast(addr, capi.ggml_abort_callback)
        # The batching engine's per-step calls other than the decode keep the GIL (PyDLL):
        # they take microseconds, and a call that releases it must take it back after,
        # waiting up to the switch interval whenever the event loop's thread is running
        # (measured on an H200 server at 64 streams: the engine thread idle 8% of the time)
        keep_gil = _loader.load_keeping_gil("llama_binding_native")
        for name in ("interrupts", "install_sigint", "decode_token", "decode_sync", "decode_launch", "sample",
                     "sample_decode", "argmax_decode", "argmax_rows", "sample_rows", "sampled_rows",
                     "seq_rm"):
            fn = getattr(keep_gil if name in _KEEP_GIL else lib, f"llama_binding_{name}")
            fn.restype = ctypes.c_int32
            # no argtypes: ints and ctypes pointers pass as they are, the cheapest call
            _fns[name] = fn
        _fns["interrupts"].argtypes = []
        vp = ctypes.c_void_p  # the arrays pass as addresses: a plain int would be truncated to 32 bits
        _fns["argmax_rows"].argtypes = [vp, vp, vp, ctypes.c_int32, vp, ctypes.c_int32]
        _fns["sampled_rows"].argtypes = [vp, vp, ctypes.c_int32, vp]
        _fns["sample_rows"].argtypes = [vp, vp, vp, vp, vp, ctypes.c_int32, vp, ctypes.c_int32]
        _fns["seq_rm"].argtypes = [vp, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]
        _fns["install_sigint"].argtypes = []
        # the pipelined step and the device wait release the GIL; the clock keeps it
        for name, dll in (("pick_launch", lib), ("synchronize", lib), ("now", keep_gil)):
            fn = getattr(dll, f"llama_binding_{name}")
            fn.restype = ctypes.c_int32 if name == "pick_launch" else ctypes.c_double
            _fns[name] = fn
        _fns["now"].argtypes = []
        vp = ctypes.c_void_p
        for name, restype, argtypes in (("greedy_group_new", vp, []), ("greedy_group_release", None, [vp]),
                                        ("greedy_sampler_new", ctypes.POINTER(capi.llama_sampler), [vp]),
                                        ("topk_group_new", vp, [ctypes.c_int32]),
                                        ("penalties_new", ctypes.POINTER(capi.llama_sampler),
                                         [ctypes.c_int32, ctypes.c_int32, ctypes.c_float, ctypes.c_float,
                                          ctypes.c_float]),
                                        ("topk_group_release", None, [vp]),
                                        ("topk_sampler_new", ctypes.POINTER(capi.llama_sampler), [vp]),
                                        ("topk_ids", ctypes.c_int32,
                                         [ctypes.c_int32, vp, ctypes.c_int32, ctypes.c_int32, vp]),
                                        ("topk_unpack", ctypes.c_int32,
                                         [ctypes.c_int32, vp, ctypes.c_int32, vp]),
                                        ("top_k", ctypes.c_int32, [vp, ctypes.c_int32, ctypes.c_int32, vp]),
                                        ("top_p", ctypes.c_int32, [vp, ctypes.c_int32, ctypes.c_float, vp])):
            fn = getattr(lib, f"llama_binding_{name}")
            fn.restype, fn.argtypes = restype, argtypes
            _fns[name] = fn
        repeated = lib.llama_binding_first_repeated_token
        repeated.restype, repeated.argtypes = ctypes.c_int64, [ctypes.c_void_p, ctypes.c_int64]
        _fns["first_repeated_token"] = repeated
        breakdown = lib.llama_binding_memory_breakdown
        breakdown.restype = ctypes.c_int32
        breakdown.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]
        _fns["memory_breakdown"] = breakdown
        missing = lib.llama_binding_missing_byte_token
        missing.restype, missing.argtypes = ctypes.c_int32, [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32]
        _fns["missing_byte_token"] = missing
    return _fns


def abort_callback() -> Any:
    """The C abort callback (a ``ggml_abort_callback``); puts the SIGINT counter in front
    of the handler in place (idempotent; again in case ``signal.signal`` replaced it)."""
    fns = _lib()
    fns["install_sigint"]()
    return fns["abort_cb"]


def interrupts() -> int:
    """How many SIGINTs the native handler has seen."""
    return int(_lib()["interrupts"]())


def decode_sync() -> Any:
    """``llama_binding_decode_sync(ctx, batch*, abort*) -> int``: ``llama_decode`` then
    ``llama_synchronize``, one release of the GIL (the cancel flag as ``decode_token``)."""
    return _lib()["decode_sync"]


def decode_launch() -> Any:
    """``llama_binding_decode_launch(ctx, batch*, abort*) -> int``: ``decode_sync`` without
    the ``llama_synchronize`` (an asynchronous backend may still be computing on return)."""
    return _lib()["decode_launch"]


def seq_rm() -> Any:
    """``llama_binding_seq_rm(ctx, seq_id, p0, p1) -> int``: ``llama_memory_seq_rm`` of the
    context's memory, holding the GIL."""
    return _lib()["seq_rm"]


def decode_token() -> Any:
    """``llama_binding_decode_token(ctx, batch*, abort*, token, pos, seq_id) -> int``."""
    return _lib()["decode_token"]


def sample() -> Any:
    """``llama_binding_sample(ctx, chain, idx, top_k, token*) -> int``: ``llama_sampler_sample``
    with codes instead of aborts (``NO_LOGITS``, ``NO_TOKEN``, ``NOT_FINITE``, ``NO_MEMORY``);
    ``top_k``: the chain's leading top-k (0: none), the host's logits are cut to it first."""
    return _lib()["sample"]


def sample_decode() -> Any:
    """``llama_binding_sample_decode(ctx, chain, vocab, batch*, abort*, pos, seq_id,
    decode_next, top_k, token*) -> int`` (``NOT_DECODED`` when it decoded nothing)."""
    return _lib()["sample_decode"]


def argmax_decode() -> Any:
    """``llama_binding_argmax_decode(ctx, vocab, batch*, abort*, pos, seq_id, decode_next,
    token*) -> int``: plain greedy, else as :func:`sample_decode` (``NO_LOGITS`` when the
    last decode has none)."""
    return _lib()["argmax_decode"]


def argmax_rows() -> Any:
    """``llama_binding_argmax_rows(ctx, vocab, int32 rows*, n, token* out, n_threads) -> int``:
    the argmax of each listed batch index's logits, on up to ``n_threads`` threads
    (``NO_LOGITS`` if one has none, ``NO_MEMORY``)."""
    return _lib()["argmax_rows"]


def sample_rows() -> Any:
    """``llama_binding_sample_rows(ctx, vocab, llama_sampler** chains, int32 top_k* (or
    NULL), int32 rows*, n, token* out, n_threads) -> int``: each listed batch index sampled
    with its own chain (a leading top-k taken straight from the logits), on up to
    ``n_threads`` threads (``NO_LOGITS``, ``NO_MEMORY``, ``NO_TOKEN``)."""
    return _lib()["sample_rows"]


def sampled_rows() -> Any:
    """``llama_binding_sampled_rows(ctx, int32 rows*, n, token* out) -> int``: the backend
    sampler's token of each listed batch index (``NO_LOGITS`` if one has none)."""
    return _lib()["sampled_rows"]


def pick_launch() -> Any:
    """``llama_binding_pick_launch(ctx, vocab, batch*, abort*, PickLaunch*) -> int``: wait for
    the queued decode, pick each row's token, queue the next decode with the rows that go
    on, without the GIL (``NOT_DECODED`` when it queued none)."""
    return _lib()["pick_launch"]


def synchronize() -> Any:
    """``llama_binding_synchronize(ctx) -> double``: ``llama_synchronize``, then :func:`now`."""
    return _lib()["synchronize"]


def now() -> float:
    """Seconds of the monotonic clock the native timings use."""
    return float(_lib()["now"]())


#: a cut code's bit (``native/penalties.h``): the chain leads with :func:`penalties_new`'s
#: sampler, then a top-k of the code's other bits
CUT_PENALTIES = 0x40000000


def penalties_new(n_vocab: int, last_n: int, repeat: float, freq: float, present: float) -> Any:
    """llama.cpp's penalties sampler wrapped so that the native step sees its window
    (``penalties.c``); NULL when out of memory."""
    return _lib()["penalties_new"](n_vocab, last_n, repeat, freq, present)


def top_k(x: Any, k: int) -> list[int] | None:
    """The ids of the ``k`` largest of the float32 array ``x`` (C-contiguous), largest
    first, the lower id first on ties, as the host's leading top-k takes them from the
    logits (``step.c``'s ``top_k_select``); None where that shortcut does not apply (then
    the sampler chain's own top-k runs over every logit)."""
    if x.dtype.str != "<f4" or not x.flags.c_contiguous:
        raise ValueError("top_k needs a C-contiguous float32 array")
    ids = (ctypes.c_int32 * max(1, k))()
    kept = _lib()["top_k"](x.ctypes.data, len(x), k, ids)
    return list(ids[:kept]) if kept else None


def top_p(x: Any, p: float) -> Any:
    """What llama.cpp's top-p sampler (min_keep 1) keeps of the float32 array ``x``
    (C-contiguous), as the native step computes it for a chain that leads with one
    (``top_p.c``): a structured array of ``id``, ``logit`` and ``p``, sorted by logit
    descending (the lower id first on ties); None where that does not apply (1,024 logits or
    fewer, ``p`` not in (0, 1), a NaN, nothing finite: llama.cpp's own top-p runs then)."""
    if x.dtype.str != "<f4" or not x.flags.c_contiguous:
        raise ValueError("top_p needs a C-contiguous float32 array")
    out = np.zeros(3 * max(1, len(x)), dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
    kept = _lib()["top_p"](x.ctypes.data, len(x), p, out.ctypes.data)
    return out[:kept].copy() if kept else None


def memory_breakdown(ctx: Any) -> tuple[int, ...] | None:
    """The bytes of a context's buffers: (model, context, compute) on the devices, then the
    same on the host; None if llama.cpp could not tell (``memory_breakdown.cpp``)."""
    out = (ctypes.c_uint64 * 6)()
    if _lib()["memory_breakdown"](ctypes.cast(ctx, ctypes.c_void_p), out) != 0:
        return None
    return tuple(int(v) for v in out)


def first_repeated_token(gguf_ctx: Any, key_id: int) -> int:
    """The index of the first entry of the string array ``key_id`` of an open
    ``gguf_context`` whose text (as llama.cpp reads it) repeats an earlier one, or -1."""
    return int(_lib()["first_repeated_token"](ctypes.cast(gguf_ctx, ctypes.c_void_p), key_id))


#: ``kind`` of :func:`missing_byte_token`
SPM_BYTES, RWKV_BYTES = 0, 1


def missing_byte_token(gguf_ctx: Any, key_id: int, kind: int) -> int:
    """The first byte value (0..255) that the vocabulary in the string array ``key_id`` of
    an open ``gguf_context`` has no fallback token for, or -1. ``kind``: ``SPM_BYTES``
    (a ``<0xXX>`` or one-byte token) or ``RWKV_BYTES`` (a token whose unescaped text is
    that byte)."""
    return int(_lib()["missing_byte_token"](ctypes.cast(gguf_ctx, ctypes.c_void_p), key_id, kind))


def greedy_group_new() -> Any:
    """A new group of batched greedy samplers (an address, 0 when out of memory)."""
    return _lib()["greedy_group_new"]()


def greedy_group_release(group: Any) -> None:
    """Drop the owner's hold on a group (its samplers keep it alive)."""
    _lib()["greedy_group_release"](group)


def greedy_sampler_new(group: Any) -> Any:
    """A ``llama_sampler *`` of ``group`` (NULL when out of memory)."""
    return _lib()["greedy_sampler_new"](group)


def topk_group_new(k: int) -> Any:
    """A new group of batched top-k samplers keeping ``k`` candidates (``native/batch_topk.c``;
    an address, 0 when out of memory or ``k`` is out of range)."""
    return _lib()["topk_group_new"](k)


def topk_group_release(group: Any) -> None:
    """Drop the owner's hold on a top-k group (its samplers keep it alive)."""
    _lib()["topk_group_release"](group)


def topk_ids(n_vocab: int, chunk_ids: Any, n_logits: int, out: Any) -> int:
    """The token ids of a row's ``n_logits`` candidates into ``out`` (int32 array), from the
    ``chunk_ids`` (int32 array) that a top-k group's sampler left as its candidates; -1 where
    the counts fit no layout (``llama_binding_topk_ids``)."""
    return int(_lib()["topk_ids"](n_vocab, chunk_ids.ctypes.data, len(chunk_ids), n_logits, out.ctypes.data))


def topk_unpack(n_vocab: int, row: Any, chunk_ids: Any) -> int:
    """Split a top-k group's row of sampled logits (float32 array: 8k logits, then 2k chunk
    indices as floats) by writing the indices into ``chunk_ids`` (int32 array, room for 2k);
    answers 8k, -1 where the row has no such layout, -2 where an index is out of its range
    (``llama_binding_topk_unpack``)."""
    return int(_lib()["topk_unpack"](n_vocab, row.ctypes.data, len(row), chunk_ids.ctypes.data))


def topk_sampler_new(group: Any) -> Any:
    """A ``llama_sampler *`` of top-k ``group`` (NULL when out of memory)."""
    return _lib()["topk_sampler_new"](group)


def cpu_amx_requested() -> bool:
    """Whether the build let the CPU backend compile ggml's AMX tile kernels
    (``-DLLAMA_BINDING_CPU_AMX=ON``; off by default, see CMakeLists.txt)."""
    fn = _loader.load("llama_binding_native").llama_binding_cpu_amx
    fn.restype, fn.argtypes = ctypes.c_int, []
    return bool(fn())
