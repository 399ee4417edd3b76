"""Many models behind one server: routing by name, loading on demand, least-recently-used
eviction, reference counting.

A :class:`ModelPool` holds one :class:`ModelEntry` per configured model. A request takes a
:class:`Lease` on its model (:meth:`ModelPool.lease`): an unloaded model is loaded first (one
load however many requests ask at once; they all wait for it), and while any lease is held
the model is never unloaded under it. To load a model beyond ``max_models`` or the memory
budgets (:func:`estimate`), the least recently used model that no request holds is
unloaded; when every loaded model is busy the load waits for one to be released. A model
whose load fails is ``failed`` with the reason (its requests get it; the next request tries
again); the others keep serving. :meth:`ModelPool.reload` and :meth:`ModelPool.apply` swap
engines under running requests (those finish on the old engine). Everything runs on the
event loop's thread; loading and closing run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from ..aio import AsyncLlama
from ..footprint import Footprint
from ..footprint import estimate as estimate_footprint
from .errors import ApiError
from .settings import ModelSettings

__all__ = ["Footprint", "Lease", "ModelEntry", "ModelPool", "Status", "estimate"]

logger = logging.getLogger("llama_binding.server")

Status = Literal["unloaded", "loading", "loaded", "failed"]


def estimate(spec: ModelSettings, gpu: Optional[bool] = None) -> Footprint:
    """:func:`~llama_binding.footprint.estimate` of a configured model, with its projector's
    file (``mmproj``) where the model's weights are (the projector follows the model)."""
    layers = -1 if spec.n_gpu_layers == "auto" else spec.n_gpu_layers  # auto: at most all of them
    fp = estimate_footprint(spec.model, n_ctx=spec.n_ctx or AsyncLlama.default_n_ctx(spec.n_seq_max),
                            n_gpu_layers=layers, embedding=spec.embedding, gpu=gpu)
    mmproj = spec.mmproj or (spec.model_extra or {}).get("clip_model_path")
    if mmproj and os.path.isfile(mmproj):
        size = os.path.getsize(mmproj)
        fp = fp + (Footprint(0, size) if fp.gpu and layers != 0 else Footprint(size, 0))
    return fp


@dataclass(eq=False)
class _Loaded:
    """One loaded engine and the leases on it (a replaced or unloaded engine is closed once
    its last lease goes)."""

    llm: AsyncLlama
    owned: bool = True
    refs: int = 0
    retired: bool = False


@dataclass(eq=False)
class ModelEntry:
    """A configured model: its settings, status and (when loaded) engine."""

    spec: ModelSettings
    status: Status = "unloaded"
    error: Optional[str] = None
    loaded: Optional[_Loaded] = None
    last_used: float = 0.0
    loads: int = 0
    unloads: int = 0
    load_seconds: Optional[float] = None
    footprint: Optional[Footprint] = None  # estimate(), at its first load under a budget
    waiting: int = 0  # requests waiting for it to load
    _loading: Optional[asyncio.Future[None]] = field(default=None, repr=False)
    alias: str = field(init=False)
    #: the names a request may give: the alias, the file's path and its file name
    names: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # fixed with the spec, and read by every request (resolve, lease): made once
        self.alias = self.spec.alias
        self.names = frozenset({self.alias, self.spec.model, os.path.basename(self.spec.model)})

    @property
    def busy(self) -> int:
        return self.loaded.refs if self.loaded is not None else 0

    def describe(self) -> dict[str, Any]:
        """Its ``/v1/models`` metadata."""
        meta: dict[str, Any] = {"status": self.status, "path": self.spec.model, "n_ctx": self.spec.n_ctx,
                                "n_seq_max": self.spec.n_seq_max, "embedding": self.spec.embedding,
                                "in_flight": self.busy, "loads": self.loads, "unloads": self.unloads}
        if self.error is not None:
            meta["error"] = self.error
        if self.load_seconds is not None:
            meta["load_seconds"] = round(self.load_seconds, 3)
        if self.footprint is not None:
            meta["estimated_mib"] = {"host": round(self.footprint.host / 2**20, 1),
                                     "gpu": round(self.footprint.gpu / 2**20, 1)}
        return meta


class Lease:
    """A request's hold on a loaded model: :attr:`llm` stays open until :meth:`release`
    (idempotent; from any thread; ``with await pool.lease(name) as lease:`` releases at the
    end of the block; a lease dropped unreleased, as by a stream that never
    started, is released when it is collected)."""

    def __init__(self, pool: ModelPool, entry: ModelEntry, loaded: _Loaded) -> None:
        self.pool, self.entry, self._loaded = pool, entry, loaded
        self.llm = loaded.llm
        self._loop = asyncio.get_running_loop()
        loaded.refs += 1
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self.pool._release(self.entry, self._loaded)
            return
        try:
            self._loop.call_soon_threadsafe(self.pool._release, self.entry, self._loaded)
        except RuntimeError:  # the loop is closed: nothing is left to release to
            pass

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


class ModelPool:
    """The models of one server (see the module docstring). ``max_models`` 0: no limit;
    ``memory_budget`` and ``gpu_memory_budget`` (bytes, None: none) bound the loaded
    models' :func:`estimate` in host memory and on the GPU."""

    def __init__(self, specs: list[ModelSettings], *, max_models: int = 0,
                 memory_budget: Optional[int] = None, gpu_memory_budget: Optional[int] = None,
                 max_waiting: int = 64, load_timeout: float = 600.0) -> None:
        if not specs:
            raise ValueError("a model pool needs at least one model")
        self.entries = [ModelEntry(s) for s in specs]
        self.max_models = max_models
        self.budget = Footprint(memory_budget if memory_budget is not None else -1,
                                gpu_memory_budget if gpu_memory_budget is not None else -1)  # -1: none
        self.max_waiting = max_waiting
        self.load_timeout = load_timeout
        # made on the event loop's thread at first use (Python 3.9 binds them at creation)
        self._changed_: Optional[asyncio.Condition] = None
        self._load_lock_: Optional[asyncio.Lock] = None
        #: called with (entry, llm) when a model is loaded (metrics, app.state.llm)
        self.on_loaded: list[Callable[[ModelEntry, AsyncLlama], None]] = []
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()  # (a loop keeps only weak references to tasks)

    @property
    def _changed(self) -> asyncio.Condition:
        if self._changed_ is None:
            self._changed_ = asyncio.Condition()
        return self._changed_

    @property
    def _load_lock(self) -> asyncio.Lock:
        """One load at a time: room is counted once and memory peaks once."""
        if self._load_lock_ is None:
            self._load_lock_ = asyncio.Lock()
        return self._load_lock_

    @property
    def default(self) -> ModelEntry:
        return self.entries[0]

    def resolve(self, name: Optional[str]) -> ModelEntry:
        """The entry a request's ``model`` names (none: the first); 404 naming the known ones."""
        if name is None:
            return self.default
        for e in self.entries:
            if name in e.names:
                return e
        known = ", ".join(repr(e.alias) for e in self.entries)
        raise ApiError(404, f"the model {name!r} does not exist; this server has {known}",
                       code="model_not_found", param="model")

    def adopt(self, entry: ModelEntry, llm: AsyncLlama) -> None:
        """``llm``, loaded by the caller (who closes it), as ``entry``'s engine."""
        entry.loaded = _Loaded(llm, owned=False)
        entry.status, entry.error, entry.last_used = "loaded", None, time.monotonic()
        for cb in self.on_loaded:
            cb(entry, llm)

    # --- leases ---------------------------------------------------------------------------

    async def lease(self, name: Optional[str]) -> Lease:
        """A lease on the model ``name``, loading it first if needed (404 unknown; 503 when it
        failed to load or the pool is closing)."""
        entry = self.resolve(name)
        while True:
            if self._closed:
                raise ApiError(503, "the server is shutting down", code="shutting_down",
                               headers={"Retry-After": "5"})
            if entry.loaded is not None and not entry.loaded.retired:
                link = entry.loaded.llm.engine.model.rpc_link
                if link is not None and link.lost:  # unusable for ever: load it again (or fail: 503)
                    await self._unload(entry, "an RPC worker it used was lost")
                    continue
                entry.last_used = time.monotonic()
                return Lease(self, entry, entry.loaded)
            if entry.waiting >= entry.spec.n_seq_max + self.max_waiting:  # the engine's bound, while it loads
                raise ApiError(503, f"{entry.waiting} requests are waiting for {entry.alias!r} to load: "
                                    "retry later", code="queue_full", headers={"Retry-After": "1"})
            entry.waiting += 1
            try:
                await self.load(entry, retry_failed=True)
            finally:
                entry.waiting -= 1

    def _release(self, entry: ModelEntry, loaded: _Loaded) -> None:
        loaded.refs -= 1
        entry.last_used = time.monotonic()
        if loaded.refs == 0:
            if loaded.retired:
                self._close_later(loaded)
            self._tasks.add(task := asyncio.get_running_loop().create_task(self._notify()))
            task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- loading and unloading --------------------------------------------------------------

    async def load(self, entry: ModelEntry, retry_failed: bool = True) -> None:
        """Load ``entry`` (once, whoever asks; waits for room under ``max_models``). A failed
        load raises 503 with the reason (``entry.status`` "failed")."""
        if entry.loaded is not None and not entry.loaded.retired:
            return
        if entry.status == "failed" and not retry_failed:
            raise self._failed(entry)
        if entry._loading is None:
            entry.status, entry.error = "loading", None
            entry._loading = asyncio.get_running_loop().create_future()
            self._tasks.add(task := asyncio.get_running_loop().create_task(self._load(entry, entry._loading)))
            task.add_done_callback(self._tasks.discard)
        await asyncio.shield(entry._loading)
        if entry.status == "failed":
            raise self._failed(entry)

    @staticmethod
    def _failed(entry: ModelEntry) -> ApiError:
        return ApiError(503, f"the model {entry.alias!r} failed to load: {entry.error}",
                        code="model_load_failed", param="model", headers={"Retry-After": "5"})

    async def _load(self, entry: ModelEntry, done: asyncio.Future[None]) -> None:
        try:
            entry.status, entry.error = "loading", None
            async with self._load_lock:
                await asyncio.wait_for(self._make_room(entry), self.load_timeout)
                await self._load_now(entry)
        except BaseException as exc:  # its requests get the reason; the other models go on
            entry.status = "failed"
            entry.error = "timed out waiting for room to load" if isinstance(exc, asyncio.TimeoutError) \
                else f"{type(exc).__name__}: {exc}"
            logger.error("model %r could not be loaded: %s", entry.alias, entry.error)
            if not isinstance(exc, Exception):
                raise
        finally:
            entry._loading = None
            if not done.done():
                done.set_result(None)
            await self._notify()

    async def _load_now(self, entry: ModelEntry) -> None:
        spec = entry.spec
        kwargs = spec.llama_kwargs(self.max_waiting)
        extra = spec.model_extra or {}
        ignored = sorted(k for k in extra if k not in AsyncLlama.keywords())
        for k in ignored:
            kwargs.pop(k)
        if ignored:
            logger.warning("model %r: ignoring options the server does not use: %s", entry.alias,
                           ", ".join(ignored))
        if not os.path.isfile(spec.model):
            raise FileNotFoundError(f"no model file at {spec.model}")
        t0 = time.perf_counter()
        llm = await asyncio.to_thread(AsyncLlama, spec.model, **kwargs)
        entry.load_seconds = time.perf_counter() - t0
        if self._closed:
            await asyncio.to_thread(llm.close)
            raise RuntimeError("the server shut down while the model loaded")
        entry.loaded = _Loaded(llm)
        entry.status, entry.last_used = "loaded", time.monotonic()
        entry.loads += 1
        logger.info("model %r loaded from %s in %.2f s", entry.alias, spec.model, entry.load_seconds)
        for cb in self.on_loaded:
            cb(entry, llm)

    def _resident(self, but: ModelEntry) -> list[ModelEntry]:
        return [e for e in self.entries if e is not but and e.loaded is not None]

    def _fits(self, entry: ModelEntry) -> bool:
        resident = self._resident(entry)
        if self.max_models and len(resident) >= self.max_models:
            return False
        if self._budgeted:
            used = sum((e.footprint or Footprint(0, 0) for e in resident), entry.footprint or Footprint(0, 0))
            return not self._over(used)
        return True

    @property
    def _budgeted(self) -> bool:
        return self.budget.host >= 0 or self.budget.gpu >= 0

    def _over(self, f: Footprint) -> str:
        """What of ``f`` exceeds the budgets ("" when nothing)."""
        over = []
        for name, need, budget in (("host memory", f.host, self.budget.host),
                                   ("GPU memory", f.gpu, self.budget.gpu)):
            if budget >= 0 and need > budget:
                over.append(f"about {need / 2**20:.0f} MiB of {name}, more than its budget of "
                            f"{budget / 2**20:.0f} MiB")
        return "; ".join(over)

    async def _make_room(self, entry: ModelEntry) -> None:
        """Unload least recently used idle models until ``entry`` fits under ``max_models``
        and the memory budget; wait while every resident model is busy."""
        if self._budgeted:
            if entry.footprint is None:
                entry.footprint = await asyncio.to_thread(estimate, entry.spec)
            over = self._over(entry.footprint)
            if over:
                raise MemoryError(f"the model alone needs {over} (its file and KV cache)")
        if not self.max_models and not self._budgeted:
            return
        async with self._changed:
            while not self._fits(entry):
                idle = [e for e in self._resident(entry) if e.loaded is not None and e.busy == 0]
                if idle:
                    await self._unload(min(idle, key=lambda e: e.last_used), "to make room")
                    continue
                await self._changed.wait()

    async def reload(self, entry: ModelEntry, spec: Optional[ModelSettings] = None) -> None:
        """Hot swap: ``entry`` with ``spec`` (default: its own, the file read again). A loaded
        model gets a new engine, loaded beside the old one, which finishes the requests in
        flight and is closed after them; new requests go to the new engine. An unloaded one
        loads with the new settings when next asked for."""
        if spec is not None:
            entry.spec, entry.footprint = spec, None
        old = entry.loaded
        if old is None:
            entry.status, entry.error = "unloaded", None
            return
        async with self._load_lock:
            await self._load_now(entry)  # replaces entry.loaded
        logger.info("model %r reloaded (%d request(s) finish on the old engine)", entry.alias, old.refs)
        old.retired = True
        entry.unloads += 1
        if old.refs == 0:
            await self._close(old)

    async def apply(self, specs: list[ModelSettings]) -> None:
        """A new configuration: models no longer listed are unloaded (after their requests)
        and dropped, new ones added, changed ones hot-swapped (:meth:`reload`)."""
        wanted = {s.alias: s for s in specs}
        for e in [e for e in self.entries if e.alias not in wanted]:
            await self._unload(e, "no longer configured")
            self.entries.remove(e)
        for spec in specs:
            entry = next((e for e in self.entries if e.alias == spec.alias), None)
            if entry is None:
                self.entries.append(ModelEntry(spec))
            elif entry.spec != spec:
                await self.reload(entry, spec)
        self.entries.sort(key=lambda e: list(wanted).index(e.alias))
        await self._notify()

    async def unload(self, entry: ModelEntry) -> bool:
        """Unload ``entry`` now (requests in flight finish on it first); False if not loaded."""
        if entry.loaded is None:
            return False
        await self._unload(entry, "on request")
        await self._notify()
        return True

    async def _unload(self, entry: ModelEntry, why: str) -> None:
        loaded, entry.loaded = entry.loaded, None
        entry.status = "unloaded"
        if loaded is None:
            return
        entry.unloads += 1
        logger.info("model %r unloaded (%s)", entry.alias, why)
        loaded.retired = True
        if loaded.refs == 0:
            await self._close(loaded)

    async def _close(self, loaded: _Loaded) -> None:
        if loaded.owned:
            await asyncio.to_thread(loaded.llm.close)

    def _close_later(self, loaded: _Loaded) -> None:
        self._tasks.add(task := asyncio.get_running_loop().create_task(self._close(loaded)))
        task.add_done_callback(self._tasks.discard)

    async def expire_idle(self) -> None:
        """Unload each model idle longer than its ``keep_alive`` (call it periodically)."""
        now = time.monotonic()
        for e in self.entries:
            keep = e.spec.keep_alive
            if keep is not None and e.loaded is not None and e.busy == 0 and now - e.last_used >= keep:
                await self._unload(e, f"idle for {keep:g} s")
        await self._notify()

    async def keep_alive_loop(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            await self.expire_idle()

    async def close(self) -> None:
        """Unload every model (the requests in flight end with ClosedError)."""
        self._closed = True
        for e in self.entries:
            loaded, e.loaded = e.loaded, None
            if loaded is not None:
                e.status = "unloaded"
                await self._close(loaded)
