"""The engine: one model, its context, and everything that generates with them.

:class:`Engine` is the only owner of a context. It holds the model, the vocabulary, the
context with its sequence slots, the synchronous sequence (its tokens, its sampler chain
slot, its batch), the prompt cache, adapters and saved states (:attr:`Engine.states`),
the drafter of speculative decoding, and the :class:`~.guard.CallGuard` that lets one
call at a time use the context. The facades sit on its public methods: ``Llama`` (one
call at a time, streams paused between chunks), ``AsyncLlama`` (its worker thread drives
the continuous-batching :meth:`Engine.scheduler`) and the server.

A completion is data: a :class:`Request` (prompt tokens, a sampling plan, limits, stop
strings, log-probabilities, Python hooks) handed to :meth:`Engine.stream` or
:meth:`Engine.complete`; results come back as :class:`~.stream.TextChunk` /
:class:`~.stream.Completion`. Nothing here makes an OpenAI dict (``llama_binding.shapes``
does, at the edge).
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar, Union

import numpy as np
import numpy.typing as npt

from ..core import Batch, Context, ContextParams, Model, Vocab
from ..core.context import PoolingType
from ..core.metadata import read_metadata
from ..core.mtmd import Projector
from ..core.prefix_tokens import PrefixTokenizer
from ..core.sampler import SamplerChain
from ..errors import ContextOverflowError, LlamaError, StreamInterruptedError, UnsupportedModelError
from .batching import BatchEngine, BatchRequest, Greedy
from .drafters import Drafter
from .embedding import embed_tokens, fit, rerank_tokens
from .guard import CallGuard, Session
from .logprobs import TokenLogprob, prompt_logprobs, with_logprobs
from .media import MediaPrompt, prefill_media
from .sampling import ChainSlot, SamplingParams, build_chain, is_plain_greedy
from .saved_state import StateKeeper
from .speculative import DraftBudget, SpeculativeStats, SpeculativeSteps
from .steps import SequenceState, decode_in_step, generate_tokens, prefill
from .stopping import StopMatcher
from .stream import Completion, TextAssembler, TextChunk, collect, stream_text

__all__ = ["Engine", "LogitsHook", "Request", "StopHook"]

_T = TypeVar("_T")
Logits = npt.NDArray[np.float32]
LogitsHook = Callable[[Sequence[int], Logits], None]
"""Rewrites a step's logits in place before sampling (``generation.hooks.as_logits_hook``)."""
StopHook = Callable[[Sequence[int], Logits], bool]
"""True ends the completion at the token just sampled (``generation.hooks.as_stop_hook``)."""
Prompt = Union[str, Sequence[int]]
Stop = Union[str, Sequence[str], None]
_TokenSteps = tuple[Iterator[int], Callable[[], Logits], Callable[[], list[int]], "SpeculativeSteps | None"]

INTERRUPTED_ON_BACKEND = (
    "this stream was interrupted: another call used this Llama while the stream was paused "
    "between chunks, and a stream whose sampler chain runs on the GPU (backend sampling) cannot "
    "resume; read it to its end (or close it) before the next call, or use one Llama per thread")
NO_CONTEXT = "this Llama was loaded with vocab_only=True and has no context"


@dataclass(frozen=True)
class Request:
    """One completion of one sequence, as data."""

    tokens: list[int]
    sampling: SamplingParams
    max_tokens: int | None = None
    """None: until the context is full."""
    stop: Stop = None
    logprobs: int | None = None
    """Log-probabilities of each generated token and of its ``logprobs`` best alternatives."""
    prompt_logprobs: bool = False
    """With ``logprobs``: the prompt's tokens too (the prompt is evaluated again in full)."""
    logits_hook: LogitsHook | None = None
    stop_hook: StopHook | None = None
    media: MediaPrompt | None = None
    """A prompt with images (``generation.media``); ``tokens`` is then ``media.tokens``."""


@dataclass
class _Live:
    """The parts of an engine that has a context."""

    ctx: Context
    seq: SequenceState
    batch: Batch
    slot: ChainSlot


class Engine:
    """A model and its context (see the module docstring).

    ``params`` None: a vocabulary-only engine (tokenizing only). ``backend_sampling``
    attaches the synchronous sequence's chains to the decode (GPU); ``lookahead`` starts
    each token's decode before handing the token on (an asynchronous backend). ``seed``
    is the seed of requests that give none; ``logits_all`` keeps every evaluated token's
    logits in :attr:`scores` (:meth:`eval`).
    """

    def __init__(self, model: Model, params: ContextParams | None, *, seed: int | None = None,
                 backend_sampling: bool = False, lookahead: bool = False, logits_all: bool = False) -> None:
        self.model = model
        self.vocab = Vocab(model)
        #: tokenizes a text that extends a recent one (a chat's next turn) from the shared part on
        self.prefix_tokens = PrefixTokenizer(self.vocab)
        self.params = params
        self.seed = seed
        self.logits_all = logits_all
        self.drafter: Drafter | None = None
        #: the multimodal projector (``core.mtmd.Projector``) that takes images, if one was loaded
        self.projector: Projector | None = None
        #: the statistics of the last speculative completion (None before one)
        self.speculative_stats: SpeculativeStats | None = None
        self.guard = CallGuard()  # one call at a time; close() waits for it (guard.py)
        self._draft_budget = DraftBudget()
        self._lookahead = lookahead
        self._metadata: dict[str, Any] | None = None
        self._scores: list[Logits] = []
        self._live: _Live | None = None
        ctx: Context | None = None
        seq: SequenceState | None = None
        if params is not None:
            ctx = Context(model, params)
            seq = SequenceState(ctx)
            self._live = _Live(ctx, seq, Batch(ctx.n_batch), ChainSlot(ctx, self.vocab, seq.seq_id,
                                                                      backend=backend_sampling))
        self.states = StateKeeper(model, self.vocab, ctx, params, seq, self.guard)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Free the context and the model (idempotent, any thread; see CallGuard.close)."""
        self.guard.close(self.model.close, self.cancel)

    @property
    def closed(self) -> bool:
        return self.guard.closing

    def cancel(self) -> None:
        """Abort the decode running now (another thread's call raises DecodeAbortedError)."""
        live = self._live
        if live is not None and not live.ctx.closed:
            live.ctx.cancel()

    def _need(self) -> _Live:
        if self._live is None:
            raise LlamaError(NO_CONTEXT)
        return self._live

    # --- parts -------------------------------------------------------------------------------

    @property
    def context(self) -> Context:
        return self._need().ctx

    @property
    def has_context(self) -> bool:
        return self._live is not None

    @property
    def sequence(self) -> SequenceState:
        """The synchronous sequence (what :meth:`stream` and :meth:`complete` generate in)."""
        return self._need().seq

    @property
    def tokens(self) -> list[int]:
        """The tokens the synchronous sequence holds now (a copy)."""
        return list(self._live.seq.tokens) if self._live is not None else []

    @property
    def backend_sampling(self) -> bool:
        """Whether chains may sample inside the decode (the output layer is on a GPU)."""
        return self._live is not None and self._live.slot.backend

    @property
    def asynchronous(self) -> bool:
        """Whether a decode may return before its computation ends (the model's layers are
        on a GPU): work queued after it overlaps the device's."""
        return self._lookahead and self._live is not None

    @property
    def chain_on_backend(self) -> bool:
        """Whether the synchronous sequence's sampler chain is attached to the decode now."""
        return self._live is not None and self._live.slot.on_backend

    def detach_chain(self) -> None:
        """Detach the synchronous sequence's backend chain (its next call samples on the host)."""
        if self._live is not None:
            with self.guard.held():
                self._live.slot.detach()

    @property
    def metadata(self) -> dict[str, Any]:
        """Every GGUF metadata key of the model file, arrays included (read once)."""
        if self._metadata is None:
            self._metadata = read_metadata(self.model.path)
        return self._metadata

    def require_decoder(self) -> Context:
        """The context, for a call that generates; an encoder-only model raises
        :class:`~llama_binding.errors.UnsupportedModelError` instead of sampling garbage."""
        ctx = self.context
        if not (self.model.has_decoder and ctx.causal_attn):
            raise UnsupportedModelError(
                f"{os.path.basename(self.model.path)} is an encoder-only (embedding) model without a causal "
                "decoder: it cannot generate text; use create_embedding() or embed() (with embedding=True)")
        return ctx

    # --- tokens ------------------------------------------------------------------------------

    def tokenize(self, text: Union[str, bytes], *, add_special: bool = True, parse_special: bool = False,
                 what: str = "text") -> list[int]:
        with self.guard.using():  # close() waits for a tokenizer running now
            return self.prefix_tokens.tokenize(text, add_special, parse_special, what)

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        with self.guard.using():
            return self.vocab.detokenize(tokens, special=special)

    @property
    def unguarded_vocab(self) -> _GuardedPieces:
        """The vocabulary's per-token reads for a thread that holds no guard (AsyncLlama's
        event loop): memoised answers at once, a native read under ``guard.using()`` so
        that close() from another thread waits for it."""
        return _GuardedPieces(self.vocab, self.guard)

    def token_text(self, token: int) -> str:
        """One token's text (invalid UTF-8 replaced), safe while another thread closes."""
        with self.guard.using():
            return self.vocab.token_to_piece(token).decode("utf-8", "replace")

    def check_tokens(self, tokens: Sequence[int], what: str = "tokens") -> list[int]:
        return self.vocab.check_tokens(tokens, what)

    def prompt_tokens(self, prompt: Prompt, suffix: str | None = None) -> list[int]:
        """A prompt's tokens (a str with special tokens parsed, or checked token ids);
        ``suffix`` makes it fill-in-the-middle: ``[BOS] <PRE> prompt <SUF> suffix <MID>``."""
        with self.guard.using():
            if suffix is not None:
                return self._infill_tokens(prompt, suffix)
            if isinstance(prompt, str):
                return self.prefix_tokens.tokenize(prompt, True, True, "prompt")
            if prompt is None or isinstance(prompt, (bytes, bytearray)):
                raise TypeError("prompt must be a str or a list of token ids")
            return self.check_tokens(prompt, "prompt")

    def _infill_tokens(self, prompt: Prompt, suffix: str) -> list[int]:
        v = self.vocab
        pre, suf, mid = v.fim_pre(), v.fim_suf(), v.fim_mid()
        if min(pre, suf, mid) < 0:
            raise ValueError("suffix (fill-in-the-middle) needs a model with FIM tokens; this one has none")
        if not isinstance(suffix, str):
            raise TypeError("suffix must be a str")
        head = (v.tokenize(prompt, add_special=False, parse_special=False, what="prompt")
                if isinstance(prompt, str) else self.check_tokens(prompt, "prompt"))
        bos = [v.bos()] if v.add_bos() and v.bos() >= 0 else []
        tail = v.tokenize(suffix, add_special=False, parse_special=False, what="suffix")
        return [*bos, pre, *head, suf, *tail, mid]

    def sampling(self, options: Mapping[str, Any]) -> SamplingParams:
        """A request's sampling plan; the engine's ``seed`` where the options give none."""
        kw = dict(options)
        if kw.get("seed") is None:
            kw["seed"] = self.seed
        if kw.pop("tfs_z", None) not in (None, 1.0):
            warnings.warn("tfs_z has no effect with this llama.cpp", DeprecationWarning, stacklevel=3)
        return SamplingParams.from_options(kw)

    # --- one sequence ------------------------------------------------------------------------

    def stream(self, request: Request) -> Iterator[TextChunk]:
        """The completion's chunks, each computed under the guard (free between chunks: see
        :meth:`_stepped` for what happens when another call comes meanwhile)."""
        self.require_decoder()
        self._check_media(request)
        stop = StopMatcher(request.stop)
        used: list[SamplerChain | None] = [None]
        # a paused stream with images cannot bring its sequence back by tokens: it does not resume
        resumable = self.drafter is None and request.media is None
        return self._stepped(self._chunks(request, stop, used), resumable, used)

    def complete(self, request: Request) -> Completion:
        """The whole completion, under the guard."""
        self.require_decoder()
        self._check_media(request)
        stop = StopMatcher(request.stop)
        with self.guard.held():
            return collect(self._chunks(request, stop, [None]))

    def _check_media(self, request: Request) -> None:
        """Refuse what a prompt with images cannot be combined with (yet)."""
        if request.media is None:
            return
        if self.drafter is not None:
            raise UnsupportedModelError("speculative decoding (a draft model) does not take images yet")
        if request.prompt_logprobs:
            raise ValueError("the prompt's log-probabilities (echo with logprobs) are not given for "
                             "prompts with images")

    def generate(self, tokens: Sequence[int], sampling: SamplingParams, max_tokens: int | None = None,
                 logits_hook: LogitsHook | None = None) -> Iterator[int]:
        """Sampled token ids after ``tokens``, a token at a time under the guard."""
        toks = self.check_tokens(tokens)
        self.require_decoder()
        live = self._need()
        used: list[SamplerChain | None] = [None]

        def steps() -> Iterator[int]:
            drafter = self.drafter
            raw = logits_hook is not None or drafter is not None
            chain = used[0] = live.slot.chain_or_argmax(sampling, raw)
            if drafter is None:
                yield from generate_tokens(live.ctx, self.vocab, chain, toks, live.seq, max_tokens,
                                           live.batch, logits_hook=logits_hook)
                return
            spec = self._speculative(drafter, chain, toks, max_tokens, logits_hook=logits_hook)
            try:
                yield from spec
            finally:
                spec.close()

        return self._stepped(steps(), self.drafter is None, used)

    def _chunks(self, req: Request, stop: StopMatcher,
                used: list[SamplerChain | None]) -> Iterator[TextChunk]:
        """The body of a completion (runs under the guard)."""
        live = self._need()
        raw = req.logprobs is not None or req.logits_hook is not None or req.stop_hook is not None
        # an invalid grammar raises here; drafts are verified on the host's logits
        chain = used[0] = live.slot.chain_or_argmax(req.sampling, raw or self.drafter is not None)
        prompt_entries: list[TokenLogprob] = []
        read_prompt = None
        if req.prompt_logprobs and req.logprobs is not None:
            read_prompt = prompt_logprobs(live.ctx, req.tokens, req.logprobs, prompt_entries)
        elif req.media is not None:  # the images' runs evaluated by the projector
            prefill_media(live.ctx, live.batch, live.seq, req.media)
        else:
            self.states.restore_prefix(req.tokens)
        steps, logits_now, history, spec = self._token_steps(req, chain, read_prompt, raw)
        sink: deque[TokenLogprob] = deque()
        if req.logprobs is not None:
            steps = with_logprobs(steps, logits_now, req.logprobs, sink)
        stop_token = None
        if req.stop_hook is not None:
            hook = req.stop_hook

            def stop_token(tok: int) -> bool:
                return hook([*history(), tok], logits_now())
        try:
            first = True
            for chunk in stream_text(steps, self.vocab, stop, req.max_tokens, stop_token):
                if req.logprobs is not None:
                    entries = [sink.popleft() for _ in chunk.tokens]
                    chunk.logprobs = prompt_entries + entries if first else entries
                first = False
                yield chunk
        finally:
            if spec is not None:
                spec.close()  # drops unverified drafts from the KV memory
        self.states.store()

    def _token_steps(self, req: Request, chain: SamplerChain | None,
                     read_prompt: Callable[[int, int], None] | None, raw: bool) -> _TokenSteps:
        """The token iterator of a completion, how to read the logits of the token it just
        gave, and the history before that token."""
        live = self._need()
        prefilled = self.states.store if self.states.cache is not None else None
        if self.drafter is not None:
            hooks = {"logits_hook": req.logits_hook, "prompt_logits": read_prompt, "prefilled": prefilled}
            spec = self._speculative(self.drafter, chain, req.tokens, req.max_tokens, **hooks)
            return spec, spec.logits, lambda: spec.history, spec
        steps = generate_tokens(live.ctx, self.vocab, chain, req.tokens, live.seq, req.max_tokens, live.batch,
                                logits_hook=req.logits_hook, prompt_logits=read_prompt,
                                lookahead=self._lookahead and not raw, prefilled=prefilled)
        return steps, lambda: live.ctx.logits(-1), lambda: live.seq.tokens, None

    def _speculative(self, drafter: Drafter, chain: SamplerChain | None, tokens: list[int],
                     max_tokens: int | None, **hooks: Any) -> SpeculativeSteps:
        """The verify loop over ``drafter``; its stats become :attr:`speculative_stats`."""
        live = self._need()
        steps = SpeculativeSteps(live.ctx, self.vocab, chain, tokens, live.seq, drafter, max_tokens,
                                 live.batch, budget=self._draft_budget, **hooks)
        self.speculative_stats = steps.stats
        return steps

    # --- streams that pause between chunks ---------------------------------------------------

    def _stepped(self, inner: Iterator[_T], resumable: bool, chain: list[SamplerChain | None] | None = None,
                 nests: bool = False) -> Iterator[_T]:
        """``inner`` (a stream) computed chunk by chunk under the guard, free between chunks.

        A call that comes while the stream is paused interrupts it. A ``resumable`` stream
        (one sequence, no drafts) then brings its sequence back when it is read again: the
        tokens it held are evaluated again after the prefix the context still shares with
        them, and its sampler chain (``chain[0]``) keeps its state. Any other stream is
        closed at once (its cleanup runs under the guard) and raises
        :class:`~llama_binding.errors.StreamInterruptedError` when read."""
        close = getattr(inner, "close", None)
        if not resumable:
            def abandoned() -> None:  # its cleanup, then a clean slate whatever that cleanup left
                try:
                    if close is not None:
                        close()
                finally:
                    self._forget_everything()

            return self.guard.stepped(inner, Session(abandoned, nests=nests), None)
        live = self._need()
        held: list[int] = []
        lost = [False]

        def interrupted() -> None:
            own = chain[0] if chain else None
            if own is not None and own.attached:
                # a chain that sampled on the backend cannot sample on the host, nor be
                # attached again, and the call that interrupts would reuse and reset it: the
                # stream ends here, cleaned up before that call runs, and says so when read
                lost[0] = True
                live.slot.detach()
                if close is not None:
                    close()
                return
            held[:] = live.seq.tokens

        def resume() -> None:
            if lost[0]:
                raise StreamInterruptedError(INTERRUPTED_ON_BACKEND)
            own = chain[0] if chain else None
            if own is None or not own.attached:  # another call's backend chain may sit on the slot
                live.slot.detach()
            if held:
                prefill(live.ctx, live.batch, held, live.seq)

        return self.guard.stepped(inner, Session(interrupted), resume)

    def _forget_everything(self) -> None:
        """Empty the context: every sequence's KV memory and backend sampler (after a stream
        of several sequences was abandoned midway; the synchronous sequence starts afresh)."""
        live = self._live
        if live is None or live.ctx.closed:
            return
        live.slot.detach()
        for seq_id in range(live.ctx.n_seq_max):
            live.ctx.detach_sampler(seq_id)
        live.ctx.memory_clear()
        live.seq.tokens.clear()

    # --- the low-level loop (llama-cpp-python's eval / sample) -------------------------------

    @property
    def scores(self) -> Logits:
        """Logits kept by :meth:`eval` (a copy, shape ``(rows, n_vocab)``)."""
        if not self._scores:
            return np.zeros((0, self.vocab.n_tokens), dtype=np.float32)
        return np.stack(self._scores)

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` after those the sequence holds; keep their logits rows."""
        toks = self.check_tokens(tokens)
        live = self._need()
        ctx, seq, batch = live.ctx, live.seq, live.batch
        if len(seq.tokens) + len(toks) > ctx.n_ctx_seq:
            raise ContextOverflowError(
                f"{len(seq.tokens)} + {len(toks)} tokens do not fit in the context ({ctx.n_ctx_seq})")
        with self.guard.held():
            live.slot.detach()  # eval's caller reads the logits
            for i in range(0, len(toks), batch.capacity):
                chunk = toks[i : i + batch.capacity]
                batch.clear()
                batch.add_sequence(chunk, len(seq.tokens), seq.seq_id, logits_all=self.logits_all)
                decode_in_step(ctx, batch, seq)
                seq.tokens.extend(chunk)
                rows = range(len(chunk)) if self.logits_all else range(len(chunk) - 1, len(chunk))
                if not self.logits_all:
                    self._scores.clear()
                self._scores.extend(ctx.logits(j).copy() for j in rows)

    def sample(self, sampling: SamplingParams, idx: int = -1, logits_hook: LogitsHook | None = None) -> int:
        """One token from the logits of the last :meth:`eval` (output ``idx``)."""
        ctx = self.require_decoder()
        live = self._need()
        with self.guard.held():
            chain = live.slot.chain(sampling, raw_logits=True)
            logits = ctx.logits(idx)  # IndexError where llama_sampler_sample would abort
            if logits_hook is not None:
                logits_hook(live.seq.tokens, logits)
            return chain.sample(ctx, idx)

    def reset(self) -> None:
        """Forget the sequence's contents (waits for a call running in another thread)."""
        if self._live is not None:
            with self.guard.held():
                self._live.seq.reset()

    # --- many sequences ----------------------------------------------------------------------

    def scheduler(self, max_waiting: int = 1 << 30) -> BatchEngine:
        """A continuous-batching scheduler over every sequence of the context. Call it and
        use it under the guard (it takes the synchronous sequence's slot: its prefix is
        gone); ``close()`` it before anything else uses the context."""
        live = self._need()
        live.slot.detach()  # its backend chain would keep seq 0 from the scheduler
        live.seq.reset()
        # plain greedy on the GPU: every slot's argmax in the decode (no logits copied back);
        # the CPU's threads are free while a GPU decodes, so requests' chains use them all
        # (n_threads_batch: with every layer on the GPU, n_threads is 1 for single tokens).
        # A context that computes embeddings keeps no samplers attached (its decodes pool)
        gpu = live.slot.backend
        pools = self.params is not None and self.params.embeddings
        greedy: Greedy = "backend" if gpu and not pools else "host"
        return BatchEngine(live.ctx, self.vocab, max_waiting=max_waiting, greedy=greedy,
                           host_threads=live.ctx.n_threads_batch if gpu else 1)

    def request_chain(self, sampling: SamplingParams, raw_logits: bool = False) -> SamplerChain | None:
        """A scheduler request's sampler chain; None for plain greedy (the scheduler's
        argmax) unless the caller reads the logits (log-probabilities)."""
        if not raw_logits and is_plain_greedy(sampling, self.vocab.n_tokens):
            return None
        return build_chain(sampling, self.vocab, self.context.n_ctx)

    def stream_many(self, prompts: Sequence[list[int]], n: int, sampling: SamplingParams,
                    max_tokens: int | None, stop: Stop) -> Iterator[tuple[int, TextChunk]]:
        """``(choice index, chunk)`` of several prompts times ``n`` samples decoded together:
        prompt ``i``'s ``j``-th sample is choice ``i * n + j``, seeded ``seed + j``. A stream
        cannot resume after another call (StreamInterruptedError)."""
        self.require_decoder()
        StopMatcher(stop)  # a bad stop raises now, not at the first read
        return self._stepped(self._many(prompts, n, sampling, max_tokens, stop), resumable=False, nests=True)

    def complete_many(self, prompts: Sequence[list[int]], n: int, sampling: SamplingParams,
                      max_tokens: int | None, stop: Stop) -> list[Completion]:
        """:meth:`stream_many` collected: one :class:`Completion` per choice."""
        self.require_decoder()
        StopMatcher(stop)
        chunks: dict[int, list[TextChunk]] = {i: [] for i in range(len(prompts) * n)}
        with self.guard.closing_errors():
            for i, chunk in self._many(prompts, n, sampling, max_tokens, stop):
                chunks[i].append(chunk)
        return [collect(chunks[i]) for i in range(len(chunks))]

    def _many(self, prompts: Sequence[list[int]], n: int, sampling: SamplingParams, max_tokens: int | None,
              stop: Stop) -> Iterator[tuple[int, TextChunk]]:
        chains: list[SamplerChain] = []
        self.guard.acquire()
        try:
            engine = self.scheduler()
            texts: dict[int, tuple[int, TextAssembler]] = {}
            reqs: list[BatchRequest] = []
            for toks in prompts:
                for j in range(n):
                    seed = None if sampling.seed is None else sampling.seed + j
                    chain = self.request_chain(sampling if j == 0 else replace(sampling, seed=seed))
                    if chain is not None:
                        chains.append(chain)
                    r = engine.submit(BatchRequest(list(toks), max_tokens, chain))
                    reqs.append(r)
                    texts[r.id] = (len(texts), TextAssembler(self.vocab, StopMatcher(stop)))
            try:
                yield from _drive(engine, reqs, texts)
            finally:
                engine.cancel_all()
                engine.close()
        finally:
            for c in chains:
                c.close()
            self.guard.release()

    # --- embeddings --------------------------------------------------------------------------

    def embed(self, texts: Sequence[Union[str, Sequence[int]]], normalize: bool = True,
              truncate: bool = False) -> tuple[list[Logits], list[int]]:
        """The embedding of each text or token list (the context's pooling), and the tokens
        each took."""
        inputs = self._embedding_inputs(texts, truncate)
        return self._embed(inputs, normalize), [len(t) for t in inputs]

    def rank(self, query: str, documents: Sequence[str], truncate: bool = False) -> list[float]:
        """A reranker's relevance score of each document for ``query`` (higher: more relevant)."""
        ctx = self.context
        if ctx.pooling_type != PoolingType.RANK:
            raise LlamaError("rank() needs a reranker: a model with a classification head, loaded with "
                             "embedding=True (its pooling is RANK, or pass pooling_type=4)")
        v = self.vocab
        bos = [v.bos()] if v.add_bos() else []
        eos = [v.eos()] if v.add_eos() else []
        sep = [v.sep()] if v.add_sep() else []
        q = self.tokenize(query, add_special=False)
        limit = min(ctx.n_ubatch, ctx.n_batch, ctx.n_ctx_seq)
        inputs = [fit(rerank_tokens(bos, q, sep, eos, self.tokenize(d, add_special=False)), limit,
                      truncate, i) for i, d in enumerate(documents)]
        return [float(s[0]) for s in self._embed(inputs, normalize=False)]

    def _embedding_inputs(self, texts: Sequence[Union[str, Sequence[int]]],
                          truncate: bool) -> list[list[int]]:
        ctx = self.context
        if self.params is None or not self.params.embeddings:
            raise LlamaError("this Llama computes no embeddings: create it with embedding=True")
        limit = min(ctx.n_ubatch, ctx.n_batch, ctx.n_ctx_seq)
        out = []
        for i, text in enumerate(texts):
            if isinstance(text, (list, tuple)):
                toks = self.check_tokens(text, f"input {i}")
            elif not isinstance(text, str):
                raise TypeError(f"input {i} must be a str or a list of token ids, not {type(text).__name__}")
            else:
                toks = self.tokenize(text, add_special=True, parse_special=False)
            if not toks:
                raise ValueError(f"input {i} has no tokens")
            out.append(fit(toks, limit, truncate, i))
        return out

    def _embed(self, inputs: list[list[int]], normalize: bool) -> list[Logits]:
        live = self._need()
        with self.guard.held():
            live.seq.reset()  # the memory is cleared: nothing of a completion stays to reuse
            return embed_tokens(live.ctx, inputs, normalize, live.batch)


class _GuardedPieces:
    """See :attr:`Engine.unguarded_vocab`."""

    __slots__ = ("_guard", "_vocab")

    def __init__(self, vocab: Vocab, guard: CallGuard) -> None:
        self._vocab = vocab
        self._guard = guard

    def is_eog(self, token: int) -> bool:
        known = self._vocab.known_eog(token)
        if known is None:
            with self._guard.using():
                known = self._vocab.is_eog(token)
        return known

    def token_to_piece(self, token: int) -> bytes:
        known = self._vocab.known_piece(token)
        if known is None:
            with self._guard.using():
                known = self._vocab.token_to_piece(token)
        return known


def _drive(engine: BatchEngine, reqs: list[BatchRequest],
           texts: dict[int, tuple[int, TextAssembler]]) -> Iterator[tuple[int, TextChunk]]:
    """Step ``engine`` until every request is done, yielding each choice's text chunks."""
    while engine.busy:
        stepped = engine.step()
        failed = next((r.error for r in reqs if r.error is not None), None)
        if failed is not None:
            raise failed
        for r, tok in stepped:
            i, text = texts[r.id]
            chunk = text.feed(tok)
            if text.finish_reason is None and not r.done:
                if chunk is not None:
                    yield i, chunk
                continue
            # this choice is over: a stop string, end of generation, or its length
            if not r.done:
                engine.cancel(r)  # a stop string: the other sequences go on
            if chunk is None or chunk.finish_reason is None:
                if chunk is not None:
                    yield i, chunk
                chunk = text.end("stop" if r.finish_reason == "stop" else "length")
            yield i, chunk
