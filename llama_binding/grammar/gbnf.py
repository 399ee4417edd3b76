"""GBNF grammars, checked when they are made, without a model.

:class:`LlamaGrammar` holds the text of a GBNF grammar (llama.cpp's grammar format) and
the name of its start rule; it is a drop-in for llama-cpp-python's ``LlamaGrammar``
(``from_string``, ``from_file``, ``LlamaGrammar(_grammar=...)``). An invalid grammar raises
:class:`~llama_binding.errors.SamplerError` as soon as the object is built.

A grammar is checked twice:

1. by the checker of `_gbnf_check.py`, a port of llama.cpp's GBNF parser (``src/llama-grammar.cpp``)
   that gives llama.cpp's error messages with a line and column (llama.cpp itself writes
   the parser's message straight to stderr with ``fprintf``; its log callback only gets
   "failed to parse grammar"). It also refuses what would make llama.cpp crash or hang:
   ``{m,n}`` with ``n < m`` (an endless loop), groups nested too deeply (a stack overflow
   in the recursive parser), left recursion through rules that match nothing only by way
   of other rules (llama.cpp's check misses it and its stack expansion then grows until
   ``std::bad_alloc`` aborts the process), leftmost rule chains that its left-recursion
   check would recurse too deep into or walk in exponential time, grammars so ambiguous
   that the first expansion needs too many parse stacks, and repetitions that expand to
   millions of grammar elements. It also refuses what llama.cpp accepts but can never match
   (a generation would find no allowed token; llama.cpp throws across the C API when such a
   grammar is made to accept one): reversed ranges (``[z-a]``), code points beyond U+10FFFF
   in literals and positive classes, NUL in literals and positive classes, and token ids
   beyond int32. CR, LF and CRLF line endings are all accepted;
2. by llama.cpp itself (:meth:`llama_binding.core.Sampler.grammar_without_vocab`):
   ``llama_sampler_init_grammar`` with a NULL vocab parses the grammar, checks the start
   rule and left recursion, builds the first parse stacks, and is freed at once. A NULL
   vocab is safe there: the parser only reads it for token references written ``<name>``,
   which are replaced by the placeholder ``<[0]>`` for this check. Whether
   ``<name>`` is one token of the model's vocabulary is checked when a sampler is built
   with that vocabulary (:meth:`llama_binding.core.Sampler.grammar`).

An accepted grammar can still be slow to sample when it is very ambiguous in the middle
(the number of parse stacks after some text); that depends on what is generated and is not
checked here.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import Any

from .. import _log
from ..core.sampler import Sampler
from ..errors import SamplerError
from ._gbnf_check import TOKEN_PLACEHOLDER as _TOKEN_PLACEHOLDER
from ._gbnf_check import GbnfChecker as _Checker
from ._gbnf_check import GbnfError as _GbnfError

__all__ = ["DEFAULT_ROOT", "JSON_GBNF", "JSON_OBJECT_GBNF", "LlamaGrammar", "checked"]

DEFAULT_ROOT = "root"

#: A grammar for one JSON value (object, array, string, number, true, false or null).
#: Like llama.cpp's ``grammars/json.gbnf`` it bounds what a model could otherwise repeat
#: forever: whitespace runs (one space, or a newline and up to 20 spaces or tabs) and the
#: digits of a number (16 before the point, 16 after it, 3 in the exponent).
JSON_GBNF = r"""# one JSON value
root     ::= value
value    ::= object | array | string | number | "true" | "false" | "null"

object   ::= "{" ws ( member ( "," ws member )* )? "}"
member   ::= string ws ":" ws value ws
array    ::= "[" ws ( value ws ( "," ws value ws )* )? "]"

string   ::= "\"" ( plain | escape )* "\""
plain    ::= [^"\\\x00-\x1F\x7F\uD800-\uDFFF\U00110000-\U7FFFFFFF]
escape   ::= "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )

number   ::= "-"? integer fraction? exponent?
integer  ::= "0" | [1-9] [0-9]{0,15}
fraction ::= "." [0-9]{1,16}
exponent ::= [eE] [-+]? [0-9]{1,3}

ws       ::= ( " " | "\n" [ \t]{0,20} )?
"""

#: A grammar for one JSON object (``{...}``), what ``response_format`` ``{"type": "json_object"}``
#: promises: :data:`JSON_GBNF` with the object as its root.
JSON_OBJECT_GBNF = JSON_GBNF.replace("# one JSON value\nroot     ::= value\n",
                                     "# one JSON object\nroot     ::= object\n", 1)

def _native_check(data: bytes, root: bytes) -> str | None:
    """Let llama.cpp parse the grammar with no vocab; None if it is fine, else why not."""
    _log.install()  # so that its error lines can be collected
    mark = _log.error_mark()
    try:
        sampler = Sampler.grammar_without_vocab(data, root)
    except SamplerError:
        return _log.errors_since(mark) or "llama.cpp could not parse the grammar"
    sampler.close()
    return None


def _validate(grammar: str, root: str) -> None:
    if not grammar.strip():
        raise SamplerError("invalid GBNF grammar: the grammar is empty")
    if "\0" in grammar or "\0" in root:
        raise SamplerError("invalid GBNF grammar: it contains a NUL character")
    try:
        data = grammar.encode("utf-8")
        root_bytes = root.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SamplerError(f"invalid GBNF grammar: not encodable as UTF-8 ({exc})") from None
    checker = _Checker(data)
    try:
        checker.parse(root)
    except _GbnfError as exc:
        raise SamplerError(f"invalid GBNF grammar: {exc.what}{checker.where(exc.pos)}") from None
    if checker.token_spans:  # <name> needs a vocabulary: check the rest with a placeholder
        parts: list[bytes] = []
        at = 0
        for start, end in checker.token_spans:
            parts += (data[at:start], _TOKEN_PLACEHOLDER)
            at = end
        data = b"".join([*parts, data[at:]])
    reason = _native_check(data, root_bytes)
    if reason is not None:
        raise SamplerError(f"invalid GBNF grammar: {reason}")


class LlamaGrammar:
    """A GBNF grammar (``grammar``) with its start rule (``root``), checked when made.

    ``LlamaGrammar(text)``, ``LlamaGrammar.from_string(text)`` and
    ``LlamaGrammar.from_file(path)`` raise :class:`~llama_binding.errors.SamplerError` for
    an invalid grammar, with the reason and its line and column. No model is needed; token
    references written ``<name>`` are checked against a vocabulary only when a sampler is
    built from the grammar. Grammars compare and hash by text and root.
    """

    __slots__ = ("_grammar", "_root")

    _grammar: str
    _root: str

    def __init__(self, grammar: str | None = None, *, root: str = DEFAULT_ROOT,
                 _grammar: str | None = None) -> None:
        if grammar is not None and _grammar is not None:
            raise TypeError("give the grammar once: LlamaGrammar(text) or LlamaGrammar(_grammar=text)")
        text = grammar if grammar is not None else _grammar
        if text is None:
            raise TypeError("LlamaGrammar() needs the grammar text")
        if not isinstance(text, str):
            raise TypeError(f"a GBNF grammar must be a str, not {type(text).__name__}")
        if not isinstance(root, str):
            raise TypeError(f"the root rule name must be a str, not {type(root).__name__}")
        if not root:
            raise SamplerError("invalid GBNF grammar: the root rule name is empty")
        _validate(text, root)
        object.__setattr__(self, "_grammar", text)
        object.__setattr__(self, "_root", root)

    @property
    def grammar(self) -> str:
        """The GBNF text."""
        return self._grammar

    @property
    def root(self) -> str:
        """The name of the start rule."""
        return self._root

    @classmethod
    def from_string(cls, grammar: str, verbose: bool = True, *, root: str = DEFAULT_ROOT) -> LlamaGrammar:
        """A grammar from GBNF text (``verbose`` is accepted for llama-cpp-python
        compatibility and changes nothing: errors are raised, not printed)."""
        return cls(grammar, root=root)

    @classmethod
    def from_file(cls, file: str | os.PathLike[str], verbose: bool = True, *,
                  root: str = DEFAULT_ROOT) -> LlamaGrammar:
        """A grammar from a UTF-8 GBNF file; an unreadable file raises :class:`OSError`
        (:class:`FileNotFoundError` when it is missing) naming the path, an invalid grammar
        :class:`~llama_binding.errors.SamplerError` naming it too (``verbose`` as in
        :meth:`from_string`)."""
        if not isinstance(file, (str, os.PathLike)):
            raise TypeError(f"a grammar file path must be a str or os.PathLike, not {type(file).__name__}")
        path = os.fspath(file)
        if not isinstance(path, str):
            raise TypeError(f"a grammar file path must be a str path, not {type(path).__name__}")
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except UnicodeDecodeError as exc:
            raise SamplerError(f"grammar file {path!r} is not UTF-8 text: {exc}") from None
        except OSError as exc:
            if exc.errno is None:
                raise OSError(f"cannot read grammar file {path!r}: {exc}") from exc
            # OSError(errno, ...) makes the matching subclass (FileNotFoundError, ...)
            raise OSError(exc.errno, f"cannot read grammar file: {exc.strerror}", path) from exc
        try:
            return cls(text, root=root)
        except SamplerError as exc:
            raise SamplerError(f"{path}: {exc}") from None

    @classmethod
    def from_json_schema(cls, json_schema: str | Mapping[str, Any], verbose: bool = True, *,
                         strict: bool = False, extra_keys: bool = False) -> LlamaGrammar:
        """The grammar of the JSON documents that ``json_schema`` (JSON text, as
        llama-cpp-python takes it, or a dict) accepts, by :func:`~llama_binding.grammar.schema_to_gbnf`
        with ``strict`` (default False: keywords it cannot enforce are ignored) and
        ``extra_keys`` (default False, as llama-cpp-python: an object has only the keys its
        schema declares unless ``additionalProperties`` says otherwise; ``verbose`` as in
        :meth:`from_string`). Invalid JSON text raises :class:`~llama_binding.errors.SamplerError`."""
        from .json_schema import schema_to_gbnf

        schema: Any = json_schema
        if isinstance(json_schema, (str, bytes)):
            try:
                schema = json.loads(json_schema)
            except ValueError as exc:
                raise SamplerError(f"the JSON schema is not valid JSON: {exc}") from None
        return cls(schema_to_gbnf(schema, strict=strict, extra_keys=extra_keys))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._grammar, self._root))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LlamaGrammar):
            return NotImplemented
        return self._grammar == other._grammar and self._root == other._root

    def __hash__(self) -> int:
        return hash((self._grammar, self._root))

    def __repr__(self) -> str:
        text = self._grammar if len(self._grammar) <= 60 else self._grammar[:57] + "..."
        root = "" if self._root == DEFAULT_ROOT else f", root={self._root!r}"
        return f"{type(self).__name__}({text!r}{root})"


@functools.lru_cache(maxsize=64)
def checked(grammar: str, root: str = DEFAULT_ROOT) -> LlamaGrammar:
    """``LlamaGrammar(grammar, root=root)``, remembered: the generation layer checks every
    grammar text this way before llama.cpp sees it, and a server repeats the same ones."""
    return LlamaGrammar(grammar, root=root)


def _restore(grammar: str, root: str) -> LlamaGrammar:
    return LlamaGrammar(grammar, root=root)
