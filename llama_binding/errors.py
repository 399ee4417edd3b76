"""The exception tree of llama_binding, and the mapping of decode return codes to it.

::

    LlamaError                       base of everything this package raises
    ├── LibraryLoadError (OSError)   no libllama could be loaded; lists every path tried
    ├── SymbolNotFoundError          the loaded library lacks a C function that was called
    ├── ClosedError (ValueError)     a native object was used after close()
    ├── ModelLoadError (OSError)     a model file is missing, unreadable or not a valid GGUF
    ├── ModelNotFoundError (ValueError)
    │                                a Hugging Face repository holds no file (or several)
    │                                that match the quant or the file pattern asked for
    ├── DownloadError (OSError)      a model could not be fetched (network, hub, package
    │                                index, a checksum that does not match) or, offline,
    │                                is not in the local cache
    ├── ContextCreateError           llama_init_from_model refused the parameters
    ├── TokenizeError (ValueError)   text could not be tokenized (for example too long)
    ├── ContextOverflowError (ValueError)
    │                                a prompt or a generation does not fit in the context
    ├── DecodeError                  llama_decode / llama_encode failed
    │   ├── KVCacheFullError         return code 1: no KV slot for the batch
    │   ├── DecodeAbortedError       return code 2: the abort callback stopped it
    │   ├── InvalidBatchError (ValueError)
    │   │                            return code -1: the batch itself is invalid
    │   └── FatalDecodeError         return code < -1: the context is in an undefined state
    ├── SamplerError (ValueError)    a sampler could not be built (for example an invalid grammar)
    ├── StateError (ValueError)      a saved state is from another model or is damaged
    ├── QueueFullError               a batching engine's waiting queue is at its bound
    ├── StreamInterruptedError       another call took a paused stream's context and that
    │                                stream cannot resume (speculative, several prompts)
    ├── UnsupportedModelError (ValueError)
    │                                the model cannot do what was asked (generate text with
    │                                an encoder-only embedding model)
    ├── TemplateError (ValueError)   a chat template failed to compile or render
    ├── MediaError (ValueError)      an image (or other media) was refused: corrupt, of an
    │                                unsupported format, too large, or not allowed here
    └── ShadowingError (ImportError) compat.install() found llama-cpp-python importable and
                                     would hide it (pass allow_shadowing=True to do so)

The return codes of ``llama_decode``/``llama_encode`` are mapped to exceptions by
:func:`check_decode` only, so the meaning of each code lives in one place. Other native
failures (a NULL pointer from a constructor, a state that does not load) are raised where
the call is made, as the exception of this tree that names them.
"""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "ContextCreateError",
    "ContextOverflowError",
    "DecodeAbortedError",
    "DecodeError",
    "DownloadError",
    "FatalDecodeError",
    "InvalidBatchError",
    "KVCacheFullError",
    "LibraryLoadError",
    "LlamaError",
    "MediaError",
    "ModelLoadError",
    "ModelNotFoundError",
    "QueueFullError",
    "RpcError",
    "SamplerError",
    "ShadowingError",
    "StateError",
    "StreamInterruptedError",
    "SymbolNotFoundError",
    "TemplateError",
    "TokenizeError",
    "UnsupportedModelError",
    "check_decode",
]


class LlamaError(Exception):
    """Base class of every exception raised by llama_binding."""


class LibraryLoadError(LlamaError, OSError):
    """The native libraries could not be loaded.

    ``attempts`` holds ``(path, reason)`` for every candidate that was tried.
    """

    def __init__(self, message: str, attempts: list[tuple[str, str]] | None = None) -> None:
        self.attempts = list(attempts or [])
        lines = [message]
        lines.extend(f"  - {path}: {reason}" for path, reason in self.attempts)
        super().__init__("\n".join(lines))


class SymbolNotFoundError(LlamaError):
    """A C function is declared in the headers but absent from the loaded library."""

    def __init__(self, symbol: str, library: str) -> None:
        self.symbol = symbol
        self.library = library
        super().__init__(
            f"the C function {symbol!r} is not exported by the loaded {library} "
            "(the library was built from another llama.cpp version or without that feature)"
        )


class ClosedError(LlamaError, ValueError):
    """A native object was used after it was closed (or closed while a call used it)."""


class ModelLoadError(LlamaError, OSError):
    """A model could not be loaded."""


class ModelNotFoundError(LlamaError, ValueError):
    """No file of a repository matches what was asked (a quant tag, a file pattern), or a
    pattern that must name one file matches several; the message lists the candidates."""


class DownloadError(LlamaError, OSError):
    """A model could not be fetched: no network, an error of the hub or the package index,
    a checksum that does not match; or, offline, the file is not in the local cache."""


class ContextCreateError(LlamaError):
    """A context could not be created from a model."""


class TokenizeError(LlamaError, ValueError):
    """Text could not be tokenized."""


class ContextOverflowError(LlamaError, ValueError):
    """Tokens do not fit in the context window."""


class DecodeError(LlamaError):
    """``llama_decode`` or ``llama_encode`` returned an error code (``code``)."""

    def __init__(self, message: str, code: int) -> None:
        self.code = code
        super().__init__(f"{message} (return code {code})")


class KVCacheFullError(DecodeError):
    """Return code 1: no KV cache slot could be found for the batch."""


class DecodeAbortedError(DecodeError):
    """Return code 2: the decode was aborted through the abort callback."""


class InvalidBatchError(DecodeError, ValueError):
    """Return code -1: the batch was rejected as invalid."""


class FatalDecodeError(DecodeError):
    """Return code < -1: a fatal error; the context's memory is in an undefined state."""


class SamplerError(LlamaError, ValueError):
    """A sampler could not be created or used."""


class QueueFullError(LlamaError):
    """A batching engine's queue of waiting requests is at its bound; retry later."""


class UnsupportedModelError(LlamaError, ValueError):
    """The model cannot do what was asked (for example generate text with an encoder-only
    embedding model: use ``create_embedding``)."""


class StreamInterruptedError(LlamaError):
    """A paused stream was interrupted by another call on the same Llama and cannot resume."""


class StateError(LlamaError, ValueError):
    """A saved state could not be restored."""


class TemplateError(LlamaError, ValueError):
    """A chat template failed to compile or render."""


class MediaError(LlamaError, ValueError):
    """An image (or other media) could not be used: corrupt or truncated data, a format
    the decoder does not read, dimensions over the limits, or a source that is not allowed
    (a local file without opt-in)."""


class RpcError(LlamaError, ConnectionError):
    """An RPC worker (llama.cpp's ggml-rpc) cannot be used: it does not answer, is busy with
    another client, speaks another protocol version, or this build has no RPC backend."""


class ShadowingError(LlamaError, ImportError):
    """:func:`llama_binding.compat.install` would hide an importable llama-cpp-python."""


def check_decode(code: int, what: str = "llama_decode") -> None:
    """Raise the exception that matches a ``llama_decode``/``llama_encode`` return code."""
    if code == 0:
        return
    if code == 1:
        raise KVCacheFullError(f"{what}: no KV cache slot for the batch; the context is full", code)
    if code == 2:
        raise DecodeAbortedError(f"{what}: aborted", code)
    if code == -1:
        raise InvalidBatchError(f"{what}: invalid batch", code)
    if code < -1:
        raise FatalDecodeError(f"{what}: fatal error, the context's memory is undefined", code)
    raise DecodeError(f"{what}: unexpected return code", code)
