"""The seams between the layers (model-free, on the source): no module reaches into another
module's objects through private attributes, ``llama.py`` is imported only by the package
and ``aio.py``, and every sampling default of the facades' signatures has one definition."""

from __future__ import annotations

import ast
import inspect
from dataclasses import MISSING, fields
from pathlib import Path

from llama_binding import AsyncLlama, Llama
from llama_binding.generation.sampling import CHAT_TEMPERATURE, SamplingParams

PACKAGE = Path(__file__).resolve().parents[1] / "llama_binding"

#: friend access between native-handle owners in core/ (an adapter set on a context, a
#: chain attached to a context): each side keeps the other's bookkeeping in step; and
#: jinja2's Namespace, whose attributes the template budget counts
ALLOWED = {("core/adapter.py", "_adapters"), ("core/context.py", "_attached_to"),
           ("chat/_budget.py", "_Namespace__attrs")}


def _modules() -> dict[str, ast.Module]:
    return {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text())
            for p in sorted(PACKAGE.rglob("*.py")) if "capi" not in p.parts}


def _imported_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private attributes the module's own classes define (self._x, class-level _x, methods)."""
    own = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in ast.walk(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("_"):
                    own.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    own.add(item.target.id)
                elif isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name) \
                        and item.value.id in ("self", "cls"):
                    own.add(item.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):  # __slots__ entries
            own.add(node.value)
    return {n for n in own if n.startswith("_")}


def test_no_module_reads_another_modules_private_attributes() -> None:
    found = []
    for name, tree in _modules().items():
        modules, own = _imported_names(tree), _own_private_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") \
                    or node.attr.startswith("__"):
                continue
            base = node.value
            if isinstance(base, ast.Name) and (base.id in ("self", "cls") or base.id in modules):
                continue
            if node.attr in own or (name, node.attr) in ALLOWED or node.attr.startswith("_fields"):
                continue
            found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "private attributes read from outside their module:\n" + "\n".join(found)


def test_only_the_package_and_aio_import_llama_py() -> None:
    """``llama.py`` imports the layers below it, which never import it back at run time
    (a ``TYPE_CHECKING`` import for annotations is no cycle)."""
    importers = set()
    for name, tree in _modules().items():
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and ast.unparse(node.test) == "TYPE_CHECKING" for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only \
                    and (node.module == "llama_binding.llama" or (node.level and node.module == "llama")):
                importers.add(name)
    assert importers <= {"__init__.py", "aio.py"}, importers


def _sampling_defaults() -> dict[str, object]:
    return {f.name: f.default for f in fields(SamplingParams) if f.default is not MISSING}


def test_sampling_defaults_have_one_definition() -> None:
    defaults = _sampling_defaults()
    for fn, chat in [(Llama.create_completion, False), (Llama.create_chat_completion, True),
                     (AsyncLlama.acreate_completion, False), (AsyncLlama.acreate_chat_completion, True)]:
        checked = 0
        for name, p in inspect.signature(fn).parameters.items():
            if name not in defaults or name == "seed":
                continue
            want = CHAT_TEMPERATURE if chat and name == "temperature" else defaults[name]
            assert p.default == want, f"{fn.__qualname__}({name}={p.default!r}), SamplingParams says {want!r}"
            checked += 1
        assert checked >= 12, fn.__qualname__


def test_server_request_models_use_the_same_defaults() -> None:
    from llama_binding.server.schemas import ChatCompletionRequest, CompletionRequest

    defaults = _sampling_defaults()
    for model, chat in [(CompletionRequest, False), (ChatCompletionRequest, True)]:
        checked = 0
        for name, field in model.model_fields.items():
            if name not in defaults or name == "seed":
                continue
            want = CHAT_TEMPERATURE if chat and name == "temperature" else defaults[name]
            assert field.default == want, f"{model.__name__}.{name}={field.default!r}, not {want!r}"
            checked += 1
        assert checked >= 12, model.__name__
    # and every option a request model forwards is a parameter of the AsyncLlama method
    completion_kw = CompletionRequest(prompt="x").to_kwargs()
    assert set(completion_kw) <= set(inspect.signature(AsyncLlama.acreate_completion).parameters)
    chat_kw = ChatCompletionRequest(messages=[{"role": "user", "content": "x"}]).to_kwargs()
    assert set(chat_kw) <= set(inspect.signature(AsyncLlama.acreate_chat_completion).parameters)


def test_async_signatures_mirror_the_sync_ones() -> None:
    """The async methods take the sync ones' arguments with the same defaults, except the
    Python hooks (they cannot run inside a batched decode) and tfs_z (a no-op), and take
    llama-server's ignore_eos and cache_prompt (a slot's kept tokens) beside them. The sync
    methods' ``**kwargs`` is not compared: it takes the unknown keywords that
    llama-cpp-python's callers pass (warned about, then ignored); the async API is this
    package's own and refuses them."""
    server_only = {"ignore_eos", "cache_prompt"}
    pairs = [(Llama.create_completion, AsyncLlama.acreate_completion, server_only),
             (Llama.create_chat_completion, AsyncLlama.acreate_chat_completion, server_only)]

    def named(fn: object) -> dict[str, inspect.Parameter]:
        return {n: p for n, p in inspect.signature(fn).parameters.items()  # type: ignore[arg-type]
                if p.kind is not p.VAR_KEYWORD}

    for sync, asyn, extra in pairs:
        s = named(sync)
        a = named(asyn)
        assert set(s) - set(a) <= {"stopping_criteria", "logits_processor", "tfs_z"}
        assert set(a) - set(s) <= extra
        for name in set(s) & set(a):
            assert s[name].default == a[name].default, name
