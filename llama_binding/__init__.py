"""llama_binding: llama.cpp for Python.

The C API, generated from llama.h, mtmd.h and gguf.h, is :mod:`llama_binding.capi`
(``from llama_binding import capi``). This namespace holds the curated high-level names.
"""

from __future__ import annotations

from ._backend import DeviceInfo, SystemInfo, system_info
from ._version import __version__
from .aio import AsyncLlama
from .draft_model import LlamaDraftModel
from .errors import (
    ClosedError,
    ContextCreateError,
    ContextOverflowError,
    DecodeAbortedError,
    DecodeError,
    DownloadError,
    FatalDecodeError,
    InvalidBatchError,
    KVCacheFullError,
    LibraryLoadError,
    LlamaError,
    MediaError,
    ModelLoadError,
    ModelNotFoundError,
    QueueFullError,
    RpcError,
    SamplerError,
    ShadowingError,
    StateError,
    StreamInterruptedError,
    SymbolNotFoundError,
    TemplateError,
    TokenizeError,
    UnsupportedModelError,
)
from .generation.cache import LlamaRAMCache
from .generation.disk_cache import LlamaDiskCache
from .generation.drafters import LlamaPromptLookupDecoding
from .generation.hooks import (
    LogitsProcessor,
    LogitsProcessorList,
    MinTokensLogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
)
from .generation.speculative import SpeculativeStats
from .grammar import LlamaGrammar
from .llama import Llama, LlamaState
from .llama_cache import BaseLlamaCache, LlamaCache
from .llama_tokenizer import BaseLlamaTokenizer, LlamaHFTokenizer, LlamaTokenizer
from .quantize import quantize

__all__ = [
    "AsyncLlama",
    "BaseLlamaCache",
    "BaseLlamaTokenizer",
    "ClosedError",
    "ContextCreateError",
    "ContextOverflowError",
    "DecodeAbortedError",
    "DecodeError",
    "DeviceInfo",
    "DownloadError",
    "FatalDecodeError",
    "InvalidBatchError",
    "KVCacheFullError",
    "LibraryLoadError",
    "Llama",
    "LlamaCache",
    "LlamaDiskCache",
    "LlamaDraftModel",
    "LlamaError",
    "LlamaGrammar",
    "LlamaHFTokenizer",
    "LlamaPromptLookupDecoding",
    "LlamaRAMCache",
    "LlamaState",
    "LlamaTokenizer",
    "LogitsProcessor",
    "LogitsProcessorList",
    "MediaError",
    "MinTokensLogitsProcessor",
    "ModelLoadError",
    "ModelNotFoundError",
    "QueueFullError",
    "RpcError",
    "SamplerError",
    "ShadowingError",
    "SpeculativeStats",
    "StateError",
    "StoppingCriteria",
    "StoppingCriteriaList",
    "StreamInterruptedError",
    "SymbolNotFoundError",
    "SystemInfo",
    "TemplateError",
    "TokenizeError",
    "UnsupportedModelError",
    "__version__",
    "quantize",
    "system_info",
]
