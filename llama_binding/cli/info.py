"""``llama-binding info MODEL``: what a GGUF file holds and what it would take to load.

Reads only the file's metadata and tensor headers (no weights are loaded): architecture,
parameters, quantization, context length, tokenizer and chat template, tensors by type;
then this machine's devices and the memory a context of ``--n-ctx`` cells with
``--n-gpu-layers`` offloaded layers would need (:func:`llama_binding.footprint.estimate`).
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from typing import Any

from .. import capi
from .._backend import system_info
from ..core.metadata import read_metadata, read_tensors
from ..errors import LlamaError
from ..footprint import estimate
from .output import Output

__all__ = ["build_parser", "describe", "run"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llama-binding info", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="path of a GGUF file")
    p.add_argument("--n-ctx", "--n_ctx", type=int, default=4096, help="context for the memory estimate")
    p.add_argument("--n-gpu-layers", "--n_gpu_layers", type=int, default=-1,
                   help="offloaded layers for the memory estimate (-1: all, where a GPU is)")
    p.add_argument("--json", action="store_true", help="the summary as JSON")
    return p


def _file_type(value: Any) -> str:
    """``general.file_type``'s llama_ftype name (``Q4_K_M``)."""
    if value is None:
        return "unknown"
    for name in dir(capi):
        if name.startswith("LLAMA_FTYPE_") and getattr(capi, name) == int(value):
            return name.removeprefix("LLAMA_FTYPE_MOSTLY_").removeprefix("LLAMA_FTYPE_")
    return f"type {int(value)}"


def describe(path: str, n_ctx: int = 4096, n_gpu_layers: int = -1) -> dict[str, Any]:
    """The summary ``info`` prints (a dict, for ``--json`` and for tests)."""
    meta = read_metadata(path)
    tensors = read_tensors(path)
    arch = str(meta.get("general.architecture", ""))
    by_type: dict[str, dict[str, float]] = defaultdict(lambda: {"tensors": 0, "mib": 0.0})
    for t in tensors:
        by_type[t.type]["tensors"] += 1
        by_type[t.type]["mib"] += t.nbytes / 2**20
    embedding = f"{arch}.pooling_type" in meta  # an embedding model: no KV cache to speak of
    need = estimate(path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, embedding=embedding)
    tokens = meta.get("tokenizer.ggml.tokens")
    return {
        "file": os.path.abspath(path),
        "size_mib": round(os.path.getsize(path) / 2**20, 1),
        "name": meta.get("general.name", ""),
        "architecture": arch,
        "parameters": sum(t.elements for t in tensors),
        "file_type": _file_type(meta.get("general.file_type")),
        "context_length": meta.get(f"{arch}.context_length"),
        "embedding_length": meta.get(f"{arch}.embedding_length"),
        "layers": meta.get(f"{arch}.block_count"),
        "heads": meta.get(f"{arch}.attention.head_count"),
        "kv_heads": meta.get(f"{arch}.attention.head_count_kv"),
        "tokenizer": meta.get("tokenizer.ggml.model"),
        "vocab_size": len(tokens) if tokens is not None else None,
        "chat_template": "tokenizer.chat_template" in meta,
        "tensors": len(tensors),
        "tensors_by_type": {k: {"tensors": int(v["tensors"]), "mib": round(v["mib"], 1)}
                            for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]["mib"])},
        "devices": [{"name": d.name, "description": d.description, "type": d.type,
                     "memory_free_mib": round(d.memory_free / 2**20),
                     "memory_total_mib": round(d.memory_total / 2**20)} for d in system_info().devices],
        "memory": {"n_ctx": n_ctx, "n_gpu_layers": n_gpu_layers, "host_mib": round(need.host / 2**20, 1),
                   "gpu_mib": round(need.gpu / 2**20, 1)},
    }


def _params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} K"


def run(argv: list[str], out: Output | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or Output()
    if not os.path.isfile(args.model):
        out.error(f"no such file: {args.model}")
        return 1
    try:
        d = describe(args.model, args.n_ctx, args.n_gpu_layers)
    except LlamaError as exc:
        out.error(f"{args.model} is not a readable GGUF file: {exc}")
        return 1
    if args.json:
        out.json(d)
        return 0
    out.fields([("file", f"{d['file']} ({d['size_mib']} MiB)"), ("name", d["name"]),
                ("architecture", d["architecture"]), ("parameters", _params(d["parameters"])),
                ("quantization", d["file_type"]), ("context length", d["context_length"]),
                ("layers", d["layers"]), ("embedding length", d["embedding_length"]),
                ("heads / KV heads", f"{d['heads']} / {d['kv_heads']}"),
                ("tokenizer", f"{d['tokenizer']}, {d['vocab_size']} tokens"),
                ("chat template", "yes" if d["chat_template"] else "no")])
    out.line()
    out.line(f"tensors ({d['tensors']}):")
    out.fields([(f"  {k}", f"{v['tensors']:>5} tensors  {v['mib']:>9.1f} MiB")
                for k, v in d["tensors_by_type"].items()])
    out.line()
    out.line("devices:")
    out.fields([(f"  {x['name']}", f"{x['description']} ({x['type']}, {x['memory_free_mib']} of "
                                   f"{x['memory_total_mib']} MiB free)") for x in d["devices"]])
    m = d["memory"]
    out.line()
    out.line(f"memory with --n-ctx {m['n_ctx']} --n-gpu-layers {m['n_gpu_layers']} (weights and KV "
             f"cache, estimated): host {m['host_mib']} MiB, GPU {m['gpu_mib']} MiB")
    return 0
