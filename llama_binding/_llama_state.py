"""The state half of :class:`~llama_binding.Llama`: LoRA adapters, prompt caches and saved
states (whatever changes or records what the context's memory holds, besides generating)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

from . import _log
from .core import LoraAdapter, set_adapters
from .core.state import LlamaState, file_fingerprint
from .errors import StateError
from .generation.cache import StateCache
from .generation.steps import common_prefix

if TYPE_CHECKING:
    from .core import Context, ContextParams, Model, Vocab
    from .generation.steps import SequenceState

__all__ = ["StateMixin"]


class StateMixin:
    """``Llama``'s adapter, cache and state methods (mixed into :class:`~llama_binding.Llama`)."""

    if TYPE_CHECKING:  # provided by Llama
        _model: Model
        _vocab: Vocab
        _ctx: Context | None
        _state: SequenceState
        _loras: dict[str, tuple[LoraAdapter, float]]
        _cache: StateCache | None
        _fingerprint: str | None
        context_params: ContextParams

        @property
        def _context(self) -> Context: ...

        def _acquire(self) -> None: ...

        def _release(self) -> None: ...

    # --- LoRA adapters (core/adapter.py) -----------------------------------------------------

    @property
    def lora_adapters(self) -> dict[str, float]:
        """The loaded adapters and their scales (0: loaded but off)."""
        return {path: scale for path, (_, scale) in self._loras.items()}

    def load_lora(self, path: Union[str, os.PathLike[str]], scale: float = 1.0) -> None:
        """Load a LoRA adapter of this model and apply it with ``scale``; a bad file raises
        :class:`~llama_binding.errors.ModelLoadError` and changes nothing."""
        key = os.fspath(path)
        if key in self._loras:
            raise ValueError(f"{key!r} is loaded already: change its scale with set_lora()")
        adapter = LoraAdapter(self._model, key)
        try:
            self._apply_loras({**self._loras, key: (adapter, scale)})
        except BaseException:
            adapter.close()
            raise

    def set_lora(self, path: Union[str, os.PathLike[str]], scale: float) -> None:
        """Rescale a loaded adapter at run time (0 turns it off); nothing is reloaded."""
        key = os.fspath(path)
        if key not in self._loras:
            raise KeyError(f"no LoRA adapter {key!r} is loaded (loaded: {list(self._loras)})")
        self._apply_loras({**self._loras, key: (self._loras[key][0], scale)})

    def unload_lora(self, path: Union[str, os.PathLike[str]]) -> None:
        """Remove a loaded adapter and free it."""
        key = os.fspath(path)
        if key not in self._loras:
            raise KeyError(f"no LoRA adapter {key!r} is loaded (loaded: {list(self._loras)})")
        self._apply_loras({k: v for k, v in self._loras.items() if k != key})

    def _apply_loras(self, loras: dict[str, tuple[LoraAdapter, float]]) -> None:
        """Set ``loras`` on the context; the KV memory computed with other adapters is
        dropped, so no prefix of it is reused (prompt caches key on the adapters too)."""
        dropped = [a for k, (a, _) in self._loras.items() if k not in loras]
        if self._ctx is not None:
            self._acquire()
            try:
                set_adapters(self._ctx, [(a, s) for a, s in loras.values() if s != 0])
                self._state.reset()
            finally:
                self._release()
        self._loras = loras
        for adapter in dropped:
            adapter.close()

    # --- prompt caches (generation/cache.py, generation/disk_cache.py) ----------------------

    @property
    def cache(self) -> StateCache | None:
        return self._cache

    def set_cache(self, cache: StateCache | None) -> None:
        """Use ``cache`` (a :class:`LlamaRAMCache` or :class:`LlamaDiskCache`) for prompts:
        a completion stores its sequence's state twice, once its prompt is evaluated and
        once it ends (prompt and completion, as llama-cpp-python), and a later prompt that
        extends a stored token list restores that state instead of evaluating those tokens
        again (when it is longer than what the context holds already). Entries are keyed by
        the model's fingerprint, the context options and the active adapters."""
        if cache is not None and not isinstance(cache, StateCache):
            raise TypeError("cache must be a LlamaRAMCache, a LlamaDiskCache or None, "
                            f"not {type(cache).__name__}")
        self._cache = cache

    def _cache_key(self) -> str:
        model, opts, adapters = self._state_identity()
        return json.dumps([model, opts, adapters], sort_keys=True)

    def _restore_cached_prefix(self, tokens: Sequence[int]) -> None:
        """Restore the longest cached state that extends the prefix the context holds."""
        cache, state = self._cache, self._state
        if cache is None or len(tokens) < 2:
            return
        held = min(common_prefix(state.tokens, tokens), len(tokens) - 1)
        hit = cache.lookup(self._cache_key(), tokens[:-1])  # the last token is evaluated anyway
        if hit is None or hit[0] <= held:
            return
        n, data = hit
        state.reset()
        try:
            self._context.restore_state(data, state.seq_id)
        except StateError as exc:  # a stale entry: evaluate the prompt instead
            _log.logger.warning("a prompt cache entry could not be restored: %s", exc)
            state.reset()
            return
        state.tokens[:] = tokens[:n]

    def _store_in_cache(self) -> None:
        if self._cache is not None and self._state.tokens:
            self._cache.store(self._cache_key(), self._state.tokens,
                              self._context.state_bytes(self._state.seq_id))

    # --- saved state (core/state.py) ---------------------------------------------------------

    #: the context options that shape the KV memory: a state only fits a context with equal ones
    _STATE_OPTIONS = ("n_ctx", "n_seq_max", "type_k", "type_v", "kv_unified", "flash_attn_type",
                      "swa_full", "embeddings")

    def _state_identity(self) -> tuple[str, dict[str, Any], tuple[tuple[str, float], ...]]:
        """(model fingerprint, memory-shaping context options, active adapters)."""
        ctx = self._context
        opts = {k: getattr(self.context_params, k) for k in self._STATE_OPTIONS}
        opts.update(n_ctx=ctx.n_ctx, n_seq_max=ctx.n_seq_max)
        return self.model_fingerprint(), opts, self._active_adapters()

    def model_fingerprint(self) -> str:
        """A SHA-256 that tells this model file from any other (its size, sampled bytes of
        its weights, its description and sizes), computed once: saved states and pickles
        carry it, so that they are never applied to another model."""
        if self._fingerprint is None:
            m = self._model
            self._fingerprint = file_fingerprint(m.path, (m.description(), m.n_params, m.size))
        return self._fingerprint

    def _active_adapters(self) -> tuple[tuple[str, float], ...]:
        return tuple(sorted((os.path.abspath(k), float(s)) for k, (_, s) in self._loras.items() if s != 0))

    def save_state(self, seq_id: int | None = None) -> LlamaState:
        """The context's state (``seq_id`` None: the whole context, as llama-cpp-python's
        ``save_state``), or one sequence's, with the tokens it holds and a header naming the
        model, the context options and the adapters it belongs to."""
        model, opts, adapters = self._state_identity()
        self._acquire()
        try:
            ctx = self._context
            if seq_id is not None and seq_id != self._state.seq_id:
                raise ValueError(f"this Llama generates in sequence {self._state.seq_id}, not {seq_id}")
            payload = ctx.state_bytes(seq_id)
            tokens = tuple(self._state.tokens)
        finally:
            self._release()
        return LlamaState(model, opts, adapters, "context" if seq_id is None else "sequence", tokens, payload)

    def load_state(self, state: LlamaState) -> None:
        """Restore a state of :meth:`save_state` (a whole context, or a sequence into this
        Llama's sequence). A state of another model, other context options or other adapters,
        or one whose recorded sizes do not fit this context, raises
        :class:`~llama_binding.errors.StateError`; the Llama then stays as it was, except
        when llama.cpp itself refuses the payload (a forged state): the context is then
        left empty."""
        if not isinstance(state, LlamaState):
            raise TypeError(f"state must be a LlamaState, not {type(state).__name__}")
        state.check_fits(*self._state_identity())
        ctx = self._context
        state.check_tokens(ctx.n_ctx if state.scope == "context" else ctx.n_ctx_seq, self._vocab.n_tokens)
        self._acquire()
        try:
            seq = None if state.scope == "context" else self._state.seq_id
            if seq is not None:
                self._state.reset()
            try:
                ctx.restore_state(state.payload, seq)
            except StateError:
                self._state.reset()  # llama.cpp may have cleared the memory before it refused
                raise
            self._state.tokens[:] = state.tokens
        finally:
            self._release()

    def save_session(self, path: Union[str, os.PathLike[str]]) -> None:
        """:meth:`save_state` to a file (written atomically)."""
        self.save_state().save(path)

    def load_session(self, path: Union[str, os.PathLike[str]]) -> None:
        """:meth:`load_state` from a file of :meth:`save_session`."""
        self.load_state(LlamaState.load(path))
