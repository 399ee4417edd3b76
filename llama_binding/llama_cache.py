"""llama-cpp-python's prompt-cache names: :class:`LlamaRAMCache` and :class:`LlamaDiskCache`
for ``Llama.set_cache``, ``LlamaCache`` (its old name of the RAM cache) and
``BaseLlamaCache`` (their base class).

The caches are this package's (:mod:`llama_binding.generation.cache`): they store a context's
state by the tokens it was computed for, keyed by the model, the context options and the
adapters, and find the longest stored prefix of a prompt. A cache of one's own subclasses
``BaseLlamaCache`` with this package's interface (``lookup``/``store``, see
:class:`~llama_binding.generation.cache.StateCache`), not llama-cpp-python's
``__getitem__``/``__setitem__`` of ``LlamaState`` objects.
"""

from __future__ import annotations

from .generation.cache import LlamaRAMCache, StateCache
from .generation.disk_cache import LlamaDiskCache

__all__ = ["BaseLlamaCache", "LlamaCache", "LlamaDiskCache", "LlamaRAMCache"]

BaseLlamaCache = StateCache
LlamaCache = LlamaRAMCache
