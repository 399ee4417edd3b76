"""Parse, select and emit: the whole pipeline, in memory."""

from __future__ import annotations

from pathlib import Path

from . import config, parser, selection
from .emit_python import emit
from .model import Module


def modules(root: Path = config.LLAMA_CPP) -> list[Module]:
    """The generated modules' contents, from the headers under ``root``."""
    return selection.build(parser.parse(root))


def generate(root: Path = config.LLAMA_CPP) -> dict[str, str]:
    """File name (``llama.py``...) -> generated source, from the headers under ``root``."""
    mods = modules(root)
    return {f"{m.name}.py": emit(m, mods) for m in mods}
