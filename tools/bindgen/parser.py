"""Read the headers with libclang into a :class:`~tools.bindgen.model.Api`.

Only this module imports ``clang``. See the package docstring for why libclang.
"""

from __future__ import annotations

import ast
import ctypes
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import config
from .comments import HeaderComments, join
from .model import (
    Api,
    Array,
    Builtin,
    Constant,
    CType,
    Enum,
    Enumerator,
    EnumRef,
    Field,
    Function,
    FunctionType,
    Location,
    Param,
    Pointer,
    Record,
    RecordRef,
    Typedef,
    TypedefRef,
    Void,
    c_declarator,
)

# Names of the C library that are mapped to a ctypes type directly (never emitted as typedefs).
STD_TYPEDEFS = frozenset({
    "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t", "int64_t", "uint64_t",
    "intptr_t", "uintptr_t", "size_t", "ptrdiff_t", "FILE",
})


class ParseError(RuntimeError):
    pass


def _clang() -> Any:
    try:
        import clang.cindex as cindex
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ParseError(
            "tools/bindgen needs libclang's Python bindings: pip install 'libclang==18.1.1'"
        ) from exc
    return cindex


class _Parser:
    def __init__(self, root: Path) -> None:
        self.ci = _clang()
        self.root = root.resolve()
        self.api = Api()
        self.headers = config.all_headers()
        self.comments: dict[str, HeaderComments] = {}
        self._anon_names: dict[tuple[str, int, int], str] = {}
        self._visiting: set[str] = set()
        lib = self.ci.conf.lib
        self._is_fn_macro = lib.clang_Cursor_isMacroFunctionLike
        self._is_fn_macro.argtypes = [self.ci.Cursor]
        self._is_fn_macro.restype = ctypes.c_uint
        self._is_anon_member = lib.clang_Cursor_isAnonymousRecordDecl
        self._is_anon_member.argtypes = [self.ci.Cursor]
        self._is_anon_member.restype = ctypes.c_uint
        self._availability = lib.clang_getCursorPlatformAvailability
        self._availability.argtypes = [
            self.ci.Cursor, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(self.ci._CXString),
            ctypes.POINTER(ctypes.c_int), ctypes.POINTER(self.ci._CXString), ctypes.c_void_p, ctypes.c_int,
        ]
        self._availability.restype = ctypes.c_int

    # -- entry -------------------------------------------------------------------------------

    def run(self) -> Api:
        for header in self.headers:
            text = (self.root / header).read_text(encoding="utf-8")
            self.api.header_sha256[header] = hashlib.sha256(text.encode("utf-8")).hexdigest()
            self.comments[header] = HeaderComments(text)
        ci = self.ci
        source = "".join(f'#include "{h.rsplit("/", 1)[-1]}"\n' for h in config.ENTRY_HEADERS)
        args = [*config.CLANG_ARGS, f"-I{Path(__file__).parent / 'include'}"]
        args += [f"-I{self.root / d}" for d in config.INCLUDE_DIRS]
        tu = ci.Index.create().parse(
            "bindgen_entry.c",
            args=args,
            unsaved_files=[("bindgen_entry.c", source)],
            options=ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD
            | ci.TranslationUnit.PARSE_SKIP_FUNCTION_BODIES,
        )
        errors = [str(d) for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
        if errors:
            raise ParseError("libclang could not parse the headers:\n" + "\n".join(errors))
        for cur in tu.cursor.get_children():
            header = self._header_of(cur)
            if header is None:
                continue
            self._top_level(cur, header)
        self._sort()
        return self.api

    def _header_of(self, cur: Any) -> str | None:
        f = cur.location.file
        if f is None:
            return None
        try:
            rel = Path(f.name).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None
        return rel if rel in self.headers else None

    def _loc(self, cur: Any, header: str | None = None) -> Location:
        return Location(header or self._header_of(cur) or "", cur.extent.start.line)

    def _doc(self, cur: Any, header: str) -> str:
        """Leading comment, and the trailing one of a one-line declaration (on a longer one, the
        comment at the end belongs to the last parameter or member)."""
        c = self.comments[header]
        first, last = cur.extent.start.line, cur.extent.end.line
        return join(c.leading(first), c.trailing(first, first) if first == last else "")

    # -- declarations ------------------------------------------------------------------------

    def _top_level(self, cur: Any, header: str) -> None:
        k = self.ci.CursorKind
        if cur.kind == k.FUNCTION_DECL:
            if cur.spelling not in self.api.functions:
                self._function(cur, header)
        elif cur.kind in (k.STRUCT_DECL, k.UNION_DECL):
            if not cur.is_anonymous():
                self._record(cur)
        elif cur.kind == k.ENUM_DECL:
            self._enum(cur, header)
        elif cur.kind == k.TYPEDEF_DECL:
            self._typedef(cur, header)
        elif cur.kind == k.MACRO_DEFINITION:
            self._macro(cur, header)

    def _function(self, cur: Any, header: str) -> None:
        c = self.comments[header]
        first, last = cur.extent.start.line, cur.extent.end.line
        params: list[Param] = []
        for i, arg in enumerate(cur.get_arguments()):
            doc = ""
            line = arg.extent.end.line
            if first != last and line != first:
                doc = c.trailing(line, line)
            params.append(Param(arg.spelling or f"arg{i}", self._type(arg.type), _c_spelling(arg.type), doc))
        trailing = c.trailing(first, first) if first == last else ""
        if first != last and not any(p.doc for p in params):
            code = c.lines[first - 1].split("//", 1)[0].rstrip()
            if code.endswith(("),", ");")):
                trailing = c.trailing(first, first)
        ftype = cur.type
        self.api.functions[cur.spelling] = Function(
            name=cur.spelling,
            result=self._type(cur.result_type),
            c_result=_c_spelling(cur.result_type),
            params=params,
            variadic=ftype.kind == self.ci.TypeKind.FUNCTIONPROTO and ftype.is_function_variadic(),
            loc=Location(header, first),
            doc=join(c.leading(first), trailing),
            deprecated=self._deprecation(cur),
        )

    def _deprecation(self, cur: Any) -> str | None:
        if cur.availability != self.ci.AvailabilityKind.DEPRECATED:
            return None
        always_dep, always_unav = ctypes.c_int(), ctypes.c_int()
        dep_msg, unav_msg = self.ci._CXString(), self.ci._CXString()
        self._availability(cur, ctypes.byref(always_dep), ctypes.byref(dep_msg),
                           ctypes.byref(always_unav), ctypes.byref(unav_msg), None, 0)
        text: str = self.ci._CXString.from_result(dep_msg)
        self.ci._CXString.from_result(unav_msg)
        return text or "deprecated"

    def _record(self, cur: Any, key: str | None = None, nested_in: str | None = None) -> str:
        """Register the record of ``cur`` (and its definition, if any); return its key.

        ``key`` names an unnamed record: the typedef name of ``typedef struct {...} name`` or a
        made-up name for a record nested in ``nested_in``.
        """
        kind = "union" if cur.kind == self.ci.CursorKind.UNION_DECL else "struct"
        if cur.is_anonymous():
            key = key or self._anon_names.get(_loc_key(cur))
            if key is None:
                raise ParseError(f"unnamed {kind} at {cur.location} has no name to use")
            spelling = None if nested_in else key
        else:
            key = cur.spelling
            spelling = f"{kind} {key}"
        defn = cur.get_definition()
        existing = self.api.records.get(key)
        if key in self._visiting or (existing is not None and (existing.fields is not None or defn is None)):
            return key
        where = defn if defn is not None else cur
        header = self._header_of(where) or self._header_of(cur) or ""
        rec = Record(key=key, kind=kind, loc=Location(header, where.extent.start.line), fields=None,
                     c_spelling=spelling, nested_in=nested_in)
        self.api.records[key] = rec
        if header:
            rec.doc = self._record_doc(where, header)
        if defn is not None:
            self._visiting.add(key)
            rec.fields = list(self._fields(defn, key, header))
            self._visiting.discard(key)
        return key

    def _record_doc(self, cur: Any, header: str) -> str:
        c = self.comments[header]
        start = cur.extent.start.line
        return join(c.leading(start), c.trailing(start, start))

    def _fields(self, cur: Any, key: str, header: str) -> Iterator[Field]:
        k = self.ci.CursorKind
        n_anon = 0
        for ch in cur.get_children():
            if ch.kind in (k.STRUCT_DECL, k.UNION_DECL):
                if ch.is_anonymous() and self._is_anon_member(ch):
                    sub = f"_{key}_anon{n_anon}"
                    self._anon_names[_loc_key(ch)] = sub
                    self._record(ch, sub, nested_in=key)
                    yield Field("", RecordRef(sub), self._doc(ch, header))
                    n_anon += 1
                elif not ch.is_anonymous():
                    self._record(ch)
            elif ch.kind == k.FIELD_DECL:
                decl = _strip_to_record(ch.type, self.ci).get_declaration()
                if decl.kind in (k.STRUCT_DECL, k.UNION_DECL) and decl.is_anonymous():
                    sub = f"_{key}_{ch.spelling}"
                    self._anon_names[_loc_key(decl)] = sub
                    self._record(decl, sub, nested_in=key)
                bits = ch.get_bitfield_width() if ch.is_bitfield() else None
                doc = self._doc(ch, header)
                c_type = self._spelling_with_names(ch, ch.type)
                yield Field(ch.spelling, self._type(ch.type), doc, bits, c_type)

    def _enum(self, cur: Any, header: str) -> None:
        if cur.spelling in self.api.enums:
            return
        items = []
        for ch in cur.get_children():
            items.append(Enumerator(ch.spelling, int(ch.enum_value), self._doc(ch, header)))
        if cur.is_anonymous():
            for e in items:
                loc = self._loc(cur, header)
                self.api.constants[e.name] = Constant(e.name, e.value, str(e.value), loc, e.doc)
            return
        self.api.enums[cur.spelling] = Enum(cur.spelling, self._loc(cur, header), items,
                                            self._record_doc(cur, header))

    def _typedef(self, cur: Any, header: str) -> None:
        k = self.ci.CursorKind
        name = cur.spelling
        if name in self.api.typedefs:
            return
        under = cur.underlying_typedef_type
        decl = _strip_to_record(under, self.ci).get_declaration()
        if (decl.kind in (k.STRUCT_DECL, k.UNION_DECL, k.ENUM_DECL) and decl.is_anonymous()
                and under.kind != self.ci.TypeKind.POINTER):
            # typedef struct { ... } name;  -> the record is called by the typedef's name
            self._anon_names[_loc_key(decl)] = name
            if decl.kind == k.ENUM_DECL:
                return
            self._record(decl, name)
            return
        self.api.typedefs[name] = Typedef(name, self._type(under), self._loc(cur, header),
                                          self._doc(cur, header), self._spelling_with_names(cur, under))

    def _macro(self, cur: Any, header: str) -> None:
        if self._is_fn_macro(cur) or cur.spelling in config.EXCLUDED_MACROS:
            return
        tokens = [t.spelling for t in cur.get_tokens()][1:]
        if not tokens:
            return
        parsed = _macro_expr(tokens, self.api.constants)
        if parsed is None:
            return
        value, expr = parsed
        c = self.comments[header]
        line = cur.extent.start.line
        self.api.constants[cur.spelling] = Constant(
            cur.spelling, value, expr, Location(header, line), join(c.leading(line), c.trailing(line, line))
        )

    def _spelling_with_names(self, cur: Any, t: Any) -> str:
        """The C spelling of ``t``; for a function pointer, with the parameter names of ``cur``."""
        tk = self.ci.TypeKind
        pointee = t.get_canonical().get_pointee() if t.get_canonical().kind == tk.POINTER else None
        names = [ch.spelling for ch in cur.get_children() if ch.kind == self.ci.CursorKind.PARM_DECL]
        if pointee is None or pointee.kind != tk.FUNCTIONPROTO or not names:
            return _c_spelling(t)
        params = [ch for ch in cur.get_children() if ch.kind == self.ci.CursorKind.PARM_DECL]
        if len(params) != len(list(pointee.argument_types())):
            return _c_spelling(t)
        result = _c_spelling(t.get_pointee().get_result()) if t.kind == tk.POINTER else _c_spelling(
            pointee.get_result())
        args = ", ".join(c_declarator(_c_spelling(p.type), p.spelling) if p.spelling else _c_spelling(p.type)
                         for p in params)
        return f"{result} (*)({args})"

    # -- types -------------------------------------------------------------------------------

    def _type(self, t: Any) -> CType:
        tk = self.ci.TypeKind
        if t.kind == tk.ELABORATED:
            return self._type(t.get_named_type())
        if t.kind == tk.TYPEDEF:
            decl = t.get_declaration()
            name = decl.spelling
            if name in STD_TYPEDEFS:
                return Builtin(name)
            if self._header_of(decl) is None:
                raise ParseError(f"typedef {name} comes from outside the parsed headers")
            if name not in self.api.typedefs:
                self._typedef(decl, self._header_of(decl) or "")
            if name in self.api.typedefs:
                return TypedefRef(name)
            return self._type(decl.underlying_typedef_type)
        if t.kind == tk.POINTER:
            pointee = t.get_pointee()
            return Pointer(self._type(pointee), pointee.is_const_qualified())
        if t.kind == tk.RECORD:
            decl = t.get_declaration()
            return RecordRef(self._record(decl))
        if t.kind == tk.ENUM:
            decl = t.get_declaration()
            if decl.is_anonymous():
                raise ParseError(f"unnamed enum type at {decl.location} is not supported")
            if decl.spelling not in self.api.enums:
                self._enum(decl, self._header_of(decl) or "")
            return EnumRef(decl.spelling)
        if t.kind == tk.CONSTANTARRAY:
            return Array(self._type(t.element_type), t.element_count)
        if t.kind == tk.INCOMPLETEARRAY:
            return Pointer(self._type(t.element_type))
        if t.kind == tk.FUNCTIONPROTO:
            return FunctionType(self._type(t.get_result()), tuple(self._type(a) for a in t.argument_types()),
                                t.is_function_variadic())
        if t.kind == tk.FUNCTIONNOPROTO:
            return FunctionType(self._type(t.get_result()), ())
        if t.kind == tk.VOID:
            return Void()
        name = _BUILTINS.get(t.kind.name)
        if name is None:
            raise ParseError(f"unsupported C type {t.spelling!r} ({t.kind})")
        return Builtin(name)

    def _sort(self) -> None:
        order = {h: i for i, h in enumerate(self.headers)}

        def key(loc: Location) -> tuple[int, int]:
            return (order.get(loc.header, len(order)), loc.line)

        api = self.api
        api.records = dict(sorted(api.records.items(), key=lambda kv: key(kv[1].loc)))
        api.enums = dict(sorted(api.enums.items(), key=lambda kv: key(kv[1].loc)))
        api.typedefs = dict(sorted(api.typedefs.items(), key=lambda kv: key(kv[1].loc)))
        api.functions = dict(sorted(api.functions.items(), key=lambda kv: key(kv[1].loc)))
        api.constants = dict(sorted(api.constants.items(), key=lambda kv: key(kv[1].loc)))


_BUILTINS = {
    "BOOL": "bool", "CHAR_S": "char", "CHAR_U": "char", "SCHAR": "signed char", "UCHAR": "unsigned char",
    "SHORT": "short", "USHORT": "unsigned short", "INT": "int", "UINT": "unsigned int",
    "LONG": "long", "ULONG": "unsigned long", "LONGLONG": "long long", "ULONGLONG": "unsigned long long",
    "FLOAT": "float", "DOUBLE": "double", "LONGDOUBLE": "long double",
}


def _strip_to_record(t: Any, ci: Any) -> Any:
    while t.kind in (ci.TypeKind.ELABORATED, ci.TypeKind.CONSTANTARRAY):
        t = t.get_named_type() if t.kind == ci.TypeKind.ELABORATED else t.element_type
    return t


def _loc_key(cur: Any) -> tuple[str, int, int]:
    loc = cur.location
    return (loc.file.name if loc.file else "", loc.line, loc.column)


def _c_spelling(t: Any) -> str:
    return str(t.spelling).replace("_Bool", "bool")


# -- macro values ----------------------------------------------------------------------------

_INT = re.compile(r"^(0[xX][0-9a-fA-F]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)([uUlL]*)$")
_OPS = {"(", ")", "+", "-", "*", "<<", ">>", "|", "&", "~", "^"}


def _macro_expr(tokens: list[str], known: dict[str, Constant]) -> tuple[int | str, str] | None:
    """Evaluate the body of an object-like macro made of literals, earlier constants and operators.

    Returns ``(value, python_expression)`` or None when the body is anything else.
    """
    if len(tokens) == 1 and tokens[0].startswith('"') and tokens[0].endswith('"'):
        value = ast.literal_eval(tokens[0])
        return (value, repr(value)) if isinstance(value, str) else None
    parts: list[str] = []
    for tok in tokens:
        m = _INT.match(tok)
        if m:
            digits = m.group(1)
            if len(digits) > 1 and digits[0] == "0" and digits[1] in "01234567":
                digits = "0o" + digits[1:]
            parts.append(digits)
        elif tok in _OPS or (tok in known and isinstance(known[tok].value, int)):
            parts.append(tok)
        else:
            return None
    try:
        tree = ast.parse(" ".join(parts), mode="eval").body
        value = _eval_int(tree, known)
    except (SyntaxError, ValueError):
        return None
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "-"):
        return value, "".join(parts)  # keep the literal as written (hex stays hex)
    return value, ast.unparse(tree)


def _eval_int(node: ast.AST, known: dict[str, Constant]) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name) and node.id in known:
        value = known[node.id].value
        if isinstance(value, int):
            return value
    if isinstance(node, ast.UnaryOp):
        operand = _eval_int(node.operand, known)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.Invert):
            return ~operand
    if isinstance(node, ast.BinOp):
        a, b = _eval_int(node.left, known), _eval_int(node.right, known)
        ops = {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b, ast.BitOr: a | b, ast.BitAnd: a & b,
               ast.BitXor: a ^ b}
        if type(node.op) in ops:
            return ops[type(node.op)]
        if isinstance(node.op, ast.LShift):
            return a << b
        if isinstance(node.op, ast.RShift):
            return a >> b
    raise ValueError(ast.dump(node))


def parse(root: Path = config.LLAMA_CPP) -> Api:
    """Parse the headers under the llama.cpp tree ``root``."""
    return _Parser(root).run()
