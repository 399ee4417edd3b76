"""Lazy binding: import loads nothing; a missing symbol fails at call time, not at import."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import types
from _ctypes import CFuncPtr
from pathlib import Path

import pytest

from llama_binding.capi import _binding, _loader
from llama_binding.errors import LibraryLoadError, SymbolNotFoundError

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=120)


def _fake_library(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[_binding.Library, types.ModuleType]:
    """A Library bound to the C library of the process, in a throwaway module."""
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(_loader, "load", lambda libname: ctypes.CDLL(None))
    return _binding.Library(name, ("c",)), module


def test_missing_symbol_raises_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    lib, module = _fake_library(monkeypatch, "fake_capi_missing")

    @lib.signature(ctypes.c_int)
    def no_such_function_in_any_library() -> int:
        return lib.no_such_function_in_any_library()  # type: ignore[no-any-return]

    module.no_such_function_in_any_library = no_such_function_in_any_library  # type: ignore[attr-defined]
    with pytest.raises(SymbolNotFoundError) as info:
        no_such_function_in_any_library()
    assert info.value.symbol == "no_such_function_in_any_library"
    assert "no_such_function_in_any_library" in str(info.value)
    assert not lib.bound("no_such_function_in_any_library")


def test_first_call_installs_the_ctypes_function(monkeypatch: pytest.MonkeyPatch) -> None:
    lib, module = _fake_library(monkeypatch, "fake_capi_strlen")

    @lib.signature(ctypes.c_size_t, ctypes.c_char_p)
    def strlen(s: bytes, /) -> int:
        """Length of a C string."""
        return lib.strlen(s)  # type: ignore[no-any-return]

    module.strlen = strlen  # type: ignore[attr-defined]
    early = module.strlen
    assert isinstance(early, types.FunctionType)
    assert early(b"hello") == 5
    bound = module.strlen
    assert isinstance(bound, CFuncPtr)  # the stub was replaced by the raw ctypes function
    assert bound.argtypes == (ctypes.c_char_p,) and bound.restype is ctypes.c_size_t
    assert bound.__doc__ == "Length of a C string."
    assert bound(b"four") == 4 and early(b"abc") == 3  # the old reference still works


def test_import_loads_nothing_and_first_call_raises_library_load_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run(
        """
        from llama_binding import capi
        from llama_binding.capi import _loader
        from llama_binding.errors import LibraryLoadError
        assert not _loader._state, "import loaded a library"
        f = capi.llama_print_system_info  # attribute access does not load either
        assert not _loader._state
        try:
            f()
        except LibraryLoadError as exc:
            print("LibraryLoadError:", exc)
        else:
            raise SystemExit("no error")
        """,
        LLAMA_BINDING_LIB_DIR=str(empty),
    )
    assert proc.returncode == 0, proc.stderr
    assert "LibraryLoadError:" in proc.stdout and str(empty) in proc.stdout


def test_missing_symbol_in_the_built_library(lib_dir: Path) -> None:
    lib = _binding.Library("llama_binding.capi.llama", ("llama",))

    @lib.signature(None)
    def llama_this_symbol_does_not_exist() -> None:
        lib.llama_this_symbol_does_not_exist()

    with pytest.raises(SymbolNotFoundError, match="llama_this_symbol_does_not_exist") as info:
        llama_this_symbol_does_not_exist()
    assert _loader.library_filename("llama") in info.value.library


def test_bound_function_replaces_stub_in_capi(lib_dir: Path) -> None:
    proc = _run(
        """
        import ctypes, types
        from llama_binding import capi
        from llama_binding.capi import llama_max_devices as early
        assert isinstance(capi.llama_max_devices, types.FunctionType)
        n = capi.llama_max_devices()
        assert n >= 1
        assert isinstance(capi.llama_max_devices, ctypes._CFuncPtr)
        assert capi.llama_max_devices is capi.llama.llama_max_devices
        assert early() == n
        print("ok")
        """,
        LLAMA_BINDING_LIB_DIR=str(lib_dir),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_every_declared_symbol_is_in_the_built_libraries(lib_dir: Path) -> None:
    from llama_binding import capi

    missing = []
    for module in (capi.ggml, capi.gguf, capi.llama, capi.mtmd):
        lib = module._lib
        for name in lib._signatures:
            try:
                lib._bind(name)
            except SymbolNotFoundError:
                missing.append(name)
            except LibraryLoadError as exc:
                pytest.fail(f"{module.__name__}: {exc}")
    assert not missing, f"declared in the headers but not exported by the libraries in {lib_dir}: {missing}"
