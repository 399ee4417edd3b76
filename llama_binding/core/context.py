"""The inference context: one ``llama_context *`` over a model, with its KV memory.

Cancellation is cheap: the abort callback is a few lines of our own C
(``native/abort_flag.c``) that reads two ints, not a Python callback. The CPU backend
checks it after every graph node, so :meth:`Context.cancel` (from another thread) and
Ctrl-C (SIGINT, counted by a C handler put in front of Python's) stop a running decode
within one node; Python then raises KeyboardInterrupt as usual and the context stays
usable. The CUDA backend does not call the abort callback during a decode: there a cancel
takes effect between decodes (between tokens, or between the n_batch chunks of a long
prompt).
"""

from __future__ import annotations

import ctypes
import enum
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .. import _log, capi
from ..errors import ContextCreateError, RpcError, StateError, check_decode
from . import _native
from ._handle import NativeHandle
from ._memory import check_kv_fits, model_arch
from .batch import Batch
from .model import Model, set_c_field
from .state import check_payload
from .threadpool import ContextPools

if TYPE_CHECKING:
    from .adapter import LoraAdapter
    from .sampler import SamplerChain
    from .vocab import Vocab

__all__ = ["Context", "ContextParams", "FlashAttnType", "MemoryUse", "PoolingType", "physical_cores",
           "rows_failure"]


class FlashAttnType(enum.IntEnum):
    AUTO = -1
    DISABLED = 0
    ENABLED = 1


class PoolingType(enum.IntEnum):
    UNSPECIFIED = -1
    NONE = 0
    MEAN = 1
    CLS = 2
    LAST = 3
    RANK = 4


def physical_cores() -> int:
    """Physical CPU cores available to this process (hyper-threads share a core)."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu, phys = -1, "0"
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    phys = value
                elif key == "core id" and cpu in allowed:
                    cores.add((phys, value))
    except OSError:
        pass
    return max(1, min(len(cores) or len(allowed), len(allowed)))


#: ggml's GGML_MAX_N_THREADS: the most threads a CPU graph can use
GGML_MAX_N_THREADS = 512
#: threads per CPU (of those this process may run on) a context gets at most
MAX_THREADS_PER_CPU = 4


def thread_limit() -> int:
    """The most threads a context uses: :data:`MAX_THREADS_PER_CPU` per CPU that this process
    may run on, and no more than ggml's :data:`GGML_MAX_N_THREADS`. More only oversubscribes
    the CPUs, and thousands make thread creation fail, which aborts the process
    (``libgomp: Thread creation failed``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(GGML_MAX_N_THREADS, MAX_THREADS_PER_CPU * cpus))


def checked_threads(name: str, value: object, default: int) -> int:
    """``n_threads``/``n_threads_batch`` as llama.cpp gets it: None, 0 or -1 mean ``default``
    (the physical cores; llama-cpp-python treats None and 0 so, llama.cpp's tools -1); another
    negative number or a non-int raises, naming the option; more than :func:`thread_limit`
    is lowered to it, with a warning."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__} ({value!r})")
    n = int(value)
    if n in (0, -1):
        return default
    if n < 0:
        raise ValueError(f"{name} must be >= 1, or None, 0 or -1 for the default (the physical cores), "
                         f"got {n}")
    limit = thread_limit()
    if n > limit:
        _log.logger.warning("%s=%d is more threads than this machine can use; using %d (%d per CPU at most)",
                            name, n, limit, MAX_THREADS_PER_CPU)
        return limit
    return n


@dataclass(frozen=True)
class ContextParams:
    """Options of :class:`Context`. ``None`` keeps llama.cpp's default from
    ``llama_context_default_params()``, read when the context is created; ``n_threads``
    and ``n_threads_batch`` default to the physical cores instead of llama.cpp's 4 (None,
    0 or -1), and more than :func:`thread_limit` (4 per CPU) is lowered to it."""

    n_ctx: int | None = None
    n_batch: int | None = None
    n_ubatch: int | None = None
    n_seq_max: int | None = None
    n_outputs_max: int | None = None
    n_outputs_max_per_seq: int | None = None
    n_threads: int | None = None
    n_threads_batch: int | None = None
    rope_scaling_type: int | None = None
    pooling_type: PoolingType | int | None = None
    attention_type: int | None = None
    flash_attn_type: FlashAttnType | int | None = None
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None
    yarn_ext_factor: float | None = None
    yarn_attn_factor: float | None = None
    yarn_beta_fast: float | None = None
    yarn_beta_slow: float | None = None
    yarn_orig_ctx: int | None = None
    type_k: int | None = None
    type_v: int | None = None
    embeddings: bool | None = None
    offload_kqv: bool | None = None
    no_perf: bool | None = None
    op_offload: bool | None = None
    swa_full: bool | None = None
    kv_unified: bool | None = None

    def to_c(self) -> Any:
        params = capi.llama_context_default_params()
        threads = physical_cores()
        params.n_threads = checked_threads("n_threads", self.n_threads, threads)
        params.n_threads_batch = checked_threads("n_threads_batch", self.n_threads_batch, threads)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and f.name not in ("n_threads", "n_threads_batch"):
                if isinstance(value, enum.Enum):
                    value = value.value
                set_c_field(params, f.name, value)
        if params.n_batch < 1:
            raise ValueError(f"n_batch must be >= 1, got {params.n_batch}")
        for name in ("type_k", "type_v"):
            if getattr(params, name) not in _GGML_TYPES:
                raise ValueError(f"{name}={getattr(params, name)} is not a ggml type of this build")
        return params


def rows_failure(code: int, what: str) -> Exception:
    """The error of a rows function's failure (``_native.NO_LOGITS`` or ``NO_MEMORY``)."""
    if code == _native.NO_MEMORY:
        return MemoryError(f"{what}: out of memory")
    return IndexError("a requested batch index has no logits in the last decode")


#: the native step's answers when it sampled nothing (native/step.c)
_SAMPLE_FAILURES = frozenset({_native.NOT_FINITE, _native.NO_TOKEN, _native.NO_LOGITS, _native.NO_MEMORY})

_GGML_TYPES = frozenset(int(v) for n, v in capi.ggml_type.__members__.items() if n != "GGML_TYPE_COUNT")


@dataclass(frozen=True)
class MemoryUse:
    """Bytes of a context's buffers (its model's weights, its KV cache, its compute
    buffers), on the devices (GPUs) and on the host."""

    device_model: int
    device_context: int
    device_compute: int
    host_model: int
    host_context: int
    host_compute: int

    @property
    def device(self) -> int:
        return self.device_model + self.device_context + self.device_compute

    @property
    def host(self) -> int:
        return self.host_model + self.host_context + self.host_compute


class Context(NativeHandle[Any]):
    """A context of ``model``; it keeps the model alive."""

    _kind = "context"

    def __init__(self, model: Model, params: ContextParams | None = None) -> None:
        self.params = params or ContextParams()
        cparams = self.params.to_c()
        self._outputs_per_seq = cparams.n_outputs_max_per_seq or cparams.n_outputs_max or cparams.n_batch
        self._abort = _native.AbortState(0, 0)
        self._abort_ref = ctypes.byref(self._abort)
        self._interrupts = _native.interrupts
        self._decode_token = _native.decode_token()
        self._decode_sync = _native.decode_sync()
        self._decode_launch = _native.decode_launch()
        self._seq_rm = _native.seq_rm()
        self._sample_decode = _native.sample_decode()
        self._argmax_decode = _native.argmax_decode()
        self._argmax_rows = _native.argmax_rows()
        self._sampled_rows = _native.sampled_rows()
        self._sample_rows = _native.sample_rows()
        self._pick_launch = _native.pick_launch()
        self._synchronize = _native.synchronize()
        self._sampled = ctypes.c_int32(0)
        self._sampled_ref = ctypes.byref(self._sampled)
        self._rpc = model.rpc_link  # a lost RPC worker raises after the decode
        cparams.abort_callback = _native.abort_callback()
        cparams.abort_callback_data = ctypes.cast(ctypes.pointer(self._abort), ctypes.c_void_p)
        check_kv_fits(model.ptr, cparams)  # before llama.cpp allocates (and touches) GBs for nothing
        mark, interrupts = _log.error_mark(), _log.interrupts()
        ptr = capi.llama_init_from_model(model.ptr, cparams)
        if _log.interrupts() != interrupts:  # Ctrl-C taken in by the log callback meanwhile
            if ptr:
                capi.llama_free(ptr)
            raise KeyboardInterrupt
        if self._rpc is not None:
            try:
                self._rpc.check()
            except RpcError:
                if ptr:
                    capi.llama_free(ptr)
                raise
        if not ptr:
            detail = _log.errors_since(mark)
            raise ContextCreateError(
                "llama.cpp could not create the context" + (f": {detail}" if detail else ""))
        # persistent CPU pools, as llama.cpp's tools attach (else ggml spawns threads per graph)
        pools = self._pools = ContextPools()
        pools.attach(ptr, cparams.n_threads, cparams.n_threads_batch)

        def free(p: Any) -> None:
            capi.llama_free(p)
            pools.free()  # after the context that uses them

        super().__init__(ptr, free, parent=model)
        self.model = model
        self._n_vocab = int(capi.llama_vocab_n_tokens(capi.llama_model_get_vocab(model.ptr)))
        self._n_embd = model.n_embd
        self._n_cls_out = max(1, int(capi.llama_model_n_cls_out(model.ptr)))
        self._samplers: dict[int, SamplerChain] = {}  # attached chains, kept alive while attached
        self._adapters: tuple[tuple[LoraAdapter, float], ...] = ()  # set by core.adapter.set_adapters

    # --- sizes ---------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return int(capi.llama_n_ctx(self.ptr))

    def memory_use(self) -> MemoryUse:
        """What this context's buffers take, by where they live (llama.cpp's own sizes;
        with a ``no_alloc`` model, what loading for real would allocate)."""
        sizes = _native.memory_breakdown(self.ptr)
        if sizes is None:
            raise StateError("llama.cpp could not tell this context's memory use")
        return MemoryUse(*sizes)

    @property
    def n_outputs_per_seq(self) -> int:
        """Outputs one sequence may have in a decode while a backend sampler is attached to
        it (``n_outputs_max_per_seq``; llama.cpp's default is 1)."""
        return int(self._outputs_per_seq)

    @property
    def n_ctx_seq(self) -> int:
        """Tokens one sequence may hold (``llama_n_ctx_seq``)."""
        return int(capi.llama_n_ctx_seq(self.ptr))

    @property
    def n_batch(self) -> int:
        return int(capi.llama_n_batch(self.ptr))

    @property
    def n_ubatch(self) -> int:
        return int(capi.llama_n_ubatch(self.ptr))

    @property
    def n_threads(self) -> int:
        """Threads of a single-token decode on the CPU (``llama_n_threads``)."""
        return int(capi.llama_n_threads(self.ptr))

    @property
    def n_threads_batch(self) -> int:
        """Threads of a decode of several tokens on the CPU (``llama_n_threads_batch``)."""
        return int(capi.llama_n_threads_batch(self.ptr))

    @property
    def n_seq_max(self) -> int:
        return int(capi.llama_n_seq_max(self.ptr))

    @property
    def causal_attn(self) -> bool:
        """Whether attention is causal (a decoder that can generate; False for BERT-like encoders)."""
        return bool(capi.llama_get_causal_attn(self.ptr))

    @property
    def pooling_type(self) -> PoolingType:
        return PoolingType(int(capi.llama_pooling_type(self.ptr)))

    # --- backend ("GPU-side") sampling ------------------------------------------------------

    def attach_sampler(self, seq_id: int, chain: SamplerChain) -> bool:
        """Sample ``seq_id``'s outputs with ``chain`` inside the decode, on the device that
        computes the output layer (``llama_set_sampler``). Returns False when llama.cpp
        cannot offload it (the chain then stays a plain CPU chain).

        While attached, a decode brings only the sampled token (and the candidates that the
        chain's CPU tail needs) back to the host, not the logits: ``logits()`` of that
        sequence is unavailable. The leading samplers that the backend supports (greedy,
        dist, top-k, top-p, min-p, temperature, penalties, logit bias) run there; the rest
        of the chain runs on the CPU over the candidates left. A chain can be attached once
        in its life; it stays alive while attached, and closing it detaches it first. A
        decode may then ask for at most ``n_outputs_max_per_seq`` outputs of that sequence.
        """
        self.detach_sampler(seq_id)
        if not capi.llama_set_sampler(self.ptr, seq_id, chain.ptr):
            return False
        self._samplers[seq_id] = chain
        chain._attached_to(self, seq_id)
        return True

    def detach_sampler(self, seq_id: int) -> None:
        """Stop sampling ``seq_id`` on the backend (no-op when nothing is attached)."""
        chain = self._samplers.pop(seq_id, None)
        if chain is not None:
            chain._attached_to(None, seq_id)
            if not self.closed:
                capi.llama_set_sampler(self.ptr, seq_id, None)

    def attached_sampler(self, seq_id: int) -> SamplerChain | None:
        return self._samplers.get(seq_id)

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        """Threads of later decodes (checked as :class:`ContextParams`' options are)."""
        default = physical_cores()
        n_threads = checked_threads("n_threads", n_threads, default)
        n_threads_batch = checked_threads("n_threads_batch", n_threads_batch, default)
        self._pools.attach(self.ptr, n_threads, n_threads_batch)  # (larger pools when these need them)
        capi.llama_set_n_threads(self.ptr, n_threads, n_threads_batch)

    # --- running the model ---------------------------------------------------------------

    def decode(self, batch: Batch) -> None:
        """Run ``batch`` through the model; raises the exception matching the C code."""
        abort = self._abort
        if abort.cancel:  # a GPU decode never sees the flag: honour it here
            self._after_failure(2, "llama_decode")
        abort.interrupts_seen = self._interrupts()
        code = capi.llama_decode(self.ptr, batch.struct)
        if self._rpc is not None:
            self._rpc.check()
        if code:
            self._after_failure(code, "llama_decode")

    def decode_sync(self, batch: Batch) -> None:
        """:meth:`decode`, then :meth:`synchronize`, in one native call: the batching
        engine's step, which gives up Python's GIL once, not three times."""
        code = self._decode_sync(self.ptr, batch.ref, self._abort_ref)
        if self._rpc is not None:
            self._rpc.check()
        if code:
            self._after_failure(code, "llama_decode")

    def decode_launch(self, batch: Batch) -> None:
        """:meth:`decode_sync` without the wait: an asynchronous backend (a GPU) may still be
        computing when it returns; call :meth:`synchronize` before reading any output."""
        code = self._decode_launch(self.ptr, batch.ref, self._abort_ref)
        if code:
            self._after_failure(code, "llama_decode")

    def pick_launch(self, vocab: Vocab, batch: Batch, spec: _native.PickLaunch) -> int:
        """The pipelined step (``native/pick_launch.c``): wait for the queued decode, pick the
        tokens of ``spec``'s rows, queue the next decode with the rows that go on, without
        the GIL. Returns llama_decode's code, or ``_native.NOT_DECODED`` when nothing was
        queued; a failed queuing is the caller's to undo (its rows' cells)."""
        code = int(self._pick_launch(self.ptr, vocab.ptr, batch.ref, self._abort_ref, ctypes.byref(spec)))
        if self._rpc is not None:
            self._rpc.check()
        return code

    def decode_token(self, batch: Batch, token: int, pos: int, seq_id: int = 0) -> None:
        """Decode one ``token`` at ``pos`` of ``seq_id`` in a single native call (``batch``
        is overwritten): the per-token decode of the generation loop."""
        code = self._decode_token(self.ptr, batch.ref, self._abort_ref, token, pos, seq_id)
        if self._rpc is not None:
            self._rpc.check()
        if code:
            self._after_failure(code, "llama_decode")

    def sample_decode(self, chain: SamplerChain, vocab: Vocab, batch: Batch, pos: int,
                      seq_id: int = 0) -> tuple[int, bool]:
        """Sample from the last output with ``chain`` (which accepts the token), then, unless
        the token ends generation, decode it at ``pos`` of ``seq_id`` at once, in a single
        native call. Returns ``(token, decoded)``. On a GPU the decode runs while the
        caller handles the token. A chain that begins with a top-k runs over the k largest
        logits, found without sorting the row, and one that begins with a top-p gets
        llama.cpp's top-p without a sort of the whole row (``SamplerChain.leading_cut``:
        the same result)."""
        code = self._sample_decode(self.ptr, chain.ptr, vocab.ptr, batch.ref, self._abort_ref,
                                   pos, seq_id, 1, chain.host_cut, self._sampled_ref)
        return self._step_result(code)

    def argmax_decode(self, vocab: Vocab, batch: Batch, pos: int, seq_id: int = 0,
                      decode_next: bool = True) -> tuple[int, bool]:
        """Plain greedy in a single native call: the argmax of the last output's logits
        (the first on ties, as llama.cpp's greedy sampler), then, when ``decode_next`` and
        the token does not end generation, its decode at ``pos`` of ``seq_id``. Returns
        ``(token, decoded)``."""
        code = self._argmax_decode(self.ptr, vocab.ptr, batch.ref, self._abort_ref, pos, seq_id,
                                   1 if decode_next else 0, self._sampled_ref)
        if code == _native.NO_LOGITS:
            raise IndexError("no logits for the last output of the last batch")
        return self._step_result(code)

    def argmax_rows(self, vocab: Vocab, rows: npt.NDArray[np.int32], out: npt.NDArray[np.int32],
                    n_threads: int = 1) -> None:
        """``out[k]`` = the argmax of the logits at batch index ``rows[k]`` of the last decode,
        for every k, in one native call (C-contiguous int32 arrays of equal length); with
        ``n_threads`` > 1 many large rows are split between that many threads."""
        self._check_rows(rows, out)
        code = self._argmax_rows(self.ptr, vocab.ptr, rows.ctypes.data, len(rows), out.ctypes.data, n_threads)
        if code in (_native.NO_LOGITS, _native.NO_MEMORY):
            raise rows_failure(code, "argmax_rows")

    def sample_rows(self, vocab: Vocab, chains: Sequence[int], rows: npt.NDArray[np.int32],
                    out: npt.NDArray[np.int32], n_threads: int = 1,
                    top_k: npt.NDArray[np.int32] | None = None) -> None:
        """``out[k]`` = the token that the sampler chain at address ``chains[k]``
        (``SamplerChain.address``) samples from the logits at batch index ``rows[k]`` of the
        last decode, and accepts; on up to ``n_threads`` threads, each chain on one. A chain
        that selects nothing, or whose logits are all -inf or NaN, raises :class:`SamplerError`
        (the other rows are sampled; such a row's ``out[k]`` is negative). ``top_k[k]``, when
        given, is what chain ``k`` lets the native step do first (``SamplerChain.leading_cut``,
        or ``first_cut`` for a chain's first token; 0: nothing): a leading top-k's k (its
        candidates are then taken straight from the logits instead of sorting a candidate
        per vocabulary entry), or a leading top-p's code (llama.cpp's top-p without sorting
        the whole row, then the chain's other samplers)."""
        self._check_rows(rows, out)
        n = len(rows)
        if len(chains) != n:
            raise ValueError("sample_rows needs one chain per row")
        if top_k is not None and (len(top_k) < n or top_k.dtype != np.int32 or not top_k.flags.c_contiguous):
            raise ValueError("top_k must be a C-contiguous int32 array with one entry per row")
        arr = (ctypes.c_void_p * max(1, n))(*chains)
        code = self._sample_rows(self.ptr, vocab.ptr, arr, None if top_k is None else top_k.ctypes.data,
                                 rows.ctypes.data, n, out.ctypes.data, n_threads)
        if code in (_native.NO_LOGITS, _native.NO_MEMORY):
            raise rows_failure(code, "sample_rows")
        if code == _native.NO_TOKEN:  # out[k] < 0 where nothing was sampled: say why
            from .sampler import sample_failure

            bad = out[:n]
            raise sample_failure(_native.TOKEN_NOT_FINITE if (bad == _native.TOKEN_NOT_FINITE).any()
                                 else _native.NO_TOKEN)

    def sampled_rows(self, rows: npt.NDArray[np.int32], out: npt.NDArray[np.int32]) -> None:
        """``out[k]`` = the token that the backend sampler attached to its sequence picked at
        batch index ``rows[k]`` of the last decode."""
        self._check_rows(rows, out)
        code = self._sampled_rows(self.ptr, rows.ctypes.data, len(rows), out.ctypes.data)
        if code == _native.NO_LOGITS:
            raise IndexError("a requested batch index has no backend-sampled token in the last decode")

    @staticmethod
    def _check_rows(rows: npt.NDArray[np.int32], out: npt.NDArray[np.int32]) -> None:
        if len(out) < len(rows) or rows.dtype != np.int32 or out.dtype != np.int32 \
                or not (rows.flags.c_contiguous and out.flags.c_contiguous):
            raise ValueError("rows and out must be C-contiguous int32 arrays, out at least as long as rows")

    def _step_result(self, code: int) -> tuple[int, bool]:
        """(the sampled token, whether it was decoded) of a native step; a failed decode raises."""
        if self._rpc is not None:
            self._rpc.check()
        token = self._sampled.value
        if code == _native.NOT_DECODED:
            return token, False
        if code:
            if code in _SAMPLE_FAILURES:  # nothing sampled (so nothing decoded)
                from .sampler import sample_failure

                raise sample_failure(code)
            self._after_failure(code, "llama_decode")
        return token, True

    def encode(self, batch: Batch) -> None:
        """Run ``batch`` through the encoder (encoder-decoder and embedding models)."""
        abort = self._abort
        if abort.cancel:
            self._after_failure(2, "llama_encode")
        abort.interrupts_seen = self._interrupts()
        code = capi.llama_encode(self.ptr, batch.struct)
        if self._rpc is not None:
            self._rpc.check()
        if code:
            self._after_failure(code, "llama_encode")

    def _after_failure(self, code: int, what: str) -> None:
        self._abort.cancel = 0  # a cancel is used up by the decode it stopped
        if code == 2 and self._interrupts() != self._abort.interrupts_seen:
            # Ctrl-C stopped it. Python's own KeyboardInterrupt may already have been spent
            # inside a native log callback during the abort, so raise it here.
            raise KeyboardInterrupt
        check_decode(code, what)

    def check_workers(self) -> None:
        """:class:`~llama_binding.errors.RpcError` once an RPC worker of the model was lost
        (after a decode that does not go through this class: ``mtmd``'s helpers)."""
        if self._rpc is not None:
            self._rpc.check()

    def cancel(self) -> None:
        """Abort the decode running now (from another thread or a signal handler).

        On the CPU the decode stops within one graph node and raises
        :class:`~llama_binding.errors.DecodeAbortedError`; on CUDA the running decode
        finishes and the next one is aborted. The context stays usable.
        """
        self._abort.cancel = 1

    def clear_cancel(self) -> None:
        """Forget a cancel that no decode has seen yet."""
        self._abort.cancel = 0

    def synchronize(self) -> float:
        """Wait for the last decode's computation (raises as a decode would where an RPC
        worker was lost meanwhile); returns when it was done (``_native.now()``'s clock:
        what the GIL took after that is the caller's to measure)."""
        done = float(self._synchronize(self.ptr))
        if self._rpc is not None:
            self._rpc.check()
        return done

    # --- outputs as zero-copy numpy views ------------------------------------------------

    def logits(self, i: int = -1) -> npt.NDArray[np.float32]:
        """Logits of output ``i`` of the last decode (negative: from the end), a view."""
        ptr = capi.llama_get_logits_ith(self.ptr, i)
        if not ptr:
            raise IndexError(f"no logits for output {i} in the last batch")
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def embeddings(self, i: int = -1) -> npt.NDArray[np.float32]:
        """Embedding of output ``i`` (no pooling), a view."""
        ptr = capi.llama_get_embeddings_ith(self.ptr, i)
        if not ptr:
            raise IndexError(f"no embedding for output {i}; was the context made with embeddings=True?")
        return np.ctypeslib.as_array(ptr, shape=(self._n_embd,))

    def seq_embeddings(self, seq_id: int) -> npt.NDArray[np.float32]:
        """Pooled embedding of sequence ``seq_id``, a view."""
        ptr = capi.llama_get_embeddings_seq(self.ptr, seq_id)
        if not ptr:
            raise IndexError(f"no pooled embedding for sequence {seq_id}")
        n = self._n_cls_out if self.pooling_type == PoolingType.RANK else self._n_embd
        return np.ctypeslib.as_array(ptr, shape=(n,))

    # --- KV memory, per sequence ---------------------------------------------------------

    @property
    def _memory(self) -> Any:
        return capi.llama_get_memory(self.ptr)

    def memory_clear(self, data: bool = True) -> None:
        capi.llama_memory_clear(self._memory, data)

    def seq_rm(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool:
        """Remove positions [p0, p1) of ``seq_id`` (-1: all sequences / open ends)."""
        return bool(self._seq_rm(self.ptr, seq_id, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        capi.llama_memory_seq_cp(self._memory, src, dst, p0, p1)

    def seq_keep(self, seq_id: int) -> None:
        capi.llama_memory_seq_keep(self._memory, seq_id)

    def seq_shift(self, seq_id: int, p0: int, p1: int, delta: int) -> None:
        """Add ``delta`` to the positions [p0, p1) of ``seq_id``."""
        capi.llama_memory_seq_add(self._memory, seq_id, p0, p1, delta)

    def seq_pos_min(self, seq_id: int) -> int:
        return int(capi.llama_memory_seq_pos_min(self._memory, seq_id))

    def seq_pos_max(self, seq_id: int) -> int:
        """Largest position of ``seq_id`` in memory, -1 when empty."""
        return int(capi.llama_memory_seq_pos_max(self._memory, seq_id))

    # --- saved state (llama.cpp's bytes; core/state.py puts our header around them) -------

    def state_bytes(self, seq_id: int | None = None) -> bytes:
        """llama.cpp's state of the whole context, or of one sequence's memory (written
        straight into the bytes object's buffer: one copy of a state that can be large)."""
        ptr = self.ptr
        if seq_id is None:
            n = int(capi.llama_state_get_size(ptr))
        else:
            n = int(capi.llama_state_seq_get_size(ptr, seq_id))
        out = bytearray(n)
        buf = (ctypes.c_uint8 * n).from_buffer(out) if n else None
        if seq_id is None:
            written = int(capi.llama_state_get_data(ptr, buf, n))
        else:
            written = int(capi.llama_state_seq_get_data(ptr, buf, n, seq_id))
        del buf  # release the export before the bytearray is resized or converted
        if n and not written:
            raise StateError("llama.cpp could not write the state")
        del out[written:]
        return bytes(out)

    def restore_state(self, data: bytes, seq_id: int | None = None) -> None:
        """Load bytes of :meth:`state_bytes` (of a sequence into ``seq_id``); check where they
        come from first (core/state.py), since llama.cpp only checks shapes."""
        ptr = self.ptr
        check_payload(data, model_arch(self.model.ptr), sequence=seq_id is not None)
        buf = ctypes.cast(ctypes.c_char_p(bytes(data)), ctypes.POINTER(ctypes.c_uint8))  # no copy of bytes
        mark = _log.error_mark()
        if seq_id is None:
            read = int(capi.llama_state_set_data(ptr, buf, len(data)))
        else:
            read = int(capi.llama_state_seq_set_data(ptr, buf, len(data), seq_id))
        if not read:
            detail = _log.errors_since(mark)
            raise StateError("llama.cpp refused the state" + (f": {detail}" if detail else ""))

    # --- timings ---------------------------------------------------------------------------

    def perf(self) -> dict[str, float]:
        """llama.cpp's own timings of this context (ms and counts)."""
        data = capi.llama_perf_context(self.ptr)
        return {f[0]: float(getattr(data, f[0])) for f in data._fields_}

    def perf_reset(self) -> None:
        capi.llama_perf_context_reset(self.ptr)
