"""``n_gpu_layers="auto"``: the dry run that sizes a model's buffers, and the layer count it
picks. The GPU test runs where this build offloads (the device machine:
``bench/gpu_p12.sh``); the model is ``LLAMA_BINDING_GPU_TEST_MODEL`` or SmolLM2."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytest

from llama_binding import Llama, _backend
from llama_binding.core import Context, ContextParams, LoadMode, Model, ModelParams
from llama_binding.gpu_fit import device_memory_free, fit_gpu_layers

GPU = _backend.has_local_gpu()


def test_a_dry_run_sizes_the_buffers_as_loading_allocates_them(smollm2: Path) -> None:
    cparams = ContextParams(n_ctx=2048, n_batch=512, n_ubatch=256)
    with Model(smollm2, ModelParams(n_gpu_layers=0)) as model, Context(model, cparams) as ctx:
        real = ctx.memory_use()
    dry_params = ModelParams(n_gpu_layers=0, no_alloc=True, load_mode=LoadMode.NONE)
    with Model(smollm2, dry_params) as model, Context(model, cparams) as ctx:
        dry = ctx.memory_use()
    assert dry == real
    # the weights, a KV cache of 2048 cells (30 layers x 3 KV heads x (64 + 64) x f16) and compute buffers
    assert real.host_model > 90 * 2**20 and real.host_context == 2048 * 30 * 3 * 128 * 2
    assert real.host_compute > 0
    if not GPU:
        assert real.device == 0


@pytest.mark.skipif(GPU, reason="the CPU-only answer")
def test_auto_on_a_cpu_build_is_zero_layers_without_a_warning(smollm2: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    assert fit_gpu_layers(smollm2).n_gpu_layers == 0
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="llama_binding"):
        warnings.simplefilter("error")
        with Llama(smollm2, n_gpu_layers="auto", gpu_memory_budget=2**30, n_ctx=256) as llm:
            assert llm.create_completion("Hi", max_tokens=2)["usage"]["completion_tokens"] == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_bad_budgets_are_refused(smollm2: Path) -> None:
    with pytest.raises(ValueError, match="needs n_gpu_layers='auto'"):
        Llama(smollm2, gpu_memory_budget=2**30)
    for bad in (-1, 1.5, "1G", True):
        with pytest.raises(ValueError, match="gpu_memory_budget"):
            fit_gpu_layers(smollm2, budget=bad)  # type: ignore[arg-type]


@pytest.mark.skipif(not GPU, reason="needs a build that offloads to a GPU")
def test_auto_fits_a_small_budget_and_one_more_layer_would_not(request: pytest.FixtureRequest) -> None:
    given = os.environ.get("LLAMA_BINDING_GPU_TEST_MODEL")
    path = Path(given) if given else request.getfixturevalue("smollm2")
    cparams = ContextParams(n_ctx=4096, n_batch=512, n_ubatch=512)

    def dry(n: int) -> int:
        params = ModelParams(n_gpu_layers=n, no_alloc=True, load_mode=LoadMode.NONE)
        with Model(path, params) as model, Context(model, cparams) as ctx:
            return ctx.memory_use().device

    everything = fit_gpu_layers(path, ModelParams(), cparams)
    assert everything.n_gpu_layers == -1  # a small model on a large GPU: every layer
    n_layer = everything.n_layer
    budget = (dry(0) + dry(-1)) // 2  # room for about half the layers
    fit = fit_gpu_layers(path, ModelParams(), cparams, budget=budget)
    assert 0 < fit.n_gpu_layers < n_layer and fit.room == budget
    assert dry(fit.n_gpu_layers) <= budget < dry(fit.n_gpu_layers + 1)

    def loaded(n: int) -> int:  # the GPU memory loading and one decode really take
        free = device_memory_free()
        with Llama(path, n_gpu_layers=n, n_ctx=4096, n_batch=512, n_ubatch=512) as llm:
            assert llm.create_completion("Once upon a time", max_tokens=4)["usage"]["completion_tokens"] == 4
            return free - device_memory_free()

    with Llama(path, n_gpu_layers="auto", gpu_memory_budget=budget, n_ctx=4096, n_batch=512,
               n_ubatch=512) as llm:
        assert llm.create_completion("Hello", max_tokens=4)["usage"]["completion_tokens"] == 4
    chosen, more = loaded(fit.n_gpu_layers), loaded(fit.n_gpu_layers + 1)
    per_layer = (dry(-1) - dry(0)) / (n_layer + 1)
    # what is allocated is what the dry run said, give or take CUDA's own pools (a few layers)
    assert abs(chosen - dry(fit.n_gpu_layers)) < max(64 * 2**20, 0.1 * chosen), (chosen, fit)
    assert more > chosen + 0.5 * per_layer
