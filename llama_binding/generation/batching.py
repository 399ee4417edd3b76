"""Many sequences in one context: a continuous-batching scheduler.

:class:`BatchEngine` owns the ``n_seq_max`` sequence slots of one context. Each
:meth:`~BatchEngine.step` builds one ``llama_batch`` holding the next token of every running
sequence plus chunks of waiting prompts (chunked prefill up to the batch's capacity),
decodes once, samples every sequence that has an output row with its own sampler (or the
argmax for plain greedy), frees the KV memory of finished sequences and admits waiting
requests into the free slots. It is synchronous and single-threaded: an asyncio front end
drives it from one worker thread.

Plain greedy takes the argmax either on the host (``greedy="host"``: one native call for
every row, split between threads when the rows are many and long) or in the decode
(``greedy="backend"``, for a GPU): each free slot keeps a sampler of one
:class:`~llama_binding.core.sampler.GreedyGroup` attached, whose samplers share a single
argmax over every output row, so a decode brings back one token per sequence and no
logits. On an H200 at 64 sequences of a 128k vocabulary that is 8.7-9.0 ms a step against
11.5 ms with the host argmax (which reads 32 MB of fresh logits) and 12.4 ms with
llama.cpp's own greedy sampler (a node and two copies per row). A request with its own
sampler chain samples on the host from its logits: its slot's backend sampler is detached
while it runs (a per-request chain on the backend would rebuild the graph at each admit)
and stays detached after it, for the next such request (a free slot is picked by its
sampler's state, so a steady mix of requests attaches and detaches nothing). All such rows
of a step are sampled in one native call, split between ``host_threads`` threads (on the
H200 at 64 sampled sequences: 3.1 ms a step instead of 19.0 ms on one); a chain that
starts with top-k takes its k candidates straight from the logits (``sample_rows``'s
``top_k``: about an argmax's cost, against sorting a candidate per vocabulary entry).

With a unified KV cache (``kv_unified=True``) a sequence may use any free cell of the
context and requests share prompt prefixes (a partial ``seq_cp``, which llama.cpp allows
only there), but each decode masks every sequence against every used cell. Without it each
sequence has ``n_ctx / n_seq_max`` cells of its own (a stream), attended and masked alone;
llama.cpp then splits a batch into ubatches of consecutive sequence ids, so the batch is
built in ascending order and requests take the lowest free slots.

A finished request's tokens stay in its slot's KV memory (its prompt and its decoded
output): a later request whose prompt begins with at least :attr:`BatchEngine.REUSE_MIN`
of them takes that slot and evaluates only the rest (a chat's next turn, as llama-server's
``cache_prompt``). With a unified cache every decode attends over every used cell, so idle
tokens are kept only while few requests are in flight (fewer than
:attr:`BatchEngine.BUSY`), dropped when more arrive, and dropped the least recently used
slot's first when the active requests need their cells.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..core import _native
from ..core.batch import Batch
from ..core.context import Context, rows_failure
from ..core.sampler import GreedyGroup, SamplerChain, TopKGroup, sample_failure
from ..core.vocab import Vocab
from ..errors import ContextOverflowError, QueueFullError, SamplerError
from .drafters import Drafter, request_draft
from .logprobs import TokenLogprob, log_softmax_at
from .media import MediaPrompt, feed_runs, media_end
from .pick_launch import Picked, PickLaunch
from .steps import SequenceState, common_prefix

__all__ = ["BatchEngine", "BatchRequest", "Greedy"]

Phase = Literal["waiting", "prefill", "running", "done"]
Greedy = Literal["host", "backend"]
SlotSampler = Literal["greedy", "topk", None]  # the backend sampler a slot has attached


@dataclass(eq=False)
class BatchRequest:
    """One generation: a prompt, a token limit, a sampler (None: plain greedy)."""

    prompt: list[int]
    max_tokens: int | None = None
    chain: SamplerChain | None = None
    on_token: Callable[[BatchRequest, int], None] | None = None
    """Called with each sampled token (inside :meth:`BatchEngine.step`)."""
    ignore_eos: bool = False
    """Go on after an end-of-generation token (benchmarks; llama.cpp server's option)."""
    logprobs: int | None = None
    """Record each sampled token's log-probability and its ``logprobs`` best alternatives in
    :attr:`token_logprobs` (the request needs its own ``chain``: the logits are read on the host)."""
    token_logprobs: deque[TokenLogprob] = field(default_factory=deque)
    drafter: Drafter | None = None
    """Proposes tokens that the next decode checks along with the sampled one (speculative
    decoding, for plain greedy requests: a draft is kept up to its first token that differs
    from the argmax, so the output is the same as without it)."""
    media: MediaPrompt | None = None
    """A prompt with images (``generation.media``): ``prompt`` is then ``media.tokens``. Its
    runs up to the last image are evaluated when the request gets its slot, the text after
    them as any prompt. The caller keeps it open until the request is done."""
    cache_prompt: bool = True
    """Continue from a free slot whose memory holds a prefix of the prompt (llama-server's
    ``cache_prompt``); False evaluates the whole prompt."""
    id: int = field(default_factory=itertools.count().__next__)
    phase: Phase = "waiting"
    seq_id: int = -1
    output: list[int] = field(default_factory=list)
    finish_reason: Literal["stop", "length", "cancelled"] | None = None
    error: Exception | None = None
    """Why a request was cancelled by the engine (its sampler chain selected nothing)."""
    submitted_at: float = field(default_factory=time.perf_counter)
    admitted_at: float = 0.0
    """When the request got a slot (perf_counter; 0 while it waits)."""
    _fed: int = 0  # prompt tokens in KV memory
    _leader: BatchRequest | None = None  # a request whose prompt prefix this one will copy
    _shared: int = 0  # how many of its prompt tokens
    _pending: int = -1  # sampled, not yet decoded
    _row: int = -1  # the batch index of this step's output
    _draft: list[int] = field(default_factory=list)  # this step's drafted tokens, after _pending
    _accepted: list[int] = field(default_factory=list)  # the argmax tokens after _pending, verified

    @property
    def done(self) -> bool:
        return self.phase == "done"


class BatchEngine:
    """Continuous batching over the sequences of ``ctx`` (see the module docstring).

    ``max_waiting`` bounds the queue of requests not yet admitted (:class:`QueueFullError`).
    With a unified KV cache, a request whose prompt starts with at least ``min_shared``
    tokens of an active request's prompt copies them (``llama_memory_seq_cp``) instead of
    evaluating them again, waiting for them if that prompt is still being evaluated.
    """

    def __init__(self, ctx: Context, vocab: Vocab, *, max_waiting: int = 1024, min_shared: int = 16,
                 greedy: Greedy = "host", host_threads: int = 1) -> None:
        """``greedy``: how plain greedy picks (module docstring); a backend that cannot run
        the sampler leaves ``self.greedy`` at "host". ``host_threads``: threads for the
        host's work on many rows (the argmax, the requests' own sampler chains). Call
        :meth:`close` to detach the slots' samplers when the context outlives the engine."""
        self.ctx = ctx
        self.vocab = vocab
        self.n_slots = ctx.n_seq_max
        self.batch = Batch(max(ctx.n_batch, self.n_slots), 1)
        self.max_waiting = max_waiting
        # a partial seq_cp needs the unified cache (llama.cpp aborts the process otherwise);
        # with a cache per sequence (a stream each), a ubatch holds only consecutive sequence
        # ids in ascending order: the batch is built in that order, on the lowest free slots
        self._split = not ctx.params.kv_unified
        self.min_shared = 0 if self._split else min_shared
        self.shared_tokens = 0  # prompt tokens copied instead of evaluated, in all
        #: seconds spent in prepare / decode / collect, summed (a diagnostic for benchmarks)
        #: and "gil": from the device's finishing a decode until this thread holds the GIL again
        self.timings = {"prepare": 0.0, "decode": 0.0, "collect": 0.0, "gil": 0.0}
        #: a list to append (running rows, prompt tokens, seconds) to for every decode, or None
        self.step_log: list[tuple[int, int, float]] | None = None
        self._shape = (0, 0)
        self._free = list(range(self.n_slots - 1, -1, -1))
        #: the tokens held in each free slot's KV memory, from its last request (reuse)
        self._cached: list[list[int]] = [[] for _ in range(self.n_slots)]
        self.reused_tokens = 0  # prompt tokens found in a slot's memory instead of evaluated
        self._waiting: deque[BatchRequest] = deque()
        self._active: list[BatchRequest] = []
        #: queue a busy steady step's decode as soon as its tokens are picked, before their
        #: per-request bookkeeping (:meth:`collect`): for an asynchronous backend (a GPU),
        #: where the bookkeeping then runs while the device computes
        self.pipeline = False
        self._launched = False  # the prepared batch's decode is queued (by collect)
        self.pipelined_steps = 0  # decodes queued so, in all
        #: with :attr:`pipeline`: a queued decode's wait, the picks and the next decode's
        #: queuing in one native call without the GIL (generation/pick_launch.py)
        self.fuse = True
        self._fused: Picked | None = None  # that call's picks, for collect
        self.pick_launch = PickLaunch(self.batch.capacity)  # (its knock: a submit on its way)
        #: True while requests may be on their way to :meth:`submit` (a driver's queue not yet
        #: read): a step then does not queue its decode, so they join the next batch
        self.arrivals: Callable[[], bool] | None = None
        self._launch_s = 0.0  # this collect's time queuing the next decode (the decode's, not collect's)
        self.steps = 0
        #: counters for metrics: prompt tokens evaluated (copied prefixes excluded), tokens
        #: sampled, sequences with an output summed over decodes, tokens held in KV memory now
        self.prompt_tokens = self.generated_tokens = self.busy_slot_steps = self.kv_tokens = 0
        self.drafted_tokens = self.accepted_tokens = 0  # speculative decoding's, in all
        self._can_draft = ctx.model.can_rewind
        self._n_ctx_seq = ctx.n_ctx_seq
        cap = self.batch.capacity
        self._rows, self._picked, self._top_k = (np.zeros(cap, dtype=np.int32) for _ in range(3))
        self.host_threads = host_threads
        # greedy on the backend: every slot starts with a greedy chain attached, so that the
        # decode brings back tokens, not logits, and the graph stays the same step to step
        self.greedy: Greedy = greedy
        self._slot_chain: list[SamplerChain | None] = [None] * self.n_slots
        self._slot_kind: list[SlotSampler] = [None] * self.n_slots
        #: backend samplers attached or detached (each makes llama.cpp rebuild its graphs)
        self.sampler_swaps = 0
        self._group = GreedyGroup() if greedy == "backend" else None
        self._topk = TopKGroup() if greedy == "backend" else None
        if greedy != "host" and not all(self._attach(s, "greedy") for s in range(self.n_slots)):
            self.close()
            self.greedy = "host"

    #: with fewer requests in flight than this, a request whose slot's backend sampler is
    #: not the one it wants samples on the host instead (the host does every kind: the
    #: argmax, a leading top-k straight from the logits), and a slot that must change
    #: anyway is detached: a chat's turns with changing options then rebuild llama.cpp's
    #: graphs at most once, not every turn (measured on an H200, one slot: time to first
    #: token 21.9 ms against llama-server's 8.1 ms with a swap each turn). For a few rows,
    #: copying the logits costs little; the backend's samplers pay at many streams.
    BUSY = 4
    #: the fewest rows a pipelined decode (:attr:`pipeline`) carries: with fewer, queuing it
    #: before the tokens are handed on would delay them more than it saves
    PIPELINE_MIN = 8
    #: the shortest prefix of a free slot's memory that a new request takes over
    REUSE_MIN = 8

    def _attach(self, seq_id: int, kind: SlotSampler) -> bool:
        """Attach a sampler of the greedy or the top-k group to a slot, instead of what it had."""
        self._detach(seq_id)
        group = self._group if kind == "greedy" else self._topk
        assert group is not None
        chain = SamplerChain([group.sampler()])
        if not self.ctx.attach_sampler(seq_id, chain):
            chain.close()
            return False
        self._slot_chain[seq_id], self._slot_kind[seq_id] = chain, kind
        self.sampler_swaps += 1
        return True

    def _detach(self, seq_id: int) -> None:
        chain, self._slot_chain[seq_id], self._slot_kind[seq_id] = self._slot_chain[seq_id], None, None
        if chain is not None:
            chain.close()  # detaches it first
            self.sampler_swaps += 1

    def _wanted(self, r: BatchRequest) -> SlotSampler:
        """The backend sampler ``r``'s slot should have: the greedy group's for plain greedy,
        the top-k group's for a chain that begins with a top-k of at most its k and wants
        no logprobs (the chain then runs over each row's candidates), else none (the chain
        runs over the row's logits)."""
        if self.greedy == "host":
            return None
        if r.chain is None:
            return "greedy"
        topk = self._topk
        if topk is not None and r.logprobs is None and 0 < r.chain.leading_top_k <= topk.k:
            return "topk"
        return None

    def close(self) -> None:
        """Detach the slots' backend samplers (the context stays open; greedy goes on, on
        the host, if the engine is used again)."""
        self.drain()
        for seq_id in range(self.n_slots):
            self._detach(seq_id)
        self.drop_cached()
        for group in (self._group, self._topk):
            if group is not None:
                group.close()
        self.greedy = "host"

    # --- requests ----------------------------------------------------------------------------

    def submit(self, request: BatchRequest) -> BatchRequest:
        if request.logprobs is not None and request.chain is None:
            raise ValueError("a request with logprobs needs its own sampler chain "
                             "(the logits are read on the host)")
        if not request.prompt:
            raise ValueError("the prompt is empty: give at least one token (for example BOS)")
        limit = self.ctx.n_ctx_seq
        if len(request.prompt) > limit:
            raise ContextOverflowError(
                f"the prompt has {len(request.prompt)} tokens but the context holds {limit} per sequence")
        if len(self._waiting) >= self.max_waiting:
            raise QueueFullError(
                f"{len(self._waiting)} requests are waiting (max_waiting={self.max_waiting}): retry later")
        self._waiting.append(request)
        return request

    def cancel(self, request: BatchRequest) -> None:
        """Stop ``request`` now: its slot and KV memory are freed; the others go on."""
        if request.done:
            return
        if request.phase == "waiting":
            self._waiting.remove(request)
            request.phase, request.finish_reason = "done", "cancelled"
            return
        self._finish(request, "cancelled")

    def cancel_all(self) -> None:
        """Cancel every request, waiting or active."""
        for r in [*self._active, *self._waiting]:
            self.cancel(r)

    @property
    def busy(self) -> bool:
        return bool(self._active or self._waiting or self._launched)

    @property
    def n_waiting(self) -> int:
        return len(self._waiting)

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Step until every submitted request is done."""
        while self.busy:
            self.step()

    def step(self) -> list[tuple[BatchRequest, int]]:
        """One decode for every active sequence; returns the (request, token) pairs sampled."""
        if not self.prepare():
            return []
        self.decode()
        return self.collect()

    # step() in three parts, so that a driver can hand the last tokens on between building
    # a batch and decoding it (the decode releases the GIL: the tokens' consumers run then)

    def prepare(self) -> bool:
        """Admit waiting requests and build the next batch; False when there is nothing to do."""
        if self._launched:  # collect built this step's batch and queued its decode
            return True
        t0 = time.perf_counter()
        try:
            return self._prepare()
        finally:
            self.timings["prepare"] += time.perf_counter() - t0

    def _prepare(self) -> bool:
        self._admit()
        if not self._active:
            return False
        self._copy_shared_prefixes()
        batch = self.batch
        batch.clear()
        # one token for each running sequence, then prompt chunks in the room left: the whole
        # batch. Capping a step at the running rows' micro-batch (a chunked-prefill token
        # budget) took 64 closed-loop streams on an H100 from 6,536 to 5,604 t/s: prompts fed
        # at once keep requests in step, in waves that start and end together, with fuller
        # and cheaper decodes between them (60 rows in 6.92 ms against 56 in 7.41; p16/gpu-10)
        work: list[tuple[BatchRequest, int]] = [(r, 0) for r in self._active if r.phase == "running"]
        room = batch.capacity - len(work)
        for r, _ in work:
            if r.drafter is not None and r.chain is None and room > 0 and self._can_draft:
                bound = self.ctx.n_outputs_per_seq if self._slot_chain[r.seq_id] is not None else 0
                r._draft = request_draft(r, room, self._n_ctx_seq, bound)  # (a backend sampler: bound)
                room -= len(r._draft)
        for r in self._active:
            if r.phase != "prefill" or room <= 0 or r._leader is not None:
                continue
            n = min(room, len(r.prompt) - r._fed)
            work.append((r, n))
            room -= n
        self._shape = (sum(not n for _, n in work), sum(n for _, n in work))
        if self._split:  # llama.cpp puts consecutive sequence ids, in order, in one ubatch
            work.sort(key=lambda item: item[0].seq_id)
        for r, n in work:
            if not n:
                pos = len(r.prompt) + len(r.output) - 1
                r._row = batch.add(r._pending, pos, (r.seq_id,), True)
                for i, tok in enumerate(r._draft, 1):  # each with its output: the verify
                    batch.add(tok, pos + i, (r.seq_id,), True)
                continue
            last = r._fed + n == len(r.prompt)
            batch.add_sequence(r.prompt[r._fed : r._fed + n], r._fed, r.seq_id, logits_last=last)
            r._fed += n
            self.prompt_tokens += n
            if last:  # its logits are the batch's last token's (llama_get_logits_ith takes batch indices)
                r._row = batch.n_tokens - 1
                r.phase = "running"
        self._make_room()
        return True

    def decode(self, meanwhile: Callable[[], None] | None = None) -> None:
        """Decode the prepared batch (on a failure every active request is cancelled).

        ``meanwhile`` runs between queuing the decode and waiting for it: on an asynchronous
        backend (a GPU) while the device computes. An asynchronous backend finishes here,
        not in :meth:`collect`; the time in ``meanwhile`` is not the decode's. With :attr:`fuse`
        a queued decode is waited for by the native call that picks and queues the next."""
        t0, spent, shape = time.perf_counter(), 0.0, self._shape
        launched, self._launched = self._launched, False
        fused: Picked | None = None
        try:
            if meanwhile is None and not launched:
                self.ctx.decode_sync(self.batch)
            else:
                if not launched:
                    self.ctx.decode_launch(self.batch)
                t1, ran = time.perf_counter(), False
                try:
                    if meanwhile is not None:
                        meanwhile()
                    ran = True
                finally:
                    spent = time.perf_counter() - t1
                    fused = self._pick_and_launch() if ran and launched else None
                    if fused is None:
                        done = self.ctx.synchronize()
                        self.timings["gil"] += max(0.0, _native.now() - done)
        except BaseException:
            for r in list(self._active):
                r._row = -1
                self._finish(r, "cancelled", keep=False)
            self.drop_cached()  # what the failed decode left in memory is not known
            raise
        finally:
            dt = time.perf_counter() - t0 - spent
            if fused is not None:  # its picks are collect's ("gil": of the decode's, in both ways)
                dt -= fused.picked_s
                self.timings["collect"] += fused.picked_s
                self.timings["gil"] += fused.gil_s
            self.timings["decode"] += dt
        if self.step_log is not None:
            self.step_log.append((*shape, fused.waited_s if fused is not None else dt))
        self.steps += 1

    def _pick_and_launch(self) -> Picked | None:
        """With :attr:`fuse`, in a busy steady step (:meth:`_steady`): wait for the queued
        decode, pick and queue the next in one native call; None when not such a step."""
        ready = [r for r in self._active if r._row >= 0]
        if not self.fuse or not self._steady(ready):
            return None
        self._make_room()
        picked = self.pick_launch.run(self.ctx, self.vocab, self.batch, ready, [r._row for r in ready],
                                      self._slot_kind, split=self._split, min_go=self.PIPELINE_MIN,
                                      n_threads=self.host_threads)
        for r, tok in zip(ready, picked.tokens, strict=True):
            r._pending = tok
        self._fused, self._launched = picked, picked.launched
        if picked.launched:
            self._shape, self.pipelined_steps = (picked.n_go, 0), self.pipelined_steps + 1
        return picked

    def collect(self) -> list[tuple[BatchRequest, int]]:
        """Sample every sequence with an output in the last decode; finish what is done.

        With :attr:`pipeline`, a busy steady step (at least :attr:`PIPELINE_MIN` rows, every
        active request running, none waiting, no drafts, logprobs or images) queues the
        next decode right after sampling, with the tokens that do not end their request,
        and only then hands the tokens on and finishes what is done, while the device
        computes; the next :meth:`prepare` then has nothing to do."""
        t0 = time.perf_counter()
        self._launch_s = 0.0
        try:
            out = self._collect()
            self.generated_tokens += len(out)
            self.kv_tokens = sum(r._fed + len(r.output) for r in self._active)
            return out
        finally:
            self.timings["collect"] += time.perf_counter() - t0 - self._launch_s
            self.timings["decode"] += self._launch_s

    def _collect(self) -> list[tuple[BatchRequest, int]]:
        fused, self._fused = self._fused, None
        if fused is not None:
            return self._collect_picked(fused)
        ready = [r for r in self._active if r._row >= 0]
        chained = [(r, r.chain) for r in ready if r.chain is not None]
        if chained:  # each with its own chain, on the host's threads, in one native call
            k = len(chained)
            rows, picked, top_k = self._rows[:k], self._picked[:k], self._top_k[:k]
            rows[:] = [r._row for r, _ in chained]
            top_k[:] = [c.leading_cut if r.output else c.first_cut for r, c in chained]
            try:
                self.ctx.sample_rows(self.vocab, [c.address for _, c in chained], rows, picked,
                                     self.host_threads, top_k)
            except SamplerError:  # a chain selected nothing (-1): that request ends below
                pass
            for (r, _), tok in zip(chained, picked.tolist()):
                r._pending = tok
        greedy = [r for r in ready if r.chain is None]
        if greedy:  # plain greedy: one native call for all of them
            kinds = self._slot_kind
            on_host = [r for r in greedy if kinds[r.seq_id] != "greedy"]
            if len(on_host) < len(greedy):
                self._pick([r for r in greedy if kinds[r.seq_id] == "greedy"], backend=True)
            if on_host:
                self._pick(on_host, backend=False)
        self.busy_slot_steps += len(ready)
        out: list[tuple[BatchRequest, int]] = []
        going = self._going_on(ready)
        queued: list[BatchRequest] = []
        if going:  # the requests this token ends first, so their cells are free as in _prepare
            on = set(going)
            self._settle([r for r in ready if r not in on], out)
            queued = self._launch(going)
            ready = [r for r in ready if r in on]
        self._settle(ready, out)
        for row, r in enumerate(queued):
            if not r.done:  # (an on_token callback may have cancelled it)
                r._row = row
        return out

    def _collect_picked(self, picked: Picked) -> list[tuple[BatchRequest, int]]:
        """:meth:`_collect` after :meth:`_pick_and_launch` (the tokens picked, the next decode
        queued with the requests whose ``next_rows`` are set): the ending ones first."""
        if picked.pick_code:
            raise rows_failure(picked.pick_code, "pick_launch")
        self.busy_slot_steps += len(picked.ready)
        out: list[tuple[BatchRequest, int]] = []
        pairs = list(zip(picked.ready, picked.next_rows, strict=True))
        for going in (False, True):
            self._settle([r for r, row in pairs if (row >= 0) == going], out)
        for r, row in pairs:
            if row >= 0 and not r.done:  # (an on_token callback may have cancelled it)
                r._row = row
        return out

    def _settle(self, ready: list[BatchRequest], out: list[tuple[BatchRequest, int]]) -> None:
        """Hand on each request's picked token (and accepted drafts); finish what is done."""
        for r in ready:
            row, r._row = r._row, -1
            tok = r._pending
            if tok < 0:
                r.error = sample_failure(tok)  # selected nothing, or every logit -inf/NaN
                self._finish(r, "cancelled")
                continue
            if r.logprobs is not None:  # appended before the token is handed on
                r.token_logprobs.append(log_softmax_at(self.ctx.logits(row), tok, r.logprobs))
            accepted, r._accepted = r._accepted, []
            for t in [tok, *accepted]:
                if not self._emit(r, t, out):
                    break
            if r._draft:
                self._settle_draft(r, len(accepted))

    def _going_on(self, ready: list[BatchRequest]) -> list[BatchRequest]:
        """With :attr:`pipeline`, in a busy steady step: the requests that the tokens just
        picked do not end, for the next decode to queue now (none: not such a step)."""
        if not self._steady(ready):
            return []
        go: list[BatchRequest] = []
        is_eog, n_ctx = self.vocab.is_eog, self._n_ctx_seq
        for r in ready:
            tok, n = r._pending, len(r.output) + 1
            if tok < 0 or (is_eog(tok) and not r.ignore_eos) or len(r.prompt) + n > n_ctx \
                    or (r.max_tokens is not None and n >= r.max_tokens):
                continue  # this token ends it (as _emit will find)
            go.append(r)
        return go if len(go) >= self.PIPELINE_MIN else []

    def _steady(self, ready: list[BatchRequest]) -> bool:
        """With :attr:`pipeline`, whether ``ready`` (the requests with an output) make a busy
        steady step: at least :attr:`PIPELINE_MIN`, every active request, none waiting or on
        its way, none with a draft, logprobs or images."""
        if not self.pipeline or self._waiting or len(ready) < self.PIPELINE_MIN \
                or len(ready) != len(self._active) or (self.arrivals is not None and self.arrivals()):
            return False
        return not any(r.drafter is not None or r.logprobs is not None or r.media is not None or r._accepted
                       for r in ready)

    def _launch(self, go: list[BatchRequest]) -> list[BatchRequest]:
        """Build the next batch from ``go``'s picked tokens and queue its decode; the
        requests in it, row by row (none when the decode could not be queued: the next
        :meth:`prepare` then builds the batch as usual)."""
        t0 = time.perf_counter()
        if self._split:  # consecutive sequence ids, in order (_prepare)
            go = sorted(go, key=lambda r: r.seq_id)
        positions = [len(r.prompt) + len(r.output) for r in go]
        self.batch.clear()
        self.batch.add_rows([r._pending for r in go], positions, [r.seq_id for r in go])
        self._shape = (len(go), 0)
        self._make_room()
        try:
            self.ctx.decode_launch(self.batch)
        except Exception:  # whatever it placed goes; the usual decode tries again and reports
            for r, pos in zip(go, positions):
                self.ctx.seq_rm(r.seq_id, pos, -1)
            return []
        finally:
            self._launch_s = time.perf_counter() - t0
        self._launched = True
        self.pipelined_steps += 1
        return go

    def drain(self) -> None:
        """Wait for a decode that :meth:`collect` queued and undo it (the next step decodes
        those tokens again): before the context is used otherwise, or closed."""
        if not self._launched:
            return
        self._launched = False
        self.ctx.synchronize()  # (after decode, collect comes first: _fused is always None here)
        for r in self._active:
            if r._row >= 0:
                r._row = -1
                self.ctx.seq_rm(r.seq_id, len(r.prompt) + len(r.output) - 1, -1)

    def _emit(self, r: BatchRequest, tok: int, out: list[tuple[BatchRequest, int]]) -> bool:
        """Hand ``tok`` on as ``r``'s next token; False when that finished ``r``."""
        r.output.append(tok)
        out.append((r, tok))
        if r.on_token is not None:
            r.on_token(r, tok)
        if self.vocab.is_eog(tok) and not r.ignore_eos:
            self._finish(r, "stop")
        elif (r.max_tokens is not None and len(r.output) >= r.max_tokens) \
                or len(r.prompt) + len(r.output) > self._n_ctx_seq:  # no cell for it
            self._finish(r, "length")
        return not r.done

    def _settle_draft(self, r: BatchRequest, n_accepted: int) -> None:
        """After a verify: count it, tell the drafter, make the last token the pending one
        and drop the cells of the drafts after it (from the pending token's position on)."""
        n_drafted, r._draft = len(r._draft), []
        self.drafted_tokens += n_drafted
        self.accepted_tokens += n_accepted
        if r.drafter is not None:
            r.drafter.accepted(n_drafted, n_accepted)
        if not r.done:
            r._pending = r.output[-1]
            self.ctx.seq_rm(r.seq_id, len(r.prompt) + len(r.output) - 1, -1)

    def _pick(self, requests: list[BatchRequest], backend: bool) -> None:
        """Set each request's next token: its slot's backend sampler's, or the argmax; for a
        request with a draft, also the argmax after each draft token that matched."""
        spans = [len(r._draft) + 1 for r in requests]
        k = sum(spans)
        rows, picked = self._rows[:k], self._picked[:k]
        rows[:] = [r._row + i for r, n in zip(requests, spans) for i in range(n)]
        if backend:
            self.ctx.sampled_rows(rows, picked)
        else:
            self.ctx.argmax_rows(self.vocab, rows, picked, self.host_threads)
        tokens, at = picked.tolist(), 0
        for r, n in zip(requests, spans):
            r._pending = tokens[at]
            m = 0  # drafts that are what the model picks there
            while m < n - 1 and r._draft[m] == tokens[at + m]:
                m += 1
            r._accepted = tokens[at + 1 : at + 1 + m]
            at += n

    def _admit(self) -> None:
        while self._waiting and self._free:
            r = self._waiting.popleft()
            want = self._wanted(r)
            quiet = len(self._active) + len(self._waiting) + 1 < self.BUSY
            if not quiet and not self._split:
                self.drop_cached()  # idle cells would widen every busy decode's attention
            slot, reuse = self._cached_slot(r)
            r.seq_id = self._take_slot(want, quiet) if slot < 0 else slot
            self._reuse(r, reuse)
            kind = self._slot_kind[r.seq_id]
            if kind != want and not (quiet and kind is None):  # (a failed attach: the host picks)
                if want is None or quiet or not self._attach(r.seq_id, want):
                    self._detach(r.seq_id)
            r.phase = "prefill"
            r.admitted_at = time.perf_counter()
            if self.min_shared and r.media is None and not r._fed:
                self._find_leader(r)
            self._active.append(r)
            if r.media is not None:
                self._feed_media(r)

    def _feed_media(self, r: BatchRequest) -> None:
        """Evaluate ``r``'s prompt up to the end of its last image (in decodes of its own:
        the projector encodes each image); a failure ends only ``r``, with the error."""
        assert r.media is not None
        seq = SequenceState(self.ctx, r.seq_id)
        try:
            feed_runs(self.ctx, self.batch, seq, r.media, media_end(r.media))
        except Exception as exc:
            r.error = exc
            self._finish(r, "cancelled")
            return
        r._fed = len(seq.tokens)
        self.prompt_tokens += r._fed

    def _cached_slot(self, r: BatchRequest) -> tuple[int, int]:
        """The free slot whose memory holds the longest prefix of ``r``'s prompt, at least
        :attr:`REUSE_MIN` tokens, and that length (short of the prompt's last token, whose
        logits are needed); ``(-1, 0)`` where none does."""
        best, n_best = -1, self.REUSE_MIN - 1
        if r.media is not None or not r.cache_prompt:
            return best, 0
        prompt, head = r.prompt, r.prompt[: self.REUSE_MIN]
        for slot in self._free:
            cached = self._cached[slot]
            if len(cached) > n_best and cached[: self.REUSE_MIN] == head:
                n = common_prefix(cached, prompt, len(prompt) - 1)
                if n > n_best:
                    best, n_best = slot, n
        return (best, n_best) if best >= 0 else (-1, 0)

    def _reuse(self, r: BatchRequest, n: int) -> None:
        """Give ``r`` the first ``n`` tokens of its slot's memory (0: none) and drop the rest."""
        if n:
            self._free.remove(r.seq_id)
        self._cached[r.seq_id] = []
        self.ctx.seq_rm(r.seq_id, n if n else -1, -1)
        r._fed = n
        self.reused_tokens += n

    def _quiet(self) -> bool:
        """Fewer requests in flight than :attr:`BUSY`."""
        return len(self._active) + len(self._waiting) < self.BUSY

    def cached(self, slot: int) -> list[int]:
        """The tokens that free ``slot``'s memory keeps from its last request (a copy)."""
        return list(self._cached[slot])

    def drop_cached(self) -> None:
        """Forget what the free slots hold from their last requests (their KV memory too)."""
        for slot, cached in enumerate(self._cached):
            if cached:
                self.ctx.seq_rm(slot, -1, -1)
                self._cached[slot] = []

    def _make_room(self) -> None:
        """With a unified cache, drop free slots' memory, the least recently used first,
        until it and the active requests' tokens (this step's included) fit the context."""
        if self._split:
            return
        idle = sum(len(self._cached[s]) for s in self._free)
        if not idle:
            return
        need = sum(r._fed + len(r.output) + len(r._draft) for r in self._active) + self.batch.n_tokens
        for slot in self._free:  # the least recently freed first
            if need + idle <= self.ctx.n_ctx:
                return
            if self._cached[slot]:
                idle -= len(self._cached[slot])
                self.ctx.seq_rm(slot, -1, -1)
                self._cached[slot] = []

    def _take_slot(self, want: SlotSampler, quiet: bool = False) -> int:
        """A free slot, preferably one whose backend sampler is already as the request
        needs it (:meth:`_wanted`), else (``quiet``) one that samples on the host: attaching
        or detaching makes llama.cpp rebuild its graphs at the next decode (about 7 ms on
        an H200), so a slot keeps its state when its request ends and a steady mix of
        requests changes none. The most recently freed such slot first."""
        free, kinds = self._free, self._slot_kind
        if self._split:  # the lowest: the busy slots stay one run of ids (one ubatch)
            return free.pop(free.index(min(free)))
        if self.greedy != "host":
            for fits in ([want, None] if quiet else [want]):
                for i in range(len(free) - 1, -1, -1):
                    if kinds[free[i]] == fits:
                        return free.pop(i)
        return free.pop()

    def _find_leader(self, r: BatchRequest) -> None:
        """The active request sharing the longest prompt prefix with ``r`` (the last prompt
        token is always evaluated: its logits are needed)."""
        best, n_best = None, 0
        for other in self._active:
            if other._leader is not None:
                continue
            n = common_prefix(other.prompt, r.prompt)
            if n > n_best:
                best, n_best = other, n
        n_best = min(n_best, len(r.prompt) - 1)
        if best is not None and n_best >= self.min_shared:
            r._leader, r._shared = best, n_best

    def _copy_shared_prefixes(self) -> None:
        """Copy a leader's prompt prefix once it is in KV memory (every ``_fed`` token is:
        this runs before the step's batch is built)."""
        for r in self._active:
            lead = r._leader
            if lead is None:
                continue
            if lead.done:  # its memory is gone: evaluate the prompt after all
                r._leader = None
            elif lead.phase == "running" or lead._fed >= r._shared:
                self.ctx.seq_cp(lead.seq_id, r.seq_id, 0, r._shared)
                r._fed = r._shared
                r._leader = None
                self.shared_tokens += r._shared

    def _finish(self, r: BatchRequest, reason: Literal["stop", "length", "cancelled"],
                keep: bool = True) -> None:
        """End ``r``; with ``keep``, its slot's memory keeps what ``r`` evaluated (its prompt
        as far as fed, then each output token but the last, which was never decoded) for a
        later request to reuse; the cells after that are dropped."""
        r.phase, r.finish_reason = "done", reason
        self._active.remove(r)
        n = 0
        if keep and r.media is None and r._leader is None and (self._split or self._quiet()):
            n = r._fed if r._fed < len(r.prompt) else len(r.prompt) + max(0, len(r.output) - 1)
        self._cached[r.seq_id] = (r.prompt + r.output)[:n]
        self.ctx.seq_rm(r.seq_id, n if n else -1, -1)
        self._free.append(r.seq_id)  # its sampler stays as it is (_take_slot)

    # --- a token-level generator for custom use ------------------------------------------------

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: int | None = None,
                 chains: Sequence[SamplerChain | None] | None = None) -> Iterator[tuple[int, int]]:
        """Yield ``(prompt index, token)`` as the sequences produce them."""
        reqs = [self.submit(BatchRequest(list(p), max_tokens, chains[i] if chains else None))
                for i, p in enumerate(prompts)]
        index = {r.id: i for i, r in enumerate(reqs)}
        try:
            while any(not r.done for r in reqs):
                for r, tok in self.step():
                    if r.id in index:
                        yield index[r.id], tok
        finally:
            self.drain()
            for r in reqs:
                self.cancel(r)

