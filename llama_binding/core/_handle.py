"""The one base class that owns a native handle.

Rules (one owner per native handle): the wrapper knows its free function,
frees exactly once (the pointer is swapped out before the free runs), is a context
manager with ``close()``, has a ``weakref.finalize`` safety net instead of ``__del__``,
refuses use after close with :class:`~llama_binding.errors.ClosedError`, and keeps its
parent alive (a context holds its model) for as long as it lives. Closing a parent
explicitly closes its live children first, so ``model.close()`` never leaves a context
pointing at freed weights.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Generic, TypeVar

from ..errors import ClosedError

__all__ = ["NativeHandle"]

P = TypeVar("P")
_children_lock = threading.Lock()


class _Box:
    """The pointer, shared between the handle and its finalizer (not the handle itself)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: Any) -> None:
        self.ptr = ptr


def _release(box: _Box, free: Callable[[Any], None], parent: object) -> None:
    ptr, box.ptr = box.ptr, None  # swap out first: a second call frees nothing
    if ptr:
        free(ptr)
    # ``parent`` is only referenced here so that it outlives the child's native object


class NativeHandle(Generic[P]):
    """Owns one native pointer ``P``; subclasses name what they wrap in ``_kind``."""

    _kind = "object"

    def __init__(self, ptr: P, free: Callable[[P], None], parent: object = None) -> None:
        self._box = _Box(ptr)
        self._parent = parent
        # made on a first child: most handles (a request's samplers, batches) never get one
        self._children: weakref.WeakSet[NativeHandle[Any]] | None = None
        if isinstance(parent, NativeHandle):
            children = parent._children
            if children is None:
                with _children_lock:  # (two threads' first children: one set)
                    children = parent._children
                    if children is None:
                        children = parent._children = weakref.WeakSet()
            children.add(self)
        self._finalizer = weakref.finalize(self, _release, self._box, free, parent)

    @property
    def ptr(self) -> P:
        """The native pointer; raises :class:`ClosedError` after :meth:`close`."""
        ptr = self._box.ptr
        if ptr is None:
            raise ClosedError(f"this {self._kind} is closed")
        return ptr  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        return self._box.ptr is None

    def close(self) -> None:
        """Free the native object now, after its live children (idempotent)."""
        for child in list(self._children or ()):
            child.close()
        self._finalizer()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {state}>"
