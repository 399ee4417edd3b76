"""An asyncio API over one continuous-batching engine: many concurrent callers, one model.

    allm = AsyncLlama("model.gguf", n_seq_max=16)
    r = await allm.acreate_completion("Once upon a time", max_tokens=32)
    async for chunk in await allm.acreate_completion("Hi", stream=True): ...

One worker thread owns the :class:`~llama_binding.generation.batching.BatchEngine` and its
context and steps it while any request is active; it hands each step's tokens to the event
loop in one ``call_soon_threadsafe`` call, so a step of 64 sequences costs one wake-up, and
the detokenizing and stop-string matching of the previous step run on the loop's thread
while the next decode runs (the decode releases the GIL). A caller that stops reading, is
cancelled or hits a stop string cancels its request; the others go on. More requests than
``max_waiting`` beyond the slots raise :class:`~llama_binding.errors.QueueFullError`.

:meth:`AsyncLlama.close` (from any thread, or from the event loop) ends every request in
flight with :class:`~llama_binding.errors.ClosedError`: an awaiting caller's ``await``
raises it, a stream raises it at its next chunk, and later calls raise it at once. Several
event loops (threads each running ``asyncio.run``) may share one AsyncLlama: each request's
tokens go to the loop that made it.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from .errors import ClosedError, ContextOverflowError, DecodeAbortedError, QueueFullError
from .generation.batching import BatchEngine, BatchRequest
from .generation.sampling import build_chain, is_plain_greedy
from .generation.stopping import StopMatcher
from .generation.stream import FinishReason, TextAssembler, TextChunk
from .llama import Llama
from .llama_types import CompletionChunk, CreateCompletionResponse

__all__ = ["AsyncLlama"]

_DONE = object()
_CLOSED = "this AsyncLlama is closed"
_CLOSED_DURING = "this AsyncLlama was closed while the request was in flight"


@dataclass(eq=False)
class _Ticket:
    """The loop-side half of a request: where its tokens arrive."""

    request: BatchRequest
    loop: asyncio.AbstractEventLoop
    tokens: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


class AsyncLlama:
    """A :class:`~llama_binding.Llama` with ``n_seq_max`` sequence slots and a unified KV
    cache, served to concurrent asyncio callers by a continuous-batching engine.

    Keyword arguments go to ``Llama``. Plain greedy requests take the argmax in one native
    call for all sequences; other sampling options build a sampler chain per request.
    ``max_waiting`` bounds the requests waiting for a slot.
    """

    def __init__(self, model_path: Union[str, os.PathLike[str]], *, n_seq_max: int = 16,
                 n_ctx: int | None = None, max_waiting: int = 256, **llama_kwargs: Any) -> None:
        if n_ctx is None:
            n_ctx = 4096 * max(1, n_seq_max // 4)
        self.llama = Llama(model_path, n_seq_max=n_seq_max, kv_unified=True, n_ctx=n_ctx, **llama_kwargs)
        ctx = self.llama._context
        # the bound is enforced when a caller submits (_submit); the engine takes what comes.
        # With the output layer on a GPU (Llama's backend_sampling), greedy runs in the decode
        # and the requests' own chains sample on the CPU's threads (on a CPU backend they are
        # busy with the decode: one thread)
        gpu = self.llama._slot.backend
        self.engine = BatchEngine(ctx, self.llama._vocab, max_waiting=1 << 30,
                                  greedy="backend" if gpu else "host",
                                  host_threads=ctx.n_threads if gpu else 1)
        self.max_waiting = max_waiting
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._outstanding = 0
        self._count_lock = threading.Lock()
        self._tickets: dict[int, _Ticket] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="llama-binding-engine", daemon=True)
        self._thread.start()

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
        self.llama._abort_running()
        self._thread.join()
        self.engine.close()
        self.llama.close()

    async def __aenter__(self) -> AsyncLlama:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # --- the engine thread -------------------------------------------------------------------

    def _work(self) -> None:
        engine = self.engine
        pending: list[tuple[BatchRequest, int]] = []
        while True:
            try:
                cmd = self._commands.get(block=not engine.busy and not pending)
            except queue.Empty:
                cmd = None
            while cmd is not None:
                kind, arg = cmd
                if kind == "stop":  # every caller still waiting gets ClosedError, not a short result
                    self._fail_all(ClosedError(_CLOSED_DURING))
                    return
                if kind == "submit":
                    self._tickets[arg.request.id] = arg
                    try:
                        engine.submit(arg.request)
                    except Exception as exc:  # refused (too long, ...): that caller gets the error
                        arg.request.phase = "done"
                        self._deliver({arg.loop: [(arg, exc), (arg, None)]})
                elif kind == "cancel" and arg.id in self._tickets:
                    engine.cancel(arg)
                try:
                    cmd = self._commands.get_nowait()
                except queue.Empty:
                    cmd = None
            # the last decode's tokens go to their callers after the next batch is built,
            # right before it is decoded: the loop's thread handles them while the decode
            # runs without the GIL, and this thread does not wait for the GIL behind them
            try:
                more = engine.prepare()
            except BaseException as exc:
                self._fail_all(exc)
                continue
            self._deliver(self._events(pending))
            pending = []
            if not more:
                continue
            try:
                engine.decode()
                pending = engine.collect()
            except BaseException as exc:  # a failed decode ends every active request with it
                self._fail_all(exc)

    def _events(self, pending: list[tuple[BatchRequest, int]]) -> dict[asyncio.AbstractEventLoop,
                                                                        list[tuple[_Ticket, Any]]]:
        """The tokens of the last step and the requests that ended, grouped by event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Ticket, Any]]] = {}
        for r, tok in pending:
            ticket = self._tickets.get(r.id)
            if ticket is not None:
                by_loop.setdefault(ticket.loop, []).append((ticket, tok))
        for t in [t for t in self._tickets.values() if t.request.done]:
            if t.request.error is not None:  # the engine ended it (its sampler failed)
                by_loop.setdefault(t.loop, []).append((t, t.request.error))
            by_loop.setdefault(t.loop, []).append((t, None))
        return by_loop

    def _deliver(self, by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Ticket, Any]]]) -> None:
        for loop, items in by_loop.items():
            for t, tok in items:
                if tok is None:
                    self._tickets.pop(t.request.id, None)
                    if t.request.chain is not None:
                        t.request.chain.close()
                    with self._count_lock:
                        self._outstanding -= 1
            try:
                loop.call_soon_threadsafe(_dispatch, items)
            except RuntimeError:  # that loop is closed: nobody is listening
                pass

    def _fail_all(self, exc: BaseException) -> None:
        if self._closed and isinstance(exc, DecodeAbortedError):  # close() aborted the decode
            exc = ClosedError(_CLOSED_DURING)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Ticket, Any]]] = {}
        for t in list(self._tickets.values()):
            self.engine.cancel(t.request)
            by_loop.setdefault(t.loop, []).append((t, exc))
            by_loop[t.loop].append((t, None))
        self._deliver(by_loop)

    # --- the caller's side -------------------------------------------------------------------

    def _submit(self, tokens: list[int], max_tokens: int | None, sampling: Any, ignore_eos: bool) -> _Ticket:
        if self._closed:
            raise ClosedError(_CLOSED)
        n_ctx_seq = self.engine.ctx.n_ctx_seq
        if len(tokens) > n_ctx_seq:
            raise ContextOverflowError(
                f"the prompt has {len(tokens)} tokens but the context holds {n_ctx_seq}")
        loop = asyncio.get_running_loop()
        vocab = self.llama._vocab
        chain = (None if is_plain_greedy(sampling, vocab.n_tokens)
                 else build_chain(sampling, vocab, self.engine.ctx.n_ctx))
        ticket = _Ticket(BatchRequest(tokens, max_tokens, chain, ignore_eos=ignore_eos), loop)
        refused: Exception | None = None
        with self._count_lock:  # the check and the put are one step: close() cannot come between
            if self._closed:
                refused = ClosedError(_CLOSED)
            elif self._outstanding >= self.engine.n_slots + self.max_waiting:
                refused = QueueFullError(
                    f"{self._outstanding} requests are in flight ({self.engine.n_slots} slots + "
                    f"max_waiting={self.max_waiting}): retry later")
            else:
                self._outstanding += 1
                self._commands.put(("submit", ticket))
        if refused is not None:
            if chain is not None:
                chain.close()
            raise refused
        return ticket

    async def acreate_completion(
        self,
        prompt: Union[str, Sequence[int]],
        max_tokens: int | None = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        top_k: int = 40,
        repeat_penalty: float = 1.0,
        stop: Union[str, Sequence[str], None] = None,
        seed: int | None = None,
        stream: bool = False,
        model: str | None = None,
        ignore_eos: bool = False,
    ) -> Union[CreateCompletionResponse, AsyncIterator[CompletionChunk]]:
        """An OpenAI completion computed with the other callers' sequences in the same
        decodes; ``stream=True`` returns an async iterator of chunks. ``ignore_eos`` goes on
        past end-of-generation tokens (they add no text), as llama.cpp's server allows."""
        llm = self.llama
        llm._generating()  # an embedding model cannot complete (UnsupportedModelError)
        tokens = llm._prompt_tokens(prompt)
        sampling = llm._sampling(dict(temperature=temperature, top_p=top_p, min_p=min_p, top_k=top_k,
                                      repeat_penalty=repeat_penalty, seed=seed))
        limit = None if max_tokens is None or max_tokens <= 0 else int(max_tokens)
        ticket = self._submit(tokens, limit, sampling, ignore_eos)
        cid, created, name = f"cmpl-{uuid.uuid4()}", int(time.time()), model or llm.model_path
        chunks = self._chunks(ticket, StopMatcher(stop))
        if stream:
            return _stream_dicts(chunks, cid, created, name)
        texts: list[str] = []
        n = 0
        reason: FinishReason = "length"
        async for chunk in chunks:
            texts.append(chunk.text)
            n += len(chunk.tokens)
            reason = chunk.finish_reason or reason
        response: CreateCompletionResponse = {
            "id": cid, "object": "text_completion", "created": created, "model": name,
            "choices": [{"text": "".join(texts), "index": 0, "logprobs": None, "finish_reason": reason}],
            "usage": {"prompt_tokens": len(tokens), "completion_tokens": n, "total_tokens": len(tokens) + n}}
        return response

    async def _chunks(self, ticket: _Ticket, stop: StopMatcher) -> AsyncIterator[TextChunk]:
        text = TextAssembler(self.llama._vocab, stop)
        is_eog = self.llama._vocab.is_eog
        finished = False
        try:
            while True:
                tok = await ticket.tokens.get()
                if tok is _DONE:
                    finished = True
                    reason = ticket.request.finish_reason
                    yield text.end("stop" if reason == "stop" else "length")
                    return
                if isinstance(tok, BaseException):
                    raise tok
                if ticket.request.ignore_eos and is_eog(tok):
                    continue
                chunk = text.feed(tok)
                if chunk is not None:
                    yield chunk
                if text.finish_reason is not None:  # a stop string (or EOG): this request is over
                    if chunk is None:
                        yield text.end("stop")
                    return
        finally:
            if not finished and not self._closed:
                self._commands.put(("cancel", ticket.request))


def _dispatch(items: list[tuple[_Ticket, Any]]) -> None:
    """On the loop's thread: put each token (None: the end) into its request's queue."""
    for t, tok in items:
        t.tokens.put_nowait(_DONE if tok is None else tok)


async def _stream_dicts(chunks: AsyncIterator[TextChunk], cid: str, created: int,
                        name: str) -> AsyncIterator[CompletionChunk]:
    try:
        async for chunk in chunks:
            if not chunk.text and chunk.finish_reason is None:
                continue
            yield {"id": cid, "object": "text_completion", "created": created, "model": name,
                   "choices": [{"text": chunk.text, "index": 0, "logprobs": None,
                                "finish_reason": chunk.finish_reason}]}
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
