"""The shape of the package's source, read with ``ast`` (no model, no native library):
hand-written modules stay under :data:`MAX_FILE_LINES` lines, their functions under
:data:`MAX_FUNCTION_LINES`, and the ``llama_binding.*`` modules import each other without
cycles.

Generated modules (those of ``llama_binding/capi/`` whose first lines carry the bindgen
banner, "GENERATED ... do not edit") are not checked.

The import graph has an edge ``a -> b`` for every ``import``/``from ... import`` in ``a``,
at any depth (function bodies included) except under ``if TYPE_CHECKING:``, which does not
run. Relative imports are resolved; ``from pkg import name`` is an import of the submodule
``pkg.name`` when there is one, else of ``pkg`` (its ``__init__``); ``import a.b`` is an
import of ``a.b``. The parent packages that Python imports on the way are not counted: they
would make every package a cycle with its own modules.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import pytest

PACKAGE = "llama_binding"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 80
#: the banner of a generated module, looked for in its first lines
_GENERATED = re.compile(r"do not edit|\bGENERATED\b", re.IGNORECASE)
_BANNER_LINES = 5


def _is_generated(path: Path) -> bool:
    if path.parent.name != "capi" or path.parent.parent != ROOT:
        return False
    with path.open(encoding="utf-8") as fh:
        head = [fh.readline() for _ in range(_BANNER_LINES)]
    return any(line.startswith("#") and _GENERATED.search(line) for line in head)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    """Every hand-written module of the package: dotted name -> path."""
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py")) if not _is_generated(p)}


def _all_modules() -> set[str]:
    """Every module of the package, generated ones included (they are import targets)."""
    return {_module_name(p) for p in ROOT.rglob("*.py")}


SOURCES = _sources()
MODULES = _all_modules()
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in SOURCES.items()}


def _rel(name: str) -> str:
    return str(SOURCES[name].relative_to(ROOT.parent))


# --- sizes -------------------------------------------------------------------------------


def test_no_module_is_too_long() -> None:
    long = []
    for name, path in SOURCES.items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_FILE_LINES:
            long.append(f"{_rel(name)}: {n} lines")
    assert not long, f"modules over {MAX_FILE_LINES} lines (split them):\n" + "\n".join(long)


Function = Union[ast.FunctionDef, ast.AsyncFunctionDef]


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, Function]]:
    """Every function and method, nested ones too, with its qualified name."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            qualname = prefix + node.name
            yield qualname, node
            yield from _functions(node, qualname + ".<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def test_no_function_is_too_long() -> None:
    long = []
    for name, tree in TREES.items():
        for qualname, node in _functions(tree):
            assert node.end_lineno is not None
            n = node.end_lineno - node.lineno + 1  # from the ``def`` line: decorators excluded
            if n > MAX_FUNCTION_LINES:
                long.append(f"{_rel(name)}:{node.lineno} {qualname}: {n} lines")
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines (split them into helpers):\n"
                      + "\n".join(long))


# --- the import graph --------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements under ``node`` that run: not those of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from _imports(ast.Module(body=child.orelse, type_ignores=[]))  # ``else:`` runs
        else:
            yield from _imports(child)


def _targets(module: str, stmt: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The package's modules that ``stmt`` in ``module`` imports (none for a module that
    does not exist: importing it fails, which other tests see)."""
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            if alias.name in MODULES:
                yield alias.name
        return
    if stmt.level:
        is_package = SOURCES[module].name == "__init__.py"
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (stmt.level - 1)]
        source = ".".join(base + ([stmt.module] if stmt.module else []))
    else:
        source = stmt.module or ""
    for alias in stmt.names:
        sub = f"{source}.{alias.name}"
        if sub in MODULES:
            yield sub
        elif source in MODULES:
            yield source


#: module -> {imported module: line of the first import of it}
Graph = dict[str, dict[str, int]]


def _graph() -> Graph:
    graph: Graph = {name: {} for name in SOURCES}
    for name, tree in TREES.items():
        for stmt in _imports(tree):
            for target in _targets(name, stmt):
                if target in SOURCES:  # generated modules import nothing of the package
                    graph[name].setdefault(target, stmt.lineno)
    return graph


def _cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with a cycle (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _describe(comp: list[str], graph: Graph) -> str:
    members = set(comp)
    edges = [f"    {a} -> {b}  ({_rel(a)}:{line})"
             for a in comp for b, line in sorted(graph[a].items()) if b in members]
    return f"  cycle of {len(comp)} modules: {', '.join(comp)}\n" + "\n".join(edges)


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = _cycles(graph)
    assert not cycles, ("import cycles among the package's modules (imports under "
                        "`if TYPE_CHECKING:` excluded):\n" + "\n".join(_describe(c, graph) for c in cycles))


# --- the checks themselves ---------------------------------------------------------------


def test_the_import_graph_sees_what_it_should() -> None:
    """A few known edges, so that a broken resolver cannot pass the cycle test by seeing none."""
    graph = _graph()
    assert "llama_binding.core.model" in graph["llama_binding.core"]  # __init__: from .model import
    assert "llama_binding.errors" in graph["llama_binding.core.model"]  # from ..errors import
    assert sum(map(len, graph.values())) > len(graph)
    assert all(not _is_generated(p) for p in SOURCES.values())
    assert any(_is_generated(p) for p in ROOT.joinpath("capi").glob("*.py"))


@pytest.mark.parametrize(("source", "expected"), [
    ("import llama_binding.core.model\n", {"llama_binding.core.model"}),
    ("from llama_binding import capi, errors\n", {"llama_binding.capi", "llama_binding.errors"}),
    ("from llama_binding.core import Model\n", {"llama_binding.core"}),
    ("from .. import _log\n", {"llama_binding._log"}),
    ("from ..core import sampler\n", {"llama_binding.core.sampler"}),
    ("from .model import Model\n", {"llama_binding.core.model"}),
    ("def f():\n    from ..errors import StateError\n", {"llama_binding.errors"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .vocab import Vocab\n"
     "else:\n    from .batch import Batch\n", {"llama_binding.core.batch"}),
    ("import typing\nif typing.TYPE_CHECKING:\n    import llama_binding.llama\n", set()),
    ("import json\nfrom os import path\n", set()),
])
def test_imports_are_resolved(source: str, expected: set[str]) -> None:
    module = "llama_binding.core.context"  # a module of a subpackage, for the relative imports
    got = {t for stmt in _imports(ast.parse(source)) for t in _targets(module, stmt)}
    assert got == expected
