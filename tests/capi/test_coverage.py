"""Everything the headers declare is in capi, found independently of the libclang parse."""

from __future__ import annotations

import ctypes
import enum
import warnings

import pytest

from llama_binding import capi
from tools.bindgen import config
from tools.bindgen.headerscan import API_MACROS, scan_all

SCANS = scan_all(config.LLAMA_CPP)


def _tag(name: str, kind: str) -> object:
    """capi's class for a C tag (a tag that is also a function name has a suffix)."""
    obj = getattr(capi, name, None)
    if isinstance(obj, type):
        return obj
    return getattr(capi, f"{name}_{kind}", None)


@pytest.mark.parametrize("header", list(API_MACROS))
def test_every_api_function_is_in_capi(header: str) -> None:
    names = SCANS[header].functions
    assert len(names) > 0
    missing = [n for n in names if not callable(getattr(capi, n, None))]
    assert not missing, f"{header}: {missing}"


@pytest.mark.parametrize("header", list(API_MACROS))
def test_every_struct_union_enum_and_define_is_in_capi(header: str) -> None:
    scan = SCANS[header]
    for name in scan.structs:
        cls = _tag(name, "struct")
        assert isinstance(cls, type) and issubclass(cls, ctypes.Structure), name
    for name in scan.unions:
        cls = _tag(name, "union")
        assert isinstance(cls, type) and issubclass(cls, ctypes.Union), name
    for tag, items in scan.enums.items():
        cls = _tag(tag, "enum")
        assert isinstance(cls, type) and issubclass(cls, enum.IntEnum), tag
        for item in items:
            assert getattr(capi, item) is cls[item], item
    for name in scan.defines:
        assert hasattr(capi, name), name


def test_modules_export_distinct_names() -> None:
    names = [n for m in (capi.ggml, capi.ggml_rpc, capi.gguf, capi.llama, capi.mtmd) for n in m.__all__]
    assert len(names) == len(set(names)) == len(capi.__all__)


def test_constants() -> None:
    assert capi.LLAMA_DEFAULT_SEED == 0xFFFFFFFF
    assert capi.LLAMA_TOKEN_NULL == -1
    assert capi.LLAMA_SESSION_MAGIC == capi.LLAMA_FILE_MAGIC_GGSN == 0x6767736E
    assert capi.LLAMA_STATE_SEQ_MAGIC == capi.LLAMA_FILE_MAGIC_GGSQ
    assert capi.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY == 1
    assert capi.GGUF_MAGIC == "GGUF"
    assert capi.LLAMA_ROPE_TYPE_NEOX == capi.GGML_ROPE_TYPE_NEOX


def test_types_are_faithful() -> None:
    # opaque handles are POINTERs to empty Structures; callbacks are CCallback classes
    assert capi.llama_memory_t is ctypes.POINTER(capi.llama_memory_i)
    assert capi.llama_token is ctypes.c_int32
    assert issubclass(capi.ggml_log_callback, capi._binding.CCallback)
    assert capi.llama_sampler_i_apply_fn._argtypes_ == (
        ctypes.POINTER(capi.llama_sampler), ctypes.POINTER(capi.llama_token_data_array))
    # a named field of an unnamed struct type, and an anonymous union
    params = capi.ggml_opt_optimizer_params()
    params.adamw.alpha = 0.5
    assert params.adamw.alpha == 0.5
    ov = capi.llama_model_kv_override(key=b"k")
    ov.val_i64 = 7
    assert ov.val_i64 == 7 and ov.key == b"k"
    # a field named like a Python keyword
    assert hasattr(capi.ggml_backend_dev_caps, "async_")


def test_deprecated_functions_warn_with_the_replacement(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setitem(capi.llama._lib.__dict__, "llama_free_model", lambda model: calls.append(model))
    expected = "llama_free_model is deprecated: use llama_model_free instead"
    with pytest.warns(DeprecationWarning, match=expected):
        capi.llama_free_model(None)
    assert calls == [None]
    # the stub stays in place: every call warns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        capi.llama_free_model(None)
    assert [w.category for w in caught] == [DeprecationWarning]
    assert capi.mtmd_encode.__doc__ and "mtmd_encode_chunk" in capi.mtmd_encode.__doc__


def test_functions_have_signatures_and_docstrings() -> None:
    import inspect

    stub = capi.llama._lib._stubs["llama_tokenize"]  # the generated def, even after a first call
    sig = inspect.signature(stub)
    assert list(sig.parameters) == [
        "vocab", "text", "text_len", "tokens", "n_tokens_max", "add_special", "parse_special"]
    assert all(p.kind is p.POSITIONAL_ONLY for p in sig.parameters.values())
    assert "Convert the provided text into tokens" in (stub.__doc__ or "")
    assert "int32_t llama_tokenize(" in (stub.__doc__ or "")
    # the bound ctypes function carries the same docstring
    assert capi.llama.llama_tokenize.__doc__ == stub.__doc__ or callable(capi.llama.llama_tokenize)
