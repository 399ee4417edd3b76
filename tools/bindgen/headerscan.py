"""A second, deliberately naive reading of the headers: regular expressions over the text.

It shares nothing with the libclang parse, so the coverage test (tests/capi/test_coverage.py)
and ``python -m tools.bindgen --stats`` can check the generated modules against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# The API macro that marks the exported functions of each header.
API_MACROS = {
    "include/llama.h": "LLAMA_API",
    "tools/mtmd/mtmd.h": "MTMD_API",
    "tools/mtmd/mtmd-helper.h": "MTMD_API",
    "ggml/include/gguf.h": "GGML_API",
}


@dataclass
class HeaderScan:
    functions: list[str] = field(default_factory=list)
    structs: list[str] = field(default_factory=list)  # defined or only declared (opaque)
    unions: list[str] = field(default_factory=list)
    enums: dict[str, list[str]] = field(default_factory=dict)  # tag -> enumerators
    defines: list[str] = field(default_factory=list)  # object-like macros with a value


def _c_only(text: str) -> str:
    """Drop comments and the blocks under ``#ifdef __cplusplus`` (C++-only declarations)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out: list[str] = []
    stack: list[bool] = []  # for each open #if: is it a C++-only block?
    for line in text.splitlines():
        s = line.strip()
        if re.match(r"#\s*if", s):
            stack.append(bool(re.match(r"#\s*if(def\s+__cplusplus|\s+defined\s*\(\s*__cplusplus\s*\))", s)))
        elif re.match(r"#\s*endif", s) and stack:
            stack.pop()
            continue
        elif re.match(r"#\s*else", s) and stack and stack[-1]:
            stack[-1] = False
            continue
        if any(stack):
            continue
        out.append(line)
    return "\n".join(out)


def scan(path: Path, api_macro: str) -> HeaderScan:
    text = _c_only(path.read_text(encoding="utf-8"))
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    res = HeaderScan()
    fn = re.compile(rf"\b{api_macro}\b\s+(?:DEPRECATED\s*\(\s*)?[^;(){{}}]*?\b(\w+)\s*\(")
    res.functions = list(dict.fromkeys(fn.findall(code)))
    res.structs = list(dict.fromkeys(re.findall(r"\bstruct\s+(\w+)\s*[{;]", code)))
    res.unions = list(dict.fromkeys(re.findall(r"\bunion\s+(\w+)\s*[{;]", code)))
    for tag, body in re.findall(r"\benum\s+(\w+)\s*\{([^}]*)\}", code):
        res.enums[tag] = [m for m in re.findall(r"(?:^|,)\s*([A-Za-z_]\w*)", body)]
    for name, value in re.findall(r"^\s*#\s*define\s+([A-Z_][A-Z0-9_]*)[ \t]+(\S[^\n]*)$", text, flags=re.M):
        if not name.endswith("_API") and not value.startswith("__"):
            res.defines.append(name)
    return res


def scan_all(root: Path) -> dict[str, HeaderScan]:
    return {header: scan(root / header, macro) for header, macro in API_MACROS.items()}
