"""PrefixTokenizer against llama.cpp's whole-text tokenization, on every vocabulary of
llama.cpp's ``models/`` folder: conversations that grow turn by turn (the reuse), edits
inside the shared part, text of every kind (unicode, digits, whitespace runs, code, the
vocabulary's own special tokens), with and without special tokens parsed."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from _tinymodel import VOCAB_DIR

from llama_binding import capi
from llama_binding.core import Model, ModelParams, Vocab
from llama_binding.core.prefix_tokens import PrefixTokenizer

VOCABS = sorted(p.name[len("ggml-vocab-"):-len(".gguf")] for p in VOCAB_DIR.glob("ggml-vocab-*.gguf"))
WORDS = ("the river stone quiet garden Letter morning 12345 3.14159 x+=1; {key: 'v'} naïve café "
         "北京 東京 🙂👍 it's we'll don't -- ... !!! ?? \t tab  two   three\u00a0nbsp").split(" ")
PIECES = ["\n", "\n\n", " \n", "\n ", "\r\n", "  ", "\t", "\nUser: ", "\nAssistant:", "\n- item",
          "\n```python\n", "\ndef f(x):\n    return x\n", "\n1. ", "\nA", "\n\nB", "\n'quoted'",
          "\n\u00c9t\u00e9", "\n123abc"]


def _text(rng: random.Random, n: int, specials: list[str]) -> str:
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.15:
            out.append(rng.choice(PIECES))
        elif r < 0.2 and specials:
            out.append(rng.choice(specials))
        else:
            out.append(" " * rng.randint(0, 2) + rng.choice(WORDS))
    return "".join(out)


@pytest.fixture(scope="module", params=VOCABS)
def vocab(request: pytest.FixtureRequest) -> Iterator[tuple[str, Vocab]]:
    model = Model(str(VOCAB_DIR / f"ggml-vocab-{request.param}.gguf"), ModelParams(vocab_only=True))
    yield request.param, Vocab(model)
    model.close()


def _specials(v: Vocab) -> list[str]:
    found = sorted(t for t in v.special_tokens() if t.strip())
    return random.Random(0).sample(found, min(6, len(found)))


@pytest.mark.parametrize("special", [(True, True), (False, True), (True, False)])
def test_a_growing_conversation_tokenizes_as_a_whole(vocab: tuple[str, Vocab],
                                                     special: tuple[bool, bool]) -> None:
    """Turn after turn (prompt, answer, a new line), sometimes an edit inside the shared part:
    the tokens are llama.cpp's of the whole text; a BPE vocabulary reuses most of them when
    special tokens are parsed (a prompt), none otherwise (text to embed: not remembered)."""
    name, v = vocab
    pt = PrefixTokenizer(v)
    rng = random.Random(hash(name) & 0xFFFF)
    specials = _specials(v)
    text = "Conversation.\n" + _text(rng, 250, specials)
    for turn in range(24):
        want = v.tokenize(text, add_special=special[0], parse_special=special[1])
        assert pt.tokenize(text, *special) == want, (name, turn)
        if turn % 6 == 5:  # an edit inside the shared part: the rest is tokenized again
            at = rng.randrange(len(text) // 2, len(text))
            text = text[:at] + _text(rng, 3, specials) + text[at:]
        text += _text(rng, 30, specials) + "\nUser: " + _text(rng, 10, specials) + "\nAssistant:"
    adds_end = special[0] and (v.add_eos() or v.add_sep())
    if v.type == capi.LLAMA_VOCAB_TYPE_BPE and special[1] and not adds_end:
        assert pt.reused_tokens > 0
    else:
        assert pt.reused_tokens == 0


def test_a_conversation_that_begins_with_the_bos_text(vocab: tuple[str, Vocab]) -> None:
    """A prompt that spells its own BOS (a chat template's rendering) tokenized with special
    tokens added: llama.cpp puts a second BOS before it. Still the whole text's tokens, and a
    BPE vocabulary still reuses them (the added BOS spells nothing). A vocabulary that adds no
    BOS, or one without text, gets the same conversation without it."""
    name, v = vocab
    adds_bos = v.add_bos() and v.bos() >= 0 and v.token_to_piece(v.bos(), True).strip()
    pt = PrefixTokenizer(v)
    rng = random.Random(3)
    text = (v.token_to_piece(v.bos(), True).decode() if adds_bos else "") + "System.\n" + _text(rng, 250, [])
    for turn in range(6):
        assert pt.tokenize(text) == v.tokenize(text, add_special=True, parse_special=True), (name, turn)
        text += _text(rng, 30, []) + "\nUser: " + _text(rng, 10, []) + "\nAssistant:"
    if v.type == capi.LLAMA_VOCAB_TYPE_BPE and not (v.add_eos() or v.add_sep()):
        assert pt.reused_tokens > 0


def test_texts_that_share_only_a_short_beginning(vocab: tuple[str, Vocab]) -> None:
    """Short texts, texts sharing less than the margin, bytes and str, many at once from
    threads: the whole text's tokens every time."""
    name, v = vocab
    pt = PrefixTokenizer(v)
    rng = random.Random(7)
    base = _text(rng, 300, [])
    texts = [base[:n] + _text(rng, 20, []) for n in (10, 500, len(base) - 30, len(base))] + ["", "x", base]
    errors: list[str] = []

    def run(k: int) -> None:
        for i, t in enumerate(texts * 2):
            data: str | bytes = t.encode() if (i + k) % 2 else t
            if pt.tokenize(data, True, True) != v.tokenize(data, add_special=True, parse_special=True):
                errors.append(f"{name}: text {i % len(texts)} (thread {k})")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_the_engine_tokenizes_a_chats_next_turn_from_the_shared_part(smollm2: object) -> None:
    """Through Llama: the prompt's tokens are the whole text's, and the second, longer
    prompt reuses the first one's tokens."""
    from llama_binding import Llama

    with Llama(str(smollm2), n_ctx=4096, verbose=False) as llm:
        turn = "\nUser: tell me about rivers and stones.\nAssistant: Rivers carry stones."
        first = "Conversation.\n" + turn * 30
        second = first + " They also carve valleys.\nUser: and gardens?\nAssistant:"
        engine = llm.engine
        for text in (first, second):
            want = engine.vocab.tokenize(text, add_special=True, parse_special=True)
            assert engine.prompt_tokens(text) == want
        assert engine.prefix_tokens.reused_tokens > 0.9 * len(engine.vocab.tokenize(first))


def test_a_wrong_type_raises_as_the_vocabulary_does(vocab: tuple[str, Vocab]) -> None:
    _, v = vocab
    for bad in (None, 3, ["text"]):
        with pytest.raises(TypeError, match="must be bytes or str"):
            PrefixTokenizer(v).tokenize(bad)  # type: ignore[arg-type]
