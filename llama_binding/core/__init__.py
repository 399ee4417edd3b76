"""Layer 1: owned wrappers of llama.cpp's native objects, one handle per module."""

from __future__ import annotations

from .adapter import LoraAdapter, set_adapters
from .batch import Batch
from .context import Context, ContextParams, FlashAttnType, MemoryUse, PoolingType, physical_cores
from .model import LoadMode, Model, ModelParams, SplitMode
from .sampler import Sampler, SamplerChain
from .vocab import Vocab

__all__ = [
    "Batch",
    "Context",
    "ContextParams",
    "FlashAttnType",
    "LoadMode",
    "LoraAdapter",
    "MemoryUse",
    "Model",
    "ModelParams",
    "PoolingType",
    "Sampler",
    "SamplerChain",
    "SplitMode",
    "Vocab",
    "physical_cores",
    "set_adapters",
]
