"""The ``Llama`` facade: llama-cpp-python's constructor and completion API over our layers.

It composes core objects (model, context, vocab, batch) and the generation layers (steps ->
stream -> collect); it holds little logic itself. One ``Llama`` runs one generation at a
time: a call from another thread waits for the running one. A stream holds the Llama only
while it computes a chunk, so a stream left unread blocks nobody; a call made while a stream
is paused interrupts it, and the stream brings its sequence back when it is read again
(prefix reuse stays exact) or, where it cannot, raises StreamInterruptedError. ``close()``
is safe from any thread (see :meth:`Llama.close`).
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, overload

import numpy as np
import numpy.typing as npt

from . import _log, _params, capi
from ._batched import is_multi_prompt, multi_completion
from ._guard import CallGuard, Session
from ._llama_chat import ChatMixin
from ._llama_embed import EmbeddingMixin
from ._llama_state import StateMixin
from ._progress import ProgressArg, progress_callback
from .core import Batch, Context, ContextParams, LoraAdapter, Model, ModelParams, Vocab
from .core.context import PoolingType
from .core.metadata import read_metadata
from .core.sampler import SamplerChain
from .core.state import LlamaState
from .draft import DraftModelArg, as_drafter
from .errors import (
    ContextOverflowError,
    LlamaError,
    StateError,
    StreamInterruptedError,
    UnsupportedModelError,
)
from .generation.cache import StateCache
from .generation.draft_budget import DraftBudget
from .generation.drafters import Drafter
from .generation.hooks import LogitsProcessor, StoppingCriteria, as_logits_hook, as_stop_hook
from .generation.logprobs import TokenLogprob, openai_logprobs, prompt_logprobs, with_logprobs
from .generation.sampling import ChainSlot, SamplingParams
from .generation.speculative import SpeculativeStats, SpeculativeSteps
from .generation.steps import SequenceState, decode_in_step, generate_tokens, prefill
from .generation.stopping import StopMatcher
from .generation.stream import TextChunk, collect, stream_text
from .grammar import LlamaGrammar
from .llama_types import (
    CompletionChunk,
    CreateCompletionResponse,
)

if TYPE_CHECKING:
    from .chat import ChatFormatter
    from .chat.escape import SpecialTokens

__all__ = ["DEFAULT_N_CTX", "Llama", "LlamaState"]

_T = TypeVar("_T")

#: context size when ``n_ctx`` is not given (or the model's training context if smaller)
DEFAULT_N_CTX = 4096


EMBEDDING_SEQ_MAX = 16  # sequences per decode for embedding=True (when n_seq_max is not given)
INTERRUPTED_ON_BACKEND = (
    "this stream was interrupted: another call used this Llama while the stream was paused "
    "between chunks, and a stream whose sampler chain runs on the GPU (backend sampling) cannot "
    "resume; read it to its end (or close it) before the next call, or use one Llama per thread")
_PICKLED_FINGERPRINT = "__model_fingerprint__"  # the key of the model's fingerprint in a pickled Llama


class Llama(ChatMixin, StateMixin, EmbeddingMixin):
    """A model and a context, with llama-cpp-python's names.

    Defaults chosen here (README lists them): every layer on the GPU when the build has
    one (``n_gpu_layers=-1``), ``n_ctx`` 4096 or the model's training context if smaller
    (0: the training context),
    ``n_batch`` 2048 and ``n_ubatch`` 512 (llama.cpp's), flash attention "auto", threads =
    physical cores (``n_threads``/``n_threads_batch`` None, 0 or -1; more than 4 per CPU is
    lowered to that, with a warning), weights memory-mapped.

    ``backend_sampling`` (None: on when the output layer is offloaded to a GPU) samples
    inside the decode on the device, so a token costs no copy of the vocabulary's logits;
    calls that need the logits on the host (logprobs, logits processors, stopping
    criteria, grammars) sample on the CPU as usual; many sequences at once (a list of
    prompts, :class:`AsyncLlama`) take every plain-greedy sequence's argmax in the decode.
    ``logits_all=True`` keeps the logits
    of every evaluated token in :attr:`scores` (``eval`` and prompt log-probabilities).
    ``use_extra_bufts=False`` is llama.cpp's ``--no-repack``: weights stay in the file's
    layout instead of the CPU's repacked one (slower; for debugging a CPU kernel).
    ``progress=True`` draws a loading bar on a terminal; a callable gets the fraction
    loaded and may return False to cancel. ``verbose=True`` shows llama.cpp's logs on
    stderr; logging is process-wide, so it applies to every ``Llama`` of the process.
    """

    def __init__(
        self,
        model_path: Union[str, os.PathLike[str]],
        *,
        n_gpu_layers: int = -1,
        split_mode: int | None = None,
        main_gpu: int | None = None,
        tensor_split: Sequence[float] | None = None,
        vocab_only: bool = False,
        use_mmap: bool = True,
        use_mlock: bool = False,
        kv_overrides: Mapping[str, Union[bool, int, float, str]] | None = None,
        check_tensors: bool | None = None,
        use_extra_bufts: bool | None = None,
        seed: int | None = None,
        n_ctx: int | None = None,
        n_batch: int = 2048,
        n_ubatch: int = 512,
        n_seq_max: int | None = None,
        n_outputs_max_per_seq: int | None = None,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        rope_scaling_type: int | None = None,
        pooling_type: int | None = None,
        attention_type: int | None = None,
        rope_freq_base: float | None = None,
        rope_freq_scale: float | None = None,
        yarn_ext_factor: float | None = None,
        yarn_attn_factor: float | None = None,
        yarn_beta_fast: float | None = None,
        yarn_beta_slow: float | None = None,
        yarn_orig_ctx: int | None = None,
        flash_attn: Union[bool, Literal["auto"]] = "auto",
        type_k: int | None = None,
        type_v: int | None = None,
        offload_kqv: bool | None = None,
        op_offload: bool | None = None,
        swa_full: bool | None = None,
        kv_unified: bool | None = None,
        embedding: bool = False,
        lora_path: Union[str, os.PathLike[str], None] = None,
        lora_scale: float = 1.0,
        lora_adapters: Union[Mapping[str, float], Sequence[tuple[str, float]], None] = None,
        chat_format: str | None = None,
        chat_handler: Callable[..., Any] | None = None,
        escape_special_tokens: bool = False,
        draft_model: DraftModelArg | None = None,
        logits_all: bool = False,
        backend_sampling: bool | None = None,
        no_perf: bool = False,
        verbose: bool = False,
        progress: ProgressArg = False,
        **ignored: Any,
    ) -> None:
        given = dict(locals())
        for name in ignored:
            if name not in _params.IGNORED:
                raise TypeError(f"Llama() got an unexpected keyword argument {name!r}")
            warnings.warn(f"Llama({name}=...) has no effect with this llama.cpp and is ignored",
                          DeprecationWarning, stacklevel=2)
        _log.set_verbose(verbose)
        model_kw = {f: given[k] for k, f in _params.MODEL_FIELDS.items()}
        model_kw["load_mode"] = _params.load_mode(use_mmap, use_mlock)
        if not isinstance(model_path, (str, os.PathLike)):
            raise TypeError(f"model_path must be a str or os.PathLike, not {type(model_path).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, not {type(seed).__name__}")
        self.model_path = os.fspath(model_path)
        on_progress = progress_callback(progress, f"loading {os.path.basename(self.model_path)}")
        self._model = Model(model_path, ModelParams(**model_kw), progress=on_progress)
        self._vocab = Vocab(self._model)
        self.seed = seed
        self.verbose = verbose
        self.logits_all = logits_all
        self._scores: list[npt.NDArray[np.float32]] = []
        self._metadata: dict[str, Any] | None = None
        self._fingerprint: str | None = None
        self._cache: StateCache | None = None
        self._loras: dict[str, tuple[LoraAdapter, float]] = {}
        self.chat_format = chat_format
        self.chat_handler = chat_handler
        self.escape_special_tokens = escape_special_tokens
        self._specials: SpecialTokens | None = None
        self._formatter: ChatFormatter | None = None
        if chat_format is not None:  # chat/ (jinja2) is imported on first use, not with the package
            from .chat import get_format

            self._formatter = get_format(chat_format)
        self.draft_model = draft_model
        self._drafter: Drafter | None = None
        self._draft_budget = DraftBudget()
        self.speculative_stats: SpeculativeStats | None = None
        self._init_kwargs = {k: v for k, v in given.items() if k not in ("self", "ignored", "__class__")}
        self._guard = CallGuard()  # one call at a time; close() waits for it (_guard.py)
        if vocab_only:
            if lora_path is not None or lora_adapters:
                raise ValueError("a vocab_only Llama has no weights to apply LoRA adapters to")
            self._ctx: Context | None = None
            return
        ctx_kw = {f: given[k] for k, f in _params.CONTEXT_FIELDS.items()}
        if n_ctx == 0:
            ctx_kw["n_ctx"] = self._model.n_ctx_train
        elif n_ctx is None:
            ctx_kw["n_ctx"] = min(DEFAULT_N_CTX, self._model.n_ctx_train) or DEFAULT_N_CTX
        ctx_kw["flash_attn_type"] = _params.flash_attn_type(flash_attn)
        if embedding:  # room to pack many inputs into one decode (generation/embedding.py)
            if n_seq_max is None:
                ctx_kw["n_seq_max"] = EMBEDDING_SEQ_MAX
            if kv_unified is None:
                ctx_kw["kv_unified"] = True
        self.context_params = ContextParams(**ctx_kw)
        self._ctx = Context(self._model, self.context_params)
        self._state = SequenceState(self._ctx)
        self._batch = Batch(self._ctx.n_batch)
        offloaded = bool(capi.llama_supports_gpu_offload()) and n_gpu_layers != 0
        if backend_sampling is None:  # auto: when the output layer is on a GPU
            backend_sampling = offloaded and (n_gpu_layers < 0 or n_gpu_layers > self._model.n_layer)
        self._slot = ChainSlot(self._ctx, self._vocab, self._state.seq_id, backend=backend_sampling)
        # an offloaded model decodes asynchronously: start each token's decode before handing
        # the token on, so that detokenizing and stop checks overlap the GPU's work
        self._lookahead = offloaded
        adapters = list(lora_adapters.items() if isinstance(lora_adapters, Mapping) else lora_adapters or ())
        if lora_path is not None:
            adapters.insert(0, (os.fspath(lora_path), lora_scale))
        for path, scale in adapters:
            self.load_lora(path, scale)
        if draft_model is not None:
            self._drafter = as_drafter(draft_model, self._vocab)

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Free the context and the model now (idempotent; safe from any thread).

        New calls raise :class:`~llama_binding.errors.ClosedError` at once; a call running
        in another thread has its decode aborted and raises ClosedError; the native objects
        are freed once no thread uses them (close() waits for that, a few milliseconds on
        the CPU). A paused stream raises ClosedError when it is read next."""
        self._guard.close(self._model.close, self._abort_running)

    def _abort_running(self) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx is not None and not ctx.closed:
            ctx.cancel()

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """The constructor's arguments, and the model's fingerprint (see
        :meth:`model_fingerprint`): unpickling loads the model again from ``model_path``
        and refuses a file that is no longer the same model."""
        return {**self._init_kwargs, _PICKLED_FINGERPRINT: self.model_fingerprint()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        kwargs = dict(state)
        expected = kwargs.pop(_PICKLED_FINGERPRINT, None)  # absent from older pickles
        self.__init__(kwargs.pop("model_path"), **kwargs)  # type: ignore[misc]
        if expected is not None and self.model_fingerprint() != expected:
            self.close()
            raise StateError(f"cannot unpickle this Llama: the file at {self.model_path!r} is no longer the "
                             "model it was pickled with (model fingerprints differ)")

    @property
    def _context(self) -> Context:
        if self._ctx is None:
            raise LlamaError("this Llama was loaded with vocab_only=True and has no context")
        return self._ctx

    def _generating(self) -> Context:
        """The context, for a call that generates text; an encoder-only model (BERT and the
        like: bidirectional attention, or no decoder) raises
        :class:`~llama_binding.errors.UnsupportedModelError` instead of sampling garbage."""
        ctx = self._context
        if not (capi.llama_model_has_decoder(self._model.ptr) and capi.llama_get_causal_attn(ctx.ptr)):
            raise UnsupportedModelError(
                f"{os.path.basename(self.model_path)} is an encoder-only (embedding) model without a causal "
                "decoder: it cannot generate text; use create_embedding() or embed() (with embedding=True)")
        return ctx

    # --- vocabulary ----------------------------------------------------------------------

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text`` (bytes; a str is encoded as UTF-8). Invalid UTF-8 survives
        a round trip only with byte tokens (SPM byte fallback); a byte-level BPE vocabulary
        turns it into U+FFFD (see :meth:`Vocab.tokenize <llama_binding.core.Vocab.tokenize>`)."""
        with self._guard.using():
            return self._vocab.tokenize(text, add_special=add_bos, parse_special=special)

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        """The bytes of ``tokens`` (raw: a token may hold part of a UTF-8 character)."""
        with self._guard.using():
            return self._vocab.detokenize(tokens, special=special)

    def token_bos(self) -> int:
        return self._vocab.bos()

    def token_eos(self) -> int:
        return self._vocab.eos()

    def token_nl(self) -> int:
        return self._vocab.nl()

    def n_vocab(self) -> int:
        return self._vocab.n_tokens

    def n_embd(self) -> int:
        return self._model.n_embd

    def n_ctx(self) -> int:
        return self._context.n_ctx

    @property
    def metadata(self) -> dict[str, Any]:
        """Every GGUF metadata key of the model file, arrays included (read once)."""
        if self._metadata is None:
            self._metadata = read_metadata(self.model_path)
        return self._metadata

    @property
    def n_tokens(self) -> int:
        """Tokens held in the context now (prompt and generated)."""
        return len(self._state.tokens) if self._ctx is not None else 0

    @property
    def input_ids(self) -> npt.NDArray[np.intc]:
        return np.array(self._state.tokens if self._ctx is not None else [], dtype=np.intc)

    def cancel(self) -> None:
        """Abort the decode running now, from another thread (see ``Context.cancel``): the
        running call raises :class:`~llama_binding.errors.DecodeAbortedError` and this
        ``Llama`` stays usable."""
        self._context.cancel()

    def reset(self) -> None:
        """Forget the context's contents (the next call evaluates its prompt from scratch);
        waits for a call running in another thread."""
        if self._ctx is not None:
            with self._guard.held():
                self._state.reset()

    # --- low-level loop (llama-cpp-python's eval / sample) ------------------------------

    @property
    def scores(self) -> npt.NDArray[np.float32]:
        """Logits kept by :meth:`eval`: one row per evaluated token with ``logits_all=True``,
        else the last token's row only (shape ``(rows, n_vocab)``, a copy)."""
        if not self._scores:
            return np.zeros((0, self._vocab.n_tokens), dtype=np.float32)
        return np.stack(self._scores)

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` after those already in the context (appends to ``input_ids``)."""
        toks = self._checked_tokens(tokens)
        ctx, state, batch = self._context, self._state, self._batch
        if len(state.tokens) + len(toks) > ctx.n_ctx_seq:
            raise ContextOverflowError(
                f"{len(state.tokens)} + {len(toks)} tokens do not fit in the context ({ctx.n_ctx_seq})")
        with self._guard.held():
            self._slot.detach()  # eval's caller reads the logits
            for i in range(0, len(toks), batch.capacity):
                chunk = toks[i : i + batch.capacity]
                batch.clear()
                batch.add_sequence(chunk, len(state.tokens), state.seq_id, logits_all=self.logits_all)
                decode_in_step(ctx, batch, state)
                state.tokens.extend(chunk)
                rows = range(len(chunk)) if self.logits_all else range(len(chunk) - 1, len(chunk))
                if not self.logits_all:
                    self._scores.clear()
                self._scores.extend(ctx.logits(j).copy() for j in rows)

    def sample(self, *, idx: int = -1, logits_processor: LogitsProcessor | None = None,
               grammar: str | LlamaGrammar | None = None, **sampling: Any) -> int:
        """Sample one token from the logits of the last :meth:`eval` (output ``idx``);
        ``sampling`` takes the options of :meth:`create_completion` (``temp`` too)."""
        if "temp" in sampling:
            sampling["temperature"] = sampling.pop("temp")
        sampling.pop("penalize_nl", None)  # llama-cpp-python's; no such option in llama.cpp now
        params = self._sampling(dict(sampling, **_grammar_fields(grammar)))
        ctx = self._generating()
        self._acquire()
        try:
            chain = self._slot.chain(params, raw_logits=True)
            logits = ctx.logits(idx)  # IndexError where llama_sampler_sample would abort
            hook = as_logits_hook(logits_processor)
            if hook is not None:
                hook(self._state.tokens, logits)
            return chain.sample(ctx, idx)
        finally:
            self._release()

    def set_seed(self, seed: int) -> None:
        """The seed of later calls that do not pass one."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, not {type(seed).__name__} ({seed!r})")
        self.seed = seed

    def pooling_type(self) -> PoolingType:
        return self._context.pooling_type

    # --- generation ----------------------------------------------------------------------

    def _acquire(self) -> None:
        """Take the guard for a call (see _guard.py); pair with :meth:`_release`."""
        self._guard.acquire()

    def _release(self) -> None:
        self._guard.release()

    def _stepped(self, inner: Iterator[_T], resumable: bool, chain: list[SamplerChain | None] | None = None,
                 nests: bool = False) -> Iterator[_T]:
        """``inner`` (a stream) computed chunk by chunk under the guard, free between chunks.

        A call that comes while the stream is paused interrupts it. A ``resumable`` stream
        (one sequence, no drafts) then brings its sequence back when it is read again: the
        tokens it held are evaluated again after the prefix the context still shares with
        them, and its sampler chain (``chain[0]``) keeps its state. Any other stream is
        closed at once (its cleanup runs under the guard) and raises
        :class:`~llama_binding.errors.StreamInterruptedError` when read."""
        if not resumable:
            close = getattr(inner, "close", None)

            def abandoned() -> None:  # its cleanup, then a clean slate whatever that cleanup left
                try:
                    if close is not None:
                        close()
                finally:
                    self._forget_everything()

            return self._guard.stepped(inner, Session(abandoned, nests=nests), None)
        held: list[int] = []
        lost: list[bool] = [False]

        def interrupted() -> None:
            own = chain[0] if chain else None
            if own is not None and own.attached:
                # a chain that sampled on the backend cannot sample on the host, nor be
                # attached again, and the call that interrupts would reuse and reset it: the
                # stream ends here, cleaned up before that call runs, and says so when read
                lost[0] = True
                self._slot.detach()
                close = getattr(inner, "close", None)
                if close is not None:
                    close()
                return
            held[:] = self._state.tokens

        def resume() -> None:
            if lost[0]:
                raise StreamInterruptedError(INTERRUPTED_ON_BACKEND)
            own = chain[0] if chain else None
            if own is None or not own.attached:  # another call's backend chain may sit on the slot
                self._slot.detach()
            if held:
                prefill(self._context, self._batch, held, self._state)

        return self._guard.stepped(inner, Session(interrupted), resume)

    def _forget_everything(self) -> None:
        """Empty the context: every sequence's KV memory and backend sampler (after a stream
        of several sequences was abandoned midway; the Llama's own sequence starts afresh)."""
        ctx = getattr(self, "_ctx", None)
        if ctx is None or ctx.closed:
            return
        self._slot.detach()
        for seq_id in range(ctx.n_seq_max):
            ctx.detach_sampler(seq_id)
        ctx.memory_clear()
        self._state.tokens.clear()

    def _checked_tokens(self, tokens: Sequence[int], what: str = "tokens") -> list[int]:
        return self._vocab.check_tokens(tokens, what)

    def _prompt_tokens(self, prompt: Union[str, Sequence[int]], suffix: str | None = None) -> list[int]:
        with self._guard.using():  # close() waits for a tokenizer running now
            return self._tokens_of(prompt, suffix)

    def _tokens_of(self, prompt: Union[str, Sequence[int]], suffix: str | None) -> list[int]:
        if suffix is not None:
            return self._infill_tokens(prompt, suffix)
        if isinstance(prompt, str):
            return self._vocab.tokenize(prompt, add_special=True, parse_special=True, what="prompt")
        if prompt is None or isinstance(prompt, (bytes, bytearray)):
            raise TypeError("prompt must be a str or a list of token ids")
        return self._checked_tokens(prompt, "prompt")

    def _infill_tokens(self, prompt: Union[str, Sequence[int]], suffix: str) -> list[int]:
        """Fill-in-the-middle: ``[BOS] <PRE> prompt <SUF> suffix <MID>``, as llama.cpp's server."""
        v = self._vocab
        pre, suf, mid = v.fim_pre(), v.fim_suf(), v.fim_mid()
        if min(pre, suf, mid) < 0:
            raise ValueError("suffix (fill-in-the-middle) needs a model with FIM tokens; this one has none")
        if not isinstance(suffix, str):
            raise TypeError("suffix must be a str")
        head = (v.tokenize(prompt, add_special=False, parse_special=False, what="prompt")
                if isinstance(prompt, str) else self._checked_tokens(prompt, "prompt"))
        bos = [v.bos()] if v.add_bos() and v.bos() >= 0 else []
        tail = v.tokenize(suffix, add_special=False, parse_special=False, what="suffix")
        return [*bos, pre, *head, suf, *tail, mid]

    def generate(self, tokens: Sequence[int], *, max_tokens: int | None = None,
                 logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None = None,
                 grammar: str | LlamaGrammar | None = None, **sampling: Any) -> Iterator[int]:
        """Yield sampled token ids after ``tokens`` (a custom loop's building block)."""
        params = self._sampling(dict(sampling, **_grammar_fields(grammar)))
        toks = self._checked_tokens(tokens)
        hook = as_logits_hook(logits_processor)
        ctx = self._generating()
        used: list[SamplerChain | None] = [None]

        def steps() -> Iterator[int]:  # runs under the guard, a token at a time (_stepped)
            drafter = self._drafter
            raw = hook is not None or drafter is not None
            chain = used[0] = self._slot.chain_or_argmax(params, raw_logits=raw)
            if drafter is not None:
                spec = self._speculative(drafter, chain, toks, max_tokens, logits_hook=hook)
                try:
                    yield from spec
                finally:
                    spec.close()
            else:
                yield from generate_tokens(ctx, self._vocab, chain, toks, self._state, max_tokens,
                                           self._batch, logits_hook=hook)

        yield from self._stepped(steps(), self._drafter is None, used)

    def _speculative(self, drafter: Drafter, chain: SamplerChain | None, tokens: list[int],
                     max_tokens: int | None, **hooks: Any) -> SpeculativeSteps:
        """The verify loop over ``drafter``; its stats become :attr:`speculative_stats`."""
        steps = SpeculativeSteps(self._context, self._vocab, chain, tokens, self._state, drafter,
                                 max_tokens, self._batch, budget=self._draft_budget, **hooks)
        self.speculative_stats = steps.stats
        return steps

    def _sampling(self, kw: dict[str, Any]) -> SamplingParams:
        if kw.get("seed") is None:
            kw["seed"] = self.seed
        for name in ("tfs_z",):
            if kw.pop(name, None) not in (None, 1.0):
                warnings.warn(f"{name} has no effect with this llama.cpp", DeprecationWarning, stacklevel=3)
        return SamplingParams.from_options(kw)

    def create_completion(
        self,
        prompt: Union[str, Sequence[int], Sequence[str], Sequence[Sequence[int]]],
        suffix: str | None = None,
        max_tokens: int | None = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        logprobs: int | None = None,
        echo: bool = False,
        stop: Union[str, Sequence[str], None] = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        top_k: int = 40,
        stream: bool = False,
        seed: int | None = None,
        tfs_z: float | None = None,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: str | None = None,
        stopping_criteria: StoppingCriteria | Sequence[StoppingCriteria] | None = None,
        logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None = None,
        grammar: str | LlamaGrammar | None = None,
        logit_bias: Mapping[int, float] | None = None,
        n: int = 1,
    ) -> Union[CreateCompletionResponse, Iterator[CompletionChunk]]:
        """An OpenAI completion of ``prompt`` (or an iterator of chunks with ``stream=True``).

        A stream holds this Llama only while it computes a chunk: other calls (any thread)
        may run while it is paused, and it resumes afterwards, evaluating again the tokens
        those calls displaced (exactly on the CPU; on a GPU that batch's logits differ by
        kernel noise); a speculative or several-prompt stream, or one whose sampler chain
        runs on the GPU (backend sampling), cannot resume and raises
        :class:`~llama_binding.errors.StreamInterruptedError` instead.

        The positional order is llama-cpp-python's. ``suffix`` makes it a fill-in-the-middle
        completion (models with FIM tokens). ``max_tokens`` None or <= 0 generates until the
        context is full. ``logprobs=N`` adds the log-probability of each generated token and
        of its N most likely alternatives (from the model's raw logits); with ``echo`` the
        prompt's tokens get theirs too (the prompt is then evaluated again in full).
        ``logits_processor`` may rewrite each step's logits; ``stopping_criteria`` gets the
        token ids including the new token and that token's logits, and ends the completion
        (finish_reason "stop", the token dropped) when it returns True.

        Several prompts (``prompt=["a", "b"]``, or lists of token ids) or ``n > 1`` samples
        give one choice each (``index``: prompt ``i``'s ``j``-th sample is ``i * n + j``,
        seeded ``seed + j``), decoded together in the context's ``n_seq_max`` sequences
        (create the ``Llama`` with ``n_seq_max=8, kv_unified=True`` to batch); they take no
        suffix, echo, logprobs or Python hooks.
        """
        if logprobs is not None and (not isinstance(logprobs, int) or isinstance(logprobs, bool)
                                     or logprobs < 0):
            raise ValueError(f"logprobs must be an int >= 0, got {logprobs!r}")
        if max_tokens is not None and not isinstance(max_tokens, int):
            raise TypeError(f"max_tokens must be an int or None, not {type(max_tokens).__name__}")
        sampling = self._sampling(dict(
            temperature=temperature, top_p=top_p, min_p=min_p, typical_p=typical_p, top_k=top_k,
            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty, mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau,
            mirostat_eta=mirostat_eta, seed=seed, logit_bias=logit_bias, tfs_z=tfs_z,
            **_grammar_fields(grammar)))
        limit = None if max_tokens is None or max_tokens <= 0 else int(max_tokens)
        self._generating()  # an embedding model cannot complete
        if n != 1 or is_multi_prompt(prompt):
            if suffix is not None or echo or logprobs is not None or logits_processor or stopping_criteria:
                raise ValueError("several prompts or n > 1 take no suffix, echo, logprobs, "
                                 "logits_processor or stopping_criteria")
            prompts = list(prompt) if is_multi_prompt(prompt) else [prompt]
            with self._guard.closing_errors():
                multi = multi_completion(self, prompts, n, sampling, limit, stop, stream, model)  # type: ignore[arg-type]
            if stream:  # several sequences cannot resume after another call: _stepped
                return self._stepped(multi, resumable=False, nests=True)  # type: ignore[arg-type]
            return multi
        ctx = self._context
        tokens = self._prompt_tokens(prompt, suffix)  # type: ignore[arg-type]
        logits_hook = as_logits_hook(logits_processor)
        stop_hook = as_stop_hook(stopping_criteria)
        matcher = StopMatcher(stop)
        raw_logits = logprobs is not None or logits_hook is not None or stop_hook is not None
        cid, created, model_name = f"cmpl-{uuid.uuid4()}", int(time.time()), model or self.model_path
        echo_text = self.detokenize(tokens).decode("utf-8", "replace") if echo else ""
        sink: deque[TokenLogprob] = deque()
        prompt_entries: list[TokenLogprob] = []
        state = self._state
        used: list[SamplerChain | None] = [None]

        def chunks() -> Iterator[TextChunk]:
            # under the guard: whole for a plain call, chunk by chunk for a stream (_stepped)
            drafter = self._drafter
            # an invalid grammar raises here; drafts are verified on the host's logits
            chain = used[0] = self._slot.chain_or_argmax(sampling, raw_logits or drafter is not None)
            read_prompt = (prompt_logprobs(ctx, tokens, logprobs, prompt_entries)
                           if echo and logprobs is not None else None)
            if read_prompt is None:
                self._restore_cached_prefix(tokens)
            prefilled = self._store_in_cache if self._cache is not None else None
            steps: Iterator[int]
            logits_now: Callable[[], npt.NDArray[np.float32]]
            history: Callable[[], list[int]]
            spec: SpeculativeSteps | None = None
            if drafter is not None:
                spec = self._speculative(drafter, chain, tokens, limit, logits_hook=logits_hook,
                                         prompt_logits=read_prompt, prefilled=prefilled)
                steps, logits_now, history = spec, spec.logits, (lambda: spec.history)
            else:
                steps = generate_tokens(
                    ctx, self._vocab, chain, tokens, state, limit, self._batch, logits_hook=logits_hook,
                    prompt_logits=read_prompt, lookahead=self._lookahead and not raw_logits,
                    prefilled=prefilled)
                logits_now, history = (lambda: ctx.logits(-1)), (lambda: state.tokens)
            if logprobs is not None:
                steps = with_logprobs(steps, logits_now, logprobs, sink)
            stop_token = None
            if stop_hook is not None:
                def stop_token(tok: int) -> bool:
                    return stop_hook([*history(), tok], logits_now())
            try:
                yield from stream_text(steps, self._vocab, matcher, limit, stop_token)
            finally:
                if spec is not None:
                    spec.close()  # drops unverified drafts from the KV memory
            self._store_in_cache()

        offset = [0]

        def logprobs_of(toks: list[int], first: bool) -> dict[str, object] | None:
            if logprobs is None:
                return None
            entries = [sink.popleft() for _ in toks]
            if first and prompt_entries:
                entries = prompt_entries + entries
            out, offset[0] = openai_logprobs(entries, self._vocab, offset[0])
            return out

        if stream:  # the chunks' dicts (logprobs too) are made under the guard
            dicts = self._stream_dicts(chunks(), cid, created, model_name, echo_text, logprobs_of)
            return self._stepped(dicts, self._drafter is None, used)
        with self._guard.held():
            done = collect(chunks())
            response: CreateCompletionResponse = {
                "id": cid, "object": "text_completion", "created": created, "model": model_name,
                "choices": [{"text": echo_text + done.text, "index": 0,
                             "logprobs": logprobs_of(done.tokens, True),
                             "finish_reason": done.finish_reason}],
                "usage": {"prompt_tokens": len(tokens), "completion_tokens": len(done.tokens),
                          "total_tokens": len(tokens) + len(done.tokens)},
            }
        return response

    @staticmethod
    def _stream_dicts(
        chunks: Iterator[TextChunk], cid: str, created: int, model_name: str, echo_text: str,
        logprobs_of: Callable[[list[int], bool], dict[str, object] | None],
    ) -> Iterator[CompletionChunk]:
        first = True
        try:
            for chunk in chunks:
                text = echo_text + chunk.text if first else chunk.text
                lp = logprobs_of(chunk.tokens, first)  # consumed in order, even for a chunk with no text
                first = False
                if not text and chunk.finish_reason is None:
                    continue
                yield {"id": cid, "object": "text_completion", "created": created, "model": model_name,
                       "choices": [{"text": text, "index": 0, "logprobs": lp,
                                    "finish_reason": chunk.finish_reason}]}
        finally:
            # release the Llama now when the caller closes the stream early, not when the
            # inner generator happens to be collected
            chunks.close()  # type: ignore[attr-defined]

    @overload
    def __call__(self, prompt: Union[str, Sequence[int]], *, stream: Literal[False] = ...,
                 **kwargs: Any) -> CreateCompletionResponse: ...
    @overload
    def __call__(self, prompt: Union[str, Sequence[int]], *, stream: Literal[True],
                 **kwargs: Any) -> Iterator[CompletionChunk]: ...

    def __call__(self, prompt: Union[str, Sequence[int]], *args: Any, **kwargs: Any) -> Any:
        return self.create_completion(prompt, *args, **kwargs)


def _grammar_fields(grammar: str | LlamaGrammar | None) -> dict[str, Any]:
    """``grammar=`` as SamplingParams fields (a GBNF string or a :class:`LlamaGrammar`)."""
    if grammar is None:
        return {}
    if isinstance(grammar, str):
        return {"grammar": grammar}
    if isinstance(grammar, LlamaGrammar):
        return {"grammar": grammar.grammar, "grammar_root": grammar.root}
    raise TypeError(f"grammar must be a GBNF string or a LlamaGrammar, not {type(grammar).__name__}")
