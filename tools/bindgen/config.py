"""What the generator reads and where each declaration goes.

Everything that is a *choice* (which headers, which ggml functions, which library a module's
symbols live in) is here, so the parser and the emitters hold no project knowledge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LLAMA_CPP = REPO / "vendor" / "llama.cpp"
OUTPUT_DIR = REPO / "llama_binding" / "capi"

# Include folders, relative to the llama.cpp tree.
INCLUDE_DIRS = ("include", "ggml/include", "tools/mtmd")

# The headers parsed as one translation unit (they include the ggml headers themselves).
ENTRY_HEADERS = ("include/llama.h", "tools/mtmd/mtmd.h", "tools/mtmd/mtmd-helper.h", "ggml/include/gguf.h",
                 "ggml/include/ggml-rpc.h")

# Flags of the parse. The target is fixed and the C library is replaced by the tiny stub headers
# in ``include/`` so that the output is the same on every host; the ABI of the host is checked
# by the C probe (tools/bindgen/probe.py), compiled with the real headers.
CLANG_ARGS = (
    "-x", "c", "-std=c11", "--target=x86_64-unknown-linux-gnu", "-nostdinc",
    "-DLLAMA_SHARED", "-DGGML_SHARED", "-DGGML_BACKEND_SHARED",
)


@dataclass(frozen=True)
class ModuleSpec:
    """One generated module: the headers it owns and the libraries its symbols come from."""

    name: str
    headers: tuple[str, ...]
    libraries: tuple[str, ...]
    # Headers whose every declaration is emitted (the others only give what is referenced).
    roots: bool
    title: str


MODULES = (
    ModuleSpec(
        "ggml",
        ("ggml/include/ggml.h", "ggml/include/ggml-backend.h", "ggml/include/ggml-alloc.h",
         "ggml/include/ggml-cpu.h", "ggml/include/ggml-opt.h"),
        ("ggml-base", "ggml", "ggml-cpu"),
        roots=False,
        title="the ggml types that llama.h, mtmd.h and gguf.h use, and the ggml functions that "
        "enumerate devices and load backends",
    ),
    ModuleSpec("gguf", ("ggml/include/gguf.h",), ("ggml-base",), roots=True, title="ggml/include/gguf.h"),
    ModuleSpec("llama", ("include/llama.h",), ("llama",), roots=True, title="include/llama.h"),
    ModuleSpec("ggml_rpc", ("ggml/include/ggml-rpc.h",), ("ggml-rpc",), roots=True,
               title="ggml/include/ggml-rpc.h (llama.cpp's RPC backend, in builds with GGML_RPC)"),
    ModuleSpec(
        "mtmd",
        ("tools/mtmd/mtmd.h", "tools/mtmd/mtmd-helper.h"),
        ("mtmd",),
        roots=True,
        title="tools/mtmd/mtmd.h and tools/mtmd/mtmd-helper.h",
    ),
)

# ggml functions emitted into capi.ggml (every type they use comes along).
GGML_FUNCTIONS = (
    # backend registry: load the dynamic backends, enumerate registries and devices
    "ggml_backend_load_all",
    "ggml_backend_load_all_from_path",
    "ggml_backend_load",
    "ggml_backend_unload",
    "ggml_backend_reg_count",
    "ggml_backend_reg_get",
    "ggml_backend_reg_by_name",
    "ggml_backend_reg_name",
    "ggml_backend_reg_dev_count",
    "ggml_backend_reg_dev_get",
    "ggml_backend_dev_count",
    "ggml_backend_dev_get",
    "ggml_backend_dev_by_name",
    "ggml_backend_dev_by_type",
    "ggml_backend_dev_name",
    "ggml_backend_dev_description",
    "ggml_backend_dev_memory",
    "ggml_backend_dev_type",
    "ggml_backend_dev_get_props",
    "ggml_backend_dev_backend_reg",
    # types, time, logging
    "ggml_type_name",
    "ggml_type_size",
    "ggml_blck_size",
    "ggml_row_size",
    "ggml_time_init",
    "ggml_time_us",
    "ggml_log_get",
    "ggml_log_set",
    # CPU threadpools, for llama_attach_threadpool
    "ggml_threadpool_params_default",
    "ggml_threadpool_params_init",
    "ggml_threadpool_new",
    "ggml_threadpool_free",
    "ggml_numa_init",
    "ggml_is_numa",
)

# Structs that are defined in the headers but emitted as opaque handles: they are only ever
# used through pointers by this API and their layout is an internal of ggml.
OPAQUE_RECORDS = frozenset({"ggml_tensor"})

# Object-like macros that are not emitted: their value depends on the platform.
EXCLUDED_MACROS = frozenset({"GGML_MEM_ALIGN"})


def module_of_header(header: str) -> str:
    """The generated module that owns the declarations of ``header``."""
    for spec in MODULES:
        if header in spec.headers:
            return spec.name
    raise KeyError(header)


def all_headers() -> tuple[str, ...]:
    """Every header the generator reads, in a fixed order."""
    seen: list[str] = []
    for spec in MODULES:
        seen.extend(h for h in spec.headers if h not in seen)
    return tuple(seen)
