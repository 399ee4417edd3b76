"""Comments of a header, attached to declarations by line, the way a reader would attach them.

* a *leading* comment is the block of comment-only lines right above a declaration (no blank
  line in between);
* a *trailing* comment starts after the code on the declaration's last line (or after the
  ``{`` that ends its first line), and goes on over the comment-only lines below it that start
  in the same column (``swa_full`` in ``llama_context_params`` is written like that).

Clang's own attachment (``-fparse-all-comments``) was tried; it attaches section banners such
as ``// Decoding`` across blank lines and misses trailing comments of enumerators, so the rule
is implemented here, on the text, and is easy to read and to change.
"""

from __future__ import annotations

import re
import textwrap

_LINE_COMMENT = re.compile(r"//[/!]?<?")


class HeaderComments:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        # line number (1-based) -> (column of "//", text) for lines with code then a comment
        self._trailing: dict[int, tuple[int, str]] = {}
        # comment-only lines that continue the trailing comment of a line above
        self._continuation: dict[int, int] = {}  # line -> line of the trailing comment it continues
        self._scan()

    # -- scanning ----------------------------------------------------------------------------

    def _code_and_comment(self, line: str) -> tuple[str, int, str] | None:
        """Split ``code // comment``; None when the line has no ``//`` outside a string."""
        in_str = False
        i = 0
        while i < len(line):
            ch = line[i]
            if ch == '"' and (i == 0 or line[i - 1] != "\\"):
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                return line[:i], i, line[i:]
            elif not in_str and line.startswith("/*", i):
                return None
            i += 1
        return None

    def _scan(self) -> None:
        owner: int | None = None  # the last line with code and a trailing comment
        for no, line in enumerate(self.lines, start=1):
            split = self._code_and_comment(line)
            if split is not None and split[0].strip():
                self._trailing[no] = (split[1], split[2])
                owner = no
            elif split is not None and owner is not None and split[1] == self._trailing[owner][0]:
                self._continuation[no] = owner
            else:
                owner = None

    # -- queries -----------------------------------------------------------------------------

    def leading(self, line: int) -> str:
        """The comment block that ends on the line above ``line`` (1-based)."""
        out: list[str] = []
        no = line - 1
        while no >= 1:
            text = self.lines[no - 1].strip()
            if no in self._continuation:
                break
            if text.startswith("//"):
                out.append(_LINE_COMMENT.sub("", text, count=1))
                no -= 1
                continue
            if text.endswith("*/"):
                block: list[str] = []
                start = no
                while start >= 1 and "/*" not in self.lines[start - 1]:
                    start -= 1
                if start < 1 or not self.lines[start - 1].strip().startswith("/*"):
                    break
                for k in range(no, start - 1, -1):
                    block.append(_clean_block_line(self.lines[k - 1]))
                out.extend(block)
                no = start - 1
                continue
            break
        out.reverse()
        return _tidy(out)

    def trailing(self, first: int, last: int) -> str:
        """The comment after the code of ``last`` (or after the ``{`` that ends ``first``)."""
        for no in (last, first) if first != last else (last,):
            found = self._trailing.get(no)
            if found is None:
                continue
            code = self.lines[no - 1][: found[0]].rstrip()
            if no == first and first != last and not code.endswith("{"):
                continue
            parts = [_LINE_COMMENT.sub("", found[1], count=1)]
            k = no + 1
            while self._continuation.get(k) == no:
                parts.append(_LINE_COMMENT.sub("", self.lines[k - 1].strip(), count=1))
                k += 1
            return _tidy(parts)
        return ""


def _clean_block_line(line: str) -> str:
    text = line.strip()
    text = re.sub(r"^/\*+!?", "", text)
    text = re.sub(r"\*+/$", "", text)
    text = re.sub(r"^\*(?!/)", "", text)
    return text


def _tidy(lines: list[str]) -> str:
    # drop empty leading/trailing lines and the common indentation; keep relative indentation
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    text = textwrap.dedent("\n".join(line.rstrip() for line in lines))
    return text.strip("\n")


def join(*parts: str) -> str:
    """Paragraphs joined by a blank line, empty ones left out."""
    return "\n\n".join(p for p in parts if p)
