"""Bad inputs to ``Llama`` raise clear Python exceptions and never take the interpreter down.

Every case runs in a child interpreter: a native crash (SIGSEGV, a ``GGML_ASSERT`` abort,
SIGFPE) shows there as a negative return code instead of killing pytest. The child reports
each case on one line (``@@label<TAB>exception class<TAB>its MRO<TAB>message``, or ``OK``);
cases that cannot crash share a child, each loading case that reaches llama.cpp's parser
has its own. A test then checks the class and that the message names the problem.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable

import pytest
from _child import Child, raised
from _gguf_surgery import (
    ARRAY,
    FLOAT32,
    UINT32,
    block_count,
    edited,
    first_tensor,
    gguf_layout,
    header,
    keep_tokens,
    map_tokens,
    patched,
    repeat_a_token,
    set_kv,
    set_str,
)

# --- GGUF surgery (tests/_gguf_surgery.py) ---------------------------------------------------

_gguf_layout, _patched, _header = gguf_layout, patched, header
_first_tensor, _block_count, _repeat_a_token = first_tensor, block_count, repeat_a_token
_EPS = "llama.attention.layer_norm_rms_epsilon"


# (id, how to damage stories260K's bytes, kv_overrides, fragments the ModelLoadError names)
DAMAGED: list[tuple[str, Callable[[bytes], bytes], dict[str, object], tuple[str, ...]]] = [
    ("truncated-half", lambda d: d[: len(d) // 2], {}, ("corrupted or incomplete",)),
    ("truncated-100-bytes", lambda d: d[:100], {}, ("key-value",)),
    ("magic-only", lambda d: d[:4], {}, ("header",)),
    ("absurd-n_tensors", lambda d: _header(2**62, 0), {}, ("number of tensors",)),
    ("negative-n_tensors", lambda d: _header(-1, 0), {}, ("number of tensors",)),
    ("absurd-n_kv", lambda d: _header(0, 2**62), {}, ("number of key value pairs",)),
    ("n_tensors-off-by-one", lambda d: _patched(d, "<q", 8, struct.unpack_from("<q", d, 8)[0] + 1), {},
     ("offset",)),
    ("tensor-data-offset", _first_tensor("offset", "<Q", 2**60), {}, ("offset",)),
    ("tensor-shape-overflow", _first_tensor("dims", "<q", 2**62), {}, ("overflow",)),
    ("tensor-n_dims", _first_tensor("n_dims", "<I", 1000), {}, ("dimensions",)),
    ("tensor-type", _first_tensor("type", "<I", 9999), {}, ("type",)),
    ("tensor-name-length", _first_tensor("name_len", "<Q", 2**62), {}, ("string length",)),
    # llama.cpp GGML_ASSERTs (aborts the process) on these; core/model.py checks them first
    ("block_count-0", _block_count(0), {}, ("block_count",)),
    ("block_count-1000", _block_count(1000), {}, ("block_count",)),
    ("override-block_count-0", lambda d: d, {"llama.block_count": 0}, ("block_count",)),
    ("override-nextn_predict_layers", lambda d: d, {"llama.nextn_predict_layers": 99}, ("nextn",)),
    ("override-expert_count", lambda d: d, {"llama.expert_count": 8}, ("expert",)),
    ("repeated-token-text", _repeat_a_token, {}, ("repeats", "tokenizer.ggml.tokens")),
    # vocabularies llama.cpp's tokenizers abort on (std::out_of_range, GGML_ASSERT, GGML_ABORT)
    ("vocab-0-tokens", edited(keep_tokens(0)), {}, ("tokenizer.ggml.tokens", "empty")),
    ("vocab-1-token", edited(keep_tokens(1)), {}, ("tokenizer.ggml.tokens", "byte")),
    ("vocab-all-texts-empty", edited(map_tokens(lambda i, t: b"")), {}, ("tokenizer.ggml.tokens", "byte")),
    ("vocab-no-byte-tokens", edited(map_tokens(lambda i, t: b"#" + t if t.startswith(b"<0x") else t)), {},
     ("<0x00>", "tokenizer.ggml.model")),
    ("vocab-newline-byte-invalid-utf8", edited(map_tokens(lambda i, t: b"\xff\xfe" if t == b"<0x0A>" else t)),
     {}, ("<0x0A>",)),
    ("vocab-model-bert", edited(set_str("tokenizer.ggml.model", "bert")), {}, ("bert", "byte")),
    ("vocab-model-none", edited(set_str("tokenizer.ggml.model", "none")), {}, ("'none'", "tokenizer")),
    ("vocab-model-rwkv", edited(set_str("tokenizer.ggml.model", "rwkv")), {}, ("rwkv", "byte")),
    ("override-vocab-model-none", lambda d: d, {"tokenizer.ggml.model": "none"}, ("'none'",)),
    # hyperparameters ggml asserts on at the first decode or when the context is made
    ("rms-epsilon-nan", edited(set_kv(_EPS, FLOAT32, float("nan"))), {}, (_EPS, "nan")),
    ("rms-epsilon-negative", edited(set_kv(_EPS, FLOAT32, -1.0)), {}, (_EPS, "-1.0")),
    ("rms-epsilon-inf", edited(set_kv(_EPS, FLOAT32, float("inf"))), {}, (_EPS, "inf")),
    ("layer-norm-epsilon-nan", edited(set_kv("llama.attention.layer_norm_epsilon", FLOAT32, float("nan"))),
     {}, ("layer_norm_epsilon",)),
    ("override-rms-epsilon-nan", lambda d: d, {_EPS: float("nan")}, (_EPS, "nan")),
    ("override-rms-epsilon-negative", lambda d: d, {_EPS: -1e-5}, (_EPS,)),
    ("head_count_kv-per-layer-varies",
     edited(set_kv("llama.attention.head_count_kv", ARRAY, [4, 4, 4, 4, 2], UINT32)), {}, ("head_count_kv",)),
    ("head_count_kv-per-layer-not-dividing",
     edited(set_kv("llama.attention.head_count_kv", ARRAY, [4, 4, 4, 4, 3], UINT32)), {},
     ("head_count_kv", "divide")),
]

LOAD = "report('load', lambda: Llama(sys.argv[1], n_ctx=64, kv_overrides=json.loads(sys.argv[2]) or None))\n"


@pytest.mark.parametrize("damage, overrides, naming", [d[1:] for d in DAMAGED], ids=[d[0] for d in DAMAGED])
def test_damaged_gguf_raises_model_load_error(tmp_path: Path, stories260k: Path,
                                              damage: Callable[[bytes], bytes], overrides: dict[str, object],
                                              naming: tuple[str, ...]) -> None:
    path = tmp_path / "damaged.gguf"
    path.write_bytes(damage(stories260k.read_bytes()))
    outcome = Child(LOAD, str(path), json.dumps(overrides))["load"]
    raised(outcome, "ModelLoadError", naming=naming)
    assert outcome.is_a("OSError")
    assert outcome.name == "ModelLoadError" and path.name in outcome.message


def test_repeated_token_text_is_refused_for_a_vocab_only_load(tmp_path: Path, stories260k: Path) -> None:
    path = tmp_path / "repeated.gguf"
    path.write_bytes(_repeat_a_token(stories260k.read_bytes()))
    outcome = Child("report('load', lambda: Llama(sys.argv[1], vocab_only=True))\n", str(path))["load"]
    raised(outcome, "ModelLoadError", naming=("repeats",))


# --- paths that are no model file (checked before llama.cpp sees them) -------------------

@pytest.fixture(scope="module")
def paths_child(tmp_path_factory: pytest.TempPathFactory) -> Child:
    folder = tmp_path_factory.mktemp("paths")
    text = folder / "model.gguf"
    text.write_text("hello, I am not a model\n")
    empty = folder / "empty.gguf"
    empty.write_bytes(b"")
    code = (
        "for label, path in zip(('missing', 'directory', 'text', 'empty'), sys.argv[1:]):\n"
        "    report(label, lambda: Llama(path))\n"
    )
    return Child(code, str(folder / "missing.gguf"), str(folder), str(text), str(empty))


@pytest.mark.parametrize("label, naming", [
    ("missing", ("not found", "missing.gguf")),
    ("directory", ("directory",)),
    ("text", ("not a gguf", "model.gguf")),
    ("empty", ("not a gguf", "empty.gguf")),
])
def test_bad_model_path_raises_model_load_error(paths_child: Child, label: str,
                                                naming: tuple[str, ...]) -> None:
    outcome = paths_child[label]
    raised(outcome, "ModelLoadError", naming=naming)
    assert outcome.is_a("OSError", "LlamaError")  # (a missing file is not a FileNotFoundError)


# --- the context size ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def context_child(stories260k: Path) -> Child:
    code = (
        "M = sys.argv[1]\n"
        "llm = Llama(M, n_ctx=8)\n"
        "report('n_ctx', llm.n_ctx)\n"
        "long = 'Once upon a time ' * 100\n"
        "report('overflow', lambda: llm.create_completion(long, max_tokens=4))\n"
        "report('overflow-stream', lambda: list(llm.create_completion(long, max_tokens=4, stream=True)))\n"
        "report('overflow-generate', lambda: next(llm.generate(llm.tokenize(long.encode()))))\n"
        "report('overflow-eval', lambda: llm.eval(llm.tokenize(long.encode())))\n"
        "report('usable-after', lambda: llm.create_completion('Once', max_tokens=2)['usage'])\n"
        "report('n_ctx-negative', lambda: Llama(M, n_ctx=-1))\n"
        "report('n_ctx-too-big', lambda: Llama(M, n_ctx=2**33))\n"
    )
    return Child(code, str(stories260k))


def test_tiny_n_ctx_is_padded_and_a_longer_prompt_overflows(context_child: Child) -> None:
    n_ctx = int(context_child["n_ctx"].message)
    assert n_ctx >= 8  # llama.cpp pads n_ctx up (to 256 today)
    for label in ("overflow", "overflow-stream", "overflow-generate", "overflow-eval"):
        raised(context_child[label], "ContextOverflowError", naming=(str(n_ctx),))
        assert context_child[label].is_a("ValueError")
    assert context_child["usable-after"].name == "OK", context_child["usable-after"]


def test_negative_n_ctx_is_refused_by_name(context_child: Child) -> None:
    raised(context_child["n_ctx-negative"], "ValueError", "ContextCreateError", naming=("n_ctx", "-1"))


def test_n_ctx_beyond_uint32_is_refused_not_truncated(context_child: Child) -> None:
    raised(context_child["n_ctx-too-big"], "ValueError", naming=("n_ctx",))


# constructor options that llama.cpp aborts on (GGML_ASSERT, SIGFPE): one child each
CRASHY_OPTIONS = [
    ("n_batch-0", "dict(n_batch=0)", "n_batch"),
    ("type_k-out-of-range", "dict(type_k=999)", "type_k"),
    ("type_v-removed-type", "dict(type_v=4)", "type_v"),  # GGML_TYPE_Q4_2, gone: block size 0
]


@pytest.mark.parametrize("options, naming", [c[1:] for c in CRASHY_OPTIONS],
                         ids=[c[0] for c in CRASHY_OPTIONS])
def test_context_options_llama_cpp_aborts_on_are_refused(stories260k: Path, options: str,
                                                         naming: str) -> None:
    code = (f"def case():\n    llm = Llama(sys.argv[1], n_ctx=64, **{options})\n"
            "    return llm.create_completion('Once', max_tokens=2)['usage']\n"
            "report('case', case)\n")
    raised(Child(code, str(stories260k))["case"], "ValueError", "ContextCreateError", naming=(naming,))


# --- sampling without logits ---------------------------------------------------------------

SAMPLE_CASES = [
    ("sample-before-eval", "llm.sample()"),
    ("sample-idx-without-logits", "llm.eval([1, 2]); llm.sample(idx=0)"),
    ("sample-idx-out-of-range", "llm.eval([1]); llm.sample(idx=5)"),
]


@pytest.mark.parametrize("statement", [c[1] for c in SAMPLE_CASES], ids=[c[0] for c in SAMPLE_CASES])
def test_sample_without_logits_raises(stories260k: Path, statement: str) -> None:
    code = f"llm = Llama(sys.argv[1], n_ctx=64)\ndef case():\n    {statement}\nreport('sample', case)\n"
    raised(Child(code, str(stories260k))["sample"], "IndexError", "ValueError", naming=("logits",))


# --- grammar, keywords, wrong types, kv_overrides: one child ------------------------------

API_CASES: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    # (label, expression, acceptable classes, fragments the message names)
    ("grammar-syntax", "llm.create_completion('Once', grammar='root ::= [a-')", ("SamplerError",),
     ("grammar",)),
    ("grammar-not-gbnf", "llm.create_completion('Once', grammar='this is not gbnf')", ("SamplerError",),
     ("grammar",)),
    ("grammar-no-root", "llm.create_completion('Once', grammar='foo ::= \"a\"')", ("SamplerError",),
     ("root",)),
    ("grammar-stream", "list(llm.create_completion('Once', grammar='root ::= [a-', stream=True))",
     ("SamplerError",), ("grammar",)),
    ("grammar-type", "llm.create_completion('Once', grammar=5)", ("TypeError",), ("grammar",)),
    # unknown keywords are accepted with a UserWarning, as llama-cpp-python's clients need
    # (tests/test_compat.py)
    ("model_path-int", "Llama(123)", ("TypeError",), ("model_path",)),
    ("model_path-none", "Llama(None)", ("TypeError",), ("model_path",)),
    ("n_ctx-str", "Llama(M, n_ctx='big')", ("TypeError", "ValueError"), ("n_ctx",)),
    ("n_gpu_layers-str", "Llama(M, n_gpu_layers='x')", ("TypeError", "ValueError"), ("n_gpu_layers",)),
    ("seed-str", "Llama(M, seed='x')", ("TypeError", "ValueError"), ("seed",)),
    ("prompt-none", "llm.create_completion(None)", ("TypeError", "ValueError"), ("prompt",)),
    ("max_tokens-str", "llm.create_completion('Once', max_tokens='x')", ("TypeError", "ValueError"),
     ("max_tokens",)),
    ("stop-int", "llm.create_completion('Once', stop=5)", ("TypeError", "ValueError"), ("stop",)),
    ("top_k-str", "llm.create_completion('Once', top_k='x')", ("TypeError", "ValueError"), ("top_k",)),
    ("kv_overrides-list", "Llama(M, kv_overrides=[('llama.context_length', 1)])", ("TypeError",),
     ("kv_overrides",)),
    ("kv_overrides-int-key", "Llama(M, kv_overrides={5: 1})", ("TypeError",), ("kv_overrides",)),
    ("kv_overrides-list-value", "Llama(M, kv_overrides={'llama.context_length': [1]})", ("TypeError",),
     ("llama.context_length",)),
    ("kv_overrides-kind-mismatch", "Llama(M, kv_overrides={'llama.context_length': 'long'})",
     ("TypeError", "ValueError"), ("llama.context_length",)),
    ("kv_overrides-long-key", "Llama(M, kv_overrides={'k' * 200: 1})", ("ValueError",), ("kv_overrides",)),
    ("vocab-only-completion", "Llama(M, vocab_only=True).create_completion('Once')", ("LlamaError",),
     ("vocab_only",)),
]


@pytest.fixture(scope="module")
def api_child(stories260k: Path) -> Child:
    code = "M = sys.argv[1]\nllm = Llama(M, n_ctx=64)\n" + "".join(
        f"report({label!r}, lambda: {expr})\n" for label, expr, _, _ in API_CASES)
    return Child(code, str(stories260k))


@pytest.mark.parametrize("label, classes, naming", [(c[0], c[2], c[3]) for c in API_CASES],
                         ids=[c[0] for c in API_CASES])
def test_bad_argument_raises_a_clear_exception(api_child: Child, label: str, classes: tuple[str, ...],
                                               naming: tuple[str, ...]) -> None:
    raised(api_child[label], *classes, naming=naming)


def test_sampler_error_is_a_value_error(api_child: Child) -> None:
    assert api_child["grammar-syntax"].is_a("ValueError", "LlamaError")


# --- every method after close() -------------------------------------------------------------

CLOSED_CASES = [
    ("tokenize", "llm.tokenize(b'Once')"),
    ("detokenize", "llm.detokenize([1, 2])"),
    ("create_completion", "llm.create_completion('Once', max_tokens=2)"),
    ("create_completion-stream", "list(llm.create_completion('Once', max_tokens=2, stream=True))"),
    ("call", "llm('Once', max_tokens=2)"),
    ("generate", "next(llm.generate([1, 2]))"),
    ("eval", "llm.eval([1, 2])"),
    ("sample", "llm.sample()"),
    ("reset", "llm.reset()"),
    ("n_ctx", "llm.n_ctx()"),
    ("n_vocab", "llm.n_vocab()"),
    ("n_embd", "llm.n_embd()"),
    ("token_eos", "llm.token_eos()"),
    ("token_bos", "llm.token_bos()"),
    ("token_nl", "llm.token_nl()"),
    ("pooling_type", "llm.pooling_type()"),
    ("with-block", "ctx_llm.tokenize(b'Once')"),
]


@pytest.fixture(scope="module")
def closed_child(stories260k: Path) -> Child:
    code = (
        "M = sys.argv[1]\n"
        "llm = Llama(M, n_ctx=64)\n"
        "llm.create_completion('Once', max_tokens=2)\n"
        "llm.close()\n"
        "report('close-again', llm.close)\n"
        "report('metadata', lambda: llm.metadata['general.architecture'])\n"
        "with Llama(M, n_ctx=64) as ctx_llm:\n"
        "    pass\n"
    ) + "".join(f"report({label!r}, lambda: {expr})\n" for label, expr in CLOSED_CASES)
    return Child(code, str(stories260k))


@pytest.mark.parametrize("label", [c[0] for c in CLOSED_CASES])
def test_method_after_close_raises_closed_error(closed_child: Child, label: str) -> None:
    outcome = closed_child[label]
    raised(outcome, "ClosedError", naming=("closed",))
    assert outcome.is_a("ValueError")


def test_close_is_idempotent_and_file_metadata_stays_readable(closed_child: Child) -> None:
    assert closed_child["close-again"].name == "OK"
    assert closed_child["metadata"].name == "OK" and "llama" in closed_child["metadata"].message
