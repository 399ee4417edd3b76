"""stream_text over a real byte-level BPE vocabulary: split characters and stop strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_binding.core import Model, ModelParams, Vocab
from llama_binding.generation.stopping import StopMatcher
from llama_binding.generation.stream import collect, stream_text


@pytest.fixture(scope="module")
def bpe_vocab(smollm2: Path) -> Vocab:
    model = Model(smollm2, ModelParams(vocab_only=True))
    yield Vocab(model)
    model.close()


def test_emoji_split_over_tokens_streams_intact(bpe_vocab: Vocab) -> None:
    text = "Hi 🦙🎉 naïve ok"
    tokens = bpe_vocab.tokenize(text, add_special=False)
    pieces = [bpe_vocab.token_to_piece(t) for t in tokens]
    assert any(len(p) and p.decode("utf-8", "replace") != p.decode("utf-8", "ignore") for p in pieces), \
        "the test needs a character split over several tokens"
    chunks = list(stream_text(iter(tokens), bpe_vocab, StopMatcher(None), None))
    assert "".join(c.text for c in chunks) == text
    assert not any("\ufffd" in c.text for c in chunks)
    assert sum(len(c.tokens) for c in chunks) == len(tokens)
    assert chunks[-1].finish_reason == "length"


def test_stop_inside_a_split_character(bpe_vocab: Vocab) -> None:
    tokens = bpe_vocab.tokenize("one 🦙 two 🎉 three", add_special=False)
    done = collect(stream_text(iter(tokens), bpe_vocab, StopMatcher(["🎉"]), None))
    assert done.text == "one 🦙 two " and done.finish_reason == "stop"


def test_eog_token_ends_with_stop_and_adds_no_text(bpe_vocab: Vocab) -> None:
    tokens = [*bpe_vocab.tokenize("hello", add_special=False), bpe_vocab.eos()]
    done = collect(stream_text(iter(tokens), bpe_vocab, StopMatcher(None), None))
    assert done.text == "hello" and done.finish_reason == "stop"


def test_max_tokens_is_a_hard_limit(bpe_vocab: Vocab) -> None:
    tokens = bpe_vocab.tokenize("a b c d e f g", add_special=False)
    done = collect(stream_text(iter(tokens), bpe_vocab, StopMatcher(None), 3))
    assert len(done.tokens) == 3 and done.finish_reason == "length"
