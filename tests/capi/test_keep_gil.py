"""The quick C functions of ``_binding.KEEP_GIL`` keep the GIL; every other one releases it."""

from __future__ import annotations

import threading
import time

import llama_binding.capi as capi
from llama_binding.capi import _binding, llama

_PYTHONAPI = 0x4  # ctypes' FUNCFLAG_PYTHONAPI: a PyDLL function, called holding the GIL


def test_every_name_is_a_function_of_llama_h() -> None:
    assert _binding.KEEP_GIL <= set(llama._lib._signatures)


def test_listed_functions_keep_the_gil_and_others_release_it() -> None:
    for name in ("llama_sampler_init_top_k", "llama_sampler_chain_add", "llama_model_has_decoder",
                 "llama_sampler_free"):
        assert getattr(llama._lib, name)._flags_ & _PYTHONAPI, name
    for name in ("llama_tokenize", "llama_decode", "llama_sampler_init_grammar", "llama_sampler_init_dry"):
        assert not getattr(llama._lib, name)._flags_ & _PYTHONAPI, name


def test_a_chain_built_holding_the_gil_samples() -> None:
    """Built and freed through the GIL-keeping handle while another thread runs Python: the
    calls work as before (the same library, a second handle of it)."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(100))

    other = threading.Thread(target=spin)
    other.start()
    try:
        for _ in range(200):
            chain = capi.llama_sampler_chain_init(capi.llama_sampler_chain_default_params())
            capi.llama_sampler_chain_add(chain, capi.llama_sampler_init_top_k(40))
            capi.llama_sampler_chain_add(chain, capi.llama_sampler_init_dist(7))
            assert capi.llama_sampler_chain_n(chain) == 2
            assert capi.llama_sampler_name(capi.llama_sampler_chain_get(chain, 0)) == b"top-k"
            capi.llama_sampler_free(chain)
            time.sleep(0)
    finally:
        stop.set()
        other.join()
