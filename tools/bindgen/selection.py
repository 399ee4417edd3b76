"""Split the parsed :class:`Api` into the generated modules.

* roots: every declaration of the llama, mtmd and gguf headers, and the ggml functions and
  constants listed in ``config``;
* closure: every type a root uses comes along, into the module of the header declaring it;
* unnamed function-pointer types (``void (*apply)(...)`` in ``llama_sampler_i``) become
  typedefs named ``<struct>_<field>_fn`` / ``<function>_<param>_fn``, because Python code
  needs a name to build a callback of that type;
* Python names: C names, except a struct/union/enum tag that clashes with an ordinary
  identifier (``enum llama_pooling_type`` vs the function ``llama_pooling_type``) gets a
  ``_enum`` / ``_struct`` / ``_union`` suffix, and a field or parameter named like a Python
  keyword gets a trailing underscore (``async`` -> ``async_``).
"""

from __future__ import annotations

import keyword
from copy import deepcopy
from typing import Any

from . import config
from .model import (
    Api,
    Array,
    CType,
    EnumRef,
    FunctionType,
    Location,
    Module,
    Pointer,
    RecordRef,
    Typedef,
    TypedefRef,
    c_declarator,
    walk,
)


class SelectError(RuntimeError):
    pass


def _py_ident(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) else name


def _lift(t: CType, base: str, api: Api, loc: Location, c_type: str = "", doc: str = "") -> CType:
    """Replace unnamed function-pointer types in ``t`` by made-up typedefs named from ``base``."""
    if isinstance(t, Pointer):
        if isinstance(t.target, FunctionType):
            name = f"{base}_fn"
            if name not in api.typedefs:
                fn = _lift_fn(t.target, name, api, loc)
                api.typedefs[name] = Typedef(name, Pointer(fn), loc, doc=doc, c_type=c_type, synthetic=True)
            return TypedefRef(name)
        return Pointer(_lift(t.target, base, api, loc), t.const)
    if isinstance(t, Array):
        return Array(_lift(t.element, base, api, loc), t.length)
    return t


def _lift_fn(fn: FunctionType, name: str, api: Api, loc: Location) -> FunctionType:
    params = tuple(_lift(p, f"{name}_arg{i}", api, loc) for i, p in enumerate(fn.params))
    return FunctionType(_lift(fn.result, f"{name}_result", api, loc), params, fn.variadic)


def _lift_all(api: Api) -> None:
    for rec in list(api.records.values()):
        for f in rec.fields or []:
            doc = f"The type of the member ``{f.name}`` of ``{rec.c_spelling or rec.key}`` (unnamed in C)."
            if f.doc:
                doc += f"\n\n{f.doc}"
            c_decl = c_declarator(f.c_type, f.name)
            f.type = _lift(f.type, f"{rec.key}_{f.name}", api, rec.loc, c_decl, doc)
    for func in api.functions.values():
        func.result = _lift(func.result, f"{func.name}_result", api, func.loc)
        for p in func.params:
            doc = f"The type of the parameter ``{p.name}`` of ``{func.name}`` (unnamed in C)."
            c_decl = c_declarator(p.c_type, p.name)
            p.type = _lift(p.type, f"{func.name}_{p.name}", api, func.loc, c_decl, doc)
    for td in list(api.typedefs.values()):
        if isinstance(td.type, Pointer) and isinstance(td.type.target, FunctionType):
            td.type = Pointer(_lift_fn(td.type.target, td.name, api, td.loc), td.type.const)
        else:
            td.type = _lift(td.type, td.name, api, td.loc)


def _deps(t: CType) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for sub in walk(t):
        if isinstance(sub, RecordRef):
            out.append(("record", sub.key))
        elif isinstance(sub, EnumRef):
            out.append(("enum", sub.key))
        elif isinstance(sub, TypedefRef):
            out.append(("typedef", sub.name))
    return out


def build(api: Api) -> list[Module]:
    """The modules of ``config.MODULES``, with every declaration in output order."""
    api = deepcopy(api)
    for key in config.OPAQUE_RECORDS:
        if key in api.records:
            api.records[key].fields = None
    _lift_all(api)

    tables: dict[str, dict[str, Any]] = {
        "constant": api.constants, "enum": api.enums, "record": api.records,
        "typedef": api.typedefs, "function": api.functions,
    }
    root_headers = {h for spec in config.MODULES if spec.roots for h in spec.headers}
    ggml_headers = {h for spec in config.MODULES if spec.name == "ggml" for h in spec.headers}
    wanted: list[tuple[str, str]] = []
    for kind, table in tables.items():
        for name, decl in table.items():
            header = decl.loc.header
            if header in root_headers or (kind == "constant" and header in ggml_headers):
                wanted.append((kind, name))
    for name in config.GGML_FUNCTIONS:
        if name not in api.functions:
            raise SelectError(f"config.GGML_FUNCTIONS names {name!r}, which the headers do not declare")
        wanted.append(("function", name))

    selected: set[tuple[str, str]] = set()
    while wanted:
        item = wanted.pop()
        if item in selected:
            continue
        kind, name = item
        if name not in tables[kind]:
            raise SelectError(f"{kind} {name!r} is used but never declared")
        selected.add(item)
        decl = tables[kind][name]
        if kind == "record":
            wanted.extend(d for f in decl.fields or [] for d in _deps(f.type))
            if decl.nested_in:
                wanted.append(("record", decl.nested_in))
        elif kind == "typedef":
            wanted.extend(_deps(decl.type))
        elif kind == "function":
            wanted.extend(_deps(decl.result))
            wanted.extend(d for p in decl.params for d in _deps(p.type))

    _name(api, selected)
    modules = {spec.name: Module(spec.name, spec.title, spec.libraries, {}) for spec in config.MODULES}
    for kind, table in tables.items():
        for name, decl in table.items():
            if (kind, name) not in selected:
                continue
            header = decl.loc.header
            mod = modules[config.module_of_header(header)]
            mod.headers[header] = api.header_sha256[header]
            getattr(mod, kind + "s").append(decl)
    order = config.all_headers()
    for mod in modules.values():
        mod.headers = {h: mod.headers[h] for h in order if h in mod.headers}
        mod.typedefs.sort(key=lambda td: (order.index(td.loc.header), td.loc.line))
    return [modules[spec.name] for spec in config.MODULES]


def _name(api: Api, selected: set[tuple[str, str]]) -> None:
    ordinary: set[str] = set()
    for kind, name in selected:
        if kind in ("function", "constant"):
            ordinary.add(name)
        elif kind == "typedef" and not is_same_name_alias(api.typedefs[name]):
            ordinary.add(name)
        elif kind == "enum":
            ordinary.update(e.name for e in api.enums[name].enumerators)
    for rec in api.records.values():
        rec.py_name = f"{rec.key}_{rec.kind}" if rec.key in ordinary else rec.key
        n_anon = 0
        for f in rec.fields or []:
            if f.name:
                f.py_name = _py_ident(f.name)
            else:
                f.py_name = f"_anon{n_anon}"
                n_anon += 1
    for enum in api.enums.values():
        enum.py_name = f"{enum.key}_enum" if enum.key in ordinary else enum.key
    for func in api.functions.values():
        for p in func.params:
            p.py_name = _py_ident(p.name)


def is_same_name_alias(td: Typedef) -> bool:
    """``typedef struct X X;``: the Python name of the struct serves as the typedef."""
    return isinstance(td.type, RecordRef) and td.type.key == td.name


def record_by_value(t: CType) -> list[str]:
    """Keys of the records that ``t`` holds by value (not through a pointer)."""
    if isinstance(t, RecordRef):
        return [t.key]
    if isinstance(t, Array):
        return record_by_value(t.element)
    return []
