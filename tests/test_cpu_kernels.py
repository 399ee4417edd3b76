"""The CPU backend's weight kernels: Q4_0, Q4_1 and Q8_0 models run, the repacked kernels
stay on where the CPU has them, and the AMX tile kernels are not built in.

On Xeons with AMX under a hypervisor, ggml's AMX kernels kill the process at the first
decode (SIGILL at ``tilezero``, SIGSEGV at ``ldtilecfg``; llama.cpp PR #26954). The build
leaves them out unless ``-DLLAMA_BINDING_CPU_AMX=ON`` (CMakeLists.txt); the repacked
AVX2/AVX-512 kernels (llama.cpp's "extra buffer types", ``use_extra_bufts``) stay on. Every
model runs in a child interpreter, so a kernel that faults fails the test instead of pytest.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from _child import Child

from llama_binding import capi, system_info
from llama_binding.capi import _loader
from llama_binding.core import _native

#: llama_ftype of each weight type under test
FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7}

RUN = r'''
import logging
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("llama_binding").addHandler(Keep())
logging.getLogger("llama_binding").setLevel(logging.INFO)

def case(extra):
    records.clear()
    kw = {} if extra == "default" else {"use_extra_bufts": extra == "on"}
    llm = Llama(sys.argv[1], n_ctx=128, n_threads=2, n_gpu_layers=0, **kw)
    out = llm.create_completion("Once upon a time", max_tokens=12, temperature=0.0)
    buffers = sorted({m.split(" model buffer")[0].split()[-1] for m in records if " model buffer size" in m})
    llm.close()
    results[extra] = {"text": out["choices"][0]["text"], "n": out["usage"]["completion_tokens"],
                      "buffers": buffers}

results = {}
for extra in ("default", "off"):
    report(extra, lambda: case(extra))
with open(sys.argv[2], "w") as fh:
    json.dump(results, fh)
'''


def _quantize(src: Path, dst: Path, ftype: int) -> None:
    params = capi.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    rc = capi.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize returned {rc}"


@pytest.fixture(scope="module")
def quantized(tiny_model: Callable[..., Path], model_cache: Path) -> dict[str, Path]:
    """A tiny random model (rows of 256, a multiple of every block and repack tile) in each type."""
    src = tiny_model(vocab="llama-spm", n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_layer=2,
                     tied_embeddings=False, seed=3)
    out = {}
    for name, ftype in FTYPES.items():
        dst = model_cache / f"{src.stem}-{name}.gguf"
        if not dst.is_file():
            _quantize(src, dst.with_suffix(".partial"), ftype)
            dst.with_suffix(".partial").rename(dst)
        out[name] = dst
    return out


def _features() -> str:
    return system_info().llama_cpp


def test_the_cpu_backend_has_no_amx_kernels_unless_asked_for() -> None:
    if _native.cpu_amx_requested():
        pytest.skip("this build was made with -DLLAMA_BINDING_CPU_AMX=ON")
    assert "AMX_INT8 = 1" not in _features(), _features()


#: the AMX instructions (tile configuration, loads, zeroing and the int8/bf16 dot products)
AMX_MNEMONIC = re.compile(r"\s(ldtilecfg|sttilecfg|tilerelease|tilezero|tileloadd|tileloaddt1|tilestored|"
                          r"tdpb[su][su]d|tdpbf16ps|tdpfp16ps)\s")


def test_no_amx_instruction_is_built_into_the_cpu_backend() -> None:
    """The instructions that faulted cannot run: none is in the CPU backend's code."""
    if _native.cpu_amx_requested():
        pytest.skip("this build was made with -DLLAMA_BINDING_CPU_AMX=ON")
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed")
    libs = sorted(_loader.lib_dir().glob("*ggml-cpu*"))
    assert libs, f"no CPU backend library in {_loader.lib_dir()}"
    for lib in libs:
        text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True,
                              text=True, check=True).stdout
        assert text.count("\tret") > 100, f"objdump disassembled no code of {lib.name}"
        found = sorted(set(AMX_MNEMONIC.findall(text)))
        assert not found, f"{lib.name} holds AMX instructions: {found}"


@pytest.mark.parametrize("wtype", sorted(FTYPES))
def test_quantized_model_runs_with_and_without_repacked_weights(quantized: dict[str, Path], tmp_path: Path,
                                                                wtype: str) -> None:
    child = Child(RUN, str(quantized[wtype]), str(tmp_path / "out.json"), timeout=120)
    for label in ("default", "off"):
        assert child[label].name == "OK", child[label]
    results = json.loads((tmp_path / "out.json").read_text())
    default, off = results["default"], results["off"]
    assert default["n"] == off["n"] == 12
    assert "AMX" not in default["buffers"] or _native.cpu_amx_requested()
    # use_extra_bufts=False: the file's layout only (a "CPU" or mmap'ed "CPU_Mapped" buffer)
    assert off["buffers"] and set(off["buffers"]) <= {"CPU", "CPU_Mapped"}, off
    if wtype == "Q4_0" and "AVX2 = 1" in _features() and not _native.cpu_amx_requested():
        # the repacked Q4_0 kernels (8x8 on AVX2/AVX-512) are on by default: they are faster
        assert "CPU_REPACK" in default["buffers"], default
    # repacked or not, the same weights give the same greedy text (the kernels differ only in
    # the order of their sums; a random tiny model has no near ties at the first tokens)
    assert default["text"][:8] == off["text"][:8], (default, off)
