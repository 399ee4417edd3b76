"""The registry of tool-call parsers by name: one module per format registers itself here."""

from __future__ import annotations

from typing import Callable, TypeVar

from .types import ToolCallParser

__all__ = ["get_parser", "names", "register"]

_PARSERS: dict[str, ToolCallParser] = {}
_P = TypeVar("_P", bound=ToolCallParser)


def register(name: str) -> Callable[[type[_P]], type[_P]]:
    """Class decorator: make an instance of the class available as ``get_parser(name)``.

    Parsers hold no per-completion state (that lives in their stream objects), so one shared
    instance serves every request. A second registration of a name raises ``ValueError``:
    two modules claiming one name is a mistake, not an override.
    """

    def decorate(cls: type[_P]) -> type[_P]:
        if name in _PARSERS:
            raise ValueError(f"tool-call parser {name!r} is already registered")
        _PARSERS[name] = cls()
        return cls

    return decorate


def get_parser(name: str) -> ToolCallParser:
    """The parser registered as ``name``; ``ValueError`` lists the known names otherwise."""
    try:
        return _PARSERS[name]
    except KeyError:
        raise ValueError(f"unknown tool-call parser {name!r}; known parsers: {', '.join(names())}") from None


def names() -> list[str]:
    """The registered parser names, sorted."""
    return sorted(_PARSERS)
