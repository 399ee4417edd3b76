"""C types -> ctypes expressions and type annotations.

The mapping, in one place:

==============================  ===================================  =========================
C                               ctypes (argtypes / fields)           annotation
==============================  ===================================  =========================
``bool``, ``int32_t``, ...      ``c_bool``, ``c_int32``, ...          ``bool``, ``int``, ``float``
``enum X``                      ``c_int``                            ``int`` (IntEnum members fit)
``struct X`` (by value)         the Structure class ``X``            ``X``
``struct X *`` (opaque or not)  ``POINTER(X)``                       arg ``Ptr[X]``, result
                                                                     ``_Pointer[X]`` (NULL is a
                                                                     false pointer, not None)
``const char *`` / ``char *``   ``c_char_p``                         arg ``CharP``, result
                                                                     ``bytes | None``
``void *``, ``FILE *``          ``c_void_p``                         arg ``VoidP``, result
                                                                     ``int | None``
``T x[N]`` (field)              ``T * N``                            ``bytes`` for char, else
                                                                     ``Array[T]``
function pointer type           a ``CCallback`` subclass             that class (None allowed)
==============================  ===================================  =========================

In a callback's *result*, every pointer is ``c_void_p``: ctypes cannot return a ``POINTER``
or a ``c_char_p`` from a Python callback without leaking, so the callback returns an address
(``ctypes.addressof(...)`` or ``ctypes.cast(p, ctypes.c_void_p).value``). A callback type that
returns a struct by value cannot be written with ctypes at all: such a typedef becomes a plain
``c_void_p`` (``Unmappable``), noted in the generated module.
"""

from __future__ import annotations

from .model import (
    Array,
    Builtin,
    CType,
    EnumRef,
    FunctionType,
    Module,
    Pointer,
    Record,
    RecordRef,
    Typedef,
    TypedefRef,
    Void,
)
from .selection import is_same_name_alias

BUILTIN_CTYPES = {
    "bool": "c_bool", "char": "c_char", "signed char": "c_byte", "unsigned char": "c_ubyte",
    "short": "c_short", "unsigned short": "c_ushort", "int": "c_int", "unsigned int": "c_uint",
    "long": "c_long", "unsigned long": "c_ulong", "long long": "c_longlong",
    "unsigned long long": "c_ulonglong", "float": "c_float", "double": "c_double",
    "long double": "c_longdouble",
    "int8_t": "c_int8", "uint8_t": "c_uint8", "int16_t": "c_int16", "uint16_t": "c_uint16",
    "int32_t": "c_int32", "uint32_t": "c_uint32", "int64_t": "c_int64", "uint64_t": "c_uint64",
    "size_t": "c_size_t", "ptrdiff_t": "c_ssize_t", "intptr_t": "c_ssize_t", "uintptr_t": "c_size_t",
}

_FLOATS = {"float", "double", "long double"}


class Unmappable(Exception):
    pass


def scalar_annotation(name: str) -> str:
    if name == "bool":
        return "bool"
    if name in _FLOATS:
        return "float"
    if name == "char":
        return "bytes"
    return "int"


def _is_char(t: CType) -> bool:
    return isinstance(t, Builtin) and t.name == "char"


def _is_voidish(t: CType) -> bool:
    return isinstance(t, Void) or (isinstance(t, Builtin) and t.name == "FILE")


class TypeMapper:
    """Maps the types of one module; remembers the names it needs from the other modules."""

    def __init__(self, modules: list[Module], current: str) -> None:
        self.current = current
        self.records: dict[str, Record] = {}
        self.typedefs: dict[str, Typedef] = {}
        self.enum_names: dict[str, str] = {}
        self.owner: dict[tuple[str, str], str] = {}
        for m in modules:
            for r in m.records:
                self.records[r.key] = r
                self.owner[("record", r.key)] = m.name
            for td in m.typedefs:
                self.typedefs[td.name] = td
                self.owner[("typedef", td.name)] = m.name
            for e in m.enums:
                self.enum_names[e.key] = e.py_name
        self.imports: dict[str, set[str]] = {}

    # -- names -------------------------------------------------------------------------------

    def _use(self, kind: str, key: str, name: str) -> str:
        module = self.owner[(kind, key)]
        if module != self.current:
            self.imports.setdefault(module, set()).add(name)
        return name

    def record_name(self, key: str) -> str:
        return self._use("record", key, self.records[key].py_name)

    def typedef_name(self, name: str) -> str:
        td = self.typedefs[name]
        if is_same_name_alias(td):
            assert isinstance(td.type, RecordRef)
            return self.record_name(td.type.key)
        return self._use("typedef", name, name)

    def resolve(self, t: CType) -> CType:
        """Follow typedefs down to a type that is not a typedef."""
        while isinstance(t, TypedefRef):
            t = self.typedefs[t.name].type
        return t

    def callback(self, t: CType) -> FunctionType | None:
        """The function type of a function-pointer typedef target, or None."""
        t = self.resolve(t)
        if isinstance(t, Pointer) and isinstance(t.target, FunctionType):
            return t.target
        return None

    def mappable_callback(self, fn: FunctionType) -> bool:
        try:
            self.ctype(fn.result, "cb_ret")
            for p in fn.params:
                self.ctype(p, "cb_arg")
        except Unmappable:
            return False
        return True

    def is_callback_class(self, name: str) -> bool:
        fn = self.callback(TypedefRef(name))
        return fn is not None and self.mappable_callback(fn)

    # -- ctypes expressions ------------------------------------------------------------------

    def ctype(self, t: CType, role: str) -> str:
        """A Python expression for the ctypes type of ``t``.

        ``role``: ``field``, ``arg``, ``ret``, ``cb_arg`` (callback parameter) or ``cb_ret``.
        """
        if isinstance(t, Void):
            return "None"
        if isinstance(t, Builtin):
            if t.name == "FILE":
                raise Unmappable("FILE by value")
            return "ctypes." + BUILTIN_CTYPES[t.name]
        if isinstance(t, EnumRef):
            return "ctypes.c_int"
        if isinstance(t, RecordRef):
            if role == "cb_ret":
                raise Unmappable("a callback returning a struct by value")
            return self.record_name(t.key)
        if isinstance(t, TypedefRef):
            if role == "cb_ret":
                under = self.resolve(t)
                if isinstance(under, Pointer):
                    return "ctypes.c_void_p"
                if isinstance(under, RecordRef):
                    raise Unmappable("a callback returning a struct by value")
            return self.typedef_name(t.name)
        if isinstance(t, Pointer):
            if role == "cb_ret":
                return "ctypes.c_void_p"
            if _is_voidish(t.target):
                return "ctypes.c_void_p"
            if _is_char(t.target):
                return "ctypes.c_char_p"
            if isinstance(t.target, FunctionType):
                raise Unmappable("an unnamed function pointer type (selection.py names them)")
            return f"ctypes.POINTER({self.ctype(t.target, 'field')})"
        if isinstance(t, Array):
            if role in ("arg", "cb_arg"):
                return self.ctype(Pointer(t.element), role)
            return f"{self.ctype(t.element, 'field')} * {t.length}"
        raise Unmappable(repr(t))

    # -- annotations -------------------------------------------------------------------------

    def type_expr(self, t: CType) -> str:
        """A typing expression for the ctypes *class* of ``t`` (used inside ``Ptr[...]``)."""
        if isinstance(t, Builtin):
            return "ctypes." + BUILTIN_CTYPES[t.name] if t.name != "FILE" else "ctypes.c_void_p"
        if isinstance(t, EnumRef):
            return "ctypes.c_int"
        if isinstance(t, RecordRef):
            return self.record_name(t.key)
        if isinstance(t, TypedefRef):
            under = self.resolve(t)
            if isinstance(under, (Builtin, EnumRef, RecordRef)) or self.callback(t) is not None:
                return self.typedef_name(t.name)
            if isinstance(under, Pointer) and (_is_voidish(under.target) or _is_char(under.target)):
                return self.typedef_name(t.name)
            return self.type_expr(under)
        if isinstance(t, Pointer):
            if _is_voidish(t.target):
                return "ctypes.c_void_p"
            if _is_char(t.target):
                return "ctypes.c_char_p"
            return f"_Pointer[{self.type_expr(t.target)}]"
        if isinstance(t, Array):
            return f"Array[{self.type_expr(t.element)}]"
        raise Unmappable(repr(t))

    def annotation(self, t: CType, role: str) -> str:
        """The annotation of a parameter (``arg``), a result (``ret``) or a struct field."""
        if isinstance(t, Void):
            return "None"
        if isinstance(t, Builtin):
            return scalar_annotation(t.name)
        if isinstance(t, EnumRef):
            return "int"
        if isinstance(t, RecordRef):
            return self.record_name(t.key)
        if isinstance(t, TypedefRef):
            if self.is_callback_class(t.name):
                name = self.typedef_name(t.name)
                return f"{name} | None" if role == "arg" else name
            if self.callback(t) is not None:  # unmappable: a plain c_void_p
                return "VoidP" if role == "arg" else "int | None"
            return self.annotation(self.resolve(t), role)
        if isinstance(t, Pointer):
            if _is_voidish(t.target):
                return "VoidP" if role == "arg" else "int | None"
            if _is_char(t.target):
                return "CharP" if role == "arg" else "bytes | None"
            inner = self.type_expr(t.target)
            return f"Ptr[{inner}]" if role == "arg" else f"_Pointer[{inner}]"
        if isinstance(t, Array):
            if role == "arg":
                return self.annotation(Pointer(t.element), role)
            if _is_char(t.element):
                return "bytes"
            return f"Array[{self.type_expr(t.element)}]"
        raise Unmappable(repr(t))
