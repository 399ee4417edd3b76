"""Write a GGUF with the first N blocks of a model: its real weights, quantization types and
tensor shapes, small enough to carry to the GPU machine (SmolLM2-135M Q4_1 with 4 of its 30
blocks is 27 MB). Used by bench/cpu_amx.sh to run the CPU kernels on the shapes that crashed.

    python bench/shrink_model.py ../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf out.gguf --blocks 4
"""

from __future__ import annotations

import argparse
import re

import gguf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--blocks", type=int, default=4)
    args = ap.parse_args()
    reader = gguf.GGUFReader(args.src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(args.dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = gguf.GGUFValueType(field.types[0])
        value = field.contents()
        if name == f"{arch}.block_count":
            value = args.blocks
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, value, vtype, sub_type=gguf.GGUFValueType(field.types[-1]))
        else:
            writer.add_key_value(name, value, vtype)
    for t in reader.tensors:
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m and int(m.group(1)) >= args.blocks:
            continue
        writer.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
