"""The registry of chat formats by name: one module per format registers itself here."""

from __future__ import annotations

from typing import Callable, TypeVar

from ..._registry import Registry
from ..types import ChatFormatter

__all__ = ["get_format", "names", "register"]

_FORMATS: Registry[ChatFormatter] = Registry("chat format")
_F = TypeVar("_F", bound=ChatFormatter)


def register(name: str) -> Callable[[_F], _F]:
    """Decorator: make a format available as ``get_format(name)``."""

    def decorate(formatter: _F) -> _F:
        _FORMATS.add(name, formatter)
        return formatter

    return decorate


def get_format(name: str) -> ChatFormatter:
    """The format registered as ``name``; ``ValueError`` lists the known names otherwise."""
    return _FORMATS.get(name)


def names() -> list[str]:
    """The registered format names, sorted."""
    return _FORMATS.names()
