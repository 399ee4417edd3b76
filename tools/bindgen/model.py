"""The parsed C API, independent of the parser that produced it.

The parser (``parser.py``) fills an :class:`Api`; ``selection.py`` splits it into
:class:`Module` objects; the emitters (``emit_python.py``, ``probe.py``) only read these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

# -- types ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Builtin:
    """A C scalar (``int``, ``float``, ``bool``...), a <stdint.h>/<stddef.h> name, or ``FILE``."""

    name: str


@dataclass(frozen=True)
class Void:
    pass


@dataclass(frozen=True)
class Pointer:
    target: CType
    const: bool = False


@dataclass(frozen=True)
class Array:
    element: CType
    length: int


@dataclass(frozen=True)
class RecordRef:
    key: str  # key of Api.records


@dataclass(frozen=True)
class EnumRef:
    key: str  # key of Api.enums


@dataclass(frozen=True)
class TypedefRef:
    name: str  # key of Api.typedefs


@dataclass(frozen=True)
class FunctionType:
    result: CType
    params: tuple[CType, ...]
    variadic: bool = False


CType = Union[Builtin, Void, Pointer, Array, RecordRef, EnumRef, TypedefRef, FunctionType]


# -- declarations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    header: str  # relative to the llama.cpp tree, e.g. "include/llama.h"
    line: int


@dataclass
class Field:
    name: str  # the C name; "" for an anonymous struct/union member
    type: CType
    doc: str = ""
    bits: int | None = None
    c_type: str = ""  # the C spelling, for docstrings
    py_name: str = ""  # set by selection.py (keywords get a trailing underscore)


@dataclass
class Record:
    key: str  # the tag, the typedef name of an unnamed record, or a made-up name for nested ones
    kind: str  # "struct" or "union"
    loc: Location
    fields: list[Field] | None  # None: opaque (declared, never defined)
    doc: str = ""
    c_spelling: str | None = None  # how C code names the type ("struct llama_batch"); None if unnamed
    nested_in: str | None = None  # key of the enclosing record, for unnamed nested records
    py_name: str = ""


@dataclass
class Enumerator:
    name: str
    value: int
    doc: str = ""


@dataclass
class Enum:
    key: str
    loc: Location
    enumerators: list[Enumerator]
    doc: str = ""
    py_name: str = ""


@dataclass
class Typedef:
    name: str
    type: CType
    loc: Location
    doc: str = ""
    c_type: str = ""  # the C spelling of the aliased type, for docstrings
    # An unnamed function-pointer type of a struct field or parameter gets a made-up typedef.
    synthetic: bool = False


@dataclass
class Param:
    name: str
    type: CType
    c_type: str  # the C spelling, for docstrings
    doc: str = ""
    py_name: str = ""


@dataclass
class Function:
    name: str
    result: CType
    c_result: str
    params: list[Param]
    variadic: bool
    loc: Location
    doc: str = ""
    deprecated: str | None = None  # the hint of DEPRECATED(..., "hint")


@dataclass
class Constant:
    name: str
    value: int | str
    expr: str  # a Python expression for the value (may name earlier constants)
    loc: Location
    doc: str = ""


@dataclass
class Api:
    """Every declaration of the headers, by kind and name, plus the headers' hashes."""

    header_sha256: dict[str, str] = field(default_factory=dict)
    records: dict[str, Record] = field(default_factory=dict)
    enums: dict[str, Enum] = field(default_factory=dict)
    typedefs: dict[str, Typedef] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    constants: dict[str, Constant] = field(default_factory=dict)


@dataclass
class Module:
    """The declarations that go into one generated module, in output order."""

    name: str
    title: str
    libraries: tuple[str, ...]
    headers: dict[str, str]  # header -> sha256, of the headers that gave declarations
    constants: list[Constant] = field(default_factory=list)
    enums: list[Enum] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    typedefs: list[Typedef] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)


def c_declarator(c_type: str, name: str) -> str:
    """``int32_t`` + ``n`` -> ``int32_t n``; ``void (*)(int)`` + ``f`` -> ``void (*f)(int)``."""
    if "(*)" in c_type:
        return c_type.replace("(*)", f"(*{name})", 1)
    if c_type.endswith("*"):
        return f"{c_type}{name}"
    return f"{c_type} {name}"


def walk(t: CType) -> list[CType]:
    """``t`` and every type nested in it (pointee, element, parameters, result)."""
    out: list[CType] = [t]
    if isinstance(t, Pointer):
        out += walk(t.target)
    elif isinstance(t, Array):
        out += walk(t.element)
    elif isinstance(t, FunctionType):
        out += walk(t.result)
        for p in t.params:
            out += walk(p)
    return out
