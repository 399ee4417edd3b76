"""A damaged, foreign or locked ``LlamaDiskCache`` never crashes a process nor fails a completion.

Every case runs a real completion on stories260K in a child interpreter (a truncated file
under a memory map used to kill the process with SIGBUS), checks that the text is the one a
cache-less run gives, that the problem was reported once as a warning, and that the cache
works again afterwards (a later prompt restores a cached prefix instead of evaluating it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _child import Child

from llama_binding import LlamaDiskCache

# The child: helpers shared by the cases below. ``run_case(folder, damage, live)`` fills a cache
# through a completion, lets ``damage`` loose on the folder (while the cache object stays open
# when ``live``, else before a new one is made), then completes again.
COMMON = r'''
import glob, logging, os, shutil, sqlite3, subprocess, time
from llama_binding import LlamaDiskCache

MODEL = sys.argv[1]
PROMPT = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
          * 3).strip()  # ~95 tokens: a state over diskcache's 32 KiB inline limit, so a value file
MORE = " with her dog"

class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.warnings = []
    def emit(self, record):
        if record.levelno >= logging.WARNING and record.name == "llama_binding":
            self.warnings.append(record.getMessage())

records = Records()
logging.getLogger("llama_binding").addHandler(records)
logging.getLogger("llama_binding").setLevel(logging.DEBUG)

llm = Llama(MODEL, n_ctx=256, n_threads=1, verbose=False)
EXPECTED = llm(PROMPT + MORE, max_tokens=8, temperature=0.0)["choices"][0]["text"]

def complete(cache, prompt):
    llm.reset()
    llm.set_cache(cache)
    llm.engine.context.perf_reset()
    text = llm(prompt, max_tokens=8, temperature=0.0)["choices"][0]["text"]
    return text, llm.engine.context.perf()["n_p_eval"]

def files(folder, pattern):
    return sorted(glob.glob(os.path.join(folder, pattern)))

def empty(path):
    open(path, "r+b").truncate(0)

def half(path):
    open(path, "r+b").truncate(os.path.getsize(path) // 2)

def garble(path):
    size = max(os.path.getsize(path), 4096)
    with open(path, "r+b") as f:
        f.write(bytes((i * 131 + 7) % 256 for i in range(size)))

def check_works_again(cache, case):
    """A completion stores its prompt, and a later, longer prompt restores it."""
    text, _ = complete(cache, PROMPT)
    n_full = len(llm.tokenize((PROMPT + MORE).encode()))
    text, evaluated = complete(cache, PROMPT + MORE)
    assert text == EXPECTED, (case, "after", text, EXPECTED)
    assert evaluated < n_full / 3, (case, "the cache was not used again", evaluated, n_full)
    assert len(cache) > 0, case

def run_case(folder, damage, live, pattern, expect_warning):
    shutil.rmtree(folder, ignore_errors=True)
    cache = LlamaDiskCache(folder, 64 << 20)
    complete(cache, PROMPT)
    targets = files(folder, pattern)
    assert targets, (pattern, "nothing to damage", os.listdir(folder))
    if not live:
        cache.close()
    for path in targets:
        damage(path)
    del records.warnings[:]
    if not live:
        cache = LlamaDiskCache(folder, 64 << 20)
    for _ in range(3):  # the problem is reported once, not on every use
        text, _ = complete(cache, PROMPT + MORE)
        assert text == EXPECTED, (text, EXPECTED)
    warned = list(records.warnings)
    assert len(warned) <= 2, warned
    if expect_warning:
        assert warned, "the damage was not reported"
    check_works_again(cache, pattern)
    return warned
'''

DAMAGE = COMMON + r'''
folder = sys.argv[2]
for live in (True, False):
    where = "live" if live else "reopened"
    for pattern, damages, warns in (("cache.db", ("empty", "half", "garble"), True),
                                    ("*/*/*.val", ("empty", "half", "garble", "os.unlink"), True)):
        for name in damages:
            damage = eval(name)
            # an emptied database is a new, empty one, and a halved one may still answer every
            # query (the pages cut off held nothing read since): no damage to report
            warns_now = warns and not (pattern == "cache.db" and name in ("empty", "half"))
            report(f"{where} {pattern} {name}",
                   lambda: run_case(folder, damage, live, pattern, warns_now))
'''


def test_damaged_disk_cache_files_neither_crash_nor_fail_a_completion(stories260k: Path,
                                                                       tmp_path: Path) -> None:
    child = Child(DAMAGE, str(stories260k), str(tmp_path / "cache"), timeout=240)
    for live in ("live", "reopened"):
        for pattern, damages in (("cache.db", ("empty", "half", "garble")),
                                 ("*/*/*.val", ("empty", "half", "garble", "os.unlink"))):
            for name in damages:
                outcome = child[f"{live} {pattern} {name}"]
                assert outcome.name == "OK", f"{live} {pattern} {name}: {outcome.name}: {outcome.message}"
    assert "damaged" in child["live cache.db garble"].message
    assert "not a database" in child["live cache.db garble"].message
    assert "dropped" in child["reopened */*/*.val half"].message


# A cache left behind by a process that used diskcache's default WAL mode and died: its -wal
# and -shm files (the -shm is memory-mapped by SQLite) are then truncated or garbled.
WAL = COMMON + r'''
folder = sys.argv[2]
leave_wal = """
import os, sys, diskcache
c = diskcache.Cache(sys.argv[1], sqlite_journal_mode="wal", sqlite_mmap_size=2**26)  # diskcache defaults
for i in range(20):
    c.set(f"other{i}", bytes(5000))
os._exit(0)  # no close: the -wal and -shm files stay
"""
for target, name in (("cache.db-shm", "empty"), ("cache.db-shm", "garble"), ("cache.db-wal", "half"),
                     ("cache.db-wal", "garble"), ("cache.db", "half")):
    def case(target=target, name=name):
        shutil.rmtree(folder, ignore_errors=True)
        cache = LlamaDiskCache(folder, 64 << 20)
        complete(cache, PROMPT)
        cache.close()
        subprocess.run([sys.executable, "-c", leave_wal, folder], check=True, timeout=60)
        assert os.path.exists(os.path.join(folder, "cache.db-shm")), os.listdir(folder)
        eval(name)(os.path.join(folder, target))
        cache = LlamaDiskCache(folder, 64 << 20)
        text, _ = complete(cache, PROMPT + MORE)
        assert text == EXPECTED, (text, EXPECTED)
        check_works_again(cache, target)
        assert not os.path.exists(os.path.join(folder, "cache.db-shm")), "still in WAL mode"
        return list(records.warnings)
    report(f"{target} {name}", case)
'''


def test_a_left_over_wal_database_is_taken_over_without_memory_maps(stories260k: Path,
                                                                    tmp_path: Path) -> None:
    child = Child(WAL, str(stories260k), str(tmp_path / "cache"), timeout=240)
    for label in ("cache.db-shm empty", "cache.db-shm garble", "cache.db-wal half", "cache.db-wal garble",
                  "cache.db half"):
        outcome = child[label]
        assert outcome.name == "OK", f"{label}: {outcome.name}: {outcome.message}"


# Another process holds the database's exclusive lock: the completion does not wait more than
# lock_timeout, reports it once, and the cache is used again once the lock is gone.
LOCKED = COMMON + r'''
folder, ready = sys.argv[2], sys.argv[3]
holder = """
import sqlite3, sys, time, pathlib
con = sqlite3.connect(sys.argv[1] + "/cache.db", isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
pathlib.Path(sys.argv[2]).write_text("locked")
time.sleep(float(sys.argv[3]))
con.execute("ROLLBACK")
"""
LlamaDiskCache._BACKOFF_S = 1.0

def locked(opened_before):
    shutil.rmtree(folder, ignore_errors=True)
    if os.path.exists(ready):
        os.unlink(ready)
    cache = LlamaDiskCache(folder, 64 << 20, lock_timeout=0.3) if opened_before else None
    if cache is not None:
        complete(cache, PROMPT)
    else:
        os.makedirs(folder)
        sqlite3.connect(os.path.join(folder, "cache.db")).close()
    proc = subprocess.Popen([sys.executable, "-c", holder, folder, ready, "2"])
    while not os.path.exists(ready):
        time.sleep(0.01)
    del records.warnings[:]
    start = time.monotonic()
    if cache is None:
        cache = LlamaDiskCache(folder, 64 << 20, lock_timeout=0.3)
    for _ in range(3):
        text, _ = complete(cache, PROMPT + MORE)
        assert text == EXPECTED, (text, EXPECTED)
    took = time.monotonic() - start
    assert took < 3.0, ("waited too long for the lock", took)
    warned = list(records.warnings)
    assert len(warned) == 1 and "locked" in warned[0], warned
    proc.wait(30)
    time.sleep(LlamaDiskCache._BACKOFF_S)
    check_works_again(cache, "locked")
    return warned

report("locked while open", lambda: locked(True))
report("locked before open", lambda: locked(False))
'''


def test_a_database_locked_by_another_process_is_skipped_not_waited_for(stories260k: Path,
                                                                        tmp_path: Path) -> None:
    child = Child(LOCKED, str(stories260k), str(tmp_path / "cache"), str(tmp_path / "ready"), timeout=120)
    for label in ("locked while open", "locked before open"):
        outcome = child[label]
        assert outcome.name == "OK", f"{label}: {outcome.name}: {outcome.message}"
        assert "locked by another process" in outcome.message


# -- model-free ----------------------------------------------------------------------------


def test_sqlite_runs_without_memory_maps_or_shared_memory(tmp_path: Path) -> None:
    cache = LlamaDiskCache(tmp_path, 1 << 20)
    cache.store("k", [1, 2, 3], b"state" * 10_000)
    con = cache._cache._con
    assert con.execute("PRAGMA mmap_size").fetchone()[0] == 0
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not (tmp_path / "cache.db-shm").exists()
    # a connection made in another thread gets the same settings
    import threading

    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(cache._cache._con.execute("PRAGMA mmap_size")
                                                         .fetchone()[0]))
    thread.start()
    thread.join()
    assert seen == [0]


def test_a_foreign_file_is_rebuilt_once_and_other_files_are_kept(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "cache.db").write_bytes(b"not a database at all" * 200)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "keep.txt").write_text("mine too")
    with caplog.at_level("WARNING", logger="llama_binding"):
        cache = LlamaDiskCache(tmp_path, 1 << 20)
        cache.store("k", [1, 2], b"state")
        assert cache.lookup("k", [1, 2, 3]) == (2, b"state")
    assert [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()] == [
        caplog.records[0].getMessage()]
    assert "file is not a database" in caplog.text
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "ab" / "keep.txt").read_text() == "mine too"


def test_a_missing_index_file_clears_instead_of_orphaning_entries(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    cache = LlamaDiskCache(tmp_path, 64 << 20)
    for n in range(1, 700):  # an index over 32 KiB: diskcache keeps it in a file of its own
        cache.store("k", [n, n], b"s")
    index_files = [p for p in tmp_path.glob("*/*/*.val") if p.stat().st_size > 32_000]
    assert len(index_files) == 1
    index_files[0].unlink()
    with caplog.at_level("WARNING", logger="llama_binding"):
        assert cache.lookup("k", [5, 5]) is None
    assert "index is unreadable" in caplog.text and "clearing" in caplog.text
    assert len(cache) == 0 and list(tmp_path.glob("*/*/*.val")) == []


def test_lock_timeout_is_checked(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="lock_timeout"):
        LlamaDiskCache(tmp_path, lock_timeout="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lock_timeout"):
        LlamaDiskCache(tmp_path, lock_timeout=-1)
    with pytest.raises(ValueError, match="lock_timeout"):
        LlamaDiskCache(tmp_path, lock_timeout=float("nan"))


def test_an_unwritable_directory_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    cache = LlamaDiskCache(tmp_path / "c", 1 << 20)
    cache.store("k", [1, 2], b"state")
    cache.close()
    (tmp_path / "c").chmod(0o500)
    (tmp_path / "c" / "cache.db").chmod(0o400)
    try:
        with caplog.at_level("WARNING", logger="llama_binding"):
            ro = LlamaDiskCache(tmp_path / "c", 1 << 20)
            ro.store("k", [1, 2, 3], b"more")
            ro.lookup("k", [1, 2, 3])
        assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1, caplog.text
    finally:
        (tmp_path / "c").chmod(0o700)
        (tmp_path / "c" / "cache.db").chmod(0o600)


def test_the_busy_wait_is_bounded_model_free(tmp_path: Path) -> None:
    LlamaDiskCache(tmp_path, 1 << 20).store("k", [1], b"x")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sqlite3,sys,time;c=sqlite3.connect(sys.argv[1],isolation_level=None);"
                               "c.execute('BEGIN EXCLUSIVE');print('held',flush=True);time.sleep(5)",
                               str(tmp_path / "cache.db")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        cache = LlamaDiskCache(tmp_path, 1 << 20, lock_timeout=0.2)
        assert cache.lookup("k", [1, 2]) is None and len(cache) == 0
        cache.store("k", [1, 2], b"y")
        assert time.monotonic() - start < 2
    finally:
        holder.kill()
        holder.wait()
