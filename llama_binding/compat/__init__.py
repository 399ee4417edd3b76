"""``import llama_cpp`` answered by this package, for code written for llama-cpp-python that
cannot be edited (LangChain's ``LlamaCpp``, llama-index's ``LlamaCPP``, outlines'
``from_llamacpp``, ...)::

    from llama_binding import compat

    compat.install()          # before the code that imports llama_cpp
    from langchain_community.llms import LlamaCpp
    llm = LlamaCpp(model_path="model.gguf")

Nothing happens on import: only :func:`install` changes the import system, and only for
the process that calls it. It puts modules named like llama-cpp-python's in
``sys.modules`` (``llama_cpp``, ``llama_cpp.llama``, ``llama_cpp.llama_types``,
``llama_cpp.llama_grammar``, ``llama_cpp.llama_cache``, ``llama_cpp.llama_speculative``,
``llama_cpp.llama_tokenizer``, ``llama_cpp.llama_chat_format`` and the low-level
``llama_cpp.llama_cpp``), and a finder first on ``sys.meta_path`` that answers those names
(so a module removed from ``sys.modules`` comes back the same). They hold this package's
objects: ``llama_cpp.Llama`` *is* :class:`llama_binding.Llama`, the C names of
``llama_cpp`` are :mod:`llama_binding.capi`'s (generated from llama.h: the names are
llama.cpp's, the ctypes types this package's, pointer checks included), and
``llama_cpp.__version__`` is the llama-cpp-python release whose API is mirrored
(:data:`LLAMA_CPP_VERSION`). Other submodules (``llama_cpp.server``, ``llama_cpp.llava_cpp``)
are not there: importing one raises ModuleNotFoundError.

If the real llama-cpp-python is importable, :func:`install` refuses with
:class:`~llama_binding.errors.ShadowingError` rather than hide it, unless
``allow_shadowing=True`` (an environment where another package pulled it in, as
``pip install llama-index-llms-llama-cpp`` does). Modules that imported the real one
before keep it. :func:`uninstall` undoes :func:`install`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any, ClassVar

from ..errors import ShadowingError
from ._modules import LLAMA_CPP_VERSION, contents

__all__ = ["LLAMA_CPP_VERSION", "MODULES", "ShadowingError", "install", "installed", "uninstall"]

#: the module names :func:`install` answers
MODULES = ("llama_cpp", "llama_cpp.llama_cpp", "llama_cpp.llama", "llama_cpp.llama_types",
           "llama_cpp.llama_grammar", "llama_cpp.llama_cache", "llama_cpp.llama_speculative",
           "llama_cpp.llama_tokenizer", "llama_cpp.llama_chat_format")

_lock = threading.Lock()


class _ShimModule(types.ModuleType):
    """A ``llama_cpp`` module of the shim; the package itself looks C names up in capi."""

    def __getattr__(self, name: str) -> Any:
        if self.__name__ in ("llama_cpp", "llama_cpp.llama_cpp") and not name.startswith("__"):
            from .. import capi

            try:
                return getattr(capi, name)
            except AttributeError:
                pass
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} (llama_binding.compat "
                             "offers part of llama-cpp-python's names)")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers the shim's module names with its modules, before any other finder."""

    def __init__(self, modules: dict[str, _ShimModule]) -> None:
        self.modules = modules

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        return self.modules[fullname].__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.modules[spec.name]

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # filled when built


class _State:
    finder: ClassVar[_Finder | None] = None
    saved: ClassVar[dict[str, types.ModuleType]] = {}


def _build(finder: _Finder) -> dict[str, _ShimModule]:
    modules: dict[str, _ShimModule] = {}
    for suffix, names in contents().items():
        name = "llama_cpp" + suffix
        module = _ShimModule(name, f"llama-cpp-python's {name}, answered by llama_binding (compat)")
        module.__spec__ = importlib.machinery.ModuleSpec(name, finder, is_package=not suffix)
        module.__loader__ = finder
        module.__package__ = "llama_cpp"
        if not suffix:
            module.__path__ = []  # a package with no other submodules than the shim's
        module.__dict__.update(names, __all__=sorted(n for n in names if not n.startswith("_")))
        modules[name] = module
    for name, module in modules.items():
        if name != "llama_cpp":
            setattr(modules["llama_cpp"], name.rpartition(".")[2], module)
    return modules


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _State.finder is not None


def _real_llama_cpp() -> str | None:
    """Where an importable llama-cpp-python is (None when there is none)."""
    module = sys.modules.get("llama_cpp")
    if module is not None:
        return str(getattr(module, "__file__", None) or "an imported module")
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        return None
    return None if spec is None else str(spec.origin or "a module on sys.path")


def install(*, allow_shadowing: bool = False) -> None:
    """Make ``import llama_cpp`` (and its submodules named in :data:`MODULES`) give this
    package's objects in this process (idempotent). Raises
    :class:`~llama_binding.errors.ShadowingError` if llama-cpp-python itself is importable,
    unless ``allow_shadowing=True``: then the shim wins over it."""
    with _lock:
        if _State.finder is not None:
            return
        real = _real_llama_cpp()
        if real is not None and not allow_shadowing:
            raise ShadowingError(
                f"llama-cpp-python is importable ({real}); llama_binding.compat.install() would hide it. "
                "Uninstall it (pip uninstall llama-cpp-python) or pass allow_shadowing=True")
        finder = _Finder({})
        finder.modules = _build(finder)
        _State.saved = {name: module for name, module in sys.modules.items()
                        if name == "llama_cpp" or name.startswith("llama_cpp.")}
        for name in _State.saved:
            del sys.modules[name]
        sys.modules.update(finder.modules)
        sys.meta_path.insert(0, finder)
        _State.finder = finder


def uninstall() -> None:
    """Undo :func:`install`: the shim's modules leave ``sys.modules`` and what was imported
    as ``llama_cpp`` before comes back (modules that imported the shim keep its objects)."""
    with _lock:
        finder, _State.finder = _State.finder, None
        if finder is None:
            return
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "llama_cpp" or n.startswith("llama_cpp.")]:
            del sys.modules[name]
        sys.modules.update(_State.saved)
        _State.saved = {}
