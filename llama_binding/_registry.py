"""A registry of variants by name (chat formats, tool-call parsers, ...): one module per
variant adds itself, users pick one by name."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named values of one ``kind`` (the word used in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, value: T) -> None:
        """Register ``value``; a second registration of a name is a mistake (two modules
        claiming one name), so it raises ``ValueError`` instead of replacing the first."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = value

    def get(self, name: str) -> T:
        """The value registered as ``name``; ``ValueError`` lists the known names otherwise."""
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)
