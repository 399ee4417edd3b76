"""The prompt cache on disk: :class:`LlamaDiskCache`, shared by processes (see cache.py
for the interface, the size accounting and the prefix lookup)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import struct
from collections.abc import Sequence
from typing import Any

import diskcache  # type: ignore[import-untyped]
from diskcache.core import MODE_PICKLE  # type: ignore[import-untyped]

from .cache import (
    _DEFAULT_CAPACITY,
    _TOKEN_BYTES,
    StateCache,
    _candidates,
    _check_capacity,
    _check_key,
    _checked_entry,
    _digest,
    _pack_tokens,
    logger,
)

__all__ = ["LlamaDiskCache"]


# ---------------------------------------------------------------------------------------------
# disk: value format


class _Damaged(Exception):
    """A stored value that cannot be trusted; the message says why."""


class _UntrustedPickle(ValueError):
    """Raised instead of unpickling: nothing this module writes is pickled, and unpickling a
    file someone else could have written would run their code."""


class _BytesDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's storage, refusing to unpickle values (this module only stores bytes)."""

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == MODE_PICKLE:
            raise _UntrustedPickle("a pickled value where bytes were stored")
        return super().fetch(mode, filename, value, read)


# Entry value: header | tokens (int32 LE) | state. The checksum covers the sha256 of the key,
# the tokens and the state, so a flipped bit, a truncated file or a value moved under another
# key all fail to verify.
_MAGIC = b"LBSTATE1"
_HEADER = struct.Struct("<8sIQ32s")  # magic, n_tokens, len(state), sha256


def _checksum(key_hash: bytes, tokens: bytes | memoryview, state: bytes | memoryview) -> bytes:
    h = hashlib.sha256(key_hash)
    h.update(tokens)
    h.update(state)
    return h.digest()


def _key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _encode_entry(key_hash: bytes, packed: bytes, state: bytes) -> bytes:
    n = len(packed) // _TOKEN_BYTES
    header = _HEADER.pack(_MAGIC, n, len(state), _checksum(key_hash, packed, state))
    return b"".join((header, packed, state))


def _decode_entry(value: object, key_hash: bytes, expected: bytes) -> bytes:
    """The state in ``value`` if it verifies and holds exactly the ``expected`` tokens; else _Damaged."""
    if value is None:
        raise _Damaged("the value is missing or unreadable")
    if not isinstance(value, bytes):
        raise _Damaged(f"the value is {type(value).__name__}, not bytes")
    if len(value) < _HEADER.size:
        raise _Damaged(f"truncated: {len(value)} bytes, shorter than the header")
    magic, n, state_len, checksum = _HEADER.unpack_from(value)
    if magic != _MAGIC:
        raise _Damaged("not a state entry (bad magic)")
    start = _HEADER.size + n * _TOKEN_BYTES
    if len(value) != start + state_len:
        raise _Damaged(f"truncated or padded: {len(value)} bytes, expected {start + state_len}")
    view = memoryview(value)
    tokens, state = view[_HEADER.size : start], view[start:]
    if _checksum(key_hash, tokens, state) != checksum:
        raise _Damaged("checksum mismatch")
    if tokens != expected:
        raise _Damaged("its tokens differ from the index")
    return bytes(state)


# ---------------------------------------------------------------------------------------------
# disk: the shared index


class _Slot:
    """Index record of one disk entry: its weight, last use (a logical clock) and value name."""

    __slots__ = ("name", "nbytes", "tick")

    def __init__(self, nbytes: int, tick: int, name: str) -> None:
        self.nbytes, self.tick, self.name = nbytes, tick, name


class _Index:
    """All disk entries' metadata, stored as one JSON value beside them.

    ``groups[key][n_tokens][digest] -> _Slot``. Recency is a logical clock (``tick``) bumped
    on every store and hit, so processes agree on the LRU order without comparing wall
    clocks. One value keeps updates atomic under a single diskcache transaction; it holds only
    a few numbers per entry, and entries are whole context states, so it stays small.
    """

    FORMAT = 1

    def __init__(self, tick: int = 0, groups: dict[str, dict[int, dict[str, _Slot]]] | None = None) -> None:
        self.tick = tick
        self.groups: dict[str, dict[int, dict[str, _Slot]]] = groups if groups is not None else {}

    def slots(self) -> list[tuple[str, int, str, _Slot]]:
        return [
            (key, n, digest, slot)
            for key, by_len in self.groups.items()
            for n, by_digest in by_len.items()
            for digest, slot in by_digest.items()
        ]

    @property
    def total(self) -> int:
        return sum(slot.nbytes for *_, slot in self.slots())

    def find(self, key: str, n: int, digest: str) -> _Slot | None:
        return self.groups.get(key, {}).get(n, {}).get(digest)

    def next_tick(self) -> int:
        self.tick += 1
        return self.tick

    def put(self, key: str, n: int, digest: str, slot: _Slot) -> _Slot | None:
        """Insert ``slot``; return the slot it replaced, if any."""
        by_digest = self.groups.setdefault(key, {}).setdefault(n, {})
        old = by_digest.get(digest)
        by_digest[digest] = slot
        return old

    def remove(self, key: str, n: int, digest: str) -> _Slot | None:
        by_len = self.groups.get(key, {})
        by_digest = by_len.get(n, {})
        slot = by_digest.pop(digest, None)
        if not by_digest:
            by_len.pop(n, None)
        if not by_len:
            self.groups.pop(key, None)
        return slot

    def evict(self, capacity: int) -> list[_Slot]:
        """Remove least-recently-used slots until the total fits ``capacity``; return them."""
        total = self.total
        victims: list[_Slot] = []
        for key, n, digest, slot in sorted(self.slots(), key=lambda item: item[3].tick):
            if total <= capacity:
                break
            self.remove(key, n, digest)
            victims.append(slot)
            total -= slot.nbytes
        return victims

    def to_bytes(self) -> bytes:
        groups = {
            key: {
                str(n): {digest: [s.nbytes, s.tick, s.name] for digest, s in by_digest.items()}
                for n, by_digest in by_len.items()
            }
            for key, by_len in self.groups.items()
        }
        return json.dumps({"format": self.FORMAT, "tick": self.tick, "groups": groups}).encode()

    @classmethod
    def from_value(cls, value: object) -> _Index:
        """Parse a stored index; None (nothing stored yet) is an empty one. Raises _Damaged."""
        if value is None:
            return cls()
        if not isinstance(value, bytes):
            raise _Damaged(f"the index is {type(value).__name__}, not bytes")
        try:
            doc = json.loads(value)
            if doc["format"] != cls.FORMAT:
                raise ValueError(f"unknown index format {doc['format']!r}")
            groups: dict[str, dict[int, dict[str, _Slot]]] = {}
            for key, by_len in _items(doc["groups"]):
                groups[key] = {int(n): _parse_digests(by_digest) for n, by_digest in _items(by_len)}
            return cls(_int(doc["tick"]), groups)
        except (KeyError, TypeError, ValueError, RecursionError) as exc:
            raise _Damaged(f"unreadable index ({exc!r})") from None


def _items(obj: object) -> list[tuple[str, object]]:
    if not isinstance(obj, dict):
        raise TypeError(f"expected an object, got {type(obj).__name__}")
    return list(obj.items())


def _int(obj: object) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int) or obj < 0:
        raise TypeError(f"expected a non-negative int, got {obj!r}")
    return obj


def _parse_digests(by_digest: object) -> dict[str, _Slot]:
    out: dict[str, _Slot] = {}
    for digest, record in _items(by_digest):
        if not isinstance(record, list) or len(record) != 3 or not isinstance(record[2], str):
            raise TypeError(f"bad index record {record!r}")
        out[digest] = _Slot(_int(record[0]), _int(record[1]), record[2])
    return out


# ---------------------------------------------------------------------------------------------
# disk: the store


class LlamaDiskCache(StateCache):
    """An LRU of states in a ``diskcache`` directory, bounded by bytes, shared between processes.

    Layout: one value per entry under a fresh random name (header, tokens, state, sha256) and
    one JSON index (:class:`_Index`) mapping ``key -> length -> token digest`` to the value's
    name, weight and last use. A lookup parses the index (O(E) for E entries in the directory,
    a few numbers each), hashes the query as in the module docstring, then reads and
    checksums only the candidate's value; a hit adds one short transaction to bump its clock.

    Eviction is ours, not diskcache's: diskcache's ``size_limit`` counts SQLite pages plus
    file-backed values only, culls at most ``cull_limit`` items per write and so can leave the
    total above the limit, and its LRU policy would evict our index like any value. The cache
    is opened with ``eviction_policy="none"``; :meth:`store` evicts by the index's logical
    clock inside a diskcache transaction (SQLite ``BEGIN IMMEDIATE``), so concurrent
    processes serialize their index updates and the total stays within ``capacity_bytes``.

    A value is written under its fresh name before the transaction that indexes it, so the
    (possibly large) write does not hold the lock and no reader can see it half-written.

    Damage (bad checksum, truncated value, a pickled or foreign value, a file removed under
    it) is confirmed under the lock, then the entry is dropped with a warning on the
    ``llama_binding`` logger, and the lookup goes on with shorter candidates. A damaged index
    clears the directory (its entries can no longer be found) with a warning. A process killed
    between writing a value and indexing it leaves that value unaccounted; :meth:`clear`
    removes such strays with everything else.
    """

    _INDEX = "llama_binding/index"
    _PREFIX = "llama_binding/state/"

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] = ".cache/llama_cache",
        capacity_bytes: int = _DEFAULT_CAPACITY,
    ) -> None:
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a str or os.PathLike, not {type(cache_dir).__name__}")
        self._capacity = _check_capacity(capacity_bytes)
        self._dir = os.fspath(cache_dir)
        self._cache: Any = diskcache.Cache(self._dir, eviction_policy="none", disk=_BytesDisk)

    @property
    def cache_dir(self) -> str:
        """The directory, shared by every process that opens it."""
        return self._dir

    @property
    def cache_size(self) -> int:
        return self._read_index().total

    @property
    def capacity_bytes(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._read_index().slots())

    def __repr__(self) -> str:
        return f"LlamaDiskCache({self._dir!r}, capacity_bytes={self._capacity})"

    def close(self) -> None:
        """Close this process's database connection (reopened on next use)."""
        self._cache.close()

    def lookup(self, key: str, tokens: Sequence[int]) -> tuple[int, bytes] | None:
        key = _check_key(key)
        packed = _pack_tokens(tokens, allow_empty=True)
        index = self._read_index()
        key_hash = _key_hash(key)
        for n, digest in _candidates(index.groups.get(key, {}), packed):
            slot = index.groups[key][n][digest]
            expected = packed[: n * _TOKEN_BYTES]
            try:
                state: bytes | None = _decode_entry(self._get(slot.name), key_hash, expected)
            except _Damaged:
                state = self._recheck(key, n, digest, expected)
            if state is not None:
                self._touch(key, n, digest)
                return n, state
        return None

    def store(self, key: str, tokens: Sequence[int], state: bytes) -> None:
        checked = _checked_entry(key, tokens, state, self._capacity, f"disk prompt cache {self._dir}")
        if checked is None:
            return
        key, packed, state, nbytes = checked
        name = self._PREFIX + secrets.token_hex(16)
        self._cache.set(name, _encode_entry(_key_hash(key), packed, state))
        try:
            with self._cache.transact():
                index = self._load_index()
                slot = _Slot(nbytes, index.next_tick(), name)
                old = index.put(key, len(packed) // _TOKEN_BYTES, _digest(packed), slot)
                doomed = ([old] if old is not None else []) + index.evict(self._capacity)
                self._cache.set(self._INDEX, index.to_bytes())
                for victim in doomed:
                    self._cache.delete(victim.name)
        except BaseException:
            with contextlib.suppress(Exception):
                self._cache.delete(name)  # never indexed: no other process knows this name
            raise

    def clear(self) -> None:
        """Remove everything in the directory (it belongs to this cache), atomically."""
        with self._cache.transact():
            self._cache.clear()

    # -- internals ---------------------------------------------------------------------------

    def _get(self, name: str) -> object:
        """A stored value, or None when it is missing or unreadable (the caller decides)."""
        try:
            value: object = self._cache.get(name)
        except (OSError, ValueError, EOFError):  # removed/unreadable file, refused pickle, bad text
            return None
        return value

    def _read_index(self) -> _Index:
        """The index as last committed (no lock: SQLite reads see a consistent snapshot)."""
        try:
            return _Index.from_value(self._get(self._INDEX))
        except _Damaged:
            return self._load_index()

    def _load_index(self) -> _Index:
        """The index, under the lock; a damaged one clears the cache."""
        with self._cache.transact():
            try:
                return _Index.from_value(self._get(self._INDEX))
            except _Damaged as exc:
                logger.warning("disk prompt cache %s: %s; clearing the cache", self._dir, exc)
                self._cache.clear()
                return _Index()

    def _touch(self, key: str, n: int, digest: str) -> None:
        """Mark an entry recently used, if another process has not evicted it meanwhile."""
        with self._cache.transact():
            index = self._load_index()
            slot = index.find(key, n, digest)
            if slot is not None:
                slot.tick = index.next_tick()
                self._cache.set(self._INDEX, index.to_bytes())

    def _recheck(self, key: str, n: int, digest: str, expected: bytes) -> bytes | None:
        """Read a suspect entry again under the lock; drop it if it is still indexed and damaged.

        A lock-free read can fail for a harmless reason: another process evicted the entry or
        replaced it (an equal store) between our index read and value read.
        """
        with self._cache.transact():
            index = self._load_index()
            slot = index.find(key, n, digest)
            if slot is None:
                return None
            try:
                return _decode_entry(self._get(slot.name), _key_hash(key), expected)
            except _Damaged as exc:
                logger.warning("disk prompt cache %s: dropped a %d-token entry: %s", self._dir, n, exc)
                index.remove(key, n, digest)
                self._cache.set(self._INDEX, index.to_bytes())
                self._cache.delete(slot.name)
                return None
