"""Prompt caches: keep context states by the tokens they were computed for.

A finished prompt's context state (``llama_state_get_data``) lets a later request that starts
with the same tokens skip evaluating them. This module only stores and finds those states; the
``Llama`` facade saves and restores them. Entries are grouped under an opaque ``key`` (model
fingerprint, context parameters, active adapters) so that a state is never restored into a
context it does not fit.

Two stores share one interface, :class:`StateCache`:

* :class:`LlamaRAMCache`, an LRU in memory;
* :class:`~llama_binding.generation.disk_cache.LlamaDiskCache`, an LRU in a ``diskcache``
  directory that other processes share (its own module).

Size accounting: an entry weighs ``len(state) + 4 * len(tokens)`` bytes (the state plus the
tokens as int32); ``capacity_bytes`` bounds the sum of those weights. On disk, SQLite pages and
file-system blocks come on top of it.

Prefix lookup: every entry is indexed by its key, its number of tokens ``L`` and the sha256 of
its tokens. A lookup hashes the query once, incrementally, taking a digest at every distinct
stored length ``L`` under the key, then probes the index from the longest length down. Cost:
O(n + k log k) for a query of n tokens and k distinct stored lengths under that key, plus one
O(L) comparison of the candidate's tokens, never a scan of the other entries' tokens.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import sys
import threading
from array import array
from collections import OrderedDict
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import NamedTuple

__all__ = ["LlamaRAMCache", "StateCache"]

# Damaged disk entries are data problems, not mistakes in the caller's code, so they are
# reported through the package logger (routed by servers, shown by ``Llama(verbose=True)``,
# never deduplicated) rather than ``warnings`` (shown once per call site, then hidden).
logger = logging.getLogger("llama_binding")

_TOKEN_BYTES = 4  # llama_token is int32; array("i") is 4 bytes on every platform llama.cpp runs on
_DEFAULT_CAPACITY = 2 << 30


# ---------------------------------------------------------------------------------------------
# argument checks and token hashing, shared by both stores


def _check_capacity(capacity_bytes: object) -> int:
    if isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes, int):
        raise TypeError(f"capacity_bytes must be an int, not {type(capacity_bytes).__name__}")
    if capacity_bytes <= 0:
        raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
    return capacity_bytes


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"cache key must be a str, not {type(key).__name__}")
    return key


def _check_state(state: object) -> bytes:
    """Accept any bytes-like state; keep an immutable copy so later edits cannot reach the cache."""
    if not isinstance(state, (bytes, bytearray, memoryview)):
        raise TypeError(f"state must be bytes, not {type(state).__name__}")
    data = bytes(state)
    if not data:
        raise ValueError("state is empty: there is nothing to restore")
    return data


def _pack_tokens(tokens: Iterable[int], *, allow_empty: bool) -> bytes:
    """Tokens as little-endian int32 bytes: compact, hashable and the same in every process."""
    if isinstance(tokens, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"tokens must be a sequence of int token ids, not {type(tokens).__name__}")
    try:
        packed = array("i", tokens)
    except TypeError as exc:
        raise TypeError(f"tokens must be a sequence of int token ids: {exc}") from None
    except OverflowError:
        raise ValueError("token ids must fit in int32 (llama_token)") from None
    if not packed and not allow_empty:
        raise ValueError("tokens is empty: a state for no tokens is not worth caching")
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def _entry_nbytes(packed: bytes, state: bytes) -> int:
    return len(packed) + len(state)


def _digest(packed: bytes) -> str:
    return hashlib.sha256(packed).hexdigest()


def _prefix_digests(packed: bytes, lengths: Sequence[int]) -> dict[int, str]:
    """sha256 of ``tokens[:L]`` for each ``L`` in ascending ``lengths``, in one pass over the bytes."""
    view = memoryview(packed)
    running = hashlib.sha256()
    done = 0
    out: dict[int, str] = {}
    for n in lengths:
        running.update(view[done * _TOKEN_BYTES : n * _TOKEN_BYTES])
        done = n
        out[n] = running.copy().hexdigest()
    return out


def _candidates(groups: Mapping[int, Container[str]], packed: bytes) -> list[tuple[int, str]]:
    """Stored (length, digest) pairs that are prefixes of ``packed``, longest first.

    ``groups`` maps each stored length under one key to the digests stored at that length.
    At most one digest per length can match, so the list is at most k long.
    """
    n_query = len(packed) // _TOKEN_BYTES
    lengths = sorted(n for n in groups if n <= n_query)
    digests = _prefix_digests(packed, lengths)
    return [(n, digests[n]) for n in reversed(lengths) if digests[n] in groups[n]]


# ---------------------------------------------------------------------------------------------
# the interface


class StateCache(abc.ABC):
    """Context states stored by ``(key, tokens)``, found by longest token prefix, evicted LRU by bytes.

    ``key`` is opaque: entries under different keys never match each other.
    """

    @abc.abstractmethod
    def lookup(self, key: str, tokens: Sequence[int]) -> tuple[int, bytes] | None:
        """The longest entry under ``key`` whose tokens are a prefix of ``tokens`` (or equal to them).

        Returns ``(its number of tokens, its state)`` and marks it recently used; None if none.
        """

    @abc.abstractmethod
    def store(self, key: str, tokens: Sequence[int], state: bytes) -> None:
        """Keep ``state`` for ``tokens`` under ``key``, replacing an equal entry, then evict LRU entries.

        An entry heavier than the whole capacity is not stored (it would evict everything and
        still not fit).
        """

    @property
    @abc.abstractmethod
    def cache_size(self) -> int:
        """Total bytes held: the sum of ``len(state) + 4 * len(tokens)`` over the entries."""

    @property
    @abc.abstractmethod
    def capacity_bytes(self) -> int:
        """The bound that :meth:`store` keeps :attr:`cache_size` within."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of entries."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Drop every entry."""


# ---------------------------------------------------------------------------------------------
# memory


def _checked_entry(key: str, tokens: Sequence[int], state: bytes, capacity: int,
                   where: str) -> tuple[str, bytes, bytes, int] | None:
    """(key, packed tokens, state, weight) of a valid entry, or None (logged) when it alone
    exceeds ``capacity``; invalid arguments raise."""
    key = _check_key(key)
    packed = _pack_tokens(tokens, allow_empty=False)
    state = _check_state(state)
    nbytes = _entry_nbytes(packed, state)
    if nbytes > capacity:
        logger.debug("%s: a %d-byte state exceeds the capacity, not stored", where, nbytes)
        return None
    return key, packed, state, nbytes


class _RamEntry(NamedTuple):
    n_tokens: int
    packed: bytes
    state: bytes
    nbytes: int


class LlamaRAMCache(StateCache):
    """An LRU of states in memory, bounded by bytes. Thread-safe.

    An ``OrderedDict`` keyed by ``(key, token digest)`` holds the recency order (oldest first);
    a per-key map ``length -> {digest}`` serves prefix lookups (see the module docstring for
    the cost). Equal tokens under one key have one digest, so storing them again replaces.
    """

    def __init__(self, capacity_bytes: int = _DEFAULT_CAPACITY) -> None:
        self._capacity = _check_capacity(capacity_bytes)
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], _RamEntry] = OrderedDict()
        self._groups: dict[str, dict[int, set[str]]] = {}
        self._size = 0

    @property
    def cache_size(self) -> int:
        return self._size

    @property
    def capacity_bytes(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"LlamaRAMCache(entries={len(self)}, cache_size={self._size}, capacity_bytes={self._capacity})"

    def lookup(self, key: str, tokens: Sequence[int]) -> tuple[int, bytes] | None:
        key = _check_key(key)
        packed = _pack_tokens(tokens, allow_empty=True)
        with self._lock:
            groups = self._groups.get(key)
            if not groups:
                return None
            for n, digest in _candidates(groups, packed):
                entry = self._entries[(key, digest)]
                # the digest already matched; comparing the bytes makes a hash collision harmless
                if entry.packed == packed[: n * _TOKEN_BYTES]:
                    self._entries.move_to_end((key, digest))
                    return n, entry.state
        return None

    def store(self, key: str, tokens: Sequence[int], state: bytes) -> None:
        checked = _checked_entry(key, tokens, state, self._capacity, "RAM prompt cache")
        if checked is None:
            return
        key, packed, state, nbytes = checked
        n = len(packed) // _TOKEN_BYTES
        ident = (key, _digest(packed))
        with self._lock:
            self._remove(ident)
            self._entries[ident] = _RamEntry(n, packed, state, nbytes)
            self._groups.setdefault(key, {}).setdefault(n, set()).add(ident[1])
            self._size += nbytes
            while self._size > self._capacity:
                self._remove(next(iter(self._entries)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._groups.clear()
            self._size = 0

    def _remove(self, ident: tuple[str, str]) -> None:
        """Forget one entry in all three structures (no-op when absent); the caller holds the lock."""
        entry = self._entries.pop(ident, None)
        if entry is None:
            return
        self._size -= entry.nbytes
        key, digest = ident
        groups = self._groups[key]
        digests = groups[entry.n_tokens]
        digests.discard(digest)
        if not digests:
            del groups[entry.n_tokens]
            if not groups:
                del self._groups[key]
