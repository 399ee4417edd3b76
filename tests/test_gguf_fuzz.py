"""Unusual and malformed GGUF files: valid ones load and generate, broken ones raise a clear
``ModelLoadError``; never a crash or a hang. Every load runs in a child interpreter.

- files whose tensor data is aligned to less than 32 bytes (``general.alignment`` 1, 8, 16)
  load without mmap (ggml asserts on unaligned mapped data);
- every real vocabulary (llama.cpp's ``ggml-vocab-*.gguf``, the shared models) still passes
  the pre-load vocabulary checks;
- a vocabulary whose tokenizer would add a BOS/SEP token it does not have is refused;
- a FIFO or a character device as the model path is refused, not opened;
- ``ModelLoadError`` leads with llama.cpp's error, not with its warnings;
- a bounded sample of tests/_gguf_fuzz.py's corpus: each case loads and generates, or
  raises a llama_binding exception (bench/fuzz.py runs the long version).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _child import Child, raised
from _gguf_fuzz import ARGUMENT_NAMES, STORIES, child_env, make_case, run_cases
from _gguf_surgery import BOOL, UINT32, Gguf, edited, keep_tokens, set_kv
from _tinymodel import VOCAB_DIR

HERE = Path(__file__).resolve().parent

GENERATE = """
import logging
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger('llama_binding').addHandler(Keep())
logging.getLogger('llama_binding').setLevel(logging.INFO)
def generate(path):
    records.clear()
    with Llama(path, n_ctx=64, n_threads=1) as llm:
        text = llm.create_completion('Once upon a time', max_tokens=6, temperature=0)['choices'][0]['text']
    return text, any('without mmap' in r for r in records)
for label, path in zip(sys.argv[1::2], sys.argv[2::2]):
    report(label, lambda: generate(path))
"""


@pytest.fixture(scope="module")
def aligned_child(tmp_path_factory: pytest.TempPathFactory, stories260k: Path) -> Child:
    folder = tmp_path_factory.mktemp("aligned")
    data = stories260k.read_bytes()
    args = ["original", str(stories260k)]
    for alignment in (1, 8, 16, 32, 64):
        path = folder / f"align{alignment}.gguf"
        path.write_bytes(Gguf.parse(data).to_bytes(alignment=alignment))
        args += [f"align{alignment}", str(path)]
    return Child(GENERATE, *args)


@pytest.mark.parametrize("alignment", [1, 8, 16, 32, 64])
def test_gguf_with_any_alignment_loads_and_generates_the_same_text(aligned_child: Child,
                                                                   alignment: int) -> None:
    original, got = aligned_child["original"], aligned_child[f"align{alignment}"]
    assert original.name == "OK", original
    assert got.name == "OK", got
    text, mmap_off = eval(got.message)  # (text, whether the load fell back from mmap)
    assert text == eval(original.message)[0] and text.strip()
    assert mmap_off == (alignment < 32)  # mmap stays on where the data allows it


def test_every_real_vocabulary_still_loads(tmp_path: Path, stories260k: Path) -> None:
    vocabs = sorted(VOCAB_DIR.glob("ggml-vocab-*.gguf"))
    assert len(vocabs) >= 10
    models = [p for p in (stories260k, stories260k.parent / "SmolLM2-135M-Instruct.Q4_1.gguf",
                          stories260k.parent / "all-MiniLM-L6-v2-f16.gguf") if p.is_file()]
    code = (
        "for path in sys.argv[1:]:\n"
        "    def load(path=path):\n"
        "        with Llama(path, n_ctx=64, n_threads=1, vocab_only='ggml-vocab-' in path) as llm:\n"
        "            return len(llm.tokenize('Hello wörld\\n 123 🙂'.encode()))\n"
        "    report(path, load)\n"
    )
    child = Child(code, *map(str, vocabs + models), timeout=120)
    for path in vocabs + models:
        outcome = child[str(path)]
        assert outcome.name == "OK", f"{path.name}: {outcome.name}: {outcome.message}"
        assert int(outcome.message) > 0


SPECIAL = [
    # a 5-token BPE vocabulary that adds BOS: the default BOS id (11) is outside it
    ("bpe-adds-missing-bos", "gpt-2",
     edited(keep_tokens(5), lambda g: g.drop("tokenizer.ggml.bos_token_id"),
            set_kv("tokenizer.ggml.add_bos_token", BOOL, True)),
     ("BOS", "tokenizer.ggml.bos_token_id")),
    # WordPiece always adds [CLS] and [SEP]: a 50-token vocabulary has neither
    ("wpm-without-sep", "bert-bge", edited(keep_tokens(50)), ("tokenizer.ggml",)),
    # an out-of-range EOS id keeps the SPM default (2), which is in range: nothing to refuse
    ("spm-adds-eos-out-of-range", "llama-spm",
     edited(set_kv("tokenizer.ggml.add_eos_token", BOOL, True),
            set_kv("tokenizer.ggml.eos_token_id", UINT32, 10**6)), ()),
]


@pytest.mark.parametrize("vocab, damage, naming", [c[1:] for c in SPECIAL], ids=[c[0] for c in SPECIAL])
def test_vocabulary_adding_a_special_token_it_lacks_is_refused(tmp_path: Path, vocab: str, damage: object,
                                                                naming: tuple[str, ...]) -> None:
    path = tmp_path / "vocab.gguf"
    path.write_bytes(damage((VOCAB_DIR / f"ggml-vocab-{vocab}.gguf").read_bytes()))  # type: ignore[operator]
    code = ("def case():\n    llm = Llama(sys.argv[1], vocab_only=True)\n"
            "    return llm.tokenize(b'hello world')\nreport('load', case)\n")
    outcome = Child(code, str(path))["load"]
    if not naming:  # the SPM default EOS (2) is in range: llama.cpp keeps it, and all is well
        assert outcome.name == "OK", outcome
        return
    raised(outcome, "ModelLoadError", naming=naming)


def test_fifo_and_character_device_are_refused_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    code = ("report('fifo', lambda: Llama(sys.argv[1]))\nreport('chardev', lambda: Llama('/dev/zero'))\n"
            "report('lora-fifo', lambda: Llama(sys.argv[2], lora_path=sys.argv[1]))\n")
    child = Child(code, str(fifo), str(STORIES), timeout=30)
    raised(child["fifo"], "ModelLoadError", naming=("FIFO", "not a regular file"))
    raised(child["chardev"], "ModelLoadError", naming=("character device", "not a regular file"))
    raised(child["lora-fifo"], "ModelLoadError", "ValueError", naming=("not a regular file",))


def test_model_load_error_leads_with_the_cause(tmp_path: Path, stories260k: Path) -> None:
    """stories260K's vocabulary draws warnings ("bad special token"); a missing tensor then
    stops the load: the message names the missing tensor first."""
    path = tmp_path / "missing-tensor.gguf"

    def drop_output_norm(g: Gguf) -> None:
        g.tensors = [t for t in g.tensors if t.name != "output_norm.weight"]

    path.write_bytes(edited(drop_output_norm)(stories260k.read_bytes()))
    outcome = Child("report('load', lambda: Llama(sys.argv[1]))\n", str(path))["load"]
    raised(outcome, "ModelLoadError", naming=("output_norm.weight", "bad special token"))
    detail = outcome.message.split(f"{path}: ", 1)[-1]
    assert "output_norm.weight" in detail.split(";")[0], outcome.message
    assert detail.index("output_norm.weight") < detail.index("bad special token"), outcome.message


# --- a sample of the fuzzing corpus ----------------------------------------------------------------

SEED, SAMPLE = 7, 52  # 4 cases of each of the 13 families, on both bases


def test_fuzz_sample_never_crashes_hangs_or_raises_a_foreign_exception() -> None:
    results = run_cases([str(i) for i in range(SAMPLE)],
                        lambda ids: [sys.executable, str(HERE / "_gguf_fuzz.py"), "--child", str(SEED), *ids],
                        per_case=30, group=13, env=child_env())
    assert len(results) == SAMPLE
    outcomes = {r.outcome for r in results}
    bad = [f"{r.outcome}: {make_case(SEED, int(r.case))[0]}: {r.detail}" for r in results
           if r.outcome not in ("ok", "clean")]
    assert not bad, "\n".join(bad)
    assert outcomes == {"ok", "clean"}  # the sample holds both loadable and broken files
    assert "kv_overrides" in ARGUMENT_NAMES
