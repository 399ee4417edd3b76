"""Saved context states with our own header in front.

llama.cpp checks only the shapes of a state it restores, so a state from another model of
the same shape, or from a context with another KV layout, would load silently and give
garbage. A :class:`LlamaState` therefore carries a header: the model's fingerprint, the
context options that shape the memory, the active adapters, what it holds (the whole
context or one sequence) and its tokens; and a SHA-256 of all of it, so that a truncated or
damaged blob is refused before llama.cpp reads a byte.

Layout of :meth:`LlamaState.to_bytes`::

    b"LBSTATE\\0" | u32 version | u32 header length | header (JSON, UTF-8)
    | u64 payload length | payload (llama.cpp's state) | SHA-256 of everything before
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StateError

__all__ = ["LlamaState", "check_payload", "file_fingerprint"]

MAGIC = b"LBSTATE\0"
VERSION = 1
_HEAD = struct.Struct("<8sII")
_LEN = struct.Struct("<Q")
_DIGEST = 32
_SAMPLE = 1 << 16  # bytes per sampled window of a model file
_WINDOWS = 16
_U32 = struct.Struct("<I")
#: llama.cpp's magic at the start of a sequence state (llama-context.cpp ``io_magic``)
SEQ_MAGIC = 0xAF143CD8


def file_fingerprint(path: str | os.PathLike[str], extra: Sequence[object] = ()) -> str:
    """A SHA-256 over a model file's size, its first MiB, ``_WINDOWS`` windows spread over
    the rest (the weights) and its last window, plus ``extra``: two files that differ in
    their weights differ here without reading gigabytes."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(f"{size}|{'|'.join(map(str, extra))}".encode())
    with p.open("rb") as f:
        h.update(f.read(1 << 20))
        for k in range(1, _WINDOWS + 1):
            f.seek(max(0, size * k // (_WINDOWS + 1)))
            h.update(f.read(_SAMPLE))
        f.seek(max(0, size - _SAMPLE))
        h.update(f.read(_SAMPLE))
    return h.hexdigest()


@dataclass(frozen=True)
class LlamaState:
    """A saved state: llama.cpp's bytes (``payload``) and what they belong to.

    ``scope`` is ``"context"`` (every sequence) or ``"sequence"`` (one sequence, restorable
    into any sequence id); ``tokens`` are the tokens the memory held.
    """

    model: str
    context: Mapping[str, Any]
    adapters: tuple[tuple[str, float], ...]
    scope: str
    tokens: tuple[int, ...]
    payload: bytes = field(repr=False)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def llama_state_size(self) -> int:
        """Bytes of llama.cpp's own state (llama-cpp-python's name)."""
        return len(self.payload)

    def header(self) -> dict[str, Any]:
        return {"model": self.model, "context": dict(self.context),
                "adapters": [list(a) for a in self.adapters], "scope": self.scope,
                "tokens": list(self.tokens)}

    def to_bytes(self) -> bytes:
        head = json.dumps(self.header(), sort_keys=True, separators=(",", ":")).encode()
        body = b"".join([_HEAD.pack(MAGIC, VERSION, len(head)), head, _LEN.pack(len(self.payload)),
                         self.payload])
        return body + hashlib.sha256(body).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> LlamaState:
        """Parse :meth:`to_bytes`; a damaged, truncated or foreign blob raises StateError."""
        view = memoryview(data)
        if len(view) < _HEAD.size + _LEN.size + _DIGEST or bytes(view[:8]) != MAGIC:
            raise StateError("not a saved llama_binding state (no LBSTATE header)")
        if hashlib.sha256(view[:-_DIGEST]).digest() != bytes(view[-_DIGEST:]):
            raise StateError("the saved state is damaged or truncated (checksum mismatch)")
        _, version, n_head = _HEAD.unpack_from(view, 0)
        if version != VERSION:
            raise StateError(f"saved state version {version} is not supported (this version reads {VERSION})")
        at = _HEAD.size
        try:
            head = json.loads(bytes(view[at : at + n_head]))
            (n_payload,) = _LEN.unpack_from(view, at + n_head)
            start = at + n_head + _LEN.size
            payload = bytes(view[start : start + n_payload])
            if start + n_payload != len(view) - _DIGEST:
                raise ValueError("length mismatch")
            return cls(model=str(head["model"]), context=dict(head["context"]),
                       adapters=tuple((str(p), float(s)) for p, s in head["adapters"]),
                       scope=str(head["scope"]), tokens=tuple(int(t) for t in head["tokens"]),
                       payload=payload)
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise StateError(f"the saved state's header is malformed: {exc}") from None

    def __post_init__(self) -> None:
        if self.scope not in ("context", "sequence"):
            raise StateError(f"a state's scope is 'context' or 'sequence', not {self.scope!r}")

    def check_tokens(self, n_ctx: int, n_vocab: int) -> None:
        """Raise StateError unless the recorded tokens fit a context of ``n_ctx`` tokens
        (per sequence) and a vocabulary of ``n_vocab``: a forged header must not make the
        Llama believe that its memory holds what it cannot."""
        if len(self.tokens) > n_ctx:
            raise StateError(f"the state records {len(self.tokens)} tokens, more than the context "
                             f"holds ({n_ctx}): damaged or forged")
        bad = [t for t in self.tokens if not 0 <= t < n_vocab]
        if bad:
            raise StateError(f"the state records token ids outside the vocabulary ({bad[:5]}): "
                             "damaged or forged")

    def check_fits(self, model: str, context: Mapping[str, Any],
                   adapters: tuple[tuple[str, float], ...]) -> None:
        """Raise StateError unless this state was saved with this model, these context
        options and these adapters."""
        if self.model != model:
            raise StateError("the state was saved with another model (fingerprints differ)")
        diff = sorted(k for k in set(self.context) | set(context) if self.context.get(k) != context.get(k))
        if diff:
            pairs = ", ".join(f"{k}: saved {self.context.get(k)!r}, here {context.get(k)!r}" for k in diff)
            raise StateError(f"the state was saved with other context options ({pairs})")
        if self.adapters != adapters:
            raise StateError(f"the state was saved with adapters {list(self.adapters)}, "
                             f"but {list(adapters)} are active")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` atomically (a temporary file, then a rename)."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        os.replace(tmp, p)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LlamaState:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise StateError(f"cannot read the state file {os.fspath(path)!r}: {exc}") from None
        return cls.from_bytes(data)


def check_payload(payload: bytes, arch: str, sequence: bool) -> None:
    """Refuse llama.cpp state bytes whose leading fields do not belong to a model of
    architecture ``arch`` before llama.cpp parses them.

    llama.cpp checks each size it reads against the context before it allocates, with one
    exception: a whole-context state starts with the architecture's name, and its u32
    length is allocated as read (random bytes there made it take up to 4 GiB before
    failing). A sequence state starts with a magic number instead.
    """
    if sequence:
        if len(payload) < 8 or _U32.unpack_from(payload, 0)[0] != SEQ_MAGIC:
            raise StateError("the state's payload is not llama.cpp's state of a sequence (wrong magic)")
        return
    name = arch.encode()
    if len(payload) < _U32.size or _U32.unpack_from(payload, 0)[0] != len(name) \
            or payload[_U32.size : _U32.size + len(name)] != name:
        raise StateError(f"the state's payload is not llama.cpp's state of a {arch!r} model "
                         "(its architecture field differs: damaged or forged)")
