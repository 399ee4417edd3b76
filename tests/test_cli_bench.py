"""``llama-binding bench`` as a user drives it (subprocesses on stories260K, small tests so
that a run takes seconds), and the pure logic of ``llama_binding.benchmark`` (model-free)."""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from llama_binding import benchmark
from llama_binding.benchmark import Speed, bench_name, compare, parse_llama_bench
from llama_binding.cli import bench as bench_cli
from llama_binding.cli.output import Output

TIMEOUT = 180
SMALL = ("-p", "32", "-n", "16", "-r", "2", "-t", "1")
HAS_LLAMA_BENCH = benchmark.llama_bench_path() is not None


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llama_binding", "bench", *args], capture_output=True,
                          text=True, timeout=TIMEOUT)


def _rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by test name (the header row under "test")."""
    return {cells[0]: cells[1:] for cells in (line.split() for line in stdout.splitlines()[1:]) if cells}


def test_the_table_beside_llama_bench(stories260k: Path) -> None:
    if not HAS_LLAMA_BENCH:
        pytest.skip("llama-bench not built (LLAMA_BINDING_TOOLS=ON)")
    r = cli(str(stories260k), *SMALL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("stories260K.gguf: threads 1"), r.stdout
    rows = _rows(r.stdout)
    assert rows["test"] == ["ours", "t/s", "llama-bench", "t/s", "ratio"], r.stdout
    assert set(rows) == {"test", "pp32", "tg16"}
    for test in ("pp32", "tg16"):
        ours, theirs, ratio = (float(x) for x in rows[test])
        assert ours > 0 and theirs > 0
        assert ratio == pytest.approx(ours / theirs, rel=0.01, abs=0.002)
    assert "Traceback" not in r.stderr


def test_json(stories260k: Path) -> None:
    r = cli(str(stories260k), *SMALL, "--json", "--flash-attn", "off", "--n_gpu_layers", "0")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["n_prompt"], d["n_gen"], d["repetitions"], d["threads"]) == (32, 16, 2, 1)
    assert (d["flash_attn"], d["n_gpu_layers"], d["llama_bench"]) == ("off", 0, HAS_LLAMA_BENCH)
    tests = {t["test"]: t for t in d["tests"]}
    assert set(tests) == {"pp32", "tg16"}
    for t in tests.values():
        assert t["ours_tps"] > 0 and len(t["ours_samples"]) == 2 and all(x > 0 for x in t["ours_samples"])
        assert t["ours_tps"] == pytest.approx(statistics.median(t["ours_samples"]))
        if HAS_LLAMA_BENCH:
            assert t["llama_bench_tps"] > 0 and len(t["llama_bench_samples"]) == 2
            assert t["ratio"] == pytest.approx(t["ours_tps"] / t["llama_bench_tps"])


def test_no_llama_bench_and_one_test_only(stories260k: Path) -> None:
    r = cli(str(stories260k), "-p", "0", "-n", "8", "-r", "1", "--no-llama-bench")
    assert r.returncode == 0, r.stderr
    rows = _rows(r.stdout)
    assert rows["test"] == ["ours", "t/s"] and set(rows) == {"test", "tg8"} and float(rows["tg8"][0]) > 0
    assert "llama-bench" not in r.stderr
    r = cli(str(stories260k), "-p", "16", "-n", "0", "-r", "1", "--no_llama_bench", "--json")
    d = json.loads(r.stdout)
    assert d["llama_bench"] is False and d["note"] is None
    assert [t["test"] for t in d["tests"]] == ["pp16"] and d["tests"][0]["ratio"] is None


def test_without_llama_bench_built(stories260k: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_cli, "llama_bench_path", lambda: None)
    out, err = io.StringIO(), io.StringIO()
    code = bench_cli.run([str(stories260k), "-p", "16", "-n", "4", "-r", "1", "--quiet"], Output(out, err))
    assert code == 0
    rows = _rows(out.getvalue())
    assert rows["test"] == ["ours", "t/s"] and set(rows) == {"test", "pp16", "tg4"}
    notes = err.getvalue().splitlines()
    assert len(notes) == 1 and "llama-bench is not built" in notes[0], notes


def test_bad_files_and_arguments(tmp_path: Path, stories260k: Path) -> None:
    r = cli(str(tmp_path / "missing.gguf"))
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    r = cli(str(bad))
    assert r.returncode == 1 and "could not load" in r.stderr and "Traceback" not in r.stderr
    r = cli(str(stories260k), "-p", "0", "-n", "0")
    assert r.returncode == 2 and "one of them > 0" in r.stderr
    r = cli(str(stories260k), "-r", "0")
    assert r.returncode == 2 and "-r must be >= 1" in r.stderr


def test_usage_lists_bench() -> None:
    r = subprocess.run([sys.executable, "-m", "llama_binding"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert "bench MODEL" in r.stdout


# --- model-free ------------------------------------------------------------------------------

LLAMA_BENCH_JSON = """[
  {"n_prompt": 512, "n_gen": 0, "n_depth": 0, "avg_ts": 2.0, "samples_ts": [1.0, 3.0, 2.5]},
  {"n_prompt": 0, "n_gen": 128, "n_depth": 0, "avg_ts": 5.0, "samples_ts": [4.0, 6.0]},
  {"n_prompt": 0, "n_gen": 64, "n_depth": 256, "avg_ts": 7.0}
]"""


def test_names_as_llama_bench_names_its_tests() -> None:
    assert bench_name(512, 0) == "pp512" and bench_name(0, 128) == "tg128"
    assert bench_name(0, 32, 512) == "tg32 @ d512" and bench_name(4, 8) == "pp4+tg8"


def test_parse_llama_bench_json() -> None:
    pp, tg, deep = parse_llama_bench(LLAMA_BENCH_JSON)
    assert (pp.test, pp.n_tokens, pp.samples, pp.median) == ("pp512", 512, (1.0, 3.0, 2.5), 2.5)
    assert (tg.test, tg.median) == ("tg128", 5.0)
    assert (deep.test, deep.samples) == ("tg64 @ d256", (7.0,))  # no samples: its average


def test_compare_rows() -> None:
    ours = [Speed("pp512", 512, (4.0, 5.0, 6.0)), Speed("tg128", 128, (10.0,))]
    rows = compare(ours, [Speed("pp512", 512, (2.0, 2.5, 3.0))])
    assert rows[0]["ours_tps"] == 5.0 and rows[0]["llama_bench_tps"] == 2.5 and rows[0]["ratio"] == 2.0
    assert rows[1]["llama_bench_tps"] is None and rows[1]["ratio"] is None  # llama-bench did not run it
    assert all(r["llama_bench_tps"] is None for r in compare(ours, None))


def test_llama_bench_without_the_tool(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        benchmark.llama_bench(tmp_path / "m.gguf", tool=tmp_path / "no-such-llama-bench")
