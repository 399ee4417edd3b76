"""Character sets and the regex subset of JSON Schema ``pattern``.

Character sets are sorted, disjoint, inclusive code point ranges; :func:`char_class` writes
one as a GBNF class. :class:`RegexParser` reads the part of ECMA-262 regex syntax that a
grammar can express into a small tree (:data:`Node`) and raises
:class:`~llama_binding.errors.SamplerError` for anything outside it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from ..errors import SamplerError
from ._gbnf_text import MAX_REPEAT

__all__ = [
    "JSON_ESCAPES", "JSON_SPECIAL", "NOT_CHARACTERS", "Alt", "Chars", "Node", "Ranges", "RegexParser", "Rep",
    "char_class", "complement", "contains", "normalize", "subtract",
]

_MAX_CODEPOINT = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)

# --- character sets (sorted, disjoint, inclusive code point ranges) ---------------------------

Ranges = tuple[tuple[int, int], ...]


def normalize(ranges: Sequence[tuple[int, int]]) -> Ranges:
    """Sorted, merged ranges, without UTF-16 surrogates (they are no characters)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        for a, b in ((lo, min(hi, _SURROGATES[0] - 1)), (max(lo, _SURROGATES[1] + 1), hi)):
            if a > b:
                continue
            if out and a <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
    return tuple(out)


def complement(ranges: Ranges) -> Ranges:
    out = []
    at = 0
    for lo, hi in ranges:
        if lo > at:
            out.append((at, lo - 1))
        at = hi + 1
    if at <= _MAX_CODEPOINT:
        out.append((at, _MAX_CODEPOINT))
    return normalize(out)


def contains(ranges: Ranges, cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _class_char(cp: int) -> str:
    ch = chr(cp)
    if ch in "\\[]-":
        return "\\" + ch
    if 0x20 <= cp < 0x7F and ch != "^":
        return ch
    if cp < 0x100:
        return f"\\x{cp:02X}"
    return f"\\u{cp:04X}" if cp < 0x10000 else f"\\U{cp:08X}"


#: what a negated class must also keep out: llama.cpp's grammar decodes UTF-8 without checking
#: it, so invalid bytes become surrogates or values beyond U+10FFFF (one "character" to the
#: grammar, up to four U+FFFD to a strict decoder: lengths would be off)
NOT_CHARACTERS = r"\uD800-\uDFFF\U00110000-\U7FFFFFFF"


def char_class(ranges: Ranges) -> str:
    """A GBNF character class for ``ranges``, negated where that is shorter."""
    inverse = complement(ranges)
    negate = len(inverse) < len(ranges)
    body = "".join(_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}"
                   for lo, hi in (inverse if negate else ranges))
    return f"[^{body}{NOT_CHARACTERS}]" if negate else f"[{body}]"


# characters that JSON writes escaped inside a string; others below 0x20 are dropped
JSON_SPECIAL = normalize([(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F)])
JSON_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r",
                0x09: "\\t"}


def subtract(ranges: Ranges, other: Ranges) -> Ranges:
    return complement(normalize([*complement(ranges), *other]))


# --- the regex subset ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chars:
    """One character out of a set (a literal is a set of one)."""

    ranges: Ranges


@dataclass(frozen=True)
class _Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Rep:
    item: Node
    lo: int
    hi: int | None


Node = Union[Chars, _Seq, Alt, Rep]


@dataclass(frozen=True)
class _Branch:
    """A top-level alternative of a pattern and whether ``^``/``$`` anchor it."""

    node: Node
    start: bool
    end: bool


def _one(cp: int) -> Chars:
    return Chars(((cp, cp),))


_DIGIT = normalize([(0x30, 0x39)])
_WORD = normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
_SPACE = normalize([(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
                    (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
                    (0xFEFF, 0xFEFF)])
_CLASS_ESCAPES = {"d": _DIGIT, "w": _WORD, "s": _SPACE, "D": complement(_DIGIT),
                  "W": complement(_WORD), "S": complement(_SPACE)}
_CHAR_ESCAPES = {"n": 0x0A, "t": 0x09, "r": 0x0D, "f": 0x0C, "v": 0x0B, "0": 0x00}
_DOT = complement(normalize([(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)]))


class RegexParser:
    """A recursive-descent parser of the ECMA-262 regex subset that a grammar can express.

    Everything outside the subset raises, because dropping it would let the model write
    strings the pattern rejects.
    """

    def __init__(self, pattern: str, ptr: str) -> None:
        self.text = pattern
        self.pos = 0
        self.ptr = ptr

    def fail(self, what: str) -> SamplerError:
        return SamplerError(f"{self.ptr}: {what} (at position {self.pos} of {self.text!r})")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def eat(self, ch: str) -> bool:
        if self.peek() == ch:
            self.pos += 1
            return True
        return False

    def parse(self) -> list[_Branch]:
        branches = []
        while True:
            start = self.eat("^")
            node, end = self.sequence(top=True)
            branches.append(_Branch(node, start, end))
            if not self.eat("|"):
                break
        if self.pos < len(self.text):
            raise self.fail("unbalanced ')'")
        return branches

    def alternation(self) -> Node:
        options = [self.sequence(top=False)[0]]
        while self.eat("|"):
            options.append(self.sequence(top=False)[0])
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self, top: bool) -> tuple[Node, bool]:
        """Items up to ``|``, ``)`` or the end; True with a closing ``$`` at the top level."""
        items: list[Node] = []
        while self.peek() not in ("", "|", ")"):
            ch = self.peek()
            if ch == "$":
                if top and self.pos + 1 < len(self.text) and self.text[self.pos + 1] != "|":
                    raise self.fail("anchors ^ and $ are supported only at the ends")
                if not top:
                    raise self.fail("anchors ^ and $ are supported only at the ends")
                self.pos += 1
                return _Seq(tuple(items)), True
            if ch == "^":
                raise self.fail("anchors ^ and $ are supported only at the ends")
            items.append(self.quantified(self.atom()))
        return _Seq(tuple(items)), False

    def atom(self) -> Node:
        ch = self.peek()
        self.pos += 1
        if ch == "(":
            return self.group()
        if ch == "[":
            return Chars(self.char_class())
        if ch == ".":
            return Chars(_DOT)
        if ch == "\\":
            item = self.escape(in_class=False)
            return Chars(item) if isinstance(item, tuple) else _one(item)
        self.pos -= 1
        if ch in "*+?{":
            raise self.fail(f"nothing to repeat before {ch!r}")
        self.pos += 1
        return _one(self.codepoint(ch))

    def codepoint(self, ch: str) -> int:
        cp = ord(ch)
        if _SURROGATES[0] <= cp <= _SURROGATES[1]:
            raise self.fail("a lone UTF-16 surrogate is not a character")
        return cp

    def group(self) -> Node:
        if self.eat("?"):
            if self.eat(":"):
                pass
            elif self.text.startswith(("=", "!"), self.pos):
                raise self.fail("lookahead is not supported")
            elif self.text.startswith(("<=", "<!"), self.pos):
                raise self.fail("lookbehind is not supported")
            elif self.eat("<") or (self.eat("P") and self.eat("<")):
                end = self.text.find(">", self.pos)
                if end < 0:
                    raise self.fail("unterminated group name")
                self.pos = end + 1
            else:
                raise self.fail("this group extension (?...) is not supported")
        node = self.alternation()
        if not self.eat(")"):
            raise self.fail("missing ')'")
        return node

    def quantified(self, atom: Node) -> Node:
        ch = self.peek()
        if ch in ("*", "+", "?"):
            self.pos += 1
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        elif ch == "{":
            lo, hi = self.braces()
        else:
            return atom
        if self.eat("+"):
            raise self.fail("possessive quantifiers are not supported")
        self.eat("?")  # lazy: the same strings match
        if hi is not None and hi < lo:
            raise self.fail(f"the quantifier {{{lo},{hi}}} has its bounds in the wrong order")
        if max(lo, hi or 0) > MAX_REPEAT:
            raise self.fail(f"quantifiers above {MAX_REPEAT} are not supported")
        return Rep(atom, lo, hi)

    def braces(self) -> tuple[int, int | None]:
        match = re.compile(r"\{(\d+)(,(\d*))?\}").match(self.text, self.pos)
        if match is None:
            raise self.fail("'{' must start a quantifier {m}, {m,} or {m,n} (write \\{ for the character)")
        self.pos = match.end()
        lo = int(match.group(1))
        if match.group(2) is None:
            return lo, lo
        return lo, int(match.group(3)) if match.group(3) else None

    def escape(self, in_class: bool) -> Ranges | int:
        """After a backslash: a set (``\\d``) or one code point."""
        ch = self.peek()
        if not ch:
            raise self.fail("the pattern ends with a lone backslash")
        self.pos += 1
        if ch in _CLASS_ESCAPES:
            return _CLASS_ESCAPES[ch]
        if ch in _CHAR_ESCAPES:
            return _CHAR_ESCAPES[ch]
        if ch == "b" and in_class:
            return 0x08
        if ch in "bB":
            raise self.fail("word boundaries (\\b, \\B) are not supported")
        if ch in "123456789k":
            raise self.fail("backreferences are not supported")
        if ch in "pP":
            raise self.fail("Unicode property escapes (\\p, \\P) are not supported")
        if ch in "xu":
            return self.hex_escape(ch)
        if ch.isascii() and ch.isalnum():
            raise self.fail(f"the escape \\{ch} is not supported")
        return self.codepoint(ch)

    def hex_escape(self, kind: str) -> int:
        if kind == "u" and self.eat("{"):
            end = self.text.find("}", self.pos)
            digits = self.text[self.pos : end] if end > 0 else ""
            self.pos = end + 1 if end > 0 else self.pos
        else:
            size = 2 if kind == "x" else 4
            digits = self.text[self.pos : self.pos + size]
            if len(digits) != size:
                digits = ""
            self.pos += len(digits)
        if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise self.fail(f"a \\{kind} escape needs hex digits")
        cp = int(digits, 16)
        if cp > _MAX_CODEPOINT or _SURROGATES[0] <= cp <= _SURROGATES[1]:
            raise self.fail(f"\\{kind}{digits} is not a character")
        return cp

    def class_item(self) -> Ranges | int:
        ch = self.peek()
        self.pos += 1
        if ch == "\\":
            return self.escape(in_class=True)
        return self.codepoint(ch)

    def char_class(self) -> Ranges:
        negate = self.eat("^")
        ranges: list[tuple[int, int]] = []
        while not self.eat("]"):
            if not self.peek():
                raise self.fail("unterminated character class")
            item = self.class_item()
            if isinstance(item, tuple):
                ranges.extend(item)
                continue
            if self.peek() == "-" and self.text[self.pos + 1 : self.pos + 2] not in ("]", ""):
                self.pos += 1
                upper = self.class_item()
                if isinstance(upper, tuple):  # [a-\d]: the '-' is a literal
                    ranges.extend([(item, item), (0x2D, 0x2D), *upper])
                    continue
                if upper < item:
                    raise self.fail("a class range is out of order")
                ranges.append((item, upper))
            else:
                ranges.append((item, item))
        result = normalize(ranges)
        return complement(result) if negate else result
