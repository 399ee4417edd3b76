"""The ABI probe: a C program that prints what the C compiler thinks of every generated type.

:func:`checks` lists, from the same parse that generated the modules, every fact to verify:

* ``size``/``align`` of every named struct and union;
* ``offset``/``fsize`` of every field, nested and anonymous members included (C paths such as
  ``adamw.alpha`` or ``val_i64`` inside the anonymous union of ``llama_model_kv_override``);
* the value of every enumerator and ``#define`` constant, and ``sizeof`` of every enum;
* ``sizeof`` of every typedef, and size and signedness of every C scalar used.

:func:`c_source` turns them into a C program (compiled at test time against the real headers
with the real C library), and :func:`ctypes_values` computes the same facts from the generated
ctypes modules; tests/capi/test_abi.py compares the two.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import config
from .ctypes_map import BUILTIN_CTYPES
from .model import Builtin, Field, Module, Record, RecordRef, walk
from .selection import is_same_name_alias


@dataclass(frozen=True)
class Check:
    key: str  # "offset llama_batch.token": unique, readable
    c_expr: str  # a C expression
    fmt: str  # "int" or "str"
    what: str  # size | align | offset | fsize | value | csigned
    py_name: str = ""  # the Python name of the type/constant the check is about
    py_path: tuple[str, ...] = ()  # Python field path for offset/fsize


def _paths(rec: Record, records: dict[str, Record], c_prefix: str,
           py_prefix: tuple[str, ...]) -> Iterator[tuple[Field, str, tuple[str, ...]]]:
    for f in rec.fields or []:
        if not f.name:  # anonymous member: ctypes promotes its fields, C names them directly
            assert isinstance(f.type, RecordRef)
            yield from _paths(records[f.type.key], records, c_prefix, py_prefix)
            continue
        c_path = f"{c_prefix}{f.name}"
        py_path = (*py_prefix, f.py_name)
        yield f, c_path, py_path
        if isinstance(f.type, RecordRef) and records[f.type.key].nested_in:
            yield from _paths(records[f.type.key], records, c_path + ".", py_path)


def checks(modules: list[Module]) -> list[Check]:
    """Every fact the probe verifies, in a stable order."""
    records = {r.key: r for m in modules for r in m.records}
    out: list[Check] = []
    builtins: set[str] = set()
    for m in modules:
        for c in m.constants:
            fmt = "str" if isinstance(c.value, str) else "int"
            out.append(Check(f"const {c.name}", c.name, fmt, "value", c.name))
        for e in m.enums:
            out.append(Check(f"size enum {e.key}", f"sizeof(enum {e.key})", "int", "enum_size", e.py_name))
            for item in e.enumerators:
                out.append(Check(f"enum {item.name}", item.name, "int", "value", item.name))
        for r in m.records:
            for f in r.fields or []:
                builtins.update(t.name for t in walk(f.type) if isinstance(t, Builtin))
            if r.fields is None or r.c_spelling is None:
                continue
            cs = r.c_spelling
            out.append(Check(f"size {cs}", f"sizeof({cs})", "int", "size", r.py_name))
            out.append(Check(f"align {cs}", f"_Alignof({cs})", "int", "align", r.py_name))
            for f, c_path, py_path in _paths(r, records, "", ()):
                if f.bits is not None:
                    continue
                out.append(Check(f"offset {cs}.{c_path}", f"offsetof({cs}, {c_path})", "int", "offset",
                                 r.py_name, py_path))
                out.append(Check(f"fsize {cs}.{c_path}", f"sizeof((({cs} *)0)->{c_path})", "int", "fsize",
                                 r.py_name, py_path))
        for td in m.typedefs:
            builtins.update(t.name for t in walk(td.type) if isinstance(t, Builtin))
            if td.synthetic or is_same_name_alias(td):
                continue
            out.append(Check(f"size typedef {td.name}", f"sizeof({td.name})", "int", "size", td.name))
        for fn in m.functions:
            for t in [fn.result, *(p.type for p in fn.params)]:
                builtins.update(x.name for x in walk(t) if isinstance(x, Builtin))
    for name in sorted(builtins - {"FILE"}):
        out.append(Check(f"size {name}", f"sizeof({name})", "int", "ctype_size", name))
        if name != "char":
            out.append(Check(f"signed {name}", f"(({name})-1 < ({name})0)", "int", "csigned", name))
    return out


def c_source(items: list[Check]) -> str:
    """The C program printing ``key<TAB>value`` for every check."""
    includes = "".join(f'#include "{h.rsplit("/", 1)[-1]}"\n' for h in config.all_headers())
    body = []
    for c in items:
        key = c.key.replace("\\", "\\\\").replace('"', '\\"')
        if c.fmt == "str":
            body.append(f'    printf("%s\\t%s\\n", "{key}", {c.c_expr});')
        else:
            body.append(f'    printf("%s\\t%lld\\n", "{key}", (long long)({c.c_expr}));')
    return (
        "/* GENERATED by tools/bindgen/probe.py from the parse that generated llama_binding/capi. */\n"
        "#include <stddef.h>\n#include <stdio.h>\n#include <stdint.h>\n#include <stdbool.h>\n"
        f"{includes}\n"
        "int main(void) {\n" + "\n".join(body) + "\n    return 0;\n}\n"
    )


def _field_type(cls: Any, name: str) -> Any:
    for entry in cls._fields_:
        if entry[0] == name:
            return entry[1]
    for anon in getattr(cls, "_anonymous_", ()):
        inner = dict((e[0], e[1]) for e in cls._fields_)[anon]
        found = _field_type(inner, name)
        if found is not None:
            return found
    return None


def ctypes_values(items: list[Check], capi: ModuleType) -> dict[str, str]:
    """The value of every check, computed from the generated ctypes modules."""
    out: dict[str, str] = {}
    for c in items:
        if c.what == "value":
            value = getattr(capi, c.py_name)
            out[c.key] = value if isinstance(value, str) else str(int(value))
        elif c.what == "enum_size":
            out[c.key] = str(ctypes.sizeof(ctypes.c_int))
        elif c.what == "size":
            out[c.key] = str(ctypes.sizeof(getattr(capi, c.py_name)))
        elif c.what == "align":
            out[c.key] = str(ctypes.alignment(getattr(capi, c.py_name)))
        elif c.what in ("offset", "fsize"):
            cls = getattr(capi, c.py_name)
            offset = 0
            size = 0
            for name in c.py_path:
                desc = getattr(cls, name)
                offset += desc.offset
                size = desc.size
                cls = _field_type(cls, name)
            out[c.key] = str(offset if c.what == "offset" else size)
        elif c.what == "ctype_size":
            out[c.key] = str(ctypes.sizeof(getattr(ctypes, BUILTIN_CTYPES[c.py_name])))
        elif c.what == "csigned":
            t = getattr(ctypes, BUILTIN_CTYPES[c.py_name])
            out[c.key] = str(int(t(-1).value < 0))
        else:  # pragma: no cover
            raise ValueError(c.what)
    return out


def parse_output(text: str) -> dict[str, str]:
    """``key<TAB>value`` lines of the probe's output as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        out[key] = value
    return out
