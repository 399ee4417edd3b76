"""The progress of ``llama_binding.quantize`` (``progress=``) and of ``llama-binding
quantize`` on a terminal: the output's size against :func:`estimated_size`, from a thread."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import llama_binding
from llama_binding.quantize import _SizePoller, estimated_size


@pytest.fixture(scope="module")
def f32_model(tiny_model: Callable[..., Path]) -> Path:
    """The F32 model of test_quantize.py (tensors wide enough for k-quant blocks)."""
    return tiny_model(vocab="llama-spm", n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_layer=2)


def test_a_callable_gets_fractions_up_to_one(f32_model: Path, tmp_path: Path) -> None:
    seen: list[float] = []
    quiet, told = tmp_path / "quiet.gguf", tmp_path / "told.gguf"
    told.write_bytes(b"an older file, replaced")
    llama_binding.quantize(f32_model, quiet, "Q8_0", threads=2)
    llama_binding.quantize(f32_model, told, "Q8_0", threads=2, progress=seen.append)
    assert told.read_bytes() == quiet.read_bytes()  # the poller only looks
    assert seen and seen[-1] == 1.0 and all(0.0 <= x <= 1.0 for x in seen)
    assert seen == sorted(seen)


def test_the_estimate(f32_model: Path, tmp_path: Path) -> None:
    for kind in ("Q8_0", "Q4_K_M", "Q4_0", "F16", "COPY"):
        out = tmp_path / f"{kind}.gguf"
        llama_binding.quantize(f32_model, out, kind, threads=2)
        assert estimated_size(f32_model, kind) == pytest.approx(out.stat().st_size, rel=0.15), kind
    assert estimated_size(f32_model, "COPY") == f32_model.stat().st_size


def test_the_poller_counts_only_what_is_written(tmp_path: Path) -> None:
    dst = tmp_path / "out.gguf"
    dst.write_bytes(b"x" * 80)  # there before: not progress
    seen: list[float] = []
    poller = _SizePoller(lambda: [str(dst)], 100, seen.append, interval=0.01)
    time.sleep(0.05)
    assert poller.written() == 0
    with dst.open("wb") as fh:  # what llama.cpp does: truncate, then write
        fh.write(b"y" * 50)
    os.utime(dst, ns=(time.time_ns(), time.time_ns() + 1))
    assert poller.written() == 50
    dst.write_bytes(b"z" * 500)  # past the estimate: 99% until done
    time.sleep(0.05)
    poller.finish(ok=False)
    assert seen[0] == 0.0 and max(seen) == 0.99 and 1.0 not in seen


def _quantize_on_a_terminal(src: Path, dst: Path, *extra: str) -> str:
    """The command's stderr when that is a terminal (a pty)."""
    leader, follower = pty.openpty()
    try:
        command = [sys.executable, "-m", "llama_binding", "quantize", str(src), str(dst), "Q8_0", *extra]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the other end closed (Linux)
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=300) == 0
    finally:
        os.close(leader)
    return b"".join(chunks).decode()


def test_the_command_draws_a_bar_on_a_terminal_only(f32_model: Path, tmp_path: Path) -> None:
    err = _quantize_on_a_terminal(f32_model, tmp_path / "a.gguf")
    assert f"\rquantizing {f32_model.name} [" in err and "] 100%" in err and "wrote" in err, err
    assert _quantize_on_a_terminal(f32_model, tmp_path / "b.gguf", "--quiet") == ""
    plain = str(tmp_path / "c.gguf")
    r = subprocess.run([sys.executable, "-m", "llama_binding", "quantize", str(f32_model), plain, "Q8_0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "quantizing" not in r.stderr and "wrote" in r.stderr
