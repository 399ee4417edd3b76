"""An asyncio API over one continuous-batching engine: many concurrent callers, one model.

    allm = AsyncLlama("model.gguf", n_seq_max=16)
    r = await allm.acreate_completion("Once upon a time", max_tokens=32)
    async for chunk in await allm.acreate_chat_completion(messages, stream=True): ...

One worker thread drives the engine's :meth:`~llama_binding.generation.engine.Engine.scheduler`
(a :class:`~llama_binding.generation.batching.BatchEngine`) while any request is active; it
hands each step's tokens to the event loop in one ``call_soon_threadsafe`` call, so a step
of 64 sequences costs one wake-up, and the detokenizing and stop-string matching of the
previous step run on the loop's thread while the next decode runs (the decode releases the
GIL). Every request, whatever its options (grammar, logit bias, penalties, log-probabilities,
a seed), is one sequence of the same batched decodes; its own sampler chain samples on the
host. A caller that stops reading, is cancelled or hits a stop string cancels its request;
the others go on. More requests than ``max_waiting`` beyond the slots raise
:class:`~llama_binding.errors.QueueFullError`. Embeddings run between batches, when no
sequence is active (they clear the context's memory); requests that come meanwhile wait.

:meth:`AsyncLlama.close` (from any thread, or from the event loop) ends every request in
flight with :class:`~llama_binding.errors.ClosedError`: an awaiting caller's ``await``
raises it, a stream raises it at its next chunk, and later calls raise it at once. Several
event loops (threads each running ``asyncio.run``) may share one AsyncLlama: each request's
tokens go to the loop that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from . import _dropin, shapes
from ._args import SAMPLING_ARGS, check_completion_args, grammar_fields, include_usage, is_multi_prompt
from ._multimodal import MediaPrompt, chat_prompt, prompt_tokens
from .chat.media import has_images
from .errors import ClosedError, ContextOverflowError, DecodeAbortedError, LlamaError, QueueFullError
from .generation.batching import BatchEngine, BatchRequest
from .generation.drafters import LlamaPromptLookupDecoding
from .generation.engine import Engine
from .generation.logprobs import TokenLogprob
from .generation.sampling import CHAT_TEMPERATURE, SamplingParams
from .generation.sampling import SamplingParams as _D
from .generation.stopping import StopMatcher
from .generation.stream import Completion, TextAssembler, TextChunk, collect
from .grammar import LlamaGrammar
from .llama import Llama
from .llama_types import (
    ChatCompletionChunk,
    CompletionChunk,
    CreateChatCompletionResponse,
    CreateCompletionResponse,
    CreateEmbeddingResponse,
)

__all__ = ["AsyncLlama", "EngineStats", "RequestTiming"]

_DONE = object()
_HANDOFF_MAX_S = 2e-3  # the longest a caller that wakes an idle worker waits for its decode
_CLOSED = "this AsyncLlama is closed"
_CLOSED_DURING = "this AsyncLlama was closed while the request was in flight"
Events = dict[asyncio.AbstractEventLoop, list[tuple["_Ticket", Any]]]


@dataclass(eq=False)
class _Ticket:
    """The loop-side half of one sequence: where its tokens arrive (shared by the choices
    of one call) and which choice it is."""

    request: BatchRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[_Ticket, Any]]
    index: int = 0


@dataclass(eq=False)
class _Embed:
    """An embedding job for the worker thread (run when no sequence is active)."""

    texts: list[Any]
    normalize: bool
    truncate: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[tuple[list[npt.NDArray[np.float32]], list[int]]] = field(init=False)

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()


@dataclass(frozen=True)
class EngineStats:
    """Counters of an :class:`AsyncLlama`'s engine since it started (for metrics)."""

    decodes: int
    busy_slot_steps: int
    """Sequences with an output, summed over decodes (divide by ``decodes``: busy slots per decode)."""
    prompt_tokens: int
    generated_tokens: int
    decode_seconds: float
    active: int
    waiting: int
    kv_tokens: int
    n_ctx: int
    n_slots: int
    drafted_tokens: int = 0
    """Speculative decoding: tokens drafted (prompt lookup) and, of them, accepted."""
    accepted_tokens: int = 0
    prepare_seconds: float = 0.0
    """The engine thread's time building batches (admitting requests, prompt chunks)."""
    collect_seconds: float = 0.0
    """The engine thread's time sampling each decode's rows and finishing requests (with
    ``prepare_seconds`` and ``decode_seconds``: where its steps went)."""
    deliver_seconds: float = 0.0
    """The engine thread's time handing tokens to the event loops (taking the GIL back
    included), and ``idle_seconds`` its time waiting for requests with none in flight."""
    idle_seconds: float = 0.0
    pipelined_decodes: int = 0
    """Decodes queued before the last step's per-request bookkeeping (on a GPU, the busy
    steady steps: :attr:`BatchEngine.pipeline`)."""


@dataclass(frozen=True)
class RequestTiming:
    """One finished call, for :attr:`AsyncLlama.observers`: seconds waiting for a slot, to
    the first token and in all, and the tokens it generated."""

    queue_wait: float
    time_to_first_token: float
    duration: float
    tokens: int


def _batch_drafter(draft_model: object) -> LlamaPromptLookupDecoding | None:
    """The prompt-lookup drafter whose copies draft for the batch's plain greedy requests
    (one each: its n-gram index is the request's own history); other drafters need a
    context of their own per sequence, which the batched engine does not keep."""
    if draft_model is None or isinstance(draft_model, LlamaPromptLookupDecoding):
        return draft_model
    raise ValueError("with continuous batching (AsyncLlama, the server) speculative decoding drafts by "
                     "prompt lookup only (draft_model=LlamaPromptLookupDecoding(...)), not "
                     f"{type(draft_model).__name__}")


class AsyncLlama:
    """A :class:`~llama_binding.Llama`'s model with ``n_seq_max`` sequence slots and a
    unified KV cache, served to concurrent asyncio callers by a continuous-batching engine.

    Keyword arguments go to ``Llama`` (``chat_format``, ``embedding``, ``n_gpu_layers``,
    ...). ``max_waiting`` bounds the requests waiting for a slot. ``kv_unified=False`` gives
    each slot its own ``n_ctx / n_seq_max`` cells of KV memory (llama-server's default):
    a decode then attends and masks only each sequence's own cells, where the shared cache
    masks every sequence against all used cells; prompts then share no prefix. The methods are
    ``Llama``'s, awaited: :meth:`acreate_completion`, :meth:`acreate_chat_completion`,
    :meth:`acreate_embedding`, :meth:`aembed`, :meth:`atokenize`, :meth:`adetokenize`.
    """

    def __init__(self, model_path: Union[str, os.PathLike[str]], *, n_seq_max: int = 16,
                 n_ctx: int | None = None, max_waiting: int = 256, kv_unified: bool = True,
                 **llama_kwargs: Any) -> None:
        if n_ctx is None:
            n_ctx = self.default_n_ctx(n_seq_max)
        self._lookup = _batch_drafter(llama_kwargs.get("draft_model"))  # (refused before loading)
        if self._lookup is not None and llama_kwargs.get("n_outputs_max_per_seq") is None:
            # a verify asks for an output per drafted token (a backend greedy sampler allows 1)
            llama_kwargs["n_outputs_max_per_seq"] = self._lookup.num_pred_tokens + 1
        # Llama maps llama-cpp-python's keywords onto the engine and the chat setup; it is
        # used for nothing else (the worker thread owns the engine's context)
        self._llama = Llama(model_path, n_seq_max=n_seq_max, kv_unified=kv_unified, n_ctx=n_ctx,
                            **llama_kwargs)
        self.engine: Engine = self._llama.engine
        self.model_path = self._llama.model_path
        with self.engine.guard.held():
            # the bound is enforced when a caller submits (_submit); the scheduler takes what comes
            self.scheduler: BatchEngine = self.engine.scheduler()
        self.max_waiting = max_waiting
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._handed = threading.Event()  # set by the worker as its decode starts (_enqueue)
        self._outstanding = 0
        self._count_lock = threading.Lock()
        self._tickets: dict[int, _Ticket] = {}
        self._embeds: list[_Embed] = []
        self._held_back: list[_Ticket] = []
        self._closed = False
        #: called on the event loop's thread with a :class:`RequestTiming` per finished call
        self.observers: list[Callable[[RequestTiming], None]] = []
        # hand a step's tokens on while the GPU computes (_step): the decode is asynchronous
        self._overlap = self.engine.asynchronous
        # and, in a busy steady step, queue the next decode before the per-request bookkeeping
        self.scheduler.pipeline = self._overlap
        self.scheduler.arrivals = self._arrivals  # (then the plain step admits them first)
        self._timings = {"deliver": 0.0, "idle": 0.0}  # the engine thread's, beside the scheduler's
        self._thread = threading.Thread(target=self._work, name="llama-binding-engine", daemon=True)
        self._thread.start()

    #: with at least this many tokens to hand on, a step on a GPU hands them on while its
    #: decode computes, not before it starts (_step)
    OVERLAP_MIN = 8

    @staticmethod
    def default_n_ctx(n_seq_max: int) -> int:
        """The context without ``n_ctx``: 4096 cells per 4 slots."""
        return 4096 * max(1, n_seq_max // 4)

    @staticmethod
    def keywords() -> frozenset[str]:
        """The keyword arguments the constructor takes (its own and ``Llama``'s): for checking
        a configuration before loading."""
        own = set(inspect.signature(AsyncLlama.__init__).parameters) - {"self", "model_path", "llama_kwargs"}
        return frozenset(own | (set(inspect.signature(Llama.__init__).parameters) - {"self", "model_path"}))

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the engine and free the model (idempotent). Every request in flight ends
        with :class:`~llama_binding.errors.ClosedError` (module docstring); a decode running
        now is aborted, so this returns within one graph node's time on the CPU."""
        with self._count_lock:  # no request is queued after the stop (see _submit)
            if self._closed:
                return
            self._closed = True
            self._commands.put(("stop", None))
        self.engine.cancel()
        self._thread.join()
        with self.engine.guard.held():
            self.scheduler.close()
        self.engine.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def n_outstanding(self) -> int:
        """Requests (sequences) submitted and not yet finished."""
        return self._outstanding

    def stats(self) -> EngineStats:
        """The engine's counters now (read from any thread)."""
        sched = self.scheduler
        waiting = sched.n_waiting + len(self._held_back)
        active = max(0, self._outstanding - waiting)
        return EngineStats(sched.steps, sched.busy_slot_steps, sched.prompt_tokens, sched.generated_tokens,
                           sched.timings["decode"], active, waiting, sched.kv_tokens, sched.ctx.n_ctx,
                           sched.n_slots, sched.drafted_tokens, sched.accepted_tokens,
                           sched.timings["prepare"], sched.timings["collect"], self._timings["deliver"],
                           self._timings["idle"], sched.pipelined_steps)

    async def __aenter__(self) -> AsyncLlama:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # --- the engine thread -------------------------------------------------------------------

    def _work(self) -> None:
        sched, guard = self.scheduler, self.engine.guard
        pending: list[tuple[BatchRequest, int]] = []
        holding = False
        try:
            while True:
                busy = sched.busy or bool(pending)
                if not busy:
                    if holding:  # idle: others (an embedding) may use the context
                        guard.release()
                        holding = False
                    self._run_embeds()
                block = not busy and not self._embeds
                t0 = time.perf_counter() if block else 0.0
                if not self._handle_commands(block=block):
                    return
                if block:
                    self._timings["idle"] += time.perf_counter() - t0
                if not holding and sched.busy:
                    guard.acquire()
                    holding = True
                pending = self._step(pending)
        finally:
            with contextlib.suppress(Exception):  # a decode still queued (stopped mid-stream),
                sched.drain()  # before the context goes: its requests have ended already
            if holding:
                guard.release()

    def _arrivals(self) -> bool:
        """Commands (submits, cancels) wait for the engine thread."""
        return not self._commands.empty()

    def _handle_commands(self, block: bool) -> bool:
        """Take the queued commands (waiting for one when ``block``); False on "stop"."""
        self.scheduler.pick_launch.answer()  # (before the queue is read: a later knock stays)
        if block:  # nothing to decode: a caller waiting for the hand-over goes on
            self._handed.set()
        try:
            cmd: tuple[str, Any] | None = self._commands.get(block=block)
        except queue.Empty:
            cmd = None
        while cmd is not None:
            kind, arg = cmd
            if kind == "stop":  # every caller still waiting gets ClosedError, not a short result
                self._fail_all(ClosedError(_CLOSED_DURING))
                for job in self._embeds:
                    _resolve(job, ClosedError(_CLOSED_DURING))
                return False
            if kind == "submit":
                if self._embeds:  # embeddings first: they need every sequence idle
                    self._held_back.append(arg)
                else:
                    self._admit(arg)
            elif kind == "embed":
                self._embeds.append(arg)
            elif kind == "cancel" and arg.id in self._tickets:
                self.scheduler.cancel(arg)
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                cmd = None
        return True

    def _admit(self, ticket: _Ticket) -> None:
        self._tickets[ticket.request.id] = ticket
        try:
            self.scheduler.submit(ticket.request)
        except Exception as exc:  # refused (too long, ...): that caller gets the error
            ticket.request.phase = "done"
            self._deliver({ticket.loop: [(ticket, exc), (ticket, None)]})

    def _step(self, pending: list[tuple[BatchRequest, int]]) -> list[tuple[BatchRequest, int]]:
        """Hand the last step's tokens on, build the next batch, decode; the new tokens.

        A few tokens (a chat's next turn, a single stream) go to their callers first: the
        loop's thread wakes while this one builds the batch (its wake-up no longer follows
        the build) and takes the GIL when the decode releases it. On a GPU, with many
        tokens to hand on, they go once the decode is queued: waking the loop's thread
        hands it the GIL, and this thread takes it back (up to the switch interval) while
        the GPU computes instead of before the decode starts."""
        sched = self.scheduler
        if not (self._overlap and len(pending) >= self.OVERLAP_MIN):
            self._deliver(self._events(pending))
            pending = []
        try:
            more = sched.prepare()
        except BaseException as exc:
            self._fail_all(exc)
            return []
        handed: list[bool] = []
        # (now: the requests that the build ended, an image that failed; and a failed decode
        # below ends requests that must not look done)
        events = self._events(pending)

        def hand_on() -> None:
            handed.append(True)
            if events:
                self._deliver(events)

        if not (more and pending):
            hand_on()
        if not more:
            return []
        self._handed.set()  # (a caller that woke this thread goes on while the decode runs)
        try:
            sched.decode(None if handed else hand_on)
            return sched.collect()
        except BaseException as exc:  # a failed decode ends every active request with it
            if not handed:  # the last step's tokens first: requests that ended then ended well
                hand_on()
            self._fail_all(exc)
            return []

    def _run_embeds(self) -> None:
        """Run the waiting embedding jobs (no sequence is active): the jobs with the same
        options in one call, packed into few decodes; then admit what waited."""
        jobs, self._embeds = self._embeds, []
        if jobs:  # embedding clears the context's memory, the slots' too
            self.scheduler.drop_cached()
        groups: dict[tuple[bool, bool], list[_Embed]] = {}
        for job in jobs:
            groups.setdefault((job.normalize, job.truncate), []).append(job)
        for (normalize, truncate), group in groups.items():
            try:
                vectors, counts = self.engine.embed([t for j in group for t in j.texts], normalize, truncate)
            except BaseException:  # one job's bad input: each job alone, so only that one fails
                for job in group:
                    try:
                        _resolve(job, self.engine.embed(job.texts, normalize, truncate))
                    except BaseException as exc:
                        _resolve(job, exc)
                continue
            start = 0
            for job in group:
                end = start + len(job.texts)
                _resolve(job, (vectors[start:end], counts[start:end]))
                start = end
        held, self._held_back = self._held_back, []
        for ticket in held:
            self._admit(ticket)

    def _events(self, pending: list[tuple[BatchRequest, int]]) -> Events:
        """The tokens of the last step and the requests that ended, grouped by event loop."""
        by_loop: Events = {}
        for r, tok in pending:
            ticket = self._tickets.get(r.id)
            if ticket is not None:
                by_loop.setdefault(ticket.loop, []).append((ticket, tok))
        for t in [t for t in self._tickets.values() if t.request.done]:
            if t.request.error is not None:  # the engine ended it (its sampler failed)
                by_loop.setdefault(t.loop, []).append((t, t.request.error))
            by_loop.setdefault(t.loop, []).append((t, None))
        return by_loop

    def _deliver(self, by_loop: Events) -> None:
        t0 = time.perf_counter()
        try:
            self._hand_over(by_loop)
        finally:
            self._timings["deliver"] += time.perf_counter() - t0

    def _hand_over(self, by_loop: Events) -> None:
        for loop, items in by_loop.items():
            for t, tok in items:
                if tok is None:
                    self._tickets.pop(t.request.id, None)
                    if t.request.chain is not None:
                        t.request.chain.close()
                    if t.request.media is not None:  # the images' chunks (evaluated or never)
                        t.request.media.close()
                    with self._count_lock:
                        self._outstanding -= 1
            try:
                loop.call_soon_threadsafe(_dispatch, items)
            except RuntimeError:  # that loop is closed: nobody is listening
                pass

    def _fail_all(self, exc: BaseException) -> None:
        if self._closed and isinstance(exc, DecodeAbortedError):  # close() aborted the decode
            exc = ClosedError(_CLOSED_DURING)
        by_loop: Events = {}
        for t in [*self._tickets.values(), *self._held_back]:
            self.scheduler.cancel(t.request)
            by_loop.setdefault(t.loop, []).append((t, exc))
            by_loop[t.loop].append((t, None))
        self._held_back = []
        self._deliver(by_loop)

    # --- the caller's side -------------------------------------------------------------------

    def _submit(self, prompts: list[list[int]], n: int, sampling: SamplingParams, max_tokens: int | None,
                logprobs: int | None, ignore_eos: bool, media: MediaPrompt | None = None,
                cache_prompt: bool = True) -> list[_Ticket]:
        """One ticket per (prompt, sample), all sharing one queue; sample ``j`` is seeded ``seed + j``.
        ``media``: the one prompt's images (closed by the worker once its request is done)."""
        if self._closed:
            if media is not None:
                media.close()
            raise ClosedError(_CLOSED)
        n_ctx_seq = self.engine.context.n_ctx_seq
        for toks in prompts:
            if len(toks) > n_ctx_seq:
                raise ContextOverflowError(
                    f"the prompt has {len(toks)} tokens but the context holds {n_ctx_seq}")
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[_Ticket, Any]] = asyncio.Queue()
        tickets: list[_Ticket] = []
        try:
            for toks in prompts:
                for j in range(n):
                    seed = None if sampling.seed is None else sampling.seed + j
                    chain = self.engine.request_chain(sampling if j == 0 else replace(sampling, seed=seed),
                                                      raw_logits=logprobs is not None)
                    drafter = self._lookup.fresh() if self._lookup is not None and chain is None else None
                    request = BatchRequest(toks, max_tokens, chain, ignore_eos=ignore_eos, logprobs=logprobs,
                                           drafter=drafter, media=media, cache_prompt=cache_prompt)
                    tickets.append(_Ticket(request, loop, inbox, len(tickets)))
            self._enqueue(tickets)
        except BaseException:
            for t in tickets:
                if t.request.chain is not None:
                    t.request.chain.close()
            if media is not None:
                media.close()
            raise
        return tickets

    def _enqueue(self, tickets: list[_Ticket]) -> None:
        with self._count_lock:  # the check and the put are one step: close() cannot come between
            if self._closed:
                raise ClosedError(_CLOSED)
            if self._outstanding + len(tickets) > self.scheduler.n_slots + self.max_waiting:
                raise QueueFullError(
                    f"{self._outstanding} requests are in flight ({self.scheduler.n_slots} slots + "
                    f"max_waiting={self.max_waiting}): retry later")
            idle = self._outstanding == 0
            if idle:  # (only then: a later caller must not clear what a waiting one awaits)
                self._handed.clear()  # (set again by the worker: _step)
            self._outstanding += len(tickets)
            for t in tickets:
                self._commands.put(("submit", t))
            self.scheduler.pick_launch.knock()  # (a pipelined step waiting now queues nothing)
        if idle:
            # The worker, woken, needs the GIL, which this thread would keep through the
            # request's remaining Python (a server's set-up, ~0.3 ms) before the prompt's
            # evaluation: wait until its decode starts (a 20 us sleep lost that race).
            self._handed.wait(_HANDOFF_MAX_S)

    async def acreate_completion(
        self,
        prompt: Union[str, Sequence[int], Sequence[str], Sequence[Sequence[int]], MediaPrompt],
        suffix: str | None = None,
        max_tokens: int | None = 16,
        temperature: float = _D.temperature,
        top_p: float = _D.top_p,
        min_p: float = _D.min_p,
        typical_p: float = _D.typical_p,
        logprobs: int | None = None,
        echo: bool = False,
        stop: Union[str, Sequence[str], None] = None,
        frequency_penalty: float = _D.frequency_penalty,
        presence_penalty: float = _D.presence_penalty,
        repeat_penalty: float = _D.repeat_penalty,
        top_k: int = _D.top_k,
        stream: bool = False,
        seed: int | None = None,
        mirostat_mode: int = _D.mirostat_mode,
        mirostat_tau: float = _D.mirostat_tau,
        mirostat_eta: float = _D.mirostat_eta,
        model: str | None = None,
        grammar: str | LlamaGrammar | None = None,
        logit_bias: Mapping[int, float] | None = None,
        n: int = 1,
        stream_options: Mapping[str, Any] | None = None,
        ignore_eos: bool = False,
        cache_prompt: bool = True,
    ) -> Union[CreateCompletionResponse, AsyncIterator[CompletionChunk]]:
        """``Llama.create_completion``, computed with the other callers' sequences in the
        same decodes; ``stream=True`` returns an async iterator of chunks. Several prompts
        and ``n`` give a choice each (as there), ``echo`` repeats the prompt's text (the
        prompt's own log-probabilities are not computed here). ``ignore_eos`` goes on past
        end-of-generation tokens (they add no text), as llama.cpp's server allows.
        ``cache_prompt`` (llama-server's): the prompt may continue from a free slot whose
        memory holds a prefix of it (a chat's next turn evaluates only its new tokens);
        False evaluates it whole (the logits of a reused prefix's next token were computed
        in another batch: they may differ by kernel noise)."""
        options = {k: v for k, v in locals().items() if k in SAMPLING_ARGS}
        engine = self.engine
        sampling = engine.sampling(dict(options, **grammar_fields(grammar)))
        check_completion_args(logprobs, max_tokens, n)
        if echo and logprobs is not None:
            raise ValueError("AsyncLlama computes no log-probabilities of the prompt: "
                             "echo cannot go with logprobs")
        limit = None if max_tokens is None or max_tokens <= 0 else int(max_tokens)
        usage = include_usage(stream_options)
        StopMatcher(stop)  # a bad stop raises now
        engine.require_decoder()  # an embedding model cannot complete (UnsupportedModelError)
        if is_multi_prompt(prompt):
            if suffix is not None or echo:
                raise ValueError("several prompts take no suffix or echo")
            prompts = [engine.prompt_tokens(p) for p in prompt]  # type: ignore[arg-type,union-attr]
            media = None
        else:
            tokens, media = prompt_tokens(engine, prompt, suffix)  # media: a chat's prompt with images
            prompts = [tokens]
        if media is not None and (echo or n != 1):
            media.close()
            raise ValueError("a prompt with images takes no echo and no n > 1")
        echo_text = engine.detokenize(prompts[0]).decode("utf-8", "replace") if echo else ""
        tickets = self._submit(prompts, n, sampling, limit, logprobs, ignore_eos, media, cache_prompt)
        n_prompt = sum(map(len, prompts)) * n
        meta = shapes.Meta.new(model or self.model_path)
        chunks = self._chunks(tickets, stop)
        if stream:
            chunker = shapes.CompletionChunker(meta, engine.token_text, n_prompt, echo_text)
            return shapes.acompletion_chunks(chunker, chunks, usage)
        parts: dict[int, list[TextChunk]] = {t.index: [] for t in tickets}
        async for i, chunk in chunks:
            parts[i].append(chunk)
        results: list[Completion] = [collect(parts[i]) for i in range(len(tickets))]
        return shapes.completion(meta, results, n_prompt, engine.token_text, echo_text)

    async def _chunks(self, tickets: list[_Ticket], stop: Union[str, Sequence[str], None]
                      ) -> AsyncIterator[tuple[int, TextChunk]]:
        """``(choice index, chunk)`` as the tickets' tokens arrive."""
        vocab = self.engine.unguarded_vocab  # this runs on the loop's thread, outside the guard
        choices = {t: _Choice(t, TextAssembler(vocab, StopMatcher(stop)), vocab.is_eog) for t in tickets}
        inbox = tickets[0].queue
        left = len(tickets)
        first = produced = 0.0
        try:
            while left:
                ticket, item = await inbox.get()
                choice = choices[ticket]
                if choice.over:  # tokens (or the end) of a choice a stop string ended already
                    continue
                if isinstance(item, BaseException):
                    raise item
                chunk: TextChunk | None
                if item is _DONE:
                    chunk = choice.end()
                elif choice.plain:  # the per-token path of most requests, written out
                    text = choice.text
                    chunk = text.feed(item)
                    if text.finish_reason is not None:  # a stop string or EOG: this choice is over
                        choice.over = True
                        chunk = chunk or text.end("stop")
                else:
                    chunk = choice.feed(item)
                if choice.over:
                    left -= 1
                    self._cancel(ticket)  # a stop string ended it: the others go on
                if chunk is not None:
                    if not first:
                        first = time.perf_counter()
                    produced += len(chunk.tokens)
                    yield ticket.index, chunk
        finally:
            for c in choices.values():  # the caller stopped reading (or was cancelled)
                if not c.over:
                    self._cancel(c.ticket)
            if self.observers and first:
                self._observe(tickets, first, int(produced))

    def _observe(self, tickets: list[_Ticket], first: float, produced: int) -> None:
        start = min(t.request.submitted_at for t in tickets)
        admitted = [t.request.admitted_at for t in tickets if t.request.admitted_at]
        end = time.perf_counter()
        timing = RequestTiming(max(admitted, default=start) - start, first - start, end - start, produced)
        for observe in self.observers:
            observe(timing)

    def _cancel(self, ticket: _Ticket) -> None:
        if not ticket.request.done and not self._closed:
            self._commands.put(("cancel", ticket.request))

    async def acreate_chat_completion(
        self,
        messages: Sequence[Mapping[str, Any]],
        temperature: float = CHAT_TEMPERATURE,
        top_p: float = _D.top_p,
        top_k: int = _D.top_k,
        min_p: float = _D.min_p,
        typical_p: float = _D.typical_p,
        stream: bool = False,
        stop: Union[str, Sequence[str], None] = None,
        seed: int | None = None,
        response_format: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        presence_penalty: float = _D.presence_penalty,
        frequency_penalty: float = _D.frequency_penalty,
        repeat_penalty: float = _D.repeat_penalty,
        mirostat_mode: int = _D.mirostat_mode,
        mirostat_tau: float = _D.mirostat_tau,
        mirostat_eta: float = _D.mirostat_eta,
        model: str | None = None,
        grammar: str | LlamaGrammar | None = None,
        logit_bias: Mapping[int, float] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Union[str, Mapping[str, Any], None] = None,
        escape_special_tokens: bool | None = None,
        n: int = 1,
        stream_options: Mapping[str, Any] | None = None,
        functions: Sequence[Mapping[str, Any]] | None = None,
        function_call: Union[str, Mapping[str, Any], None] = None,
        ignore_eos: bool = False,
        cache_prompt: bool = True,
    ) -> Union[CreateChatCompletionResponse, AsyncIterator[ChatCompletionChunk]]:
        """``Llama.create_chat_completion``, batched with the other callers (templates,
        chat formats, tools and ``tool_choice``, ``response_format``, log-probabilities;
        streamed deltas carry the same content as the synchronous ones)."""
        tools, tool_choice = _dropin.legacy_tools(functions, function_call, tools, tool_choice)
        if self._llama.chat_handler is not None:
            raise LlamaError("a chat_handler answers Llama.create_chat_completion only; AsyncLlama renders "
                             "chats with chat_format or the model's template")
        self.engine.require_decoder()
        prepare = partial(chat_prompt, self._llama.chat_setup, self.engine, messages, self._llama.media, n=n,
                          tools=tools, tool_choice=tool_choice, response_format=response_format,
                          grammar=grammar, stop=stop, escape_special_tokens=escape_special_tokens)
        # images are decoded and preprocessed off the event loop (the other callers' tokens flow)
        chat, media = await asyncio.to_thread(prepare) if has_images(messages) else prepare()
        result = await self.acreate_completion(
            media or chat.tokens, max_tokens=max_tokens, temperature=temperature, top_p=top_p, min_p=min_p,
            typical_p=typical_p, logprobs=(top_logprobs or 0) if logprobs else None, stop=chat.stop,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            repeat_penalty=repeat_penalty, top_k=top_k, stream=stream, seed=seed, mirostat_mode=mirostat_mode,
            mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, model=model, grammar=chat.grammar,
            logit_bias=logit_bias, n=n, stream_options=stream_options, ignore_eos=ignore_eos,
            cache_prompt=cache_prompt)
        if stream:
            return shapes.achat_chunks(result, chat.parser)  # type: ignore[arg-type]
        answer = shapes.chat_completion(result, chat.parser)  # type: ignore[arg-type]
        return answer if functions is None else _dropin.with_function_call(answer)

    # --- embeddings and tokens ---------------------------------------------------------------

    async def aembed(self, input: Union[str, Sequence[str]], normalize: bool = True, truncate: bool = False,
                     return_count: bool = False, *, numpy: bool = False) -> Any:
        """``Llama.embed``, run by the worker between batches."""
        vectors, counts = await self._embed([input] if isinstance(input, str) else list(input),
                                            normalize, truncate)
        result: Any = vectors if numpy else [v.tolist() for v in vectors]
        if isinstance(input, str):
            result = result[0]
        return (result, sum(counts)) if return_count else result

    async def acreate_embedding(self, input: Union[str, Sequence[str]],
                                model: str | None = None) -> CreateEmbeddingResponse:
        """``Llama.create_embedding``: OpenAI's embeddings response (normalized vectors)."""
        vectors, counts = await self._embed([input] if isinstance(input, str) else list(input), True, False)
        return shapes.embeddings(model or self.model_path, vectors, sum(counts))

    async def _embed(self, texts: list[Any], normalize: bool,
                     truncate: bool) -> tuple[list[npt.NDArray[np.float32]], list[int]]:
        job = _Embed(texts, normalize, truncate, asyncio.get_running_loop())
        with self._count_lock:
            if self._closed:
                raise ClosedError(_CLOSED)
            self._commands.put(("embed", job))
        return await job.future

    async def atokenize(self, text: Union[str, bytes], add_bos: bool = True,
                        special: bool = False) -> list[int]:
        """``Llama.tokenize``, off the event loop's thread."""
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.engine.tokenize(text, add_special=add_bos, parse_special=special))

    async def adetokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        """``Llama.detokenize``, off the event loop's thread."""
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.engine.detokenize(tokens, special=special))


class _Choice:
    """One choice's text on the loop's side: tokens -> chunks with their log-probabilities."""

    __slots__ = ("lp", "over", "plain", "skip", "text", "ticket")

    def __init__(self, ticket: _Ticket, text: TextAssembler, is_eog: Callable[[int], bool]) -> None:
        self.ticket = ticket
        self.text = text
        self.over = False
        self.skip = is_eog if ticket.request.ignore_eos else None  # tokens that add nothing
        self.lp: list[TokenLogprob] | None = [] if ticket.request.logprobs is not None else None
        self.plain = self.lp is None and self.skip is None  # no log-probabilities, no skipped tokens

    def feed(self, tok: int) -> TextChunk | None:
        lp = self.lp
        if lp is not None:
            lp.append(self.ticket.request.token_logprobs.popleft())
        if self.skip is not None and self.skip(tok):
            if lp is not None:
                lp.pop()
            return None
        text = self.text
        chunk = text.feed(tok)
        if text.finish_reason is not None:  # a stop string or EOG: this choice is over
            self.over = True
            if chunk is None:
                chunk = text.end("stop")
        return chunk if lp is None else self._with_logprobs(chunk)

    def end(self) -> TextChunk:
        self.over = True
        reason = self.ticket.request.finish_reason
        return self._with_logprobs(self.text.end("stop" if reason == "stop" else "length"))  # type: ignore[return-value]

    def _with_logprobs(self, chunk: TextChunk | None) -> TextChunk | None:
        if chunk is not None and self.lp is not None:
            chunk.logprobs, self.lp = self.lp[: len(chunk.tokens)], self.lp[len(chunk.tokens):]
        return chunk


def _dispatch(items: list[tuple[_Ticket, Any]]) -> None:
    """On the loop's thread: put each token (None: the end) into its call's queue."""
    for t, tok in items:
        t.queue.put_nowait((t, _DONE if tok is None else tok))


def _resolve(job: _Embed, result: Any) -> None:
    """Hand an embedding job's result (or exception) to its loop."""
    def settle() -> None:
        if job.future.done():  # the caller was cancelled
            return
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # that loop is closed
        pass
