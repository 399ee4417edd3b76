"""The part of :class:`~llama_binding.Llama` that manages what a context carries besides its
tokens: LoRA adapters, the prompt cache and saved states (all of it in
:mod:`llama_binding.generation.saved_state`, through the engine's ``states``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

from .core.state import LlamaState
from .generation.cache import StateCache

if TYPE_CHECKING:
    from .generation.engine import Engine

__all__ = ["LlamaStates"]


class LlamaStates:
    """LoRA adapters, prompt caches and saved states of a :class:`~llama_binding.Llama` (a base
    class of it; ``engine`` is the Llama's)."""

    engine: Engine

    @property
    def lora_adapters(self) -> dict[str, float]:
        """The loaded adapters and their scales (0: loaded but off)."""
        return self.engine.states.lora_adapters

    def load_lora(self, path: Union[str, os.PathLike[str]], scale: float = 1.0) -> None:
        """Load a LoRA adapter of this model and apply it with ``scale``; a bad file raises
        :class:`~llama_binding.errors.ModelLoadError` and changes nothing."""
        self.engine.states.load_lora(path, scale)

    def set_lora(self, path: Union[str, os.PathLike[str]], scale: float) -> None:
        """Rescale a loaded adapter at run time (0 turns it off); nothing is reloaded."""
        self.engine.states.set_lora(path, scale)

    def unload_lora(self, path: Union[str, os.PathLike[str]]) -> None:
        """Remove a loaded adapter and free it."""
        self.engine.states.unload_lora(path)

    @property
    def cache(self) -> StateCache | None:
        return self.engine.states.cache

    def set_cache(self, cache: StateCache | None) -> None:
        """Use ``cache`` (a :class:`LlamaRAMCache` or :class:`LlamaDiskCache`) for prompts:
        a completion stores its sequence's state twice, once its prompt is evaluated and
        once it ends (prompt and completion, as llama-cpp-python), and a later prompt that
        extends a stored token list restores that state instead of evaluating those tokens
        again (when it is longer than what the context holds already). Entries are keyed by
        the model's fingerprint, the context options and the active adapters."""
        self.engine.states.set_cache(cache)

    def model_fingerprint(self) -> str:
        """A SHA-256 that tells this model file from any other (its size, sampled bytes of
        its weights, its description and sizes), computed once: saved states and pickles
        carry it, so that they are never applied to another model."""
        return self.engine.states.fingerprint()

    def save_state(self, seq_id: int | None = None) -> LlamaState:
        """The context's state (``seq_id`` None: the whole context, as llama-cpp-python's
        ``save_state``), or one sequence's, with the tokens it holds and a header naming the
        model, the context options and the adapters it belongs to."""
        return self.engine.states.save(seq_id)

    def load_state(self, state: LlamaState) -> None:
        """Restore a state of :meth:`save_state` (a whole context, or a sequence into this
        Llama's sequence). A state of another model, other context options or other adapters,
        or one whose recorded sizes do not fit this context, raises
        :class:`~llama_binding.errors.StateError`; the Llama then stays as it was, except
        when llama.cpp itself refuses the payload (a forged state): the context is then
        left empty."""
        self.engine.states.load(state)

    def save_session(self, path: Union[str, os.PathLike[str]]) -> None:
        """:meth:`save_state` to a file (written atomically)."""
        self.save_state().save(path)

    def load_session(self, path: Union[str, os.PathLike[str]]) -> None:
        """:meth:`load_state` from a file of :meth:`save_session`."""
        self.load_state(LlamaState.load(path))
