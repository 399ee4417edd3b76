"""Write a draft model for speculative decoding: the first K transformer layers of a GGUF.

Usage: python bench/make_draft_model.py SRC.gguf DST.gguf [--layers K]

Every KV pair is copied with its original type (arrays included) except that
``{arch}.block_count`` becomes K and per-layer arrays under ``{arch}.`` (length equal to the
old block count) keep their first K entries. Tensors ``blk.{i}.*`` with i >= K are dropped;
every other tensor (``token_embd``, ``output_norm``, ``output`` and any other non-layer
tensor such as ``rope_freqs``) and each kept layer tensor is copied byte for byte with its
original ggml type and shape. The copy follows gguf's own ``gguf_new_metadata.py``: tensor
info from the reader's numpy view (``data.shape`` in numpy order, raw bytes for quantized
types) plus the original ``tensor_type``, which the writer turns back into the element shape.

The result shares the full model's vocabulary, so it can draft for it; its output head is
the full model's, applied after fewer layers.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import gguf

logger = logging.getLogger("llama_binding.bench.make_draft_model")

_BLOCK = re.compile(r"^blk\.(\d+)\.")


def _field_value(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    return field.contents() if field is not None else None


def write_truncated(src: Path, dst: Path, n_layers: int) -> None:
    """Write to ``dst`` a copy of the GGUF model ``src`` that keeps only its first ``n_layers`` layers.

    Raises FileNotFoundError when ``src`` is missing and ValueError when ``n_layers`` is not
    in ``1 .. block_count - 1`` or ``src`` lacks ``general.architecture``/``{arch}.block_count``.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"no such GGUF file: {src}")
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    reader = gguf.GGUFReader(src, "r")

    arch = _field_value(reader, gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str):
        raise ValueError(f"{src} has no {gguf.Keys.General.ARCHITECTURE}")
    block_key = gguf.Keys.LLM.BLOCK_COUNT.format(arch=arch)
    block_count = _field_value(reader, block_key)
    if not isinstance(block_count, int):
        raise ValueError(f"{src} has no {block_key}")
    if n_layers >= block_count:
        raise ValueError(f"n_layers must be below the model's {block_count} layers, got {n_layers}")

    # GGUFWriter writes general.architecture itself; GGUF.* are the reader's synthetic fields
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    alignment = _field_value(reader, gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment  # the KV itself is copied below

    arch_prefix = f"{arch}."
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == block_key:
            value = n_layers
        elif (vtype == gguf.GGUFValueType.ARRAY and field.name.startswith(arch_prefix)
              and len(value) == block_count):
            logger.info("%s: per-layer array, keeping the first %d entries", field.name, n_layers)
            value = value[:n_layers]
        writer.add_key_value(field.name, value, vtype, sub_type=sub_type)

    kept = []
    for tensor in reader.tensors:
        match = _BLOCK.match(tensor.name)
        if match is None or int(match.group(1)) < n_layers:
            kept.append(tensor)
    for tensor in kept:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                               tensor.tensor_type)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in kept:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    logger.info("wrote %s: %d of %d layers, %d of %d tensors", dst, n_layers, block_count,
                len(kept), len(reader.tensors))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="GGUF model to truncate")
    parser.add_argument("dst", type=Path, help="where to write the draft model")
    parser.add_argument("--layers", type=int, default=4, help="how many leading layers to keep (default 4)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        write_truncated(args.src, args.dst, args.layers)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
