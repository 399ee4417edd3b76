"""Find and load the native libraries (libllama, libggml*, libmtmd).

Where it looks, in order:

1. ``$LLAMA_BINDING_LIB_DIR`` when set: that folder only, so a developer can point the
   package at another build of llama.cpp (for example ``build/bin``);
2. otherwise the ``lib/`` folder of every ``llama_binding`` package folder on ``sys.path``
   (the installed wheel, or the build output of an editable install).

The first folder from which ``libllama`` loads wins, and every other library comes from
that same folder. When nothing loads, :class:`~llama_binding.errors.LibraryLoadError`
lists every path tried and why it failed. Loading happens on first use, not at import,
so ``import llama_binding`` works even where the libraries are missing.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path
from typing import Callable

from ..errors import LibraryLoadError

__all__ = ["ENV_LIB_DIR", "after_load", "candidate_dirs", "lib_dir", "library_filename", "load",
           "load_keeping_gil"]

ENV_LIB_DIR = "LLAMA_BINDING_LIB_DIR"

_lock = threading.RLock()
_state: dict[str, object] = {}  # "dir" -> Path, "libs" -> dict[str, ctypes.CDLL]
_keeping_gil: dict[str, ctypes.PyDLL] = {}  # load_keeping_gil's handles, by name
_hooks: list[Callable[[], None]] = []  # to call once the libraries are loaded (after_load)


def library_filename(name: str) -> str:
    """The platform's file name of library ``name`` (``llama`` -> ``libllama.so``)."""
    if sys.platform == "win32":
        return f"{name}.dll"
    if sys.platform == "darwin":
        return f"lib{name}.dylib"
    return f"lib{name}.so"


def candidate_dirs() -> list[Path]:
    """The folders that are searched, in order."""
    override = os.environ.get(ENV_LIB_DIR)
    if override:
        return [Path(override).expanduser()]
    dirs: list[Path] = []
    here = Path(__file__).resolve().parents[1] / "lib"
    dirs.append(here)
    for entry in sys.path:
        try:
            cand = (Path(entry or ".") / "llama_binding" / "lib").resolve()
        except OSError:
            continue
        if cand not in dirs:
            dirs.append(cand)
    return dirs


def _dlopen(path: Path) -> ctypes.CDLL:
    mode = getattr(os, "RTLD_NOW", 0) | getattr(ctypes, "RTLD_LOCAL", 0)
    return ctypes.CDLL(str(path), mode=mode)


def _preload_runtime() -> None:
    """Put the C++ runtime in the global scope before our libraries load (Linux).

    A CUDA build (CUDA 13, gcc 13) links parts of a static libstdc++ into libggml-cuda and
    exports them, and libllama, which then lists no libstdc++ of its own, binds its iostream
    calls to those copies. Once the process's real libstdc++ was initialised first (``import
    numpy`` does it) those copies crash in ``llama_model::print_info``. With libstdc++ in the
    global scope, symbol lookup finds the real one first. Where it is missing this does
    nothing. (Seen on the H100 with cuda-gdb; bench/gpu_diag.sh and bench/load_variants.py.)
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass


def _open_first() -> tuple[Path, dict[str, ctypes.CDLL]]:
    _preload_runtime()
    attempts: list[tuple[str, str]] = []
    for folder in candidate_dirs():
        path = folder / library_filename("llama")
        if not path.is_file():
            attempts.append((str(path), "no such file"))
            continue
        try:
            libs: dict[str, ctypes.CDLL] = {}
            # ggml first, so that llama binds to the copies in this same folder
            for dep in ("ggml-base", "ggml"):
                dep_path = folder / library_filename(dep)
                if dep_path.is_file():
                    libs[dep] = _dlopen(dep_path)
            libs["llama"] = _dlopen(path)
        except OSError as exc:
            attempts.append((str(path), str(exc)))
            continue
        return folder, libs
    hint = (
        f"set {ENV_LIB_DIR} to a folder holding {library_filename('llama')}, "
        "or reinstall the package (pip install llama-binding) so that it builds them"
    )
    raise LibraryLoadError(f"could not load the llama.cpp libraries; {hint}. Tried:", attempts)


def after_load(hook: Callable[[], None]) -> None:
    """Call ``hook()`` once the libraries are loaded, before the C function that loaded them
    runs (now, if they are loaded already): how the package routes llama.cpp's log into
    ``logging`` before anything is printed. Hooks run outside the loader's lock."""
    with _lock:
        loaded = "dir" in _state
        if not loaded:
            _hooks.append(hook)
    if loaded:
        hook()


def _ensure_loaded() -> tuple[Path, dict[str, ctypes.CDLL]]:
    hooks: list[Callable[[], None]] = []
    with _lock:
        if "dir" not in _state:
            folder, libs = _open_first()
            _state["dir"] = folder
            _state["libs"] = libs
            hooks, _hooks[:] = list(_hooks), []
        loaded = _state["dir"], _state["libs"]
    for hook in hooks:
        hook()
    return loaded  # type: ignore[return-value]


def lib_dir() -> Path:
    """The folder the libraries were loaded from (loads them if needed)."""
    return _ensure_loaded()[0]


def load_keeping_gil(name: str) -> ctypes.PyDLL:
    """The library ``name`` (loaded by :func:`load` first) as a ``ctypes.PyDLL``: its
    functions keep Python's GIL during the call (for calls of microseconds, which would
    otherwise wait to take the GIL back). The same handle: dlopen of a loaded path."""
    load(name)
    folder, _ = _ensure_loaded()
    with _lock:
        kept = _keeping_gil.get(name)
        if kept is None:
            mode = getattr(os, "RTLD_NOW", 0) | getattr(ctypes, "RTLD_LOCAL", 0)
            kept = _keeping_gil[name] = ctypes.PyDLL(str(folder / library_filename(name)), mode=mode)
        return kept


def load(name: str) -> ctypes.CDLL:
    """The loaded library ``name`` (``llama``, ``ggml``, ``ggml-base`` or ``mtmd``)."""
    folder, libs = _ensure_loaded()
    with _lock:
        lib = libs.get(name)
        if lib is None:
            path = folder / library_filename(name)
            try:
                lib = _dlopen(path)
            except OSError as exc:
                raise LibraryLoadError(
                    f"could not load {library_filename(name)} beside libllama in {folder}",
                    [(str(path), str(exc))],
                ) from exc
            libs[name] = lib
        return lib
