"""One call at a time on a :class:`~llama_binding.Llama`, streams that pause between
chunks, and a ``close()`` that never frees what another thread is using.

:class:`CallGuard` is the Llama's lock with three additions:

- **Sessions.** A stream computes each chunk holding the guard and gives it back before
  the chunk is handed to the caller (:meth:`CallGuard.stepped`), so an idle or forgotten
  stream never blocks another call. The guard remembers the session that used the context
  last; a call that takes the guard from a paused session *interrupts* it (the session's
  ``on_interrupt`` runs first, still under the guard). When the stream asks for its next
  chunk, a resumable session brings its sequence back (``resume``); any other raises
  :class:`~llama_binding.errors.StreamInterruptedError`.
- **Closing.** :meth:`CallGuard.close` refuses new calls at once, aborts the running decode
  through the context's abort flag (again every 50 ms until the guard is free), waits for
  the running call and for lock-free native calls (:meth:`CallGuard.using`: tokenizing) to
  end, and only then frees. The aborted call raises
  :class:`~llama_binding.errors.ClosedError`. A close asked from inside a call of the same
  thread (a callback) frees when that call ends.
- **Re-entrance.** A callback of a running call (a logits processor) that calls the same
  Llama gets a clear :class:`~llama_binding.errors.LlamaError` instead of a deadlock. The
  one nesting allowed is a stream's own generator taking the guard inside its step
  (``Session.nests``); the levels it holds between steps are given back and restored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ..errors import ClosedError, DecodeAbortedError, LlamaError, StreamInterruptedError

__all__ = ["CallGuard", "Session"]

logger = logging.getLogger("llama_binding")

T = TypeVar("T")

CLOSED = "this Llama is closed"
CLOSED_DURING = ("this Llama was closed (by close() from another thread or a callback) while this "
                 "call was running; the call was aborted")
REENTERED = ("this thread is already inside a call on this Llama: a logits processor, stopping "
             "criteria or other callback cannot call the same Llama")
INTERRUPTED = ("this stream was interrupted: another call used this Llama while the stream was "
               "paused between chunks, and a stream that decodes speculatively or several "
               "prompts at once cannot resume; read such a stream to its end (or close it) "
               "before the next call, or use one Llama per thread")
CANCEL_EVERY = 0.05  # seconds: how often close() raises the abort flag again while it waits


class Session:
    """A stream's claim on the context between its chunks (see the module docstring)."""

    __slots__ = ("held", "interrupted", "nests", "on_interrupt")

    def __init__(self, on_interrupt: Callable[[], None] | None = None, nests: bool = False) -> None:
        self.on_interrupt = on_interrupt
        self.nests = nests
        self.interrupted = False
        self.held = 0  # guard levels the stream's generator keeps between its steps


class CallGuard:
    """The guard of one Llama (module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._nest_ok = False
        self._user: Session | None = None  # who used the context last, when it is a paused stream
        self._cond = threading.Condition()  # guards closing and _users
        self.closing = False
        self._users = 0
        self._deferred: Callable[[], None] | None = None
        self._closed = threading.Event()

    # --- the lock --------------------------------------------------------------------------

    def acquire(self, session: Session | None = None) -> None:
        """Wait for the guard (a call of another thread, never an idle stream); ``session``
        is the stream that takes it, None for a plain call."""
        me = threading.get_ident()
        if self._owner == me:
            if self._nest_ok:
                self._depth += 1
                return
            raise LlamaError(REENTERED)
        if self.closing:
            raise ClosedError(CLOSED)
        self._lock.acquire()
        if self.closing:
            self._lock.release()
            raise ClosedError(CLOSED)
        self._owner, self._depth = me, 1
        prev, self._user = self._user, session
        if prev is not None and prev is not session:
            try:
                self._interrupt(prev)
            except BaseException:  # Ctrl-C in its cleanup: do not keep the guard
                self.release()
                raise

    def release(self) -> None:
        if self._depth > 1:
            self._depth -= 1
            return
        deferred, self._deferred = self._deferred, None
        try:
            if deferred is not None:  # close() was asked from inside this call
                deferred()
        finally:
            self._owner, self._depth = None, 0
            self._lock.release()

    def _interrupt(self, session: Session) -> None:
        """Run a paused session's ``on_interrupt`` under the guard, with the levels its
        generator holds (its cleanup may give them back)."""
        session.interrupted = True
        if session.on_interrupt is None:
            return
        depth = self._depth
        self._depth += session.held
        try:
            session.on_interrupt()
        except Exception:  # its cleanup failed: the call that interrupted it goes on
            logger.warning("cleaning up an interrupted stream failed", exc_info=True)
        finally:
            session.held = 0
            self._depth = depth

    @contextmanager
    def held(self) -> Iterator[None]:
        """The guard for one whole call; a decode aborted by :meth:`close` raises ClosedError."""
        self.acquire()
        try:
            with self.closing_errors():
                yield
        finally:
            self.release()

    @contextmanager
    def closing_errors(self) -> Iterator[None]:
        """Turn the abort that :meth:`close` caused into :class:`ClosedError`."""
        try:
            yield
        except DecodeAbortedError as exc:
            if self.closing:
                raise ClosedError(CLOSED_DURING) from exc
            raise

    @contextmanager
    def using(self) -> Iterator[None]:
        """A native call that needs no guard (tokenizing): :meth:`close` waits for it."""
        with self._cond:
            if self.closing:
                raise ClosedError(CLOSED)
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                if not self._users:
                    self._cond.notify_all()

    # --- streams ---------------------------------------------------------------------------

    def stepped(self, inner: Iterator[T], session: Session,
                resume: Callable[[], None] | None) -> Iterator[T]:
        """``inner``'s items, each computed under the guard; the guard is free between them.

        When another call interrupted the session, ``resume()`` runs (under the guard)
        before the next item; without ``resume`` the stream raises StreamInterruptedError.
        """
        finished = False
        try:
            while True:
                self.acquire(session)
                try:
                    with self.closing_errors():
                        if session.interrupted:
                            if resume is None:
                                finished = True  # its generator was closed when interrupted
                                raise StreamInterruptedError(INTERRUPTED)
                            session.interrupted = False
                            resume()
                        self._depth += session.held
                        self._nest_ok = session.nests
                        try:
                            item = next(inner)
                        except StopIteration:
                            finished = True
                            return
                        except BaseException:
                            finished = True
                            raise
                        finally:
                            self._nest_ok = False
                            session.held = max(0, self._depth - 1)
                            self._depth = 1
                finally:
                    if finished and self._user is session:
                        self._user = None
                    self.release()
                yield item
        finally:
            if not finished and not session.interrupted:
                self._close_inner(inner, session)

    def _close_inner(self, inner: Iterator[T], session: Session) -> None:
        """Close a stream that was left early, under the guard (its cleanup touches the
        context); after close() the cleanup's ClosedError is expected and dropped."""
        close = getattr(inner, "close", None)
        if close is None:
            return
        me = threading.get_ident()
        mine = self._owner != me  # else: collected inside another call of this thread
        if mine:
            self._lock.acquire()
            self._owner, self._depth = me, 1
        depth = self._depth
        self._depth += session.held
        try:
            close()
        except ClosedError:
            pass
        finally:
            session.held = 0
            self._depth = depth
            if self._user is session:
                self._user = None
            if mine:
                self._owner, self._depth = None, 0
                self._lock.release()

    # --- closing ---------------------------------------------------------------------------

    def close(self, free: Callable[[], None], cancel: Callable[[], None]) -> None:
        """Refuse new calls, abort the running one (``cancel`` raises the abort flag), wait
        for it and for lock-free native calls, then ``free()``. Idempotent; a second
        close() waits for the first."""
        me = threading.get_ident()
        with self._cond:
            first = not self.closing
            self.closing = True
        if not first:
            if self._owner != me:
                self._closed.wait()
            return
        if self._owner == me:  # a callback of this thread's running call: free when it ends
            cancel()
            self._deferred = lambda: self._finish_close(free)
            return
        cancel()
        while not self._lock.acquire(timeout=CANCEL_EVERY):
            cancel()
        self._owner, self._depth = me, 1
        try:
            self._finish_close(free)
        finally:
            self._owner, self._depth = None, 0
            self._lock.release()

    def _finish_close(self, free: Callable[[], None]) -> None:
        try:
            prev, self._user = self._user, None
            if prev is not None:  # a paused stream: its cleanup runs now, before the free
                self._interrupt(prev)
            with self._cond:
                while self._users:
                    self._cond.wait()
            free()
        finally:
            self._closed.set()
