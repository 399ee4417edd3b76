"""A deterministic corpus of malformed or unusual GGUF files, and a runner that tries each in
a child interpreter.

Case ``i`` of seed ``s`` is rebuilt from ``(s, i)`` alone (``make_case``), so a parent hands
children numbers, not files. Cases cycle through :data:`FAMILIES` (header fields, metadata
types, values and counts, dropped and repeated keys, truncation, bit flips in the metadata
and tensor-info region, tensor infos, alignment, vocabulary edits, hyperparameters,
``kv_overrides``), each applied to one of two bases: stories260K (a real llama2.c model with
an SPM vocabulary) or a tiny random model with a byte-level BPE vocabulary built here.

Each case in a child: write the file, ``Llama(path, ...)``, then a 3-token completion,
tokenize and detokenize. Its outcome is ``ok``, ``clean`` (an exception of llama_binding's
tree, or a TypeError/ValueError naming the argument at fault), ``unclear`` (any other
exception), ``crash`` (the child died, by a signal or an exit code) or ``hang`` (no answer
within the per-case limit). :func:`run_cases` restarts a child after a crash or hang and
goes on with the next case. ``python tests/_gguf_fuzz.py --child SEED I J ...`` is the child.
"""

from __future__ import annotations

import math
import os
import random
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _gguf_surgery import (  # noqa: E402  # noqa: E402
    ARRAY,
    BOOL,
    FLOAT32,
    FLOAT64,
    INT32,
    INT64,
    STRING,
    UINT8,
    UINT32,
    UINT64,
    Gguf,
    Tensor,
    gguf_layout,
)

__all__ = ["FAMILIES", "Result", "make_case", "run_cases", "tiny_bpe_model"]

MODELS = Path(os.environ.get("LLAMA_BINDING_MODELS", HERE.parent.parent / "shared" / "models"))
STORIES = MODELS / "stories260K.gguf"
#: the argument names a clean TypeError/ValueError of a GGUF case may name
ARGUMENT_NAMES = ("kv_overrides", "prompt", "model_path")


# --- the tiny BPE model -------------------------------------------------------------------------

def _byte_chars() -> list[str]:
    """GPT-2's byte -> printable character map (bytes_to_unicode)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def tiny_bpe_model(seed: int = 0) -> bytes:
    """A 1-layer llama model (n_embd 16) with a 300-token byte-level BPE vocabulary."""
    rng = random.Random(seed)
    chars = _byte_chars()
    words = ["Ġt", "he", "Ġthe", "in", "Ġa", "er", "on", "Ġo", "at", "en", "Ġs", "is", "Ġw", "an", "or", "es",
             "Ġb", "ed", "it", "Ġc", "ar", "Ġf", "ing", "Ġm", "al", "Ġp", "ou", "Ġd", "le", "ic", "Ġh", "ion",
             "Ġl", "as", "Ġn", "Ġe", "om", "Ġon", "ve", "ent", "ro", "Ġre", "ĠT"]
    merges = []
    for w in words:
        for cut in range(1, len(w)):
            a, b = w[:cut], w[cut:]
            if (a in chars or a in words) and (b in chars or b in words):
                merges.append(f"{a} {b}")
                break
    tokens = chars + words + ["<|endoftext|>"]
    n_vocab = len(tokens)
    types = [1] * (n_vocab - 1) + [3]
    n_embd, n_head, n_head_kv, n_ff = 16, 2, 1, 32
    g = Gguf()
    add = g.set
    add("general.architecture", STRING, b"llama")
    add("general.name", STRING, b"tiny-bpe")
    add("llama.context_length", UINT32, 256)
    add("llama.embedding_length", UINT32, n_embd)
    add("llama.block_count", UINT32, 1)
    add("llama.feed_forward_length", UINT32, n_ff)
    add("llama.attention.head_count", UINT32, n_head)
    add("llama.attention.head_count_kv", UINT32, n_head_kv)
    add("llama.rope.dimension_count", UINT32, n_embd // n_head)
    add("llama.attention.layer_norm_rms_epsilon", FLOAT32, 1e-5)
    add("llama.vocab_size", UINT32, n_vocab)
    add("tokenizer.ggml.model", STRING, b"gpt2")
    add("tokenizer.ggml.pre", STRING, b"gpt-2")
    add("tokenizer.ggml.tokens", ARRAY, [t.encode() for t in tokens], STRING)
    add("tokenizer.ggml.token_type", ARRAY, types, INT32)
    add("tokenizer.ggml.merges", ARRAY, [m.encode() for m in merges], STRING)
    add("tokenizer.ggml.bos_token_id", UINT32, n_vocab - 1)
    add("tokenizer.ggml.eos_token_id", UINT32, n_vocab - 1)

    def mat(*dims: int) -> Tensor:
        n = math.prod(dims)
        data = struct.pack(f"<{n}f", *(rng.gauss(0, 0.3) for _ in range(n)))
        return Tensor("", list(dims), 0, data)

    def ones(n: int) -> Tensor:
        return Tensor("", [n], 0, struct.pack(f"<{n}f", *[1.0] * n))

    head = n_embd // n_head
    shapes = {"token_embd.weight": mat(n_embd, n_vocab), "output_norm.weight": ones(n_embd),
              "blk.0.attn_norm.weight": ones(n_embd), "blk.0.attn_q.weight": mat(n_embd, n_embd),
              "blk.0.attn_k.weight": mat(n_embd, head * n_head_kv),
              "blk.0.attn_v.weight": mat(n_embd, head * n_head_kv),
              "blk.0.attn_output.weight": mat(n_embd, n_embd), "blk.0.ffn_norm.weight": ones(n_embd),
              "blk.0.ffn_gate.weight": mat(n_embd, n_ff), "blk.0.ffn_up.weight": mat(n_embd, n_ff),
              "blk.0.ffn_down.weight": mat(n_ff, n_embd)}
    for name, t in shapes.items():
        t.name = name
    g.tensors = list(shapes.values())
    return g.to_bytes()


# --- mutations ----------------------------------------------------------------------------------

Mutation = Callable[[random.Random, bytes], tuple[str, bytes, dict[str, Any]]]

_INTS = [0, 1, 2, 3, 7, 255, 256, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1]
_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-30, 1e30, -0.0, 3.5]
_STRINGS = [b"", b"\xff\xfe", b"\xe2\x96", b"\x00abc", b"a" * 5000, "é▁日本🙂".encode(), b"<0x0A>", b"llama"]
_TOKENIZERS = [b"llama", b"gpt2", b"bert", b"t5", b"rwkv", b"none", b"no_vocab", b"plamo2", b"test",
               b"gemma4", b"whitespace", b"hybriddna", b"nonsense", b""]
_HPARAM_KEYS = ["context_length", "embedding_length", "block_count", "feed_forward_length",
                "attention.head_count", "attention.head_count_kv", "rope.dimension_count",
                "attention.key_length", "attention.value_length", "expert_count", "expert_used_count",
                "vocab_size", "attention.sliding_window", "rope.dimension_sections"]
_FLOAT_KEYS = ["attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "rope.freq_base",
               "rope.scale_linear", "rope.scaling.factor", "attention.group_norm_epsilon", "logit_scale",
               "final_logit_softcapping", "attn_logit_softcapping"]


def _random_value(rng: random.Random, vtype: int) -> tuple[Any, int | None]:
    if vtype == STRING:
        return rng.choice(_STRINGS), None
    if vtype == ARRAY:
        sub = rng.choice([UINT8, INT32, UINT32, FLOAT32, STRING, BOOL, INT64])
        n = rng.choice([0, 1, 2, 5, 64])
        return [_random_value(rng, sub)[0] for _ in range(n)], sub
    if vtype in (FLOAT32, FLOAT64):
        return rng.choice(_FLOATS), None
    if vtype == BOOL:
        return rng.random() < 0.5, None
    bits = {0: 8, 1: 8, 2: 16, 3: 16, 4: 32, 5: 32, 10: 64, 11: 64}[vtype]
    signed = vtype in (1, 3, 5, 11)
    value = rng.choice(_INTS) % (2**bits)
    if signed and value >= 2 ** (bits - 1):
        value -= 2**bits
    return value, None


def m_header(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    out = bytearray(data)
    field = rng.choice(["version", "n_tensors", "n_kv", "magic"])
    if field == "version":
        v = rng.choice([0, 1, 2, 4, 2**31, 2**32 - 1])
        struct.pack_into("<I", out, 4, v)
    elif field == "magic":
        out[rng.randrange(4)] ^= 1 << rng.randrange(8)
    else:
        at = 8 if field == "n_tensors" else 16
        (cur,) = struct.unpack_from("<q", out, at)
        v = rng.choice([cur + 1, cur - 1, 0, -1, 2**40, 2**62, -(2**63), cur * 2])
        struct.pack_into("<q", out, at, v)
        return f"{field}={v}", bytes(out), {}
    return f"{field}", bytes(out), {}


def m_kv_type(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    g = Gguf.parse(data)
    kv = rng.choice(g.kvs)
    vtype = rng.choice([UINT8, INT32, UINT32, UINT64, INT64, FLOAT32, FLOAT64, BOOL, STRING, ARRAY])
    kv.vtype, (kv.value, kv.sub) = vtype, _random_value(rng, vtype)
    return f"{kv.key}:type{vtype}", g.to_bytes(), {}


def m_kv_value(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    g = Gguf.parse(data)
    kv = rng.choice(g.kvs)
    if kv.vtype == ARRAY:
        assert kv.sub is not None
        how = rng.choice(["empty", "cut", "grow", "item"])
        if how == "empty":
            kv.value = []
        elif how == "cut":
            kv.value = kv.value[: rng.randrange(max(len(kv.value), 1))]
        elif how == "grow":
            kv.value = kv.value + [_random_value(rng, kv.sub)[0] for _ in range(rng.choice([1, 7]))]
        elif kv.value:
            kv.value[rng.randrange(len(kv.value))] = _random_value(rng, kv.sub)[0]
        return f"{kv.key}:{how}", g.to_bytes(), {}
    kv.value = _random_value(rng, kv.vtype)[0]
    return f"{kv.key}={kv.value!r}"[:80], g.to_bytes(), {}


def m_kv_count(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    """A string length or array count in the byte stream set to an absurd value."""
    values, _ = gguf_layout(data)
    g = Gguf.parse(data)
    kv = rng.choice([k for k in g.kvs if k.vtype in (STRING, ARRAY)])
    at = values[kv.key] + (4 if kv.vtype == ARRAY else 0)
    v = rng.choice([2**63 - 1, 2**64 - 1, 2**40, 2**32 + 1, len(data), 1 << 20])
    out = bytearray(data)
    struct.pack_into("<Q", out, at, v)
    return f"{kv.key}:count={v}", bytes(out), {}


def m_kv_drop(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    g = Gguf.parse(data)
    dropped = rng.sample([k.key for k in g.kvs], k=rng.choice([1, 1, 2, 3]))
    for key in dropped:
        g.drop(key)
    return "-" + ",".join(dropped), g.to_bytes(), {}


def m_kv_dup(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    g = Gguf.parse(data)
    kv = rng.choice(g.kvs)
    copy = type(kv)(kv.key, kv.vtype, kv.value, kv.sub)
    if rng.random() < 0.5:
        copy.vtype, (copy.value, copy.sub) = UINT32, (7, None)
    g.kvs.insert(rng.randrange(len(g.kvs) + 1), copy)
    return f"dup:{kv.key}", g.to_bytes(), {}


def _meta_end(data: bytes) -> int:
    _, tensors = gguf_layout(data)
    return tensors[-1]["offset"] + 8 if tensors else len(data)


def m_truncate(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    end = _meta_end(data)
    at = rng.randrange(end) if rng.random() < 0.7 else rng.randrange(end, len(data))
    return f"at{at}", data[:at], {}


def m_bitflip(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    end = _meta_end(data)
    out = bytearray(data)
    spots = []
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        pos = rng.randrange(24, end)
        out[pos] ^= 1 << rng.randrange(8)
        spots.append(pos)
    return "flip" + ",".join(map(str, spots)), bytes(out), {}


def m_tensor(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    g = Gguf.parse(data)
    t = rng.choice(g.tensors)
    how = rng.choice(["dim", "ndims", "type", "offset", "name", "dupname", "drop", "swap"])
    if how == "dim":
        i = rng.randrange(len(t.dims))
        t.dims[i] = rng.choice([0, -1, 1, t.dims[i] + 1, t.dims[i] * 2, 2**31, 2**62])
    elif how == "ndims":
        t.dims = t.dims + [1] * rng.choice([1, 2]) if rng.random() < 0.5 else t.dims[:1]
    elif how == "type":
        t.ggml_type = rng.choice([1, 2, 3, 4, 5, 6, 8, 12, 30, 39, 40, 41, 255, 2**31])
    elif how == "offset":
        t.offset = rng.choice([1, 3, 16, 2**40, len(data), 0])
    elif how == "name":
        t.name = rng.choice(["", "x" * 70, "blk.99.attn_q.weight", "token_embd.weight\x00x", "é"])
    elif how == "dupname":
        t.name = rng.choice(g.tensors).name
    elif how == "drop":
        g.tensors.remove(t)
    else:
        other = rng.choice(g.tensors)
        t.data, other.data = other.data, t.data
    return f"{t.name}:{how}", g.to_bytes(), {}


def m_alignment(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    g = Gguf.parse(data)
    if rng.random() < 0.6:  # a valid file laid out with another alignment
        a = rng.choice([1, 2, 4, 8, 16, 32, 64, 128])
        return f"valid{a}", g.to_bytes(alignment=a), {}
    vtype = rng.choice([UINT32, UINT32, UINT64, INT32, STRING])
    value = rng.choice([0, 3, 7, 24, 2**31, 2**32 - 1]) if vtype != STRING else b"32"
    g.drop("general.alignment")
    g.set("general.alignment", vtype, value)
    return f"declared{value!r}", g.to_bytes(layout=rng.choice([32, 8, 1])), {}


def _vocab_edit(rng: random.Random, g: Gguf) -> str:
    toks = g.get("tokenizer.ggml.tokens")
    assert toks is not None
    how = rng.choice(["model", "model", "n", "empty", "invalid", "nobytes", "special", "flags", "types",
                      "scores", "merges"])
    if how == "model":
        name = rng.choice(_TOKENIZERS)
        g.set("tokenizer.ggml.model", STRING, name)
        return f"model={name.decode()}"
    if how == "n":
        n = rng.choice([0, 1, 2, 12])
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            kv = g.get(key)
            if kv is not None:
                kv.value = kv.value[:n]
        if rng.random() < 0.5:
            g.set("tokenizer.ggml.add_bos_token", BOOL, True)
        return f"n={n}"
    if how == "empty":
        toks.value = [b"" for _ in toks.value]
        return "all-empty"
    if how == "invalid":
        for i in rng.sample(range(len(toks.value)), k=min(len(toks.value), rng.choice([1, 5, 50]))):
            bad = rng.choice([b"\xff", b"\xe2\x96", b"\xc3", b"\x80" + str(i).encode(), b"\xed\xa0\x80"])
            toks.value[i] = bad + (str(i).encode() if rng.random() < 0.5 else b"")
        return "invalid-utf8"
    if how == "nobytes":
        toks.value = [b"#" + t if t.startswith(b"<0x") or len(t) == 1 else t for t in toks.value]
        return "no-byte-tokens"
    if how == "special":
        key = rng.choice(["bos", "eos", "unknown", "seperator", "padding", "eot", "mask"])
        n = len(toks.value)
        g.set(f"tokenizer.ggml.{key}_token_id", UINT32, rng.choice([0, n - 1, n, 2**31, 2**32 - 1]))
        return f"{key}-id"
    if how == "flags":
        key = rng.choice(["add_bos_token", "add_eos_token", "add_sep_token", "add_space_prefix"])
        g.set(f"tokenizer.ggml.{key}", BOOL, rng.random() < 0.7)
        return key
    if how == "types":
        tt = g.get("tokenizer.ggml.token_type")
        if tt is not None:
            for i in rng.sample(range(len(tt.value)), k=min(len(tt.value), 20)):
                tt.value[i] = rng.choice([0, 2, 3, 4, 5, 6, 7, -1, 99])
        return "token-types"
    if how == "scores":
        sc = g.get("tokenizer.ggml.scores")
        if sc is not None:
            sc.value = [rng.choice(_FLOATS) for _ in sc.value[: len(sc.value) - rng.choice([0, 1])]]
        return "scores"
    mg = g.get("tokenizer.ggml.merges")
    if mg is not None:
        mg.value = [rng.choice([b"", b" ", b"a", b"\xff \xfe", m + b" x"]) for m in mg.value]
    else:
        g.set("tokenizer.ggml.merges", ARRAY, [b"a b", b"", b"\xff"], STRING)
    return "merges"


def m_vocab(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    g = Gguf.parse(data)
    names = [_vocab_edit(rng, g) for _ in range(rng.choice([1, 1, 2]))]
    return "+".join(names), g.to_bytes(), {}


def _hparam(rng: random.Random, g: Gguf) -> tuple[str, int, Any, int | None]:
    arch = g.arch or "llama"
    if rng.random() < 0.5:
        key = f"{arch}.{rng.choice(_FLOAT_KEYS)}"
        return key, FLOAT32, rng.choice(_FLOATS), None
    key = f"{arch}.{rng.choice(_HPARAM_KEYS)}"
    bc = g.get(f"{arch}.block_count")
    n_layer = int(bc.value) if bc is not None and isinstance(bc.value, int) else 1
    if rng.random() < 0.3:
        return key, ARRAY, [rng.choice([0, 1, 2, 3, 4, 8, 16]) for _ in range(n_layer)], UINT32
    return key, UINT32, rng.choice([0, 1, 2, 3, 4, 6, 7, 8, 16, 64, 2**31, 2**32 - 1]), None


def m_hparams(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    g = Gguf.parse(data)
    key, vtype, value, sub = _hparam(rng, g)
    g.set(key, vtype, value, sub)
    return f"{key}={value!r}"[:80], g.to_bytes(), {}


def m_overrides(rng: random.Random, data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    g = Gguf.parse(data)
    overrides: dict[str, Any] = {}
    for _ in range(rng.choice([1, 1, 2])):
        r = rng.random()
        if r < 0.5:
            key, vtype, value, _ = _hparam(rng, g)
            if vtype == ARRAY:
                value = value[0]
            overrides[key] = float(value) if vtype == FLOAT32 else int(value) % 2**63
        elif r < 0.7:
            overrides["tokenizer.ggml.model"] = rng.choice(_TOKENIZERS).decode()
        elif r < 0.85:
            key = rng.choice(["tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"])
            overrides[key] = rng.random() < 0.5
        else:
            kv = rng.choice(g.kvs)
            overrides[kv.key] = rng.choice([True, 0, -1, 2**40, 1.5, math.nan, "x", "é" * 10])
    # JSON cannot carry NaN/inf portably: the child reads these back with json (allow_nan)
    return ",".join(overrides)[:80], data, overrides


FAMILIES: dict[str, Mutation] = {
    "header": m_header, "kv-type": m_kv_type, "kv-value": m_kv_value, "kv-count": m_kv_count,
    "kv-drop": m_kv_drop, "kv-dup": m_kv_dup, "truncate": m_truncate, "bitflip": m_bitflip,
    "tensor": m_tensor, "alignment": m_alignment, "vocab": m_vocab, "hparams": m_hparams,
    "overrides": m_overrides,
}
_BASES = ("stories", "tiny")
_base_cache: dict[str, bytes] = {}


def _base(name: str) -> bytes:
    if name not in _base_cache:
        _base_cache[name] = STORIES.read_bytes() if name == "stories" else tiny_bpe_model()
    return _base_cache[name]


def case_name(seed: int, index: int) -> str:
    families = list(FAMILIES)
    return f"{families[index % len(families)]}/{_BASES[(index // len(families)) % 2]}/{seed}.{index}"


def make_case(seed: int, index: int) -> tuple[str, bytes, dict[str, Any]]:
    """Case ``index`` of the corpus of ``seed``: (name, file bytes, kv_overrides)."""
    families = list(FAMILIES)
    family = families[index % len(families)]
    base = _BASES[(index // len(families)) % 2]
    rng = random.Random(f"{seed}:{index}")
    try:
        what, data, overrides = FAMILIES[family](rng, _base(base))
    except (struct.error, ValueError, IndexError, OverflowError, KeyError, UnicodeDecodeError) as exc:
        what, data, overrides = f"unmutated({type(exc).__name__})", _base(base), {}
    return f"{family}/{base}/{seed}.{index}: {what}", data, overrides


# --- running cases in children --------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    case: str  # the case's id as given to run_cases
    name: str  # its description
    outcome: str  # ok, clean, unclear, crash, hang
    detail: str  # exception class and message, or how the child died


CHILD_ENV_DROP = ("PYTEST_CURRENT_TEST",)


def child_env(src: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
    env["GGML_NO_BACKTRACE"] = "1"
    if src:
        env["LLAMA_BINDING_FUZZ_SRC"] = str(Path(src).resolve())
    return env


def run_cases(cases: Sequence[str], argv: Callable[[Sequence[str]], list[str]], *, per_case: float = 30,
              startup: float = 60, group: int = 8, env: dict[str, str] | None = None,
              names: dict[str, str] | None = None) -> list[Result]:
    """Run ``cases`` (ids) in children ``argv(ids)`` of ``group`` cases each; after a crash
    or a hang, go on in a new child with the case after it."""
    results: list[Result] = []
    todo = list(cases)
    while todo:
        batch, todo = todo[:group], todo[group:]
        while batch:
            done, rest = _run_child(batch, argv, per_case, startup, env, names or {})
            results.extend(done)
            batch = rest
    return results


def _run_child(batch: list[str], argv: Callable[[Sequence[str]], list[str]], per_case: float,
               startup: float, env: dict[str, str] | None,
               names: dict[str, str]) -> tuple[list[Result], list[str]]:
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv(batch), stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        results: list[Result] = []
        current: str | None = None
        current_name = ""
        deadline = time.monotonic() + startup + per_case
        buf = b""
        hung = False
        while True:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or not sel.select(timeout):
                hung = True
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if not line.startswith("@@"):
                    continue
                parts = line[2:].split("\t")
                if parts[0] == "BEGIN":
                    current, current_name = parts[1], parts[2] if len(parts) > 2 else ""
                    deadline = time.monotonic() + per_case
                elif parts[0] == "END" and len(parts) >= 4:
                    results.append(Result(parts[1], current_name or names.get(parts[1], ""), parts[2],
                                          "\t".join(parts[3:])))
                    current = None
        if hung:
            os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        sel.close()
        proc.stdout.close()
        err.seek(0)
        tail = [x for x in err.read().decode("utf-8", "replace").splitlines() if x.strip()][-2:]
    finished = {r.case for r in results}
    rest = [c for c in batch if c not in finished]
    if not rest:
        return results, []
    victim = current if current is not None else rest[0]
    if hung:
        how = "hang", f"no answer within {per_case:.0f} s"
    elif rc < 0:
        how = "crash", f"killed by {signal.Signals(-rc).name}: {' | '.join(tail)[-300:]}"
    else:
        how = "crash", f"the child exited with {rc}: {' | '.join(tail)[-300:]}"
    results.append(Result(victim, current_name or names.get(victim, ""), *how))
    return results, [c for c in rest if c != victim]


# --- the child --------------------------------------------------------------------------------

def classify(exc: BaseException, argument_names: Iterable[str]) -> str:
    """``clean`` for an exception of llama_binding's tree, or a TypeError/ValueError whose
    message names one of ``argument_names``; else ``unclear``."""
    from llama_binding.errors import LlamaError

    if isinstance(exc, LlamaError):
        return "clean"
    if isinstance(exc, (TypeError, ValueError)) and any(n in str(exc) for n in argument_names):
        return "clean"
    return "unclear"


def _prepare_child() -> None:
    """Import llama_binding from $LLAMA_BINDING_FUZZ_SRC when set, not from the editable install."""
    src = os.environ.get("LLAMA_BINDING_FUZZ_SRC")
    if src:
        sys.path.insert(0, src)
        sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def report(case: str, name: str, fn: Callable[[], object], argument_names: Iterable[str]) -> None:
    """Run one case, framed by the @@BEGIN / @@END lines the parent reads."""
    _say(f"@@BEGIN\t{case}\t{name}")
    try:
        fn()
    except Exception as exc:  # every exception is an outcome here
        outcome = classify(exc, argument_names)
        message = " ".join(str(exc).split())[:400]
        _say(f"@@END\t{case}\t{outcome}\t{type(exc).__module__}.{type(exc).__name__}: {message}")
    else:
        _say(f"@@END\t{case}\tok\t")


def try_gguf(path: str, overrides: dict[str, Any]) -> None:
    """Load, generate 3 tokens, tokenize and detokenize."""
    from llama_binding import Llama

    with Llama(path, n_ctx=64, n_batch=32, n_threads=1, verbose=False, kv_overrides=overrides or None) as llm:
        llm.create_completion("Once upon a time", max_tokens=3, temperature=0)
        tokens = llm.tokenize("héllo\n wörld 🙂".encode())
        llm.detokenize(tokens)


def child_main(seed: int, indexes: Sequence[int]) -> None:
    _prepare_child()
    import json

    folder = tempfile.mkdtemp(prefix="gguf-fuzz-")
    for index in indexes:
        name, data, overrides = make_case(seed, index)
        path = os.path.join(folder, f"case{index}.gguf")
        with open(path, "wb") as fh:
            fh.write(data)
        plain = json.loads(json.dumps(overrides))
        report(str(index), name.replace("\t", " "), lambda p=path, o=plain: try_gguf(p, o), ARGUMENT_NAMES)
        os.unlink(path)
    os.rmdir(folder)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        child_main(int(sys.argv[2]), [int(i) for i in sys.argv[3:]])
    else:
        sys.exit("usage: _gguf_fuzz.py --child SEED INDEX... (see bench/fuzz.py)")
