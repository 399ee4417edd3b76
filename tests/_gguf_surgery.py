"""GGUF surgery for tests: patch bytes in place, or parse a whole file and write it back changed.

Two levels:

- byte patches on a valid file (``gguf_layout`` finds the offset of each metadata value and
  of each tensor info's fields; ``patched`` overwrites one field);
- :class:`Gguf`: a parsed file (metadata in order, tensor infos and their data) that
  :meth:`Gguf.to_bytes` lays out again, with any ``general.alignment``, so that a test can
  change a value, a type or a tensor and still have a well-formed file. String values stay
  ``bytes``, so invalid UTF-8 survives the round trip.

Pure Python with ``struct``: the ``gguf`` package's writer refuses much of what these tests
need to write (inconsistent types, unaligned data, invalid UTF-8).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = [
    "ARRAY", "BOOL", "FLOAT32", "FLOAT64", "INT32", "INT64", "KV", "STRING", "UINT8", "UINT32", "UINT64",
    "Gguf", "Tensor", "block_count", "edited", "first_tensor", "gguf_layout", "header", "keep_tokens",
    "map_tokens", "pack_value", "patched", "repeat_a_token", "set_kv", "set_str",
]

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_FORMATS = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i", FLOAT32: "<f",
            BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}
_SCALAR_SIZES = {t: struct.calcsize(f) for t, f in _FORMATS.items()}
_STRING, _ARRAY = STRING, ARRAY
DEFAULT_ALIGNMENT = 32


# --- byte patches -----------------------------------------------------------------------------

def gguf_layout(data: bytes) -> tuple[dict[str, int], list[dict[str, int]]]:
    """Offsets in a GGUF v3 file: of each metadata value, and of each tensor info's fields."""
    n_tensors, n_kv = struct.unpack_from("<qq", data, 8)
    pos = 24

    def skip(pos: int, vtype: int) -> int:
        if vtype == _STRING:
            return pos + 8 + int(struct.unpack_from("<Q", data, pos)[0])
        if vtype == _ARRAY:
            sub, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if sub != _STRING and sub != _ARRAY:
                return pos + int(n) * _SCALAR_SIZES[sub]
            for _ in range(n):
                pos = skip(pos, sub)
            return pos
        return pos + _SCALAR_SIZES[vtype]

    values: dict[str, int] = {}
    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8 : pos + 8 + klen].decode()
        (vtype,) = struct.unpack_from("<I", data, pos + 8 + klen)
        pos = values[key] = pos + 8 + klen + 4
        pos = skip(pos, vtype)
    tensors = []
    for _ in range(n_tensors):
        info = {"name_len": pos}
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        (n_dims,) = struct.unpack_from("<I", data, pos)
        info.update(n_dims=pos, dims=pos + 4, type=pos + 4 + 8 * n_dims, offset=pos + 8 + 8 * n_dims)
        pos = info["offset"] + 8
        tensors.append(info)
    return values, tensors


def patched(data: bytes, fmt: str, at: int, value: Any) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


def header(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<Iqq", 3, n_tensors, n_kv)


def first_tensor(fld: str, fmt: str, value: int) -> Callable[[bytes], bytes]:
    return lambda data: patched(data, fmt, gguf_layout(data)[1][0][fld], value)


def block_count(value: int) -> Callable[[bytes], bytes]:
    return lambda data: patched(data, "<I", gguf_layout(data)[0]["llama.block_count"], value)


def repeat_a_token(data: bytes) -> bytes:
    """Overwrite the text of a later vocabulary entry with an earlier one's of equal length."""
    pos = gguf_layout(data)[0]["tokenizer.ggml.tokens"] + 12  # past the item type and count
    first_of_length: dict[int, int] = {}
    while True:
        (n,) = struct.unpack_from("<Q", data, pos)
        if n in first_of_length and n > 2:
            out = bytearray(data)
            src = first_of_length[n]
            out[pos + 8 : pos + 8 + n] = data[src + 8 : src + 8 + n]
            return bytes(out)
        first_of_length.setdefault(n, pos)
        pos += 8 + n


# --- a parsed file ----------------------------------------------------------------------------

@dataclass
class KV:
    """One metadata entry. ``value``: int/float/bool, ``bytes`` for a string, a list for an
    array (of ``sub`` items)."""

    key: str
    vtype: int
    value: Any
    sub: int | None = None


@dataclass
class Tensor:
    name: str
    dims: list[int]
    ggml_type: int
    data: bytes
    offset: int | None = None  # None: laid out by to_bytes


@dataclass
class Gguf:
    version: int = 3
    kvs: list[KV] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)

    # --- reading -----------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes) -> Gguf:
        if data[:4] != b"GGUF":
            raise ValueError("not a GGUF file")
        version, n_tensors, n_kv = struct.unpack_from("<Iqq", data, 4)
        pos = 24

        def string(pos: int) -> tuple[bytes, int]:
            (n,) = struct.unpack_from("<Q", data, pos)
            return data[pos + 8 : pos + 8 + n], pos + 8 + n

        def value(pos: int, vtype: int) -> tuple[Any, int, int | None]:
            if vtype == STRING:
                s, pos = string(pos)
                return s, pos, None
            if vtype == ARRAY:
                sub, n = struct.unpack_from("<IQ", data, pos)
                pos += 12
                if sub in _FORMATS:
                    fmt = "<" + _FORMATS[sub][1] * n
                    items = list(struct.unpack_from(fmt, data, pos))
                    return items, pos + _SCALAR_SIZES[sub] * n, sub
                out = []
                for _ in range(n):
                    item, pos, _ = value(pos, sub)
                    out.append(item)
                return out, pos, sub
            return struct.unpack_from(_FORMATS[vtype], data, pos)[0], pos + _SCALAR_SIZES[vtype], None

        g = cls(version=version)
        alignment = DEFAULT_ALIGNMENT
        for _ in range(n_kv):
            key, pos = string(pos)
            (vtype,) = struct.unpack_from("<I", data, pos)
            val, pos, sub = value(pos + 4, vtype)
            g.kvs.append(KV(key.decode(), vtype, val, sub))
            if key == b"general.alignment":
                alignment = int(val)
        infos = []
        for _ in range(n_tensors):
            name, pos = string(pos)
            (n_dims,) = struct.unpack_from("<I", data, pos)
            dims = list(struct.unpack_from("<" + "q" * n_dims, data, pos + 4))
            ttype, offset = struct.unpack_from("<IQ", data, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            infos.append((name.decode(), dims, ttype, offset))
        start = pos + (-pos) % alignment
        order = sorted(range(len(infos)), key=lambda i: infos[i][3])
        ends = {i: (infos[order[k + 1]][3] if k + 1 < len(order) else len(data) - start)
                for k, i in enumerate(order)}
        for i, (name, dims, ttype, offset) in enumerate(infos):
            end = ends[i]
            size = _nbytes(dims, ttype)
            if size is not None:
                end = min(end, offset + size)
            g.tensors.append(Tensor(name, dims, ttype, data[start + offset : start + end]))
        return g

    # --- editing -------------------------------------------------------------------------
    def get(self, key: str) -> KV | None:
        return next((kv for kv in self.kvs if kv.key == key), None)

    def set(self, key: str, vtype: int, value: Any, sub: int | None = None) -> Gguf:
        kv = self.get(key)
        if kv is None:
            self.kvs.append(KV(key, vtype, value, sub))
        else:
            kv.vtype, kv.value, kv.sub = vtype, value, sub
        return self

    def drop(self, key: str) -> Gguf:
        self.kvs = [kv for kv in self.kvs if kv.key != key]
        return self

    @property
    def arch(self) -> str:
        kv = self.get("general.architecture")
        return kv.value.decode() if kv is not None else ""

    def copy(self) -> Gguf:
        return Gguf(self.version,
                    [KV(kv.key, kv.vtype, list(kv.value) if isinstance(kv.value, list) else kv.value, kv.sub)
                     for kv in self.kvs],
                    [Tensor(t.name, list(t.dims), t.ggml_type, t.data, t.offset) for t in self.tensors])

    # --- writing -------------------------------------------------------------------------
    def to_bytes(self, alignment: int | None = None, layout: int | None = None) -> bytes:
        """The file; tensor data padded to ``alignment`` (written as ``general.alignment``
        unless it is 32; by default the file's own ``general.alignment`` or 32). ``layout``
        pads to that instead, whatever ``general.alignment`` says."""
        if alignment is not None:
            self.drop("general.alignment")
            if alignment != DEFAULT_ALIGNMENT:
                self.kvs.insert(0, KV("general.alignment", UINT32, alignment))
        kv = self.get("general.alignment")
        align = layout or alignment or (int(kv.value) if kv is not None and kv.vtype == UINT32
                                        else DEFAULT_ALIGNMENT)
        align = max(align, 1)
        out = bytearray(b"GGUF" + struct.pack("<Iqq", self.version, len(self.tensors), len(self.kvs)))
        for kv in self.kvs:
            out += pack_string(kv.key.encode()) + struct.pack("<I", kv.vtype)
            out += pack_value(kv.vtype, kv.value, kv.sub)
        offsets = []
        cursor = 0
        for t in self.tensors:
            offsets.append(cursor if t.offset is None else t.offset)
            cursor += len(t.data) + (-len(t.data)) % align
        for t, off in zip(self.tensors, offsets):
            out += pack_string(t.name.encode()) + struct.pack("<I", len(t.dims))
            out += struct.pack("<" + "q" * len(t.dims), *t.dims) + struct.pack("<IQ", t.ggml_type, off)
        out += b"\0" * ((-len(out)) % align)
        for t in self.tensors:
            out += t.data + b"\0" * ((-len(t.data)) % align)
        return bytes(out)


def _nbytes(dims: list[int], ggml_type: int) -> int | None:
    """The size of a tensor's data, when its type is known to the ``gguf`` package."""
    import gguf

    try:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
    except (KeyError, ValueError):
        return None
    n = 1
    for d in dims:
        n *= d
    return n // block * type_size


def pack_string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def pack_value(vtype: int, value: Any, sub: int | None = None) -> bytes:
    if vtype == STRING:
        return pack_string(value if isinstance(value, bytes) else str(value).encode())
    if vtype == ARRAY:
        assert sub is not None
        head = struct.pack("<IQ", sub, len(value))
        if sub in _FORMATS:
            return head + struct.pack("<" + _FORMATS[sub][1] * len(value), *value)
        return head + b"".join(pack_value(sub, v) for v in value)
    return struct.pack(_FORMATS[vtype], value)


# --- edits of a parsed file, as byte -> byte functions ----------------------------------------

def edited(*edits: Callable[[Gguf], object]) -> Callable[[bytes], bytes]:
    """A function of a file's bytes that parses them, applies ``edits`` in turn, writes back."""

    def apply(data: bytes) -> bytes:
        g = Gguf.parse(data)
        for edit in edits:
            edit(g)
        return g.to_bytes()

    return apply


def set_kv(key: str, vtype: int, value: Any, sub: int | None = None) -> Callable[[Gguf], object]:
    return lambda g: g.set(key, vtype, value, sub)


def set_str(key: str, value: str | bytes) -> Callable[[Gguf], object]:
    return set_kv(key, STRING, value.encode() if isinstance(value, str) else value)


def keep_tokens(n: int) -> Callable[[Gguf], object]:
    """Cut the vocabulary (texts, scores, types) to its first ``n`` entries."""

    def cut(g: Gguf) -> None:
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            kv = g.get(key)
            if kv is not None:
                kv.value = kv.value[:n]

    return cut


def map_tokens(fn: Callable[[int, bytes], bytes]) -> Callable[[Gguf], object]:
    """Replace each token text ``t`` of index ``i`` with ``fn(i, t)``."""

    def apply(g: Gguf) -> None:
        kv = g.get("tokenizer.ggml.tokens")
        if kv is not None:
            kv.value = [fn(i, t) for i, t in enumerate(kv.value)]

    return apply
