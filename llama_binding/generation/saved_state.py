"""What the context's memory holds, besides generating: LoRA adapters, prompt caches and
saved states.

:class:`StateKeeper` belongs to an :class:`~llama_binding.generation.engine.Engine` and
works on its context and its one synchronous sequence, under the engine's guard. Every
saved thing (a cache entry, a :class:`~llama_binding.core.state.LlamaState`) is keyed by
the model's fingerprint, the context options that shape the memory and the active
adapters, so that it is never applied where it does not fit.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any, Union

from ..core import Context, ContextParams, LoraAdapter, Model, Vocab, set_adapters
from ..core.state import LlamaState, file_fingerprint
from ..errors import LlamaError, StateError
from .cache import StateCache
from .guard import CallGuard
from .steps import SequenceState, common_prefix

__all__ = ["StateKeeper"]

logger = logging.getLogger("llama_binding")

#: the context options that shape the KV memory: a state only fits a context with equal ones
STATE_OPTIONS = ("n_ctx", "n_seq_max", "type_k", "type_v", "kv_unified", "flash_attn_type",
                 "swa_full", "embeddings")


class StateKeeper:
    """LoRA adapters, the prompt cache and saved states of one engine's context."""

    def __init__(self, model: Model, vocab: Vocab, ctx: Context | None, params: ContextParams | None,
                 state: SequenceState | None, guard: CallGuard) -> None:
        self._model = model
        self._vocab = vocab
        self._ctx = ctx
        self._params = params
        self._seq = state
        self._guard = guard
        self._loras: dict[str, tuple[LoraAdapter, float]] = {}
        self._cache: StateCache | None = None
        self._fingerprint: str | None = None

    def _context(self) -> tuple[Context, SequenceState]:
        if self._ctx is None or self._seq is None:
            raise LlamaError("this Llama was loaded with vocab_only=True and has no context")
        return self._ctx, self._seq

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
        """Rescale a loaded adapter (0 turns it off); nothing is reloaded."""
        key = self._loaded(path)
        self._apply_loras({**self._loras, key: (self._loras[key][0], scale)})

    def unload_lora(self, path: Union[str, os.PathLike[str]]) -> None:
        """Remove a loaded adapter and free it."""
        key = self._loaded(path)
        self._apply_loras({k: v for k, v in self._loras.items() if k != key})

    def _loaded(self, path: Union[str, os.PathLike[str]]) -> str:
        key = os.fspath(path)
        if key not in self._loras:
            raise KeyError(f"no LoRA adapter {key!r} is loaded (loaded: {list(self._loras)})")
        return key

    def _apply_loras(self, loras: dict[str, tuple[LoraAdapter, float]]) -> None:
        """Set ``loras`` on the context; the KV memory computed with other adapters is
        dropped, so no prefix of it is reused (prompt caches key on the adapters too)."""
        dropped = [a for k, (a, _) in self._loras.items() if k not in loras]
        if self._ctx is not None and self._seq is not None:
            with self._guard.held():
                set_adapters(self._ctx, [(a, s) for a, s in loras.values() if s != 0])
                self._seq.reset()
        self._loras = loras
        for adapter in dropped:
            adapter.close()

    def _active_adapters(self) -> tuple[tuple[str, float], ...]:
        return tuple(sorted((os.path.abspath(k), float(s)) for k, (_, s) in self._loras.items() if s != 0))

    # --- the prompt cache (generation/cache.py, generation/disk_cache.py) -------------------

    @property
    def cache(self) -> StateCache | None:
        return self._cache

    def set_cache(self, cache: StateCache | None) -> None:
        if cache is not None and not isinstance(cache, StateCache):
            raise TypeError("cache must be a LlamaRAMCache, a LlamaDiskCache or None, "
                            f"not {type(cache).__name__}")
        self._cache = cache

    def _cache_key(self) -> str:
        model, opts, adapters = self.identity()
        return json.dumps([model, opts, adapters], sort_keys=True)

    def restore_prefix(self, tokens: Sequence[int]) -> None:
        """Restore the longest cached state that extends the prefix the context holds
        (under the guard, before a completion evaluates ``tokens``)."""
        if self._cache is None or len(tokens) < 2:
            return
        ctx, seq = self._context()
        held = min(common_prefix(seq.tokens, tokens), len(tokens) - 1)
        hit = self._cache.lookup(self._cache_key(), tokens[:-1])  # the last token is evaluated anyway
        if hit is None or hit[0] <= held:
            return
        n, data = hit
        seq.reset()
        try:
            ctx.restore_state(data, seq.seq_id)
        except StateError as exc:  # a stale entry: evaluate the prompt instead
            logger.warning("a prompt cache entry could not be restored: %s", exc)
            seq.reset()
            return
        seq.tokens[:] = tokens[:n]

    def store(self) -> None:
        """Store the sequence's state in the cache (under the guard), if there is a cache."""
        if self._cache is None:
            return
        ctx, seq = self._context()
        if seq.tokens:
            self._cache.store(self._cache_key(), seq.tokens, ctx.state_bytes(seq.seq_id))

    # --- saved states (core/state.py) --------------------------------------------------------

    def identity(self) -> tuple[str, dict[str, Any], tuple[tuple[str, float], ...]]:
        """(model fingerprint, memory-shaping context options, active adapters)."""
        ctx, _ = self._context()
        opts = {k: getattr(self._params, k) for k in STATE_OPTIONS}
        opts.update(n_ctx=ctx.n_ctx, n_seq_max=ctx.n_seq_max)
        return self.fingerprint(), opts, self._active_adapters()

    def fingerprint(self) -> str:
        """A SHA-256 that tells this model file from any other (computed once)."""
        if self._fingerprint is None:
            m = self._model
            self._fingerprint = file_fingerprint(m.path, (m.description(), m.n_params, m.size))
        return self._fingerprint

    def save(self, seq_id: int | None = None) -> LlamaState:
        """The whole context's state (``seq_id`` None) or the engine's sequence's."""
        model, opts, adapters = self.identity()
        ctx, seq = self._context()
        with self._guard.held():
            if seq_id is not None and seq_id != seq.seq_id:
                raise ValueError(f"this Llama generates in sequence {seq.seq_id}, not {seq_id}")
            payload = ctx.state_bytes(seq_id)
            tokens = tuple(seq.tokens)
        return LlamaState(model, opts, adapters, "context" if seq_id is None else "sequence", tokens, payload)

    def load(self, state: LlamaState) -> None:
        """Restore a state of :meth:`save`; one that does not fit raises StateError and
        changes nothing, except a payload llama.cpp itself refuses (the memory is then empty)."""
        if not isinstance(state, LlamaState):
            raise TypeError(f"state must be a LlamaState, not {type(state).__name__}")
        state.check_fits(*self.identity())
        ctx, seq = self._context()
        state.check_tokens(ctx.n_ctx if state.scope == "context" else ctx.n_ctx_seq, self._vocab.n_tokens)
        with self._guard.held():
            target = None if state.scope == "context" else seq.seq_id
            if target is not None:
                seq.reset()
            try:
                ctx.restore_state(state.payload, target)
            except StateError:
                seq.reset()  # llama.cpp may have cleared the memory before it refused
                raise
            seq.tokens[:] = state.tokens
