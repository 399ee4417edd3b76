"""The registry of chat formats by name: one module per format registers itself here."""

from __future__ import annotations

from typing import Callable, TypeVar

from ..types import ChatFormatter

__all__ = ["get_format", "names", "register"]

_FORMATS: dict[str, ChatFormatter] = {}
_F = TypeVar("_F", bound=ChatFormatter)


def register(name: str) -> Callable[[_F], _F]:
    """Decorator: make a format available as ``get_format(name)``.

    A name is registered once; a second registration is a mistake (two modules claiming
    one name), so it raises ``ValueError`` instead of silently replacing the first.
    """

    def decorate(formatter: _F) -> _F:
        if name in _FORMATS:
            raise ValueError(f"chat format {name!r} is already registered")
        _FORMATS[name] = formatter
        return formatter

    return decorate


def get_format(name: str) -> ChatFormatter:
    """The format registered as ``name``; ``ValueError`` lists the known names otherwise."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown chat format {name!r}; known formats: {', '.join(names())}") from None


def names() -> list[str]:
    """The registered format names, sorted."""
    return sorted(_FORMATS)
