"""Calls into the built library: struct values, callbacks both ways, GGUF metadata arrays."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from llama_binding import _log, capi


def test_default_params_are_structs_by_value(lib_dir: Path) -> None:
    mp = capi.llama_model_default_params()
    assert isinstance(mp, capi.llama_model_params)
    assert mp.vocab_only is False and not mp.devices and not mp.progress_callback
    cp = capi.llama_context_default_params()
    assert isinstance(cp, capi.llama_context_params) and cp.n_batch > 0
    assert capi.llama_flash_attn_type_name(cp.flash_attn_type)
    assert capi.llama_sampler_chain_default_params().no_perf is True


def test_strings_and_devices(lib_dir: Path) -> None:
    info = capi.llama_print_system_info()
    assert isinstance(info, bytes) and info
    assert capi.ggml_type_name(capi.GGML_TYPE_F16) == b"f16"
    assert capi.ggml_type_size(capi.GGML_TYPE_F32) == 4
    if capi.ggml_backend_reg_count() == 0:
        capi.ggml_backend_load_all_from_path(str(lib_dir).encode())
    assert capi.ggml_backend_dev_count() >= 1
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    for i in range(capi.ggml_backend_dev_count()):
        dev = capi.ggml_backend_dev_get(i)
        assert capi.ggml_backend_dev_name(dev)
        capi.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        assert capi.ggml_backend_dev_type(dev) in set(capi.ggml_backend_dev_type_enum)
        props = capi.ggml_backend_dev_props()
        capi.ggml_backend_dev_get_props(dev, props)  # a struct passed where a pointer is expected
        assert props.name == capi.ggml_backend_dev_name(dev)
        reg = capi.ggml_backend_dev_backend_reg(dev)
        assert capi.ggml_backend_reg_name(reg)


def test_gguf_reader_metadata_arrays(lib_dir: Path, stories260k: Path) -> None:
    params = capi.gguf_init_params(no_alloc=True, ctx=None)
    ctx = capi.gguf_init_from_file(str(stories260k).encode(), params)
    assert ctx
    try:
        assert capi.gguf_get_version(ctx) == capi.GGUF_VERSION
        key = capi.gguf_find_key(ctx, b"tokenizer.ggml.tokens")
        assert key >= 0
        assert capi.gguf_get_kv_type(ctx, key) == capi.GGUF_TYPE_ARRAY
        assert capi.gguf_get_arr_type(ctx, key) == capi.GGUF_TYPE_STRING
        n = capi.gguf_get_arr_n(ctx, key)
        tokens = [capi.gguf_get_arr_str(ctx, key, i) for i in range(n)]
        assert n == 512 and tokens[1] == b"<s>"
        scores = capi.gguf_find_key(ctx, b"tokenizer.ggml.scores")
        address = capi.gguf_get_arr_data(ctx, scores)  # const void * -> an int address
        assert address is not None
        data = ctypes.cast(address, ctypes.POINTER(ctypes.c_float))
        assert capi.gguf_get_arr_type(ctx, scores) == capi.GGUF_TYPE_FLOAT32 and data[0] == data[0]
        arch = capi.gguf_get_val_str(ctx, capi.gguf_find_key(ctx, b"general.architecture"))
        assert arch == b"llama"
    finally:
        capi.gguf_free(ctx)


def test_callbacks_from_c(lib_dir: Path, stories260k: Path) -> None:
    logs: list[tuple[int, bytes]] = []
    progress: list[float] = []

    def on_log(level: int, text: bytes, user_data: int | None) -> None:
        logs.append((level, text))

    def on_progress(value: float, user_data: int | None) -> bool:
        progress.append(value)
        return True

    log_cb = capi.ggml_log_callback(on_log)
    capi.llama_log_set(log_cb, None)
    try:
        params = capi.llama_model_default_params()
        params.progress_callback = capi.llama_progress_callback(on_progress)
        model = capi.llama_model_load_from_file(str(stories260k).encode(), params)
        assert model
        vocab = capi.llama_model_get_vocab(model)
        assert capi.llama_vocab_n_tokens(vocab) == 512
        assert capi.llama_vocab_type(vocab) == capi.LLAMA_VOCAB_TYPE_SPM
        capi.llama_model_free(model)
    finally:
        capi.llama_log_set(None, None)  # None is NULL for a callback parameter
        _log.install(again=True)  # the package's routing back, for the tests after this one
    assert progress and progress[-1] == pytest.approx(1.0)
    assert any(b"llama_model_loader" in text for _, text in logs)
    assert all(level in set(capi.ggml_log_level) for level, _ in logs)
