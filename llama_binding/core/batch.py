"""A ``llama_batch`` owned from Python: tokens of many sequences, per-token output flags."""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import capi
from ._handle import NativeHandle

__all__ = ["Batch"]


class Batch(NativeHandle[Any]):
    """Room for ``capacity`` tokens, each in up to ``n_seq_max`` sequences.

    ``add`` appends one token; ``clear`` empties the batch for reuse, so a per-token loop
    allocates nothing.
    """

    _kind = "batch"

    def __init__(self, capacity: int, n_seq_max: int = 1) -> None:
        if capacity < 1 or n_seq_max < 1:
            raise ValueError("a batch needs capacity >= 1 and n_seq_max >= 1")
        struct = capi.llama_batch_init(capacity, 0, n_seq_max)
        # every token's sequence ids in one table of ours (llama_batch_init allocates a
        # row per token): a run of tokens of one sequence is then one numpy write, where a
        # row at a time cost 0.1 ms for a 512-token prompt. llama_batch_free gets its own
        # rows back first.
        own = np.zeros((capacity, n_seq_max), dtype=np.int32)
        row_type = type(struct.seq_id[0])  # (an item is a view of its slot: kept as addresses)
        theirs = [ctypes.cast(struct.seq_id[i], ctypes.c_void_p).value or 0 for i in range(capacity)]
        for i in range(capacity):
            struct.seq_id[i] = ctypes.cast(own.ctypes.data + i * own.strides[0], row_type)

        def free(b: Any) -> None:
            for i, addr in enumerate(theirs):
                b.seq_id[i] = ctypes.cast(addr, row_type)
            capi.llama_batch_free(b)

        super().__init__(struct, free)
        self.capacity = capacity
        self.n_seq_max = n_seq_max
        self._struct = struct
        # the arrays, cached: attribute lookups on the struct cost more than the work
        self._token = struct.token
        self._pos = struct.pos
        self._n_seq_id = struct.n_seq_id
        self._seq_id = struct.seq_id
        self._logits = struct.logits
        # numpy views of the same memory, for filling long runs of tokens at once
        self._np_token = np.ctypeslib.as_array(struct.token, shape=(capacity,))
        self._np_pos = np.ctypeslib.as_array(struct.pos, shape=(capacity,))
        self._np_n_seq = np.ctypeslib.as_array(struct.n_seq_id, shape=(capacity,))
        self._np_logits = np.ctypeslib.as_array(struct.logits, shape=(capacity,))
        self._np_seq = own
        self._rows = [struct.seq_id[i] for i in range(capacity)]
        self._ref = ctypes.byref(struct)

    @property
    def ref(self) -> Any:
        """A pointer to the struct, for our native helpers (checks it is open)."""
        self.ptr  # noqa: B018 - raises ClosedError after close
        return self._ref

    @property
    def struct(self) -> Any:
        """The ``llama_batch`` struct to pass to ``llama_decode`` (checks it is open)."""
        return self.ptr

    @property
    def n_tokens(self) -> int:
        return int(self._struct.n_tokens)

    def clear(self) -> None:
        self.ptr  # noqa: B018 - raises ClosedError after close
        self._struct.n_tokens = 0

    def add(self, token: int, pos: int, seq_ids: Sequence[int] = (0,), logits: bool = False) -> int:
        """Append ``token`` at ``pos`` of ``seq_ids``; returns its index in the batch."""
        self.ptr  # noqa: B018
        i = self._struct.n_tokens
        if i >= self.capacity:
            raise ValueError(f"batch is full ({self.capacity} tokens)")
        if not 1 <= len(seq_ids) <= self.n_seq_max:
            raise ValueError(f"a token belongs to 1..{self.n_seq_max} sequences, got {len(seq_ids)}")
        self._token[i] = token
        self._pos[i] = pos
        self._n_seq_id[i] = len(seq_ids)
        row = self._seq_id[i]
        for j, s in enumerate(seq_ids):
            row[j] = s
        self._logits[i] = logits
        self._struct.n_tokens = i + 1
        return i

    def add_sequence(self, tokens: Iterable[int], start_pos: int, seq_id: int = 0,
                     logits_last: bool = True, logits_all: bool = False) -> None:
        """Append a run of tokens of one sequence at consecutive positions (vectorised)."""
        self.ptr  # noqa: B018
        toks = tokens if isinstance(tokens, (list, tuple)) else list(tokens)
        n = len(toks)
        i = int(self._struct.n_tokens)
        if i + n > self.capacity:
            raise ValueError(f"batch is full ({self.capacity} tokens)")
        if n == 0:
            return
        self._np_token[i : i + n] = toks
        self._np_pos[i : i + n] = np.arange(start_pos, start_pos + n)
        self._np_n_seq[i : i + n] = 1
        self._np_logits[i : i + n] = 1 if logits_all else 0
        if logits_last:
            self._np_logits[i + n - 1] = 1
        self._np_seq[i : i + n, 0] = seq_id
        self._struct.n_tokens = i + n

    def add_rows(self, tokens: Sequence[int], positions: Sequence[int], seq_ids: Sequence[int]) -> None:
        """Append one token of each of several sequences, each with its output (vectorised):
        the next token of every running sequence in one write per field."""
        self.ptr  # noqa: B018
        n = len(tokens)
        i = int(self._struct.n_tokens)
        if not n == len(positions) == len(seq_ids):
            raise ValueError("tokens, positions and seq_ids differ in length")
        if i + n > self.capacity:
            raise ValueError(f"batch is full ({self.capacity} tokens)")
        self._np_token[i : i + n] = tokens
        self._np_pos[i : i + n] = positions
        self._np_n_seq[i : i + n] = 1
        self._np_logits[i : i + n] = 1
        self._np_seq[i : i + n, 0] = seq_ids
        self._struct.n_tokens = i + n

    def output_indices(self) -> list[int]:
        """Indices of the tokens that request outputs, in order."""
        return [i for i in range(self.n_tokens) if self._logits[i]]
