"""Model-free tests of incremental detokenizing and stop-string matching."""

from __future__ import annotations

import random

import pytest

from llama_binding.generation.detokenizer import IncrementalDetokenizer
from llama_binding.generation.stopping import StopMatcher


def _stream(pieces: list[bytes]) -> list[str]:
    detok = IncrementalDetokenizer()
    out = [detok.feed(p) for p in pieces]
    out.append(detok.flush())
    return out


def test_emoji_split_over_three_pieces_comes_out_whole() -> None:
    emoji = "🦙".encode()
    out = _stream([b"hi ", emoji[:1], emoji[1:3], emoji[3:], b"!"])
    assert out == ["hi ", "", "", "🦙", "!", ""]


def test_invalid_bytes_become_replacement_without_waiting() -> None:
    detok = IncrementalDetokenizer()
    assert detok.feed(b"\xff") == "\ufffd"
    assert detok.feed(b"a\xe2\x82") == "a"  # unfinished euro sign held back
    assert detok.pending
    assert detok.feed(b"x") == "\ufffdx"  # proven invalid by the next byte
    assert detok.feed(b"\xe2") == ""
    assert detok.flush() == "\ufffd"  # unfinished at the end


@pytest.mark.parametrize("seed", range(20))
def test_random_splits_reassemble(seed: int) -> None:
    rng = random.Random(seed)
    text = "Grüße, 世界! 🦙🎉 naïve café " * 3
    data = text.encode()
    cuts = sorted(rng.sample(range(1, len(data)), 12))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert "".join(_stream(pieces)) == text


def _stop_run(chunks: list[str], stops: list[str]) -> tuple[str, bool]:
    m = StopMatcher(stops)
    out = []
    for c in chunks:
        text, hit = m.feed(c)
        out.append(text)
        if hit:
            return "".join(out), True
    out.append(m.flush())
    return "".join(out), False


def test_stop_split_across_chunks() -> None:
    assert _stop_run(["Hello wor", "ld. ST", "OP here"], ["STOP"]) == ("Hello world. ", True)


def test_earliest_of_several_stops_wins() -> None:
    assert _stop_run(["a b c d"], ["d", "b"]) == ("a ", True)


def test_partial_prefix_is_released_when_it_cannot_match() -> None:
    m = StopMatcher(["</end>"])
    assert m.feed("x </e") == ("x ", False)
    assert m.held == 3
    assert m.feed("nd") == ("", False)
    assert m.feed("!") == ("</end!", False)


def test_no_stops_passes_through() -> None:
    assert StopMatcher(None).feed("abc") == ("abc", False)
    assert StopMatcher("").feed("abc") == ("abc", False)


def test_non_str_stop_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        StopMatcher([b"x"])  # type: ignore[list-item]


@pytest.mark.parametrize("seed", range(30))
def test_stop_matches_like_str_find_for_any_split(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab<>/ "
    text = "".join(rng.choice(alphabet) for _ in range(60))
    stops = ["</a>", "bb", "<a"][: rng.randint(1, 3)]
    cuts = sorted(rng.sample(range(1, len(text)), 10))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    hits = [i for i in (text.find(s) for s in stops) if i != -1]
    expected = (text[: min(hits)], True) if hits else (text, False)
    assert _stop_run(chunks, stops) == expected
