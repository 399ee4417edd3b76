"""P1: the package imports, the libraries load once each, the sync refuses bad archives."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import llama_binding
from llama_binding import capi
from llama_binding.capi import _loader

REPO = Path(__file__).resolve().parents[1]


def test_version_defined_once() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", llama_binding.__version__)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "__version__" not in pyproject and 'dynamic = ["version"]' in pyproject


def test_library_loads_from_one_folder() -> None:
    folder = _loader.lib_dir()
    assert (folder / _loader.library_filename("llama")).is_file()
    assert capi.llama_max_devices() >= 1


def test_installed_libraries_ship_once_with_origin_rpath() -> None:
    if os.environ.get(_loader.ENV_LIB_DIR):
        pytest.skip(f"{_loader.ENV_LIB_DIR} points at another build; this checks the package's own")
    folder = _loader.lib_dir()
    names = sorted(p.name for p in folder.iterdir() if ".so" in p.name)
    # one copy each: no libfoo.so.0 / libfoo.so.0.0.1 duplicates, no symlinks
    assert all(n.endswith(".so") for n in names), names
    assert not any((folder / n).is_symlink() for n in names)
    for required in ("llama", "ggml", "ggml-base", "mtmd"):
        assert f"lib{required}.so" in names
    readelf = shutil.which("readelf")
    if readelf is None:
        return
    out = subprocess.run([readelf, "-d", str(folder / "libllama.so")], capture_output=True, text=True).stdout
    assert "$ORIGIN" in out, out


def test_system_info_lists_cpu() -> None:
    info = llama_binding.system_info()
    assert "CPU :" in info.llama_cpp  # llama_print_system_info's CPU feature section
    assert any(d.type == "cpu" for d in info.devices), info.devices
    cpu = next(d for d in info.devices if d.type == "cpu")
    assert cpu.name and cpu.memory_total > 0
    assert info.backends and info.as_dict()["devices"][0]["name"]


def test_tiny_model_loads_and_frees_through_raw_c(tiny_spm: Path) -> None:
    llama_binding.system_info()  # registers the backends once
    params = capi.llama_model_default_params()
    params.n_gpu_layers = 0
    model = capi.llama_model_load_from_file(str(tiny_spm).encode(), params)
    assert model, "llama_model_load_from_file returned NULL"
    try:
        assert capi.llama_model_n_layer(model) == 2
        assert capi.llama_model_n_embd(model) == 64
        vocab = capi.llama_model_get_vocab(model)
        assert capi.llama_vocab_n_tokens(vocab) == 32000
    finally:
        capi.llama_model_free(model)


def test_corrupt_gguf_returns_null(tmp_path: Path) -> None:
    llama_binding.system_info()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(64))
    params = capi.llama_model_default_params()
    assert not capi.llama_model_load_from_file(str(bad).encode(), params)


_LOAD_ERROR_PROBE = (
    "import llama_binding\n"
    "from llama_binding.errors import LibraryLoadError\n"
    "try:\n"
    "    llama_binding.system_info()\n"
    "except LibraryLoadError as e:\n"
    "    print('ERR', e)\n"
    "    print('ATTEMPTS', len(e.attempts))\n"
)


def _load_error_output(lib_dir: Path) -> str:
    """stdout of a fresh interpreter that asks for system_info() with $LLAMA_BINDING_LIB_DIR set."""
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_ERROR_PROBE], capture_output=True, text=True, timeout=120,
        env={**os.environ, _loader.ENV_LIB_DIR: str(lib_dir)}, cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_empty_lib_dir_gives_clear_error(tmp_path: Path) -> None:
    out = _load_error_output(tmp_path)
    assert "ERR could not load the llama.cpp libraries" in out
    assert str(tmp_path / "libllama.so") in out
    assert "no such file" in out and "ATTEMPTS 1" in out


def test_broken_library_in_lib_dir_names_the_reason(tmp_path: Path) -> None:
    (tmp_path / "libllama.so").write_bytes(b"not an ELF file")
    out = _load_error_output(tmp_path)
    assert "ERR could not load" in out and "libllama.so" in out and "no such file" not in out


# --- vendor/sync.py ---------------------------------------------------------------------


def _make_archive(path: Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        data = b"cmake_minimum_required(VERSION 3.14)\n"
        info = tarfile.TarInfo("pkg-1.0/vendor/llama.cpp/CMakeLists.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("pkg-1.0/other/file.txt")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))


def _pin(tmp_path: Path, sha256: str) -> Path:
    pin = tmp_path / "pin.json"
    pin.write_text(json.dumps({
        "package": "pkg", "version": "1.0", "archive": "pkg-1.0.tar.gz",
        "sha256": sha256, "tree": "pkg-1.0/vendor/llama.cpp",
    }))
    return pin


def _sync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "vendor" / "sync.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_sync_refuses_wrong_hash(tmp_path: Path) -> None:
    archive = tmp_path / "pkg-1.0.tar.gz"
    _make_archive(archive)
    dest = tmp_path / "out"
    proc = _sync("--pin", str(_pin(tmp_path, "0" * 64)), "--archive", str(archive), "--dest", str(dest))
    assert proc.returncode == 2
    assert "sha256 mismatch" in proc.stderr and "expected " + "0" * 64 in proc.stderr
    assert not dest.exists()


def test_sync_extracts_only_the_tree(tmp_path: Path) -> None:
    import hashlib

    archive = tmp_path / "pkg-1.0.tar.gz"
    _make_archive(archive)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = tmp_path / "out"
    pin = _pin(tmp_path, sha)
    proc = _sync("--pin", str(pin), "--archive", str(archive), "--dest", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert (dest / "CMakeLists.txt").is_file()
    assert not (dest / "other").exists() and (dest / ".llama-binding-pin").read_text().strip() == sha
    # a second run with the same pin is a no-op, even without the archive
    assert _sync("--pin", str(pin), "--dest", str(dest), "--archive", str(tmp_path / "gone")).returncode == 0


def test_sync_reports_failed_download(tmp_path: Path) -> None:
    pin = tmp_path / "pin.json"
    pin.write_text(json.dumps({
        "package": "llama-binding-no-such-package-xyz", "version": "0.0.0",
        "archive": "nothing.tar.gz", "sha256": "0" * 64, "tree": "x",
    }))
    proc = _sync("--pin", str(pin), "--dest", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "could not download" in proc.stderr and "--archive" in proc.stderr


def test_pinned_tree_is_synced() -> None:
    pin = json.loads((REPO / "vendor" / "pin.json").read_text())
    stamp = REPO / "vendor" / "llama.cpp" / ".llama-binding-pin"
    assert stamp.read_text().strip() == pin["sha256"]
    assert (REPO / "vendor" / "llama.cpp" / "models" / "ggml-vocab-llama-spm.gguf").is_file()


@pytest.mark.parametrize("fixture, vocab", [("tiny_spm", "llama-spm"), ("tiny_bpe", "llama-bpe")])
def test_tiny_models_carry_the_real_tokenizer(
    request: pytest.FixtureRequest, fixture: str, vocab: str
) -> None:
    """A generated model tokenizes exactly like llama.cpp's vocab-only GGUF it copied."""
    from _tinymodel import vocab_path

    llama_binding.system_info()
    path = request.getfixturevalue(fixture)
    text = "Hello world! Grüße 🦙 1234"

    def tokens(model_path: Path, vocab_only: bool) -> list[int]:
        params = capi.llama_model_default_params()
        params.vocab_only = vocab_only
        params.n_gpu_layers = 0
        model = capi.llama_model_load_from_file(str(model_path).encode(), params)
        assert model
        try:
            v = capi.llama_model_get_vocab(model)
            buf = (capi.llama_token * 64)()
            n = capi.llama_tokenize(v, text.encode(), len(text.encode()), buf, 64, True, False)
            assert n > 0
            return list(buf[:n])
        finally:
            capi.llama_model_free(model)

    assert tokens(path, False) == tokens(vocab_path(vocab), True)
