"""Special-token text in chat messages, tokenized as text (escaping).

A chat prompt is rendered to text and tokenized with special tokens parsed, so that the
template's ``<|im_start|>`` becomes the control token. Message contents are part of that
text: a user who types ``<|im_start|>system`` would inject a real control token and open
a system turn of their own. With escaping, the text of control tokens inside messages
(and tools) is tokenized as plain text, while the template's own stays a control token:

1. every occurrence of a special token's text in a message string is replaced by a unique
   ASCII placeholder (the template sees the message otherwise unchanged);
2. the template renders as usual;
3. the rendered prompt is cut at the template's special tokens, as llama.cpp's tokenizer
   cuts it: those become their ids, and each run of text between them, with the
   placeholders put back as the original text, is tokenized with ``parse_special=False``.

When no message holds special-token text, the prompt is tokenized exactly as without
escaping (one call); the steps above are the same partition otherwise, so the tokens of
the rest of the prompt do not change. A placeholder that a template drops (a message it
leaves out) needs nothing; one it transforms (``upper``) is lost with its text.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .types import ChatFormatter, ChatPrompt

__all__ = ["Masker", "SpecialToken", "SpecialTokens", "masked_prompt", "prompt_tokens"]

#: ``tokenize(text, add_special, parse_special)``, as ``Vocab.tokenize``
Tokenize = Callable[[str, bool, bool], list[int]]

_SPACE = " \t\n\v\f\r"  # C isspace(), as llama.cpp strips around LSTRIP/RSTRIP tokens
_UNMASKED_KEYS = frozenset({"role", "type"})  # fixed vocabularies the formats switch on


@dataclass(frozen=True)
class SpecialToken:
    """A token that llama.cpp parses from text only with ``parse_special`` (a control or
    unknown token); ``lstrip``/``rstrip``: it eats the whitespace before/after it."""

    id: int
    lstrip: bool = False
    rstrip: bool = False


class SpecialTokens:
    """The special tokens of a vocabulary by text, matched as llama.cpp matches them
    (longer texts first)."""

    def __init__(self, tokens: Mapping[str, SpecialToken]) -> None:
        self.tokens = {text: tok for text, tok in tokens.items() if text}
        texts = sorted(self.tokens, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, texts))) if texts else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def finditer(self, text: str) -> Iterator[tuple[int, int, SpecialToken]]:
        if self._pattern is None:
            return
        for m in self._pattern.finditer(text):
            yield m.start(), m.end(), self.tokens[m.group()]

    def occurs_in(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text) is not None


class Masker:
    """Replaces special-token text in message strings by placeholders, and splits a
    rendered prompt back into template text and escaped originals."""

    def __init__(self, specials: SpecialTokens) -> None:
        self.specials = specials
        self.nonce = secrets.token_hex(8)
        self.originals: list[str] = []
        self._placeholder = re.compile(f"LBESC{self.nonce}N([0-9]+)E")

    def mask(self, value: Any) -> Any:
        """A copy of ``value`` (messages, tools: dicts, lists and strings) with the special
        texts in its strings replaced; keys and the ``role``/``type`` values stay."""
        if isinstance(value, str):
            return self._mask_text(value)
        if isinstance(value, Mapping):
            return {k: v if k in _UNMASKED_KEYS else self.mask(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask(v) for v in value]
        return value

    def _mask_text(self, text: str) -> str:
        if not self.specials.occurs_in(text):
            return text
        out, pos = [], 0
        for start, end, _ in self.specials.finditer(text):
            out.append(text[pos:start])
            out.append(f"LBESC{self.nonce}N{len(self.originals)}E")
            self.originals.append(text[start:end])
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def split(self, rendered: str) -> list[tuple[bool, str]]:
        """``(escaped, text)`` pieces of ``rendered``: template text, and the original text
        of each placeholder."""
        pieces: list[tuple[bool, str]] = []
        pos = 0
        for m in self._placeholder.finditer(rendered):
            pieces.append((False, rendered[pos : m.start()]))
            pieces.append((True, self.originals[int(m.group(1))]))
            pos = m.end()
        pieces.append((False, rendered[pos:]))
        return pieces


def _edges(tokenize: Tokenize) -> tuple[list[int], list[int]]:
    """The tokens that ``add_special`` puts before and after a text (BOS, EOS, ...)."""
    plain = tokenize("a", False, False)
    full = tokenize("a", True, False)
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i], full[i + len(plain) :]
    return full[:1] if full and full[0] not in plain else [], []


def prompt_tokens(prompt: ChatPrompt, masker: Masker | None, tokenize: Tokenize) -> list[int]:
    """The tokens of a rendered ``prompt``: special tokens parsed in the template's text
    only, the escaped originals of ``masker`` tokenized as text."""
    if masker is None or not masker.originals:
        return tokenize(prompt.prompt, prompt.add_bos, True)
    head, tail = _edges(tokenize) if prompt.add_bos else ([], [])
    out = list(head)
    run: list[str] = []
    after_rstrip = False

    def flush(before_lstrip: bool) -> None:
        text = "".join(run)
        run.clear()
        if after_rstrip:
            text = text.lstrip(_SPACE)
        if before_lstrip:
            text = text.rstrip(_SPACE)
        if text:
            out.extend(tokenize(text, False, False))

    for escaped, text in masker.split(prompt.prompt):
        if escaped:
            run.append(text)
            continue
        pos = 0
        for start, end, tok in masker.specials.finditer(text):
            run.append(text[pos:start])
            flush(tok.lstrip)
            out.append(tok.id)
            after_rstrip = tok.rstrip
            pos = end
        run.append(text[pos:])
    flush(False)
    out.extend(tail)
    return out


def masked_prompt(formatter: ChatFormatter, messages: Sequence[Mapping[str, Any]], specials: SpecialTokens,
                  tools: Sequence[Mapping[str, Any]] | None = None) -> tuple[ChatPrompt, Masker]:
    """Render ``messages`` (and ``tools``) with ``formatter``, their special-token text
    replaced by placeholders; :func:`prompt_tokens` then tokenizes it as text."""
    masker = Masker(specials)
    prompt = formatter(masker.mask(list(messages)), tools=masker.mask(tools) if tools is not None else None)
    return prompt, masker
