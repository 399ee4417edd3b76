"""Sampling never answers garbage, and bad arguments raise errors that name them.

- Every token's logit -inf or NaN (a logit bias that bans everything, a logits processor,
  a grammar whose allowed tokens are all banned): llama.cpp's samplers still "pick" a token
  (greedy the first, dist the last); we raise :class:`SamplerError` instead, on every path
  (the native chain, the Python processor path, plain greedy, the lookahead step, the
  batched rows, streaming or not).
- ``n_threads`` far beyond the CPUs is lowered (thousands of threads abort the process).
- A wrong type or value in a token list, a prompt, a seed or a sampling option raises
  TypeError/ValueError naming the argument.
- Invalid UTF-8 through a byte-level BPE vocabulary comes back as U+FFFD (llama.cpp's
  pre-tokenizer); an SPM vocabulary with byte fallback keeps the bytes.
- An encoder-only embedding model refuses to generate text.

Everything that reaches native sampling or thread creation runs in a child interpreter
(``tests/_child.py``), so a crash fails the test instead of killing pytest.
"""

from __future__ import annotations

from ast import literal_eval
from pathlib import Path

import pytest
from _child import Child, raised

NOTHING = ("nothing can be sampled", "-inf", "nan")  # what a SamplerError for all -inf/NaN says

# --- every logit -inf or NaN: one child for the Llama-level paths ---------------------------

ALL_BANNED_CODE = r'''
import math
import numpy as np
M = sys.argv[1]
llm = Llama(M, n_ctx=128, n_threads=1, n_seq_max=2, kv_unified=True)
n = llm.n_vocab()
ninf = float("-inf")
everything = {t: ninf for t in range(n)}
as_strings = {str(t): ninf for t in range(n)}
keep = llm.tokenize(b"the", add_bos=False)[0]  # " the" (SPM adds the space)
all_but_one = {t: ninf for t in range(n) if t != keep}
X = 'root ::= "x"'  # allows no token that starts with " the"

def all_inf(ids, scores):
    scores[:] = -np.inf
    return scores

def all_nan(ids, scores):
    scores[:] = np.nan
    return scores

def first_nan(ids, scores):  # one NaN poisons the softmax of every token
    scores[0] = np.nan
    return scores

def only(tok):
    def proc(ids, scores):
        scores[:] = -np.inf
        scores[tok] = 0.0
        return scores
    return proc

def text(**kw):
    return llm.create_completion("Once upon", max_tokens=4, **kw)["choices"][0]

def streamed(**kw):
    return [c["choices"][0] for c in llm.create_completion("Once upon", max_tokens=4, stream=True, **kw)]

def sample_after_eval(proc, **kw):
    llm.reset()
    llm.eval(llm.tokenize(b"Once upon"))
    return llm.sample(logits_processor=proc, **kw)

cases = {
    "bias-dist": lambda: text(logit_bias=everything, seed=1),
    "bias-greedy": lambda: text(logit_bias=everything, temperature=0),
    "bias-str-keys": lambda: text(logit_bias=as_strings, seed=1),
    "bias-stream": lambda: streamed(logit_bias=everything, seed=1),
    "bias-grammar-dist": lambda: text(logit_bias=all_but_one, grammar=X, seed=1),
    "bias-grammar-greedy": lambda: text(logit_bias=all_but_one, grammar=X, temperature=0),
    "bias-grammar-stream": lambda: streamed(logit_bias=all_but_one, grammar=X, seed=1),
    "proc-inf-dist": lambda: text(logits_processor=all_inf, seed=1),
    "proc-nan-dist": lambda: text(logits_processor=all_nan, seed=1),
    "proc-first-nan-dist": lambda: text(logits_processor=first_nan, seed=1),
    "proc-inf-greedy": lambda: text(logits_processor=all_inf, temperature=0),
    "proc-nan-greedy": lambda: text(logits_processor=all_nan, temperature=0),
    "proc-inf-stream": lambda: streamed(logits_processor=all_inf, seed=1),
    "proc-inf-chat": lambda: llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=4,
                                                        logits_processor=all_inf),
    "generate-proc": lambda: next(llm.generate(llm.tokenize(b"Once"), logits_processor=all_inf, seed=1)),
    "generate-bias": lambda: next(llm.generate(llm.tokenize(b"Once"), logit_bias=everything)),
    "sample-proc": lambda: sample_after_eval(all_inf, temp=0.8, seed=1),
    "sample-proc-greedy": lambda: sample_after_eval(all_nan, temp=0),
    "multi-bias": lambda: llm.create_completion(["Once", "Lily"], max_tokens=4, logit_bias=everything,
                                                seed=1),
    "multi-bias-grammar": lambda: llm.create_completion(["Once", "Lily"], max_tokens=4,
                                                       logit_bias=all_but_one, grammar=X, seed=1),
    "multi-bias-grammar-stream": lambda: list(llm.create_completion(
        ["Once", "Lily"], max_tokens=4, logit_bias=all_but_one, grammar=X, seed=1, stream=True)),
}
for label, fn in cases.items():
    report(label, fn)
# not everything banned: the one token left is what comes out, on every path
report("one-left-dist", lambda: llm.create_completion("Once", max_tokens=3, logits_processor=only(keep),
                                                      seed=1)["choices"][0]["text"])
report("one-left-bias", lambda: llm.create_completion("Once", max_tokens=3, logit_bias=all_but_one,
                                                      seed=1)["choices"][0]["text"])
report("one-left-sample", lambda: sample_after_eval(only(keep), seed=1) == keep)
# the Llama stays usable, and in step: the same greedy text as a fresh one
report("usable-after", lambda: text(temperature=0)["text"])
report("fresh", lambda: Llama(M, n_ctx=128, n_threads=1).create_completion(
    "Once upon", max_tokens=4, temperature=0)["choices"][0]["text"])
'''

ALL_BANNED_LABELS = [
    "bias-dist", "bias-greedy", "bias-str-keys", "bias-stream", "bias-grammar-dist", "bias-grammar-greedy",
    "bias-grammar-stream", "proc-inf-dist", "proc-nan-dist", "proc-first-nan-dist", "proc-inf-greedy",
    "proc-nan-greedy", "proc-inf-stream", "proc-inf-chat", "generate-proc", "generate-bias", "sample-proc",
    "sample-proc-greedy", "multi-bias", "multi-bias-grammar", "multi-bias-grammar-stream",
]


BANNED_BY_BIAS = {"bias-dist", "bias-greedy", "bias-str-keys", "bias-stream", "generate-bias", "multi-bias"}


@pytest.fixture(scope="module")
def banned_child(stories260k: Path) -> Child:
    return Child(ALL_BANNED_CODE, str(stories260k))


@pytest.mark.parametrize("label", ALL_BANNED_LABELS)
def test_nothing_to_sample_raises_sampler_error(banned_child: Child, label: str) -> None:
    outcome = banned_child[label]
    raised(outcome, "SamplerError", naming=("nothing can be sampled",))
    assert outcome.is_a("ValueError", "LlamaError")
    if label in BANNED_BY_BIAS:  # caught when the chain is built, by name
        assert "logit_bias bans every token" in outcome.message
    else:  # caught by the native check on the sampled candidate
        assert "-inf or nan" in outcome.message.lower()


def test_a_token_left_is_sampled_and_the_llama_stays_in_step(banned_child: Child) -> None:
    assert banned_child["one-left-dist"].message == repr(" the the the")
    assert banned_child["one-left-bias"].message == repr(" the the the")
    assert banned_child["one-left-sample"].message == "True"
    assert banned_child["usable-after"].name == "OK"
    assert banned_child["usable-after"].message == banned_child["fresh"].message


# --- the native paths the Llama does not take on a CPU: the lookahead step, the rows ------

CORE_CODE = r'''
import numpy as np
from llama_binding.core import Batch, Context, ContextParams, Model, ModelParams, Vocab
from llama_binding.generation.sampling import SamplingParams, build_chain
from llama_binding.generation.steps import SequenceState, generate_tokens

model = Model(sys.argv[1], ModelParams())
vocab = Vocab(model)
ctx = Context(model, ContextParams(n_ctx=128, n_threads=1, n_seq_max=2, kv_unified=True))
n = vocab.n_tokens
prompt = vocab.tokenize("Once upon")
keep = vocab.tokenize("the", add_special=False)[0]
all_but_one = {t: float("-inf") for t in range(n) if t != keep}
state = SequenceState(ctx)  # shared: a failed step must leave memory and state in step

def all_inf(tokens, logits):
    logits[:] = -np.inf

def lookahead_chain():
    chain = build_chain(SamplingParams(seed=1, logit_bias=all_but_one, grammar='root ::= "x"'), vocab, 128)
    return list(generate_tokens(ctx, vocab, chain, prompt, state, 4, lookahead=True))

def lookahead_greedy():
    return list(generate_tokens(ctx, vocab, None, prompt, state, 4, logits_hook=all_inf, lookahead=True))

def lookahead_after():
    return len(list(generate_tokens(ctx, vocab, None, prompt, state, 4, lookahead=True)))

def two_rows():
    ctx.seq_rm(-1, -1, -1)
    batch = Batch(64)
    batch.add_sequence(prompt, 0, 0, logits_last=True)
    batch.add_sequence(prompt, 0, 1, logits_last=True)
    ctx.decode(batch)
    rows = np.array([len(prompt) - 1, 2 * len(prompt) - 1], dtype=np.int32)
    ctx.logits(int(rows[1]))[:] = np.nan
    return rows

def argmax_rows():
    rows = two_rows()
    out = np.zeros(2, dtype=np.int32)
    ctx.argmax_rows(vocab, rows, out)
    return out.tolist()

rows_out = np.zeros(2, dtype=np.int32)

def sample_rows():
    rows = two_rows()
    chains = [build_chain(SamplingParams(seed=1), vocab, 128) for _ in range(2)]
    ctx.sample_rows(vocab, [c.address for c in chains], rows, rows_out)
    return rows_out.tolist()

report("lookahead-chain", lookahead_chain)
report("lookahead-greedy", lookahead_greedy)
report("lookahead-after", lookahead_after)
report("argmax-rows", argmax_rows)
report("sample-rows", sample_rows)
report("rows", lambda: rows_out.tolist())  # as sample_rows left it
'''


@pytest.fixture(scope="module")
def core_child(stories260k: Path) -> Child:
    return Child(CORE_CODE, str(stories260k))


@pytest.mark.parametrize("label", ["lookahead-chain", "lookahead-greedy"])
def test_the_native_step_raises_instead_of_decoding_garbage(core_child: Child, label: str) -> None:
    raised(core_child[label], "SamplerError", naming=NOTHING[:2])


def test_the_native_step_leaves_memory_in_step(core_child: Child) -> None:
    assert core_child["lookahead-after"].message == "4"


def test_argmax_rows_marks_a_row_without_a_finite_logit(core_child: Child) -> None:
    outcome = core_child["argmax-rows"]
    assert outcome.name == "OK", outcome
    good, bad = literal_eval(outcome.message)  # a list of two ints we printed
    assert good >= 0 and bad == -2  # TOKEN_NOT_FINITE; the batching engine raises SamplerError on it


def test_sample_rows_raises_and_samples_the_other_rows(core_child: Child) -> None:
    raised(core_child["sample-rows"], "SamplerError", naming=NOTHING[:2])
    good, bad = literal_eval(core_child["rows"].message)  # the out array as sample_rows left it
    assert good >= 0 and bad == -2


# --- threads ---------------------------------------------------------------------------------

THREADS_CODE = r'''
import logging
from llama_binding.core.context import physical_cores, thread_limit
M = sys.argv[1]

class Keep(logging.Handler):
    def __init__(self):
        super().__init__()
        self.seen = []

    def emit(self, record):
        self.seen.append(record.getMessage())

keep = Keep()
logging.getLogger("llama_binding").addHandler(keep)
logging.getLogger("llama_binding").setLevel(logging.WARNING)

def run(**kw):
    llm = Llama(M, n_ctx=64, **kw)
    text = llm.create_completion("Once", max_tokens=3, temperature=0)["choices"][0]["text"]
    return (llm.engine.context.n_threads, text)

report("limit", thread_limit)
report("cores", physical_cores)
report("huge", lambda: run(n_threads=10000))
report("huge-batch", lambda: run(n_threads=1, n_threads_batch=10000))
report("zero", lambda: run(n_threads=0, n_threads_batch=0))
report("minus-one", lambda: run(n_threads=-1))
report("one", lambda: run(n_threads=1))
report("minus-five", lambda: run(n_threads=-5))
report("batch-minus-five", lambda: run(n_threads_batch=-5))
report("str", lambda: run(n_threads="4"))
report("float", lambda: run(n_threads=2.0))
report("warnings", lambda: [m for m in keep.seen if "threads" in m])
'''


@pytest.fixture(scope="module")
def threads_child(stories260k: Path) -> Child:
    return Child(THREADS_CODE, str(stories260k))


def test_too_many_threads_are_lowered_with_a_warning(threads_child: Child) -> None:
    limit = int(threads_child["limit"].message)
    assert 1 <= limit <= 512
    one = literal_eval(threads_child["one"].message)
    for label in ("huge", "huge-batch"):
        n_threads, text = literal_eval(threads_child[label].message)
        assert text == one[1]
        if label == "huge":
            assert n_threads == limit
    warnings = literal_eval(threads_child["warnings"].message)
    assert any(w.startswith("n_threads=10000 ") for w in warnings), warnings
    assert any(w.startswith("n_threads_batch=10000 ") for w in warnings), warnings


def test_zero_and_minus_one_threads_mean_the_default(threads_child: Child) -> None:
    cores = int(threads_child["cores"].message)
    for label in ("zero", "minus-one"):
        assert literal_eval(threads_child[label].message)[0] == cores


@pytest.mark.parametrize("label, cls", [("minus-five", "ValueError"), ("batch-minus-five", "ValueError"),
                                        ("str", "TypeError"), ("float", "TypeError")])
def test_bad_thread_counts_are_refused_by_name(threads_child: Child, label: str, cls: str) -> None:
    naming = ("n_threads_batch",) if label.startswith("batch") else ("n_threads",)
    raised(threads_child[label], cls, naming=naming)


# --- bad arguments: one child, table-driven ---------------------------------------------------

BAD_ARGS: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    # (label, expression, acceptable classes, fragments the message names)
    ("prompt-str-in-tokens", "llm.create_completion([1, 'a'])", ("TypeError",), ("prompt[1]", "str")),
    ("prompt-float-in-tokens", "llm.create_completion([1, 2.5])", ("TypeError",), ("prompt[1]", "float")),
    ("prompt-none-in-tokens", "llm.create_completion([1, None])", ("TypeError",), ("prompt[1]",)),
    ("prompt-negative-id", "llm.create_completion([1, -5])", ("ValueError",), ("prompt[1]", "-5")),
    ("prompt-id-too-big", "llm.create_completion([1, 512])", ("ValueError",), ("prompt[1]", "512")),
    ("prompt-id-huge", "llm.create_completion([1, 2**40])", ("ValueError",), ("prompt[1]",)),
    ("multi-prompt-str-in-tokens", "llm.create_completion([[1, 2], [1, 'a']])", ("TypeError",),
     ("prompt[1]",)),
    ("detokenize-str", "llm.detokenize([1, 'x'])", ("TypeError",), ("tokens[1]", "str")),
    ("detokenize-negative", "llm.detokenize([1, -1])", ("ValueError",), ("tokens[1]", "-1")),
    ("detokenize-too-big", "llm.detokenize([10**9])", ("ValueError",), ("tokens[0]",)),
    ("detokenize-text", "llm.detokenize('abc')", ("TypeError",), ("tokens", "str")),
    ("eval-str", "llm.eval([1, 'x'])", ("TypeError",), ("tokens[1]",)),
    ("eval-negative", "llm.eval([-3])", ("ValueError",), ("tokens[0]", "-3")),
    ("generate-str", "next(llm.generate([1, 'x']))", ("TypeError",), ("tokens[1]",)),
    ("surrogate-lone-high", "llm.create_completion('Once \\ud800', max_tokens=1)", ("TokenizeError",),
     ("prompt", "surrogate")),
    ("surrogate-tokenize", "llm.tokenize('\\udbff')", ("TokenizeError",), ("text", "surrogate")),
    ("surrogate-chat", "llm.create_chat_completion([{'role': 'user', 'content': '\\ud800'}])",
     ("TokenizeError",), ("messages", "surrogate")),
    ("seed-float", "llm.create_completion('Once', seed=1.5)", ("TypeError",), ("seed", "int")),
    ("seed-str", "llm.create_completion('Once', seed='1')", ("TypeError",), ("seed",)),
    ("ctor-seed-float", "Llama(M, seed=1.5, vocab_only=True)", ("TypeError",), ("seed",)),
    ("set_seed-float", "llm.set_seed(1.5)", ("TypeError",), ("seed",)),
    ("generate-seed-float", "next(llm.generate([1], seed=2.5))", ("TypeError",), ("seed",)),
    ("temperature-str", "llm.create_completion('Once', temperature='hot')", ("TypeError", "ValueError"),
     ("temperature",)),
    ("temperature-nan", "llm.create_completion('Once', temperature=float('nan'))", ("ValueError",),
     ("temperature",)),
    ("top_p-none", "llm.create_completion('Once', top_p=None)", ("TypeError", "ValueError"), ("top_p",)),
    ("top_k-float", "llm.create_completion('Once', top_k=2.5)", ("TypeError",), ("top_k",)),
    ("mirostat_mode-str", "llm.create_completion('Once', mirostat_mode='2')", ("TypeError",),
     ("mirostat_mode",)),
    ("sample-temp-str", "llm.sample(temp='hot')", ("TypeError", "ValueError"), ("temperature",)),
    ("chat-temperature-str", "llm.create_chat_completion([{'role': 'user', 'content': 'hi'}], "
     "temperature='hot')", ("TypeError", "ValueError"), ("temperature",)),
    ("stop-int-in-list", "llm.create_completion('Once', stop=[1])", ("TypeError",), ("stop",)),
    ("logit_bias-str-key", "llm.create_completion('Once', logit_bias={'a': 1})", ("TypeError",),
     ("logit_bias", "'a'")),
    ("logit_bias-float-key", "llm.create_completion('Once', logit_bias={1.5: 1})", ("TypeError",),
     ("logit_bias",)),
    ("logit_bias-str-value", "llm.create_completion('Once', logit_bias={5: 'x'})", ("TypeError",),
     ("logit_bias",)),
    ("logit_bias-nan", "llm.create_completion('Once', logit_bias={5: float('nan')})", ("ValueError",),
     ("logit_bias", "nan")),
    ("logit_bias-plus-inf", "llm.create_completion('Once', logit_bias={5: float('inf')})", ("ValueError",),
     ("logit_bias", "inf")),
    ("logit_bias-id-too-big", "llm.create_completion('Once', logit_bias={10**6: 1.0})", ("ValueError",),
     ("logit_bias", "1000000")),
    ("logit_bias-negative-id", "llm.create_completion('Once', logit_bias={-3: 1.0})", ("ValueError",),
     ("logit_bias", "-3")),
    ("logit_bias-list", "llm.create_completion('Once', logit_bias=[1, 2])", ("TypeError",), ("logit_bias",)),
]

GOOD_ARGS: list[tuple[str, str, str]] = [
    # (label, expression, repr of the value it must return)
    ("logit_bias-digit-string-key", "llm.create_completion('Once', max_tokens=2, temperature=0, "
     "logit_bias={'5': -1.0})['usage']['completion_tokens']", "2"),
    ("numpy-token-ids", "llm.detokenize(np.array(llm.tokenize(b'Once upon'))) == llm.detokenize("
     "llm.tokenize(b'Once upon'))", "True"),
    ("numpy-seed-and-top_k", "llm.create_completion('Once', max_tokens=2, seed=np.int64(3), "
     "top_k=np.int32(5))['usage']['completion_tokens']", "2"),
    # lone \udc80-\udcff are surrogate-escaped bytes (os.fsdecode, errors="surrogateescape")
    ("surrogate-escape", "llm.tokenize('a\\udcff') == llm.tokenize(b'a\\xff')", "True"),
    # a surrogate pair written as two code points is the character it stands for
    ("surrogate-pair", "llm.tokenize('\\ud83d\\ude00') == llm.tokenize('\\U0001F600'.encode())", "True"),
]


@pytest.fixture(scope="module")
def args_child(stories260k: Path) -> Child:
    code = "import numpy as np\nM = sys.argv[1]\nllm = Llama(M, n_ctx=64, n_threads=1)\n" + "".join(
        f"report({label!r}, lambda: {expr})\n" for label, expr, *_ in BAD_ARGS + GOOD_ARGS)  # type: ignore[operator]
    return Child(code, str(stories260k))


@pytest.mark.parametrize("label, classes, naming", [(c[0], c[2], c[3]) for c in BAD_ARGS],
                         ids=[c[0] for c in BAD_ARGS])
def test_bad_argument_is_named(args_child: Child, label: str, classes: tuple[str, ...],
                               naming: tuple[str, ...]) -> None:
    raised(args_child[label], *classes, naming=naming)
    assert "invalid literal" not in args_child[label].message


@pytest.mark.parametrize("label, value", [(c[0], c[2]) for c in GOOD_ARGS], ids=[c[0] for c in GOOD_ARGS])
def test_accepted_argument_forms(args_child: Child, label: str, value: str) -> None:
    outcome = args_child[label]
    assert outcome.name == "OK", outcome
    assert outcome.message == value


# --- invalid UTF-8 round trips ------------------------------------------------------------------

ROUND_TRIP_CODE = r'''
for name, path in zip(("bpe", "spm"), sys.argv[1:]):
    llm = Llama(path, vocab_only=True)
    for label, data in (("ff-fe", b"\xff\xfe"), ("mixed", b"a\xffb\xc3"), ("valid", "héllo".encode())):
        report(f"{name}-{label}", lambda: llm.detokenize(llm.tokenize(data, add_bos=False)))
'''


@pytest.fixture(scope="module")
def round_trip_child(stories260k: Path) -> Child:
    gpt2 = Path(__file__).resolve().parents[1] / "vendor" / "llama.cpp" / "models" / "ggml-vocab-gpt-2.gguf"
    if not gpt2.is_file():
        pytest.fail(f"{gpt2} is missing: run python vendor/sync.py")
    return Child(ROUND_TRIP_CODE, str(gpt2), str(stories260k))


def test_byte_level_bpe_turns_invalid_utf8_into_replacement_characters(round_trip_child: Child) -> None:
    """As documented in Vocab.tokenize: llama.cpp's BPE pre-tokenizer decodes the text
    first, so each invalid sequence becomes U+FFFD before any token is chosen."""
    fffd = "\ufffd".encode()
    assert round_trip_child["bpe-ff-fe"].message == repr(fffd * 2)
    assert round_trip_child["bpe-mixed"].message == repr(b"a" + fffd + b"b" + fffd)
    assert round_trip_child["bpe-valid"].message == repr("héllo".encode())


def test_spm_byte_fallback_keeps_invalid_utf8(round_trip_child: Child) -> None:
    assert round_trip_child["spm-ff-fe"].message == repr(b"\xff\xfe")
    assert round_trip_child["spm-mixed"].message == repr(b"a\xffb\xc3")


# --- an encoder-only embedding model cannot generate ------------------------------------------

ENCODER_CODE = r'''
import asyncio
from llama_binding import AsyncLlama
llm = Llama(sys.argv[1], n_ctx=128, n_threads=1, embedding=True)
chat = [{"role": "user", "content": "hi"}]

async def acomplete():
    async with AsyncLlama(sys.argv[1], n_seq_max=2, n_ctx=256, n_threads=1, embedding=True) as allm:
        return await allm.acreate_completion("hello", max_tokens=4)

report("completion", lambda: llm.create_completion("hello", max_tokens=4))
report("completion-stream", lambda: list(llm.create_completion("hello", max_tokens=4, stream=True)))
report("completion-tokens", lambda: llm.create_completion(llm.tokenize(b"hello"), max_tokens=4))
report("completion-multi", lambda: llm.create_completion(["hello", "world"], max_tokens=4))
report("call", lambda: llm("hello", max_tokens=4))
report("chat", lambda: llm.create_chat_completion(chat, max_tokens=4))
report("chat-stream", lambda: list(llm.create_chat_completion(chat, max_tokens=4, stream=True)))
report("generate", lambda: next(llm.generate(llm.tokenize(b"hello"))))
report("async", lambda: asyncio.run(acomplete()))
report("embedding", lambda: len(llm.create_embedding("hello")["data"][0]["embedding"]))
'''

ENCODER_LABELS = ["completion", "completion-stream", "completion-tokens", "completion-multi", "call", "chat",
                  "chat-stream", "generate", "async"]


@pytest.fixture(scope="module")
def encoder_child(minilm: Path) -> Child:
    return Child(ENCODER_CODE, str(minilm))


@pytest.mark.parametrize("label", ENCODER_LABELS)
def test_embedding_model_refuses_to_generate(encoder_child: Child, label: str) -> None:
    outcome = encoder_child[label]
    raised(outcome, "UnsupportedModelError", naming=("embedding", "create_embedding"))
    assert outcome.is_a("ValueError", "LlamaError")


def test_embedding_model_still_embeds(encoder_child: Child) -> None:
    assert encoder_child["embedding"].message == "384"
