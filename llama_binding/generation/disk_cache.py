"""The prompt cache on disk: :class:`LlamaDiskCache`, shared by processes (see cache.py
for the interface, the size accounting and the prefix lookup)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import diskcache  # type: ignore[import-untyped]
from diskcache.core import DBNAME, MODE_PICKLE  # type: ignore[import-untyped]

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


_UNREADABLE = object()  # LlamaDiskCache._get's answer for a value that exists but cannot be read


class _UntrustedPickle(ValueError):
    """Raised instead of unpickling: nothing this module writes is pickled, and unpickling a
    file someone else could have written would run their code."""


class _UnreadableValue(Exception):
    """A value file that could not be read. diskcache's ``get`` treats an ``OSError`` from a
    value file as "deleted meanwhile" and answers the default, which would make a vanished
    index look like an empty one; this class is not an ``OSError``, so it reaches us."""


class _BytesDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's storage, refusing to unpickle values (this module only stores bytes)."""

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == MODE_PICKLE:
            raise _UntrustedPickle("a pickled value where bytes were stored")
        try:
            return super().fetch(mode, filename, value, read)
        except OSError as exc:
            raise _UnreadableValue(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# disk: SQLite without memory maps, with bounded lock waits

# SQLite memory-maps two things by default in diskcache's setup: the database (``mmap_size``,
# 64 MiB there) and, in WAL mode, the ``-shm`` index. A file truncated under a live mapping
# kills the process with SIGBUS on the next access, which no error handling can catch. With
# ``mmap_size = 0`` and a rollback journal (no ``-shm``), SQLite reads with ``pread`` and a
# truncated or garbled file becomes an ``sqlite3.DatabaseError`` that the store handles.
_SQLITE_SETTINGS: dict[str, Any] = {"sqlite_mmap_size": 0, "sqlite_journal_mode": "delete"}
_CONNECTION_PRAGMAS = (("mmap_size", 0), ("synchronous", 1))  # 1 = NORMAL, diskcache's default


class _SafeCache(diskcache.Cache):  # type: ignore[misc]
    """``diskcache.Cache`` with the settings above forced on every connection, and with its
    lock waits bounded by ``timeout`` (diskcache retries a locked database for 60 s while it
    opens one, and re-reads per-connection pragmas from the database's own Settings table)."""

    def __init__(self, directory: str, timeout: float) -> None:
        self._lock_wait = timeout  # read by _sql_retry, which diskcache's __init__ already uses
        super().__init__(directory, timeout=timeout, disk=_BytesDisk, eviction_policy="none",
                         **_SQLITE_SETTINGS)

    @property
    def _con(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # forked: never reuse the parent's connection
            self.close()
            local.pid = os.getpid()
        con: sqlite3.Connection | None = getattr(local, "con", None)
        if con is None:
            con = sqlite3.connect(os.path.join(self._directory, DBNAME), timeout=self._timeout,
                                  isolation_level=None)
            for pragma, value in _CONNECTION_PRAGMAS:
                con.execute(f"PRAGMA {pragma} = {value}").fetchall()
            local.con = con
        return con

    @property
    def _sql_retry(self) -> Callable[..., sqlite3.Cursor]:
        sql, wait = self._sql, self._lock_wait

        def execute(statement: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
            deadline = time.monotonic() + wait
            while True:
                try:
                    cursor: sqlite3.Cursor = sql(statement, *args, **kwargs)
                    return cursor
                except sqlite3.OperationalError as exc:
                    if str(exc) != "database is locked" or time.monotonic() > deadline:
                        raise
                    time.sleep(0.001)

        return execute


def _probe(path: str, timeout: float) -> None:
    """Open the database at ``path`` and take its write lock once, waiting at most ``timeout``:
    a locked, unreadable or foreign file raises ``sqlite3.Error`` here, before diskcache's own
    setup (which would wait 60 s for a lock)."""
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        con.execute("PRAGMA mmap_size = 0").fetchall()
        con.execute("BEGIN IMMEDIATE")
        con.execute("SELECT count(*) FROM sqlite_master").fetchall()
        con.execute("ROLLBACK")
    finally:
        con.close()


def _failure_kind(exc: BaseException) -> str:
    """How to handle a storage error: "locked" (another process holds the database: skip the
    cache for a while), "unavailable" (disk full, read-only, permissions: skip it for a while),
    or "broken" (a damaged or foreign database: rebuild it)."""
    if isinstance(exc, diskcache.Timeout):  # diskcache's name for a failed BEGIN IMMEDIATE
        return "locked"
    if isinstance(exc, sqlite3.OperationalError):
        name = str(getattr(exc, "sqlite_errorname", ""))  # Python 3.11+
        text = str(exc).lower()
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
            return "locked"
        if name.startswith(("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_PERM")) or any(
                word in text for word in ("disk is full", "readonly", "read-only")):
            return "unavailable"
        return "broken"
    if isinstance(exc, sqlite3.Error):
        return "broken"
    return "unavailable"  # OSError: a value file could not be written


_T = TypeVar("_T")
_STORAGE_ERRORS = (sqlite3.Error, diskcache.Timeout, OSError)
# the files diskcache creates: the database with its journals, and values in two levels of
# two-hex-digit folders (Disk.filename)
_DB_FILES = tuple(DBNAME + suffix for suffix in ("", "-journal", "-wal", "-shm"))
_HEX2 = re.compile(r"[0-9a-f]{2}")


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
    if value is None or value is _UNREADABLE:
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
        if value is _UNREADABLE:
            raise _Damaged("the index is unreadable")
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

    The cache never fails the request that uses it. SQLite runs without memory maps and with
    a rollback journal, so a truncated file is an error, not a SIGBUS. A damaged or foreign
    database (``file is not a database``, ``database disk image is malformed``) is rebuilt:
    diskcache's files in the directory are removed and an empty cache is created. A database
    that another process keeps locked for longer than ``lock_timeout`` seconds, a full disk or
    a read-only directory make the cache step aside for a while (lookups find nothing, stores
    are skipped; :func:`len` and :attr:`cache_size` count nothing), then it tries again. Each
    kind of problem is reported once per cache object as a warning on the ``llama_binding``
    logger, later ones at debug level.
    """

    _INDEX = "llama_binding/index"
    _PREFIX = "llama_binding/state/"
    #: seconds the cache steps aside after it found the database locked or unusable
    _BACKOFF_S = 30.0

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] = ".cache/llama_cache",
        capacity_bytes: int = _DEFAULT_CAPACITY,
        *,
        lock_timeout: float = 5.0,
    ) -> None:
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a str or os.PathLike, not {type(cache_dir).__name__}")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)):
            raise TypeError(f"lock_timeout must be a number of seconds, not {type(lock_timeout).__name__}")
        if not 0 <= lock_timeout < float("inf"):
            raise ValueError(f"lock_timeout must be a finite number of seconds >= 0, got {lock_timeout}")
        self._capacity = _check_capacity(capacity_bytes)
        self._dir = os.fspath(cache_dir)
        self._lock_timeout = float(lock_timeout)
        self._guard = threading.Lock()  # serializes opening and rebuilding, not cache operations
        self._cache: Any = None
        self._generation = 0  # bumped by each rebuild, so concurrent failures rebuild once
        self._resume_at = 0.0  # time.monotonic() before which the cache steps aside
        self._reported: set[str] = set()
        try:
            self._open()
        except _STORAGE_ERRORS as exc:
            self._failed(exc, self._generation, "open")

    @property
    def cache_dir(self) -> str:
        """The directory, shared by every process that opens it."""
        return self._dir

    @property
    def cache_size(self) -> int:
        return self._run("read", lambda: self._read_index().total, 0)

    @property
    def capacity_bytes(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return self._run("read", lambda: len(self._read_index().slots()), 0)

    def __repr__(self) -> str:
        return f"LlamaDiskCache({self._dir!r}, capacity_bytes={self._capacity})"

    def close(self) -> None:
        """Close this process's database connection (reopened on next use)."""
        cache = self._cache
        if cache is not None:
            with contextlib.suppress(*_STORAGE_ERRORS):
                cache.close()

    def lookup(self, key: str, tokens: Sequence[int]) -> tuple[int, bytes] | None:
        key = _check_key(key)
        packed = _pack_tokens(tokens, allow_empty=True)
        return self._run("lookup", lambda: self._lookup(key, packed), None)

    def store(self, key: str, tokens: Sequence[int], state: bytes) -> None:
        checked = _checked_entry(key, tokens, state, self._capacity, f"disk prompt cache {self._dir}")
        if checked is not None:
            self._run("store", lambda: self._store(*checked), None)

    def clear(self) -> None:
        """Remove everything in the directory (it belongs to this cache), atomically."""

        def clear() -> None:
            with self._cache.transact():
                self._cache.clear()

        self._run("clear", clear, None)

    # -- internals: failures -----------------------------------------------------------------

    def _run(self, what: str, op: Callable[[], _T], fallback: _T) -> _T:
        """``op()``, or ``fallback`` when the storage fails (see the class docstring)."""
        for attempt in range(2):
            if time.monotonic() < self._resume_at:
                return fallback
            generation = self._generation
            try:
                if self._cache is None:
                    self._open()
                    generation = self._generation
                return op()
            except _STORAGE_ERRORS as exc:
                if not self._failed(exc, generation, what, may_rebuild=attempt == 0):
                    return fallback
        return fallback

    def _open(self) -> None:
        """Create the diskcache object (probing the database first) unless one is open."""
        with self._guard:
            if self._cache is not None:
                return
            os.makedirs(self._dir, exist_ok=True)
            _probe(os.path.join(self._dir, DBNAME), self._lock_timeout)
            self._cache = _SafeCache(self._dir, self._lock_timeout)
            self._generation += 1

    def _failed(self, exc: BaseException, generation: int, what: str, *, may_rebuild: bool = True) -> bool:
        """Handle a storage error met by ``what``; True when the operation is worth retrying."""
        kind = _failure_kind(exc)
        if kind == "broken" and not may_rebuild:
            self._report("unrebuildable", "disk prompt cache %s still fails after a rebuild (%s during %s); "
                         "skipping it for %.0f s", self._dir, _describe(exc), what, self._BACKOFF_S)
            self._resume_at = time.monotonic() + self._BACKOFF_S
            with self._guard:
                if self._generation == generation:
                    self._cache = None  # reopened (and probed) after the pause
            return False
        if kind != "broken":
            verb = "is locked by another process" if kind == "locked" else "cannot be used"
            self._report(kind, "disk prompt cache %s %s (%s during %s); skipping it for %.0f s",
                         self._dir, verb, _describe(exc), what, self._BACKOFF_S)
            self._resume_at = time.monotonic() + self._BACKOFF_S
            return False
        with self._guard:
            if self._generation != generation and self._cache is not None:
                return True  # another thread rebuilt it meanwhile
            self._report("broken", "disk prompt cache %s is damaged (%s during %s); rebuilding it",
                         self._dir, _describe(exc), what)
            old, self._cache = self._cache, None
            if old is not None:
                with contextlib.suppress(*_STORAGE_ERRORS):
                    old.close()
            try:
                _remove_diskcache_files(self._dir)
            except OSError as err:
                self._report("unrebuildable", "disk prompt cache %s could not be rebuilt (%s); "
                             "skipping it for %.0f s", self._dir, _describe(err), self._BACKOFF_S)
                self._resume_at = time.monotonic() + self._BACKOFF_S
                return False
        return True  # _run opens the fresh cache and retries once

    def _report(self, kind: str, message: str, *args: object) -> None:
        level = logging.DEBUG if kind in self._reported else logging.WARNING
        self._reported.add(kind)
        logger.log(level, message, *args)

    # -- internals: the cache ----------------------------------------------------------------

    def _lookup(self, key: str, packed: bytes) -> tuple[int, bytes] | None:
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

    def _store(self, key: str, packed: bytes, state: bytes, nbytes: int) -> None:
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

    def _get(self, name: str) -> object:
        """A stored value; None when absent, ``_UNREADABLE`` when it cannot be read."""
        try:
            value: object = self._cache.get(name)
        except (_UnreadableValue, ValueError, EOFError):  # unreadable file, refused pickle, bad text
            return _UNREADABLE
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


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _remove_diskcache_files(directory: str) -> None:
    """Remove what diskcache created in ``directory`` (database, journals, value files), and
    nothing else."""
    for name in _DB_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    with os.scandir(directory) as top:
        outer = [entry.path for entry in top if _HEX2.fullmatch(entry.name) and entry.is_dir()]
    for path in outer:
        with os.scandir(path) as level:
            inner = [entry.path for entry in level if _HEX2.fullmatch(entry.name) and entry.is_dir()]
        for sub in inner:
            with os.scandir(sub) as files:
                for entry in files:
                    if entry.name.endswith(".val") and entry.is_file(follow_symlinks=False):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
            with contextlib.suppress(OSError):
                os.rmdir(sub)
        with contextlib.suppress(OSError):
            os.rmdir(path)
