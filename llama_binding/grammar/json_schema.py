r"""JSON Schema -> GBNF: constrain generation to JSON documents that a schema accepts.

:func:`schema_to_gbnf` turns a JSON Schema into a GBNF grammar (start rule ``root``) for
:class:`~llama_binding.grammar.LlamaGrammar`. What the schema asks for and the grammar
cannot enforce raises :class:`~llama_binding.errors.SamplerError` naming the JSON pointer
of that part (``#/properties/name/pattern: lookahead is not supported``): a grammar that
silently allowed more than the schema would produce documents that fail validation.

Supported:

- ``type`` (one or a list), ``enum``, ``const``; no ``type`` is inferred from the other
  keywords (``properties`` means an object, ...) or, with none, any JSON value;
- objects: ``properties`` (emitted in schema order; optional ones may be left out),
  ``required``, ``additionalProperties`` (false, true or a schema: extra keys, which
  never repeat a declared property name, with values of that schema);
- arrays: ``items``, ``prefixItems`` (and the older ``items: [...]`` with
  ``additionalItems``), ``minItems``, ``maxItems``;
- ``anyOf`` / ``oneOf`` as alternatives (oneOf's "exactly one" is not enforced), with
  sibling keywords merged into each alternative; ``allOf`` of one schema, or of schemas
  that merge simply (property sets are united, other keywords must agree);
- local ``$ref`` (``#/$defs/...``, ``#/definitions/...``, any ``#/...`` pointer and ``#``):
  one rule per referenced schema, so recursive schemas work;
- strings: ``minLength``, ``maxLength``, a ``pattern`` subset (literals, escapes, classes,
  ``.``, groups, ``|``, quantifiers, ``^``/``$`` at the ends), ``format`` date, time,
  date-time and uuid;
- integers: any ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` below
  10**16 in size, by digit-range rules; numbers: only ``minimum: 0``.

The grammar allows a subset of what the schema allows, where that keeps it simple:
properties come in schema order; ``enum``/``const`` objects and arrays are written compactly;
``date`` leaves out February 29 (leap years are not checked) and ``time`` needs an offset
(RFC 3339), without leap seconds; ``\u`` escapes of UTF-16 surrogates are not written
(characters outside the BMP are written as themselves); a ``pattern``'s characters are
written as JSON writes them, and control characters without a short escape (``\n``, ...) and
DEL are left out of classes.

Whitespace between tokens is optional and bounded (``ws``, at most 20 spaces, tabs or
newlines), so a model cannot loop on it; the document has none before or after it, so once
the value is complete only end-of-text can follow. Integers have at most 16 digits, and
numbers 16 after the point and 3 in the exponent, for the same reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Callable, Optional, Union
from urllib.parse import unquote

from ..errors import SamplerError
from ._gbnf_text import MAX_REPEAT, group, is_atom, literal, repeat, seq
from ._int_ranges import MAX_DIGITS, MAX_INT, integer_range
from ._regex import (
    JSON_ESCAPES,
    JSON_SPECIAL,
    NOT_CHARACTERS,
    Alt,
    Chars,
    Node,
    Ranges,
    RegexParser,
    Rep,
    char_class,
    complement,
    contains,
    normalize,
    subtract,
)

__all__ = ["schema_to_gbnf"]

Schema = Union[Mapping[str, Any], bool]

# keywords that say nothing about which documents are valid
_ANNOTATIONS = frozenset({
    "$schema", "$id", "$anchor", "$comment", "$defs", "definitions", "title", "description",
    "default", "examples", "deprecated", "readOnly", "writeOnly", "contentEncoding",
    "contentMediaType",
})
_SUPPORTED = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "prefixItems", "additionalItems", "minItems", "maxItems", "anyOf", "oneOf", "allOf", "$ref",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum",
})
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
# keywords that imply a type when "type" is absent
_IMPLIED = {
    "object": ("properties", "additionalProperties", "required"),
    "array": ("items", "prefixItems", "additionalItems", "minItems", "maxItems"),
    "string": ("minLength", "maxLength", "pattern", "format"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")

# llama.cpp's parser recurses once per nested group; keep generated nesting shallow
_MAX_NESTING = 30
# Objects with more members than this get the linear form of :meth:`_Converter.members_linear`
# (the nested form writes the members after each optional one again: quadratic in size).
_LINEAR_MEMBERS = 8
# ... and no more than this many: each member adds a link to a chain of rules that llama.cpp's
# left-recursion check and stack expansion walk recursively (_gbnf_check.MAX_LEFT_DEPTH is 2048).
MAX_PROPERTIES = 1500
_MAX_MERGE_DEPTH = 32

# --- primitive rules: name -> body, where {name} refers to another primitive ---------------
_HEX = "[0-9a-fA-F]"
_PRIMITIVES: dict[str, str] = {
    "ws": r"[ \t\n]{0,20}",
    # \u escapes of UTF-16 surrogates are left out: a pair decodes to one character, which
    # would break minLength; every other escape is one character
    "escape": (r'"\\" ( ["\\/bfnrt] | "u" ( [0-9a-cA-Ce-fE-F] ' + _HEX + "{3} | [dD] [0-7] "
               + _HEX + "{2} ) )"),
    "char": r'[^"\\\x00-\x1F\x7F' + NOT_CHARACTERS + '] | {escape}',
    "string": r'"\"" {char}* "\""',
    "integer": r'"-"? ( "0" | [1-9] [0-9]{0,15} )',
    "number": r'"-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?',
    "nonneg-number": r'( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?',
    "boolean": r'"true" | "false"',
    "null": r'"null"',
    "value": "{object} | {array} | {string} | {number} | {boolean} | {null}",
    "object": (r'"{" {ws} ( {string} {ws} ":" {ws} {value} {ws} '
               r'( "," {ws} {string} {ws} ":" {ws} {value} {ws} )* )? "}"'),
    "array": r'"[" {ws} ( {value} {ws} ( "," {ws} {value} {ws} )* )? "]"',
    "date": ('( [1-9] [0-9]{3} | "0" [1-9] [0-9]{2} | "00" [1-9] [0-9] | "000" [1-9] ) "-" '
             '( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ) '
             '| ( "0" [469] | "11" ) "-" ( "0" [1-9] | [12] [0-9] | "30" ) '
             '| "02" "-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) )'),
    "time": ('( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,9} )? '
             '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )'),
    "date-time": '{date} "T" {time}',
    "uuid": (f'{_HEX}{{8}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{12}}'),
}
_PRIMITIVE_REF = re.compile(r"\{([a-z-]+)\}")
_FORMATS = ("date", "time", "date-time", "uuid")

_NAME_JUNK = re.compile(r"[^A-Za-z0-9-]+")


def schema_to_gbnf(schema: Schema, *, strict: bool = True, extra_keys: bool | None = None) -> str:
    """The GBNF grammar (start rule ``root``) of the JSON documents that ``schema`` accepts.

    ``strict=True`` follows OpenAI's strict structured outputs: an object without
    ``additionalProperties`` gets no extra keys (as if it said ``false``), and a keyword or
    ``format`` this converter does not know raises :class:`SamplerError`, so nothing the
    schema asks for is dropped. ``strict=False`` follows JSON Schema instead: extra keys of
    any value are allowed where ``additionalProperties`` is absent, unknown keywords are
    ignored and unknown formats are plain strings. Parts that can never be enforced (a
    regex lookahead, number bounds other than ``minimum: 0``, ...) raise in both modes.

    ``extra_keys`` decides the absent ``additionalProperties`` alone (None: ``not strict``):
    ``strict=False, extra_keys=False`` is llama.cpp's and llama-cpp-python's reading, lenient
    about keywords but with no keys the schema does not declare (unless it says
    ``additionalProperties: true`` or gives a schema for them).
    """
    return _Converter(schema, strict, not strict if extra_keys is None else extra_keys).convert()


# --- small GBNF text helpers -----------------------------------------------------------------


def _pointer(base: str, *parts: object) -> str:
    """``base`` extended by JSON-pointer parts (``~`` and ``/`` escaped)."""
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return "/".join([base, *escaped])



def _json_literal(value: Any, ptr: str) -> str:
    """A GBNF literal of ``value`` written as compact JSON."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SamplerError(f"{ptr}: {value!r} is not a JSON value ({exc})") from None
    return literal(text)



# --- the converter -------------------------------------------------------------------------------


class _Converter:
    """Walks a schema and collects GBNF rules.

    ``visit`` returns a GBNF expression for a value; containers turn their children's
    expressions into named rules (:meth:`named`) so that lines stay short and readable. Each
    ``$ref`` target gets one rule, named before its body is visited, which is what lets
    recursive schemas refer to themselves.
    """

    def __init__(self, schema: Schema, strict: bool, extra_keys: bool) -> None:
        self.root = schema
        self.strict = strict
        self.extra_keys = extra_keys  # what an absent additionalProperties means
        self.rules: dict[str, str] = {}
        self.primitives: dict[str, str] = {}
        self.refs: dict[str, str] = {}
        # $refs being expanded, innermost last; None marks where input was consumed
        # ('{', '[' ...), so a reference back to an open $ref after it is fine
        self.open: list[Optional[str]] = []

    def convert(self) -> str:
        self.rules["root"] = ""
        self.refs["#"] = "root"
        self.open.append("#")
        self.rules["root"] = self.visit(self.root, "#", "root")
        self.open.pop()
        return "".join(f"{name} ::= {body}\n" for name, body in self.rules.items())

    # --- rules -------------------------------------------------------------------------

    def alloc(self, hint: str) -> str:
        """A fresh rule name made of ``hint`` (GBNF names are letters, digits and '-')."""
        base = _NAME_JUNK.sub("-", hint).strip("-") or "rule"
        name, n = base, 0
        while name in self.rules:
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = ""  # reserved, so recursion can refer to it before the body exists
        return name

    def named(self, hint: str, expr: str) -> str:
        """``expr`` as one item: itself when it already is one, else a new rule."""
        if is_atom(expr):
            return expr
        name = self.alloc(hint)
        self.rules[name] = expr
        return name

    def prim(self, key: str) -> str:
        """The rule name of a shared primitive (``ws``, ``string``, ``value``, ...)."""
        name = self.primitives.get(key)
        if name is None:
            name = self.primitives[key] = self.alloc(key)
            self.rules[name] = _PRIMITIVE_REF.sub(lambda m: self.prim(m.group(1)), _PRIMITIVES[key])
        return name

    @contextmanager
    def consumed(self) -> Iterator[None]:
        """Inside a container: input was consumed since the open $refs began."""
        self.open.append(None)
        try:
            yield
        finally:
            self.open.pop()

    # --- dispatch ----------------------------------------------------------------------

    def visit(self, schema: Any, ptr: str, hint: str) -> str:
        if schema is True:
            return self.prim("value")
        if schema is False:
            raise SamplerError(f"{ptr}: the schema false accepts no value")
        if not isinstance(schema, Mapping):
            raise SamplerError(f"{ptr}: a schema must be an object or a boolean, not {type(schema).__name__}")
        self.check_keywords(schema, ptr)
        if "allOf" in schema or ("$ref" in schema and self.constraints(schema, "$ref")):
            return self.visit_merged(schema, ptr, hint)
        if "$ref" in schema:
            return self.visit_ref(schema["$ref"], ptr)
        if "anyOf" in schema or "oneOf" in schema:
            return self.visit_alternatives(schema, ptr, hint)
        if "const" in schema or "enum" in schema:
            return self.visit_values(schema, ptr)
        return self.visit_types(schema, ptr, hint)

    def check_keywords(self, schema: Mapping[str, Any], ptr: str) -> None:
        if not self.strict:
            return
        for key in schema:
            if key not in _SUPPORTED and key not in _ANNOTATIONS and not str(key).startswith("x-"):
                raise SamplerError(f"{_pointer(ptr, key)}: the keyword {key!r} is not supported "
                                   "(pass strict=False to ignore it)")

    @staticmethod
    def constraints(schema: Mapping[str, Any], *but: str) -> dict[str, Any]:
        """The keywords of ``schema`` that constrain values, except ``but``."""
        return {k: v for k, v in schema.items() if k not in _ANNOTATIONS and k not in but}

    # --- $ref, allOf, anyOf/oneOf -------------------------------------------------------

    def resolve(self, ref: Any, ptr: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SamplerError(f"{_pointer(ptr, '$ref')}: only local references (#/...) are supported, "
                               f"not {ref!r}")
        path = unquote(ref[1:])
        node: Any = self.root
        if not path:
            return node
        if not path.startswith("/"):
            raise SamplerError(f"{_pointer(ptr, '$ref')}: {ref!r}: anchors are not supported, only pointers")
        for part in path[1:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SamplerError(f"{_pointer(ptr, '$ref')}: {ref!r} points to nothing in the schema")
        return node

    def visit_ref(self, ref: Any, ptr: str) -> str:
        target = self.resolve(ref, ptr)
        key = "#" + unquote(ref[1:])
        name = self.refs.get(key)
        if name is not None:
            if key in self.unguarded():
                raise SamplerError(f"{_pointer(ptr, '$ref')}: {ref!r} refers back to itself before any "
                                   "input (left recursion has no finite JSON value)")
            return name
        name = self.refs[key] = self.alloc(key.rsplit("/", 1)[-1] or "ref")
        self.open.append(key)
        body = self.visit(target, key, name)
        self.open.pop()
        self.rules[name] = body
        return name

    def unguarded(self) -> list[str]:
        """The $refs opened since input was last consumed."""
        out = []
        for key in reversed(self.open):
            if key is None:
                break
            out.append(key)
        return out

    def visit_merged(self, schema: Mapping[str, Any], ptr: str, hint: str) -> str:
        parts = schema.get("allOf", [])
        if isinstance(parts, list) and len(parts) == 1 and not self.constraints(schema, "allOf"):
            return self.visit(parts[0], _pointer(ptr, "allOf", 0), hint)  # keeps a $ref a rule
        return self.visit(self.flatten(schema, ptr, 0), ptr, hint)

    def flatten(self, schema: Any, ptr: str, depth: int) -> dict[str, Any]:
        """``schema`` with its ``$ref`` and ``allOf`` merged in (not below: nested $refs stay)."""
        if depth > _MAX_MERGE_DEPTH:
            raise SamplerError(f"{ptr}: $ref and allOf nest too deep (a reference cycle?)")
        if schema is True:
            return {}
        if schema is False:
            raise SamplerError(f"{ptr}: the schema false accepts no value")
        if not isinstance(schema, Mapping):
            raise SamplerError(f"{ptr}: a schema must be an object or a boolean, not {type(schema).__name__}")
        self.check_keywords(schema, ptr)
        out = self.constraints(schema, "$ref", "allOf")
        if "$ref" in schema:
            target = self.resolve(schema["$ref"], ptr)
            out = self.merge(out, self.flatten(target, schema["$ref"], depth + 1), ptr)
        parts = schema.get("allOf", [])
        if "allOf" in schema and (not isinstance(parts, list) or not parts):
            raise SamplerError(f"{_pointer(ptr, 'allOf')}: allOf must be a non-empty list of schemas")
        for i, part in enumerate(parts):
            out = self.merge(out, self.flatten(part, _pointer(ptr, "allOf", i), depth + 1), ptr)
        return out

    def merge(self, a: dict[str, Any], b: Mapping[str, Any], ptr: str) -> dict[str, Any]:
        """Both schemas at once, where that is simple: properties and required are united,
        types intersected, and any other keyword must be the same in both."""
        out = dict(a)
        for key, value in b.items():
            if key in _ANNOTATIONS:
                continue
            if key not in out or out[key] == value:
                out[key] = value
            elif key == "properties" and isinstance(value, Mapping) and isinstance(out[key], Mapping):
                props = dict(out[key])
                for name, sub in value.items():
                    same = name not in props or props[name] == sub
                    props[name] = sub if same else {"allOf": [props[name], sub]}
                out[key] = props
            elif key == "required" and isinstance(value, list) and isinstance(out[key], list):
                out[key] = list(dict.fromkeys([*out[key], *value]))
            elif key == "type":
                both = [t for t in _type_list(out[key], ptr) if t in _type_list(value, ptr)]
                if not both:
                    raise SamplerError(f"{_pointer(ptr, 'allOf')}: the types {out[key]!r} and {value!r} "
                                       "have nothing in common")
                out[key] = both
            else:
                raise SamplerError(f"{_pointer(ptr, 'allOf')}: cannot merge two different {key!r} "
                                   "(only properties, required and type are combined)")
        return out

    def visit_alternatives(self, schema: Mapping[str, Any], ptr: str, hint: str) -> str:
        if "anyOf" in schema and "oneOf" in schema:
            raise SamplerError(f"{ptr}: anyOf together with oneOf is not supported")
        key = "anyOf" if "anyOf" in schema else "oneOf"
        options = schema[key]
        if not isinstance(options, list) or not options:
            raise SamplerError(f"{_pointer(ptr, key)}: {key} must be a non-empty list of schemas")
        siblings = self.constraints(schema, key)
        alternatives = []
        for i, option in enumerate(options):
            where = _pointer(ptr, key, i)
            if siblings:  # the keywords beside anyOf apply to every alternative
                option = self.merge(dict(siblings), self.flatten(option, where, 0), where)
            alternatives.append(self.named(f"{hint}-{i}", self.visit(option, where, f"{hint}-{i}")))
        return " | ".join(alternatives)

    # --- const, enum, types -----------------------------------------------------------

    def visit_values(self, schema: Mapping[str, Any], ptr: str) -> str:
        if "const" in schema:
            values, key = [schema["const"]], "const"
        else:
            values, key = schema["enum"], "enum"
            if not isinstance(values, list) or not values:
                raise SamplerError(f"{_pointer(ptr, 'enum')}: enum must be a non-empty list")
        if "type" in schema:
            types = _type_list(schema["type"], ptr)
            values = [v for v in values if any(_has_type(v, t) for t in types)]
            if not values:
                raise SamplerError(f"{_pointer(ptr, key)}: no value of {key} has the type {schema['type']!r}")
        literals = list(dict.fromkeys(_json_literal(v, _pointer(ptr, key)) for v in values))
        return " | ".join(literals)

    def visit_types(self, schema: Mapping[str, Any], ptr: str, hint: str) -> str:
        if "type" in schema:
            types = _type_list(schema["type"], ptr)
        else:
            types = [t for t, keys in _IMPLIED.items() if any(k in schema for k in keys)]
            if not types:
                return self.prim("value")
        visitors: dict[str, Callable[[Mapping[str, Any], str, str], str]] = {
            "object": self.visit_object, "array": self.visit_array, "string": self.visit_string,
            "number": self.visit_number, "integer": self.visit_integer,
            "boolean": lambda s, p, h: self.prim("boolean"), "null": lambda s, p, h: self.prim("null"),
        }
        if len(types) == 1:
            return visitors[types[0]](schema, ptr, hint)
        return " | ".join(self.named(f"{hint}-{t}", visitors[t](schema, ptr, f"{hint}-{t}")) for t in types)

    # --- objects -----------------------------------------------------------------------

    def visit_object(self, schema: Mapping[str, Any], ptr: str, hint: str) -> str:
        props = schema.get("properties", {})
        if not isinstance(props, Mapping):
            raise SamplerError(f"{_pointer(ptr, 'properties')}: properties must be an object")
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise SamplerError(f"{_pointer(ptr, 'required')}: required must be a list of strings")
        extra = schema.get("additionalProperties", self.extra_keys)
        ws = self.prim("ws")
        with self.consumed():
            members: list[tuple[str, bool]] = []
            for name, sub in props.items():
                if sub is False:
                    if name in required:
                        raise SamplerError(f"{_pointer(ptr, 'properties', name)}: a required property "
                                           "has the schema false")
                    continue
                value = self.visit(sub, _pointer(ptr, "properties", name), _child(hint, name))
                members.append((self.member(name, value, _child(hint, name)), name in required))
            for name in required:
                if name not in props:
                    if extra is False:
                        raise SamplerError(f"{_pointer(ptr, 'required')}: {name!r} is required but not in "
                                           "properties, and additionalProperties is false")
                    value = self.visit(extra, _pointer(ptr, "additionalProperties"), _child(hint, name))
                    members.append((self.member(name, value, _child(hint, name)), True))
            if len(members) > MAX_PROPERTIES:
                raise SamplerError(f"{_pointer(ptr, 'properties')}: {len(members)} properties; more than "
                                   f"{MAX_PROPERTIES} in one object are not supported")
            other = None
            if extra is not False:
                value = self.named(_child(hint, "additional"),
                                   self.visit(extra, _pointer(ptr, "additionalProperties"),
                                              _child(hint, "additional")))
                key = self.other_key(hint, [*props, *required])
                other = self.named(_child(hint, "additional-kv"), seq(key, ws, '":"', ws, value, ws))
        return seq('"{"', ws, self.members(hint, members, other, 0), '"}"')

    def member(self, name: str, value: str, hint: str) -> str:
        """The rule of ``"name": value`` with the whitespace after it."""
        ws = self.prim("ws")
        key = literal(json.dumps(name, ensure_ascii=False))
        return self.named(f"{hint}-kv", seq(key, ws, '":"', ws, self.named(hint, value), ws))

    def members(self, hint: str, members: list[tuple[str, bool]], other: str | None, depth: int) -> str:
        """The members from the first on, when none was written yet: each optional one may
        be skipped, and a comma comes before every member but the first written."""
        if not members:
            if other is None:
                return ""
            return "( " + seq(other, self.more_members([], other)) + " )?"
        if depth == 0 and len(members) > _LINEAR_MEMBERS:
            return self.members_linear(hint, members, other)
        (first, required), rest = members[0], members[1:]
        written = seq(first, self.more_members(rest, other))
        if required:
            return written
        skipped = self.members(hint, rest, other, depth + 1)
        expr = f"( {written} | {skipped} )" if skipped else f"( {written} )?"
        if depth and depth % _MAX_NESTING == 0:
            return self.named(f"{hint}-rest", expr)
        return expr

    def members_linear(self, hint: str, members: list[tuple[str, bool]], other: str | None) -> str:
        """What :meth:`members` matches (members in order, optional ones skippable, commas
        between), in size linear in the number of members: one rule ``after-i`` per position
        for the members from ``i`` on once one was written, and one rule ``from-i`` for them
        when none was written yet."""
        comma = f'"," {self.prim("ws")}'
        n = len(members)
        first_required = next((i for i, (_, required) in enumerate(members) if required), n)
        after = f"( {comma} {other} )*" if other is not None else ""  # after-n
        afters = [""] * (n + 1)
        afters[n] = self.named(_child(hint, f"after-{n}"), after) if after else ""
        for i in range(n - 1, 0, -1):  # after-0 would follow no member: never used
            kv, required = members[i]
            item = f"{comma} {kv}" if required else f"( {comma} {kv} )?"
            afters[i] = self.named(_child(hint, f"after-{i}"), seq(item, afters[i + 1]))
        # from-n: no declared member left and none written: maybe the additional ones
        start = "" if other is None else "( " + seq(other, afters[n]) + " )?"
        if first_required < n:
            kv, _ = members[first_required]
            start = seq(kv, afters[first_required + 1])
        for i in range(min(first_required, n) - 1, -1, -1):
            kv, _ = members[i]
            written = seq(kv, afters[i + 1])
            body = f"{written} | {start}" if start else f"( {written} )?"
            start = self.named(_child(hint, f"from-{i}"), body)
        return start

    def more_members(self, members: list[tuple[str, bool]], other: str | None) -> str:
        """The members after one was written: each behind a comma, optional ones skippable."""
        comma = f'"," {self.prim("ws")}'
        items = [f"{comma} {kv}" if required else f"( {comma} {kv} )?" for kv, required in members]
        if other is not None:
            items.append(f"( {comma} {other} )*")
        return seq(*items)

    def other_key(self, hint: str, declared: list[str]) -> str:
        """A key that is none of the ``declared`` property names (those written without JSON
        escapes), so that an extra property never repeats a declared one."""
        names = [n for n in dict.fromkeys(declared)
                 if n and n.isprintable() and '"' not in n and "\\" not in n]
        if not names:
            return self.prim("string")
        trie: dict[str, Any] = {}
        for name in names:
            node = trie
            for ch in name:
                node = node.setdefault(ch, {})
            node[""] = {}  # a name ends here
        key = seq('"\\""', self.key_node(hint, trie, 0), '"\\""')
        return self.named(_child(hint, "additional-key"), key)

    def key_node(self, hint: str, node: Mapping[str, Any], depth: int) -> str:
        """Key characters below a trie node: a declared name may go on but not end here."""
        char = self.prim("char")
        children = sorted(ch for ch in node if ch)
        alternatives = [seq(literal(ch), self.key_node(hint, node[ch], depth + 1)) for ch in children]
        others = complement(normalize([*JSON_SPECIAL, *((ord(c), ord(c)) for c in children)]))
        alternatives.append(f"{char_class(others)} {char}*")
        alternatives.append(f"{self.prim('escape')} {char}*")
        if "" not in node:
            alternatives.append('""')
        expr = group(alternatives)
        if depth and depth % _MAX_NESTING == 0:
            return self.named(_child(hint, "additional-key"), expr)
        return expr

    # --- arrays ------------------------------------------------------------------------

    def visit_array(self, schema: Mapping[str, Any], ptr: str, hint: str) -> str:
        prefix, rest, rest_ptr = _array_items(schema, ptr)
        lo = _count(schema, "minItems", ptr) or 0
        hi = _count(schema, "maxItems", ptr)
        if hi is not None and lo > hi:
            raise SamplerError(f"{_pointer(ptr, 'minItems')}: minItems is above maxItems")
        if rest is False and lo > len(prefix):
            raise SamplerError(f"{_pointer(ptr, 'minItems')}: minItems asks for more items than "
                               "prefixItems allows")
        if len(prefix) > 2 * _MAX_NESTING:
            raise SamplerError(f"{_pointer(ptr, 'prefixItems')}: more than {2 * _MAX_NESTING} "
                               "prefixItems are not supported")
        ws = self.prim("ws")
        with self.consumed():
            shown = prefix if hi is None else prefix[:hi]
            items = [self.named(f"{_child(hint, 'item')}-{i}",
                                self.visit(s, _pointer(ptr, where, i), f"{_child(hint, 'item')}-{i}"))
                     for i, (s, where) in enumerate(shown)]
            tail = ""
            if rest is not False:
                item = self.named(_child(hint, "item"), self.visit(rest, rest_ptr, _child(hint, "item")))
                tail = self.array_tail(item, len(items), max(lo - len(items), 0),
                                       None if hi is None else hi - len(items), ptr)
        body = tail
        for i in range(len(items) - 1, -1, -1):
            body = seq('"," ' + ws if i else "", items[i], ws, body)
            if i >= lo:
                body = f"( {body} )?"
        return seq('"["', ws, body, '"]"')

    def array_tail(self, item: str, before: int, lo: int, hi: int | None, ptr: str) -> str:
        """lo..hi more items of one schema after ``before`` items."""
        if hi == 0:
            return ""
        if max(lo, hi or 0) > MAX_REPEAT:
            key = "minItems" if lo > MAX_REPEAT else "maxItems"
            raise SamplerError(f"{_pointer(ptr, key)}: more than {MAX_REPEAT} items of one schema cannot "
                               "be counted in a grammar")
        more = f'( "," {self.prim("ws")} {item} {self.prim("ws")} )'
        if before:
            return repeat(more, lo, hi)
        first = seq(item, self.prim("ws"), repeat(more, max(lo - 1, 0), None if hi is None else hi - 1))
        return first if lo else f"( {first} )?"

    # --- strings -----------------------------------------------------------------------

    def visit_string(self, schema: Mapping[str, Any], ptr: str, hint: str) -> str:
        lo = _count(schema, "minLength", ptr)
        hi = _count(schema, "maxLength", ptr)
        lengths = lo is not None or hi is not None
        if "pattern" in schema:
            if lengths or "format" in schema:
                raise SamplerError(f"{_pointer(ptr, 'pattern')}: a pattern together with format, "
                                   "minLength or maxLength is not supported")
            return self.visit_pattern(schema["pattern"], _pointer(ptr, "pattern"), hint)
        if "format" in schema:
            fmt = schema["format"]
            if fmt in _FORMATS:
                if lengths:
                    raise SamplerError(f"{_pointer(ptr, 'format')}: a format together with minLength or "
                                       "maxLength is not supported")
                return seq('"\\""', self.prim(fmt), '"\\""')
            if self.strict:
                raise SamplerError(f"{_pointer(ptr, 'format')}: the format {fmt!r} is not supported "
                                   f"(only {', '.join(_FORMATS)}; strict=False makes it a plain string)")
        if not lengths:
            return self.prim("string")
        lo = lo or 0
        if hi is not None and hi < lo:
            raise SamplerError(f"{_pointer(ptr, 'minLength')}: minLength is above maxLength")
        if max(lo, hi or 0) > MAX_REPEAT:
            key = "minLength" if lo > MAX_REPEAT else "maxLength"
            raise SamplerError(f"{_pointer(ptr, key)}: lengths above {MAX_REPEAT} are not supported")
        return seq('"\\""', repeat(self.prim("char"), lo, hi), '"\\""')

    def visit_pattern(self, pattern: Any, ptr: str, hint: str) -> str:
        """A JSON string whose text the regex matches somewhere (JSON Schema patterns are
        not anchored: without ^ or $ any text may come before or after)."""
        if not isinstance(pattern, str):
            raise SamplerError(f"{ptr}: pattern must be a string")
        branches = RegexParser(pattern, ptr).parse()
        anything = f"{self.prim('char')}*"
        alternatives = []
        for i, branch in enumerate(branches):
            body = self.regex(branch.node, ptr, f"{hint}-{i}" if len(branches) > 1 else hint)
            alternatives.append(seq("" if branch.start else anything, body, "" if branch.end else anything)
                               or '""')
        return seq('"\\""', group(alternatives), '"\\""')

    def regex(self, node: Node, ptr: str, hint: str) -> str:
        """The GBNF of a regex node, writing each character as JSON does in a string."""
        if isinstance(node, Chars):
            return self.regex_chars(node.ranges, ptr)
        if isinstance(node, Alt):
            return group([self.regex(o, ptr, hint) or '""' for o in node.options])
        if isinstance(node, Rep):
            body = self.regex(node.item, ptr, hint)
            return repeat(self.named(f"{hint}-part", body), node.lo, node.hi) if body else ""
        items: list[str] = []
        text = ""  # runs of single characters become one literal
        for sub in node.items:
            if isinstance(sub, Chars) and len(sub.ranges) == 1 and sub.ranges[0][0] == sub.ranges[0][1]:
                cp = sub.ranges[0][0]
                text += JSON_ESCAPES.get(cp) or (f"\\u{cp:04x}" if cp < 0x20 else chr(cp))
                continue
            if text:
                items.append(literal(text))
                text = ""
            items.append(self.regex(sub, ptr, hint))  # a sequence in a sequence needs no group
        if text:
            items.append(literal(text))
        return seq(*items)

    @staticmethod
    def regex_chars(ranges: Ranges, ptr: str) -> str:
        """One character of a set: plain ones by a class, ``"`` ``\\`` and controls by their
        JSON escapes (other control characters, and DEL, are left out)."""
        alternatives = []
        plain = subtract(ranges, JSON_SPECIAL)
        if plain:
            alternatives.append(char_class(plain))
        alternatives.extend(literal(esc) for cp, esc in JSON_ESCAPES.items() if contains(ranges, cp))
        if not alternatives:
            raise SamplerError(f"{ptr}: a character class matches no character that JSON can hold")
        return group(alternatives)

    # --- numbers -----------------------------------------------------------------------

    def visit_integer(self, schema: Mapping[str, Any], ptr: str, hint: str) -> str:
        lo, hi = _integer_bounds(schema, ptr)
        if lo is None and hi is None:
            return self.prim("integer")
        if lo is not None and hi is not None and lo > hi:
            raise SamplerError(f"{ptr}: no integer lies between the minimum {lo} and the maximum {hi}")
        return integer_range(lo, hi)

    def visit_number(self, schema: Mapping[str, Any], ptr: str, hint: str) -> str:
        bounds = {k: schema[k] for k in _BOUNDS if k in schema and schema[k] is not False}
        if not bounds:
            return self.prim("number")
        if bounds == {"minimum": 0}:
            return self.prim("nonneg-number")
        key = next(k for k in _BOUNDS if k in bounds and (k != "minimum" or bounds[k] != 0))
        raise SamplerError(f"{_pointer(ptr, key)}: number bounds other than minimum 0 are not supported "
                           "(integers may have any bounds)")


# --- schema reading helpers ----------------------------------------------------------------------


def _child(hint: str, part: str) -> str:
    return part if hint == "root" else f"{hint}-{part}"


def _type_list(value: Any, ptr: str) -> list[str]:
    types = [value] if isinstance(value, str) else value
    if not isinstance(types, list) or not types or not all(t in _TYPES for t in types):
        raise SamplerError(f"{_pointer(ptr, 'type')}: type must be one of {', '.join(_TYPES)} or a "
                           f"non-empty list of them, not {value!r}")
    return list(dict.fromkeys(types))


def _has_type(value: Any, name: str) -> bool:
    """JSON Schema's type test (1.0 is an integer)."""
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float))
    kinds: dict[str, Any] = {"string": str, "array": list, "object": Mapping}
    return isinstance(value, kinds[name])


def _count(schema: Mapping[str, Any], key: str, ptr: str) -> int | None:
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SamplerError(f"{_pointer(ptr, key)}: {key} must be a non-negative integer")
    return value


def _array_items(schema: Mapping[str, Any], ptr: str) -> tuple[list[tuple[Any, str]], Any, str]:
    """The per-position schemas, the schema of the items after them (False: none) and its
    pointer; ``items: [...]`` with ``additionalItems`` is the older spelling of prefixItems."""
    items = schema.get("items", True)
    if isinstance(items, list):
        if "prefixItems" in schema:
            raise SamplerError(f"{_pointer(ptr, 'items')}: items as a list together with prefixItems")
        return ([(s, "items") for s in items], schema.get("additionalItems", True),
                _pointer(ptr, "additionalItems"))
    prefix = schema.get("prefixItems", [])
    if not isinstance(prefix, list):
        raise SamplerError(f"{_pointer(ptr, 'prefixItems')}: prefixItems must be a list of schemas")
    return [(s, "prefixItems") for s in prefix], items, _pointer(ptr, "items")


def _integer_bounds(schema: Mapping[str, Any], ptr: str) -> tuple[int | None, int | None]:
    """Inclusive integer bounds from minimum/maximum/exclusive* (numbers, or the booleans of
    draft 4)."""
    lows, highs = [], []
    for key in _BOUNDS:
        value = schema.get(key)
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SamplerError(f"{_pointer(ptr, key)}: {key} must be a number")
        if abs(value) > MAX_INT:
            raise SamplerError(f"{_pointer(ptr, key)}: integer bounds of more than {MAX_DIGITS} digits "
                               "are not supported")
        exclusive = key.startswith("exclusive") or schema.get(f"exclusive{key.capitalize()}") is True
        if key in ("minimum", "exclusiveMinimum"):
            lows.append(math.floor(value) + 1 if exclusive else math.ceil(value))
        else:
            highs.append(math.ceil(value) - 1 if exclusive else math.floor(value))
    return (max(lows) if lows else None), (min(highs) if highs else None)
