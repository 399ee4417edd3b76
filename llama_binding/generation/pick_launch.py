"""A pipelined step's wait, picks and next decode in one native call (``native/pick_launch.c``).

:class:`~llama_binding.generation.batching.BatchEngine`'s pipeline queues a busy steady
step's next decode right after its tokens are picked. Done in Python, the thread that waited
for the device must take the GIL back before it can pick and queue; while the event loop's
thread runs (handing the last step's tokens to 64 streams), that is up to the switch
interval, with the device idle. :class:`PickLaunch` prepares the rows while the device still
computes (which rows, each one's sampler, what may end it), then one call waits, picks and
queues without the GIL; the GIL comes back while the next decode computes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core import _native

if TYPE_CHECKING:
    from ..core.batch import Batch
    from ..core.context import Context
    from ..core.vocab import Vocab
    from .batching import BatchRequest, SlotSampler

__all__ = ["PickLaunch", "Picked"]


@dataclass
class Picked:
    """What one :meth:`PickLaunch.run` did."""

    ready: list[BatchRequest]
    """The requests picked, in the engine's order."""
    tokens: list[int]
    """Each one's token (negative: none was picked, as the rows functions say)."""
    next_rows: list[int]
    """Each one's row in the queued decode, or -1 (it is not in it)."""
    launched: bool
    """A decode was queued (at least ``min_go`` requests go on)."""
    pick_code: int
    """0, or the rows functions' failure (``_native.NO_LOGITS``, ``NO_MEMORY``): raise it."""
    n_go: int
    waited_s: float
    picked_s: float
    gil_s: float
    """From the call's return until this thread held the GIL again (the device computing)."""


class PickLaunch:
    """The arrays of the pipelined step's call, made once for up to ``capacity`` rows."""

    def __init__(self, capacity: int) -> None:
        ints = {name: np.zeros(capacity, dtype=np.int32)
                for name in ("rows", "top_k", "room", "pos", "seq_id", "order", "picked", "next_row")}
        self._ints = ints
        self._ignore_eos = np.zeros(capacity, dtype=np.uint8)
        self._chains = (ctypes.c_void_p * capacity)()
        spec = _native.PickLaunch()
        for name, arr in ints.items():
            setattr(spec, name, arr.ctypes.data)
        spec.ignore_eos = self._ignore_eos.ctypes.data
        spec.chains = ctypes.cast(self._chains, ctypes.c_void_p)
        self._knocked = np.zeros(1, dtype=np.int32)
        spec.knock = self._knocked.ctypes.data
        self.spec = spec

    def knock(self) -> None:
        """A request is on its way to the engine (any thread): a call waiting now queues no
        decode, so that the engine's next step admits it (not the step after)."""
        self._knocked[0] = 1

    def answer(self) -> None:
        """The engine's thread is about to take what knocked (before reading its queue)."""
        self._knocked[0] = 0

    def run(self, ctx: Context, vocab: Vocab, batch: Batch, ready: list[BatchRequest], rows: list[int],
            kinds: Sequence[SlotSampler], *, split: bool, min_go: int, n_threads: int = 1) -> Picked:
        """Wait for the queued decode, pick a token for each of ``ready`` (all running, each
        with its output at batch index ``rows[k]``), queue the next decode with those that go
        on when at least ``min_go`` do (in ascending sequence ids with a cache per sequence,
        ``split``; else in ``ready``'s order, the cells of the rest dropped first) and no
        :meth:`knock` is unanswered. A failed queuing is undone here (the rows' cells): the
        engine's next plain step decodes them."""
        chained = [k for k, r in enumerate(ready) if r.chain is not None]
        backend = [k for k, r in enumerate(ready) if r.chain is None and kinds[r.seq_id] == "greedy"]
        host = [k for k, r in enumerate(ready) if r.chain is None and kinds[r.seq_id] != "greedy"]
        place = chained + backend + host  # the native call's order (indices into ready)
        grouped = [ready[k] for k in place]
        n, n_chain = len(grouped), len(chained)
        at = [0] * n  # each request's place in it
        for g, k in enumerate(place):
            at[k] = g
        ints, spec, n_ctx = self._ints, self.spec, ctx.n_ctx_seq
        ints["rows"][:n] = [rows[k] for k in place]
        for g, r in enumerate(grouped[:n_chain]):
            self._chains[g] = r.chain.address  # type: ignore[union-attr]
        ints["top_k"][:n_chain] = [r.chain.leading_cut for r in grouped[:n_chain]]  # type: ignore[union-attr]
        ints["pos"][:n] = pos = [len(r.prompt) + len(r.output) for r in grouped]
        # the tokens each may take after this one: its cells', its limit's (none: the cells')
        ints["room"][:n] = [min(n_ctx - p,
                                n_ctx if r.max_tokens is None else r.max_tokens - len(r.output) - 1)
                            for r, p in zip(grouped, pos, strict=True)]
        ints["seq_id"][:n] = [r.seq_id for r in grouped]
        self._ignore_eos[:n] = [r.ignore_eos for r in grouped]
        order = sorted(range(n), key=lambda k: ready[k].seq_id) if split else range(n)
        ints["order"][:n] = [at[k] for k in order]
        spec.n, spec.n_chain, spec.n_backend, spec.min_go = n, n_chain, len(backend), min_go
        spec.free_ending, spec.n_threads = 0 if split else 1, n_threads
        code = ctx.pick_launch(vocab, batch, spec)
        gil_s = _native.now() - spec.end
        picked, nxt = ints["picked"][:n].tolist(), ints["next_row"][:n].tolist()
        tokens, next_rows = [picked[g] for g in at], [nxt[g] for g in at]
        launched = code != _native.NOT_DECODED
        if launched and code != 0:  # whatever it placed goes; the plain step decodes again and reports
            for r, row in zip(ready, next_rows, strict=True):
                if row >= 0:
                    ctx.seq_rm(r.seq_id, len(r.prompt) + len(r.output), -1)
            launched, next_rows = False, [-1] * n
        return Picked(ready, tokens, next_rows, launched, spec.pick_code, spec.n_go, spec.waited_s,
                      spec.picked_s, max(0.0, gil_s))
