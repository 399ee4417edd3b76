"""Prompt caches (model-free): prefix lookup, LRU by bytes, and the disk store across processes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import diskcache  # type: ignore[import-untyped]
import numpy as np
import pytest

from llama_binding.generation import cache as cache_module
from llama_binding.generation import disk_cache as disk_module
from llama_binding.generation.cache import LlamaRAMCache, StateCache
from llama_binding.generation.disk_cache import LlamaDiskCache

REPO = Path(__file__).resolve().parents[2]
BIG = 100_000  # larger than diskcache's 32 KiB inline limit: stored as a file of its own

Factory = Callable[[int], StateCache]


def weight(tokens: Sequence[int], state: bytes) -> int:
    return 4 * len(tokens) + len(state)


@pytest.fixture(params=["ram", "disk"])
def make_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    def make(capacity: int = 1 << 20) -> StateCache:
        if request.param == "ram":
            return LlamaRAMCache(capacity)
        return LlamaDiskCache(tmp_path / "cache", capacity)

    return make


def run_python(code: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter (a second process sharing the cache directory)."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- both stores -------------------------------------------------------------------------------


def test_public_names() -> None:
    assert sorted(cache_module.__all__) == ["LlamaRAMCache", "StateCache"]
    assert disk_module.__all__ == ["LlamaDiskCache"]
    assert issubclass(LlamaRAMCache, StateCache) and issubclass(LlamaDiskCache, StateCache)
    assert LlamaRAMCache().capacity_bytes == 2 << 30


def test_longest_prefix(make_cache: Factory) -> None:
    c = make_cache(1 << 20)
    c.store("k", [1, 2], b"two")
    c.store("k", [1, 2, 3, 4], b"four")
    c.store("k", [1, 2, 3, 4, 5, 6, 7], b"seven")
    c.store("k", [1, 9], b"other")
    assert c.lookup("k", [1, 2, 3, 4, 5]) == (4, b"four")
    assert c.lookup("k", [1, 2, 3, 4]) == (4, b"four")  # equal counts as a prefix
    assert c.lookup("k", [1, 2, 3]) == (2, b"two")
    assert c.lookup("k", [1, 2, 3, 4, 5, 6, 7, 8]) == (7, b"seven")
    assert c.lookup("k", [1, 9, 9]) == (2, b"other")
    assert c.lookup("k", [1]) is None
    assert c.lookup("k", [2, 1]) is None
    assert c.lookup("k", []) is None


def test_keys_isolate(make_cache: Factory) -> None:
    c = make_cache(1 << 20)
    c.store("model-a", [1, 2, 3], b"a")
    c.store("model-b", [1, 2], b"b")
    assert c.lookup("model-a", [1, 2, 3]) == (3, b"a")
    assert c.lookup("model-b", [1, 2, 3]) == (2, b"b")
    assert c.lookup("model-c", [1, 2, 3]) is None


def test_equal_tokens_replace(make_cache: Factory) -> None:
    c = make_cache(1 << 20)
    c.store("k", [1, 2, 3], b"old")
    c.store("k", [1, 2, 3], b"newer")
    assert len(c) == 1 and c.cache_size == weight([1, 2, 3], b"newer")
    assert c.lookup("k", [1, 2, 3]) == (3, b"newer")
    c.store("k", [1, 2, 4], b"same length, other tokens")
    assert len(c) == 2
    assert c.lookup("k", [1, 2, 3, 5]) == (3, b"newer")


def test_lru_eviction_by_bytes_and_lookup_refreshes(make_cache: Factory) -> None:
    state = bytes(1000)
    w = weight([0, 0], state)
    c = make_cache(3 * w)
    for first in (1, 2, 3):
        c.store("k", [first, 0], state)
    assert len(c) == 3 and c.cache_size == 3 * w
    assert c.lookup("k", [1, 0, 5]) is not None  # 1 is now the most recent; 2 the least
    c.store("k", [4, 0], state)
    assert c.lookup("k", [2, 0]) is None
    assert all(c.lookup("k", [t, 0]) is not None for t in (1, 3, 4))
    c.store("k", [5, 0], state)  # order now 1, 3, 4: 1 goes
    assert c.lookup("k", [1, 0]) is None
    assert len(c) == 3 and c.cache_size == 3 * w <= c.capacity_bytes


def test_one_store_evicts_as_many_as_needed(make_cache: Factory) -> None:
    c = make_cache(1000)
    for t in range(5):
        c.store("k", [t], bytes(150))
    c.store("k", [9], bytes(700))
    assert c.cache_size <= 1000
    assert c.lookup("k", [9]) == (1, bytes(700))
    assert len(c) == 2  # 154 + 704 fit, a third small entry would not


def test_oversized_entry_is_skipped(make_cache: Factory) -> None:
    c = make_cache(100)
    c.store("k", [1], b"x" * 10)
    c.store("k", [2], b"y" * 200)
    assert c.lookup("k", [2]) is None
    assert c.lookup("k", [1]) == (1, b"x" * 10)
    c.store("k", [1], b"z" * 200)  # a too-large replacement keeps the old, still valid, state
    assert c.lookup("k", [1]) == (1, b"x" * 10)
    c.store("k", [3], b"w" * 96)  # exactly the capacity: stored, and everything else goes
    assert len(c) == 1 and c.cache_size == 100


def test_cache_size_and_clear(make_cache: Factory) -> None:
    c = make_cache(1 << 20)
    assert len(c) == 0 and c.cache_size == 0
    c.store("a", [1, 2, 3], b"abc")
    c.store("b", [4], bytes(BIG))
    assert c.cache_size == weight([1, 2, 3], b"abc") + weight([4], bytes(BIG))
    c.clear()
    assert len(c) == 0 and c.cache_size == 0
    assert c.lookup("a", [1, 2, 3]) is None
    c.store("a", [1], b"again")
    assert c.lookup("a", [1, 2]) == (1, b"again")


def test_bytes_like_state_and_numpy_tokens(make_cache: Factory) -> None:
    c = make_cache(1 << 20)
    state = bytearray(b"mutable")
    c.store("k", np.array([5, 6, 7], dtype=np.int32), state)  # type: ignore[arg-type]
    state[:] = b"changed"
    assert c.lookup("k", [5, 6, 7, 8]) == (3, b"mutable")
    c.store("k", [5], memoryview(b"view"))  # type: ignore[arg-type]
    assert c.lookup("k", np.array([5, 9])) == (1, b"view")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("capacity", "error"),
    [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError), ("9", TypeError)],
)
def test_capacity_is_checked(capacity: object, error: type[Exception], tmp_path: Path) -> None:
    with pytest.raises(error, match="capacity_bytes"):
        LlamaRAMCache(capacity)  # type: ignore[arg-type]
    with pytest.raises(error, match="capacity_bytes"):
        LlamaDiskCache(tmp_path, capacity)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "tokens", "state", "error", "match"),
    [
        (1, [1], b"s", TypeError, "key must be a str"),
        ("k", "abc", b"s", TypeError, "not str"),
        ("k", b"\x01\x02", b"s", TypeError, "not bytes"),
        ("k", [1.5], b"s", TypeError, "int token ids"),
        ("k", None, b"s", TypeError, "int token ids"),
        ("k", [2**40], b"s", ValueError, "int32"),
        ("k", [], b"s", ValueError, "empty"),
        ("k", [1], "text", TypeError, "state must be bytes"),
        ("k", [1], 5, TypeError, "state must be bytes"),
        ("k", [1], b"", ValueError, "state is empty"),
    ],
)
def test_store_arguments_are_checked(
    make_cache: Factory, key: object, tokens: object, state: object, error: type[Exception], match: str
) -> None:
    c = make_cache(1 << 20)
    with pytest.raises(error, match=match):
        c.store(key, tokens, state)  # type: ignore[arg-type]
    assert len(c) == 0


def test_lookup_arguments_are_checked(make_cache: Factory) -> None:
    c = make_cache(1 << 20)
    with pytest.raises(TypeError, match="key must be a str"):
        c.lookup(None, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int token ids"):
        c.lookup("k", [1, "2"])  # type: ignore[list-item]


def test_cache_dir_is_checked() -> None:
    with pytest.raises(TypeError, match="cache_dir"):
        LlamaDiskCache(123)  # type: ignore[arg-type]


# -- disk: processes -----------------------------------------------------------------------------

LOOKUP_AND_STORE = """
import json, sys
from llama_binding.generation.disk_cache import LlamaDiskCache
c = LlamaDiskCache(sys.argv[1], int(sys.argv[2]))
found = [c.lookup("k", q) for q in json.loads(sys.argv[3])]
for tokens in json.loads(sys.argv[4]):
    c.store("k", tokens, bytes([tokens[0]]) * 1000)
print(json.dumps([None if f is None else [f[0], f[1][:1].hex(), len(f[1])] for f in found]))
"""


def in_other_process(
    cache_dir: Path, capacity: int, lookups: list[list[int]], stores: list[list[int]]
) -> list[object]:
    args = (str(cache_dir), str(capacity), json.dumps(lookups), json.dumps(stores))
    result: list[object] = json.loads(run_python(LOOKUP_AND_STORE, *args))
    return result


def test_second_process_finds_entries(tmp_path: Path) -> None:
    c = LlamaDiskCache(tmp_path, 1 << 20)
    c.store("k", [7, 8, 9], bytes([7]) * BIG)
    assert in_other_process(tmp_path, 1 << 20, [[7, 8, 9, 10], [8]], [[3, 4]]) == [[3, "07", BIG], None]
    assert c.lookup("k", [3, 4, 5]) == (2, bytes([3]) * 1000)
    assert len(c) == 2


def test_capacity_and_recency_across_processes(tmp_path: Path) -> None:
    w = weight([0, 0], bytes(1000))
    c = LlamaDiskCache(tmp_path, 3 * w)
    c.store("k", [1, 0], bytes([1]) * 1000)
    c.store("k", [2, 0], bytes([2]) * 1000)
    # the other process refreshes 1, then adds two: the least recent, 2, must go
    assert in_other_process(tmp_path, 3 * w, [[1, 0, 0]], [[3, 0], [4, 0]]) == [[2, "01", 1000]]
    assert len(c) == 3 and c.cache_size == 3 * w
    assert c.lookup("k", [2, 0]) is None
    assert [c.lookup("k", [t, 0]) is not None for t in (1, 3, 4)] == [True, True, True]


def test_concurrent_writers_keep_the_bound(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = weight([0, 0], bytes(1000))
    capacity = 10 * w
    LlamaDiskCache(tmp_path, capacity)  # create the database before the race
    args = (str(tmp_path), str(capacity), "[]")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                LOOKUP_AND_STORE,
                *args,
                json.dumps([[p * 40 + i + 1, 0] for i in range(40)]),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    c = LlamaDiskCache(tmp_path, capacity)
    assert len(c) == 10 and c.cache_size == capacity
    with caplog.at_level(logging.WARNING, logger="llama_binding"):
        hits = [t for t in range(1, 121) if c.lookup("k", [t, 0]) is not None]
    assert len(hits) == 10 and not caplog.records  # every indexed entry is whole
    raw = diskcache.Cache(str(tmp_path))
    assert sum(1 for name in raw if name.startswith(LlamaDiskCache._PREFIX)) == 10  # no value leaked


# -- disk: damage --------------------------------------------------------------------------------


def value_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("**/*.val"))


def stored_pair(cache_dir: Path) -> LlamaDiskCache:
    """A short entry held inline in SQLite and a long one in the only value file."""
    c = LlamaDiskCache(cache_dir, 1 << 20)
    c.store("k", [1, 2], b"short")
    c.store("k", [1, 2, 3, 4], bytes(range(256)) * (BIG // 256))
    assert len(value_files(cache_dir)) == 1
    return c


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


@pytest.mark.parametrize("damage", [flip, truncate, Path.unlink], ids=["flipped", "truncated", "removed"])
def test_damaged_value_file_is_dropped(
    damage: Callable[[Path], None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = stored_pair(tmp_path)
    damage(value_files(tmp_path)[0])
    with caplog.at_level(logging.WARNING, logger="llama_binding"):
        assert c.lookup("k", [1, 2, 3, 4, 5]) == (2, b"short")  # the lookup goes on to shorter entries
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "dropped a 4-token entry" in caplog.text
    assert len(c) == 1 and c.cache_size == weight([1, 2], b"short")
    c.store("k", [1, 2, 3, 4], b"fresh")
    assert c.lookup("k", [1, 2, 3, 4, 5]) == (4, b"fresh")


@pytest.mark.parametrize("bad", [b"garbage", {"a": "pickled object"}, "text"], ids=["bytes", "pickle", "str"])
def test_foreign_value_written_through_diskcache_is_dropped(
    bad: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = stored_pair(tmp_path)
    raw = diskcache.Cache(str(tmp_path))
    (name,) = [n for n in raw if n.startswith(LlamaDiskCache._PREFIX) and len(raw[n]) > 1000]
    raw.set(name, bad)

    def no_unpickling(*args: object, **kwargs: object) -> object:
        raise AssertionError("the cache must never unpickle what it reads")

    monkeypatch.setattr(diskcache.core.pickle, "load", no_unpickling)
    with caplog.at_level(logging.WARNING, logger="llama_binding"):
        assert c.lookup("k", [1, 2, 3, 4]) == (2, b"short")
    assert "dropped a 4-token entry" in caplog.text
    assert len(c) == 1
    c.store("k", [1, 2, 3, 4], b"fresh")
    assert c.lookup("k", [1, 2, 3, 4]) == (4, b"fresh")


def test_value_moved_under_another_key_fails_its_checksum(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = LlamaDiskCache(tmp_path, 1 << 20)
    c.store("a", [1, 2], b"state of a")
    c.store("b", [1, 2], b"state of b")
    raw = diskcache.Cache(str(tmp_path))
    values = {bytes(raw[n])[-10:]: n for n in raw if n.startswith(LlamaDiskCache._PREFIX)}
    raw.set(values[b"state of b"], raw[values[b"state of a"]])
    with caplog.at_level(logging.WARNING, logger="llama_binding"):
        assert c.lookup("b", [1, 2]) is None
    assert "checksum" in caplog.text
    assert c.lookup("a", [1, 2]) == (2, b"state of a")


def test_damaged_index_clears_the_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = stored_pair(tmp_path)
    diskcache.Cache(str(tmp_path)).set(LlamaDiskCache._INDEX, b'{"format": 1, "tick": ')
    with caplog.at_level(logging.WARNING, logger="llama_binding"):
        assert c.lookup("k", [1, 2, 3, 4]) is None
    assert "clearing the cache" in caplog.text
    assert len(c) == 0 and value_files(tmp_path) == []
    c.store("k", [1], b"again")
    assert c.lookup("k", [1, 2]) == (1, b"again")


def test_lookup_reads_only_the_index_and_the_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = LlamaDiskCache(tmp_path, 1 << 20)
    for n in range(1, 30):
        c.store("k", list(range(n)), bytes([n]) * 100)
        c.store("k", [*range(n - 1), 99], bytes([n]) * 100)  # same lengths, other tokens
    index_names = {slot.name: n for _, n, _, slot in c._read_index().slots()}
    reads: list[str] = []
    real_get = c._get

    def spy(name: str) -> object:
        reads.append(name)
        return real_get(name)

    monkeypatch.setattr(c, "_get", spy)
    assert c.lookup("k", list(range(12))) == (12, bytes([12]) * 100)
    states_read = [index_names[n] for n in reads if n in index_names]
    assert states_read == [12]
