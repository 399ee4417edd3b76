"""The public namespace is curated: this list changes only on purpose."""

from __future__ import annotations

import llama_binding

EXPECTED = {
    # llama-cpp-python's names that came with the compat work (P17)
    "BaseLlamaCache", "BaseLlamaTokenizer", "LlamaCache", "LlamaHFTokenizer", "LlamaTokenizer",
    "MinTokensLogitsProcessor", "ShadowingError",
    "AsyncLlama", "ClosedError", "ContextCreateError", "ContextOverflowError", "DecodeAbortedError",
    "DecodeError", "DeviceInfo", "DownloadError", "FatalDecodeError", "InvalidBatchError", "KVCacheFullError",
    "LibraryLoadError", "Llama", "LlamaDiskCache", "LlamaDraftModel", "LlamaError", "LlamaGrammar",
    "LlamaPromptLookupDecoding", "LlamaRAMCache", "LlamaState", "LogitsProcessor",
    "LogitsProcessorList", "MediaError", "ModelLoadError", "ModelNotFoundError", "QueueFullError",
    "RpcError", "SamplerError",
    "SpeculativeStats",
    "StateError", "StoppingCriteria", "StoppingCriteriaList", "StreamInterruptedError",
    "SymbolNotFoundError", "SystemInfo", "TemplateError", "TokenizeError", "UnsupportedModelError",
    "__version__",
    "quantize",
    "system_info",
}


def test_all_is_pinned() -> None:
    assert set(llama_binding.__all__) == EXPECTED
    for name in llama_binding.__all__:
        assert hasattr(llama_binding, name), name


def test_no_c_names_in_public_namespace() -> None:
    import types

    public = {n for n in dir(llama_binding)
              if not n.startswith("_") and not isinstance(getattr(llama_binding, n), types.ModuleType)}
    assert not {n for n in public if n.startswith(("llama_", "ggml_", "gguf_", "mtmd_"))}


def test_errors_keep_decode_codes_apart() -> None:
    from llama_binding import errors

    kinds = {}
    for code in (1, 2, -1, -3):
        try:
            errors.check_decode(code)
        except errors.DecodeError as exc:
            kinds[code] = type(exc)
    assert kinds == {1: errors.KVCacheFullError, 2: errors.DecodeAbortedError,
                     -1: errors.InvalidBatchError, -3: errors.FatalDecodeError}
    errors.check_decode(0)
