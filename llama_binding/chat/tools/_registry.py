"""The registry of tool-call parsers by name: one module per format registers itself here."""

from __future__ import annotations

from typing import Callable, TypeVar

from ..._registry import Registry
from .types import ToolCallParser

__all__ = ["get_parser", "names", "register"]

_PARSERS: Registry[ToolCallParser] = Registry("tool-call parser")
_P = TypeVar("_P", bound=ToolCallParser)


def register(name: str) -> Callable[[type[_P]], type[_P]]:
    """Class decorator: make an instance of the class available as ``get_parser(name)``.

    Parsers hold no per-completion state (that lives in their stream objects), so one shared
    instance serves every request.
    """

    def decorate(cls: type[_P]) -> type[_P]:
        _PARSERS.add(name, cls())
        return cls

    return decorate


def get_parser(name: str) -> ToolCallParser:
    """The parser registered as ``name``; ``ValueError`` lists the known names otherwise."""
    return _PARSERS.get(name)


def names() -> list[str]:
    """The registered parser names, sorted."""
    return _PARSERS.names()
