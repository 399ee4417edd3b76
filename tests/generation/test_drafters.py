"""Model-free tests for the prompt-lookup drafter: lookup rules, index vs brute force, adaptation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from llama_binding.generation.drafters import Drafter, LlamaPromptLookupDecoding


def reference(tokens: list[int], max_n: int, min_n: int, k: int) -> list[int]:
    """Brute force: longest suffix n-gram, most recent earlier occurrence with a follower; past
    the end of the history the pattern repeats."""
    end = len(tokens)
    for n in range(max_n, min_n - 1, -1):
        if n > end:
            continue
        suffix = tokens[end - n :]
        for i in range(end - n - 1, -1, -1):
            if tokens[i : i + n] == suffix:
                ext = list(tokens)
                while len(ext) < i + n + k:
                    ext.append(ext[len(ext) - (end - i - n)])
                return ext[i + n : i + n + k]
    return []


def test_is_a_drafter() -> None:
    assert isinstance(LlamaPromptLookupDecoding(), Drafter)


def test_most_recent_match_wins() -> None:
    d = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens=2)
    # "1 2" occurs at 0 (followed by 3 4) and at 5 (followed by 7 8); the later one wins
    assert d.draft([1, 2, 3, 4, 9, 1, 2, 7, 8, 5, 1, 2], 10) == [7, 8]


def test_longest_ngram_wins() -> None:
    d = LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=5)
    # the 3-gram "5 1 2" matched at 0 beats the more recent 1-gram/2-gram "1 2" at 4
    toks = [5, 1, 2, 30, 31, 1, 2, 40, 41, 5, 1, 2]
    assert d.draft(toks, 10) == [30, 31, 1, 2, 40]
    assert LlamaPromptLookupDecoding(max_ngram_size=2).draft(toks, 2) == [40, 41]


def test_no_match_and_trivial_inputs() -> None:
    d = LlamaPromptLookupDecoding()
    assert d.draft([1, 2, 3, 4], 5) == []
    assert d.draft([], 5) == []
    assert d.draft([7], 5) == []
    assert d.draft([1, 2, 1, 2], 0) == []
    # min_ngram_size excludes short matches
    assert LlamaPromptLookupDecoding(min_ngram_size=2).draft([1, 9, 8, 1], 5) == []
    assert LlamaPromptLookupDecoding(min_ngram_size=1).draft([1, 9, 8, 1], 5) == [9, 8, 1, 9, 8]


def test_draft_bounded_by_max_tokens_length_and_history() -> None:
    toks = [1, 2, 3, 4, 5, 6, 1, 2]
    assert LlamaPromptLookupDecoding(num_pred_tokens=10).draft(toks, 3) == [3, 4, 5]
    assert LlamaPromptLookupDecoding(num_pred_tokens=2).draft(toks, 10) == [3, 4]
    # the match's continuation runs into the suffix and, past the end of the history, the
    # pattern repeats: a loop is drafted in full
    assert LlamaPromptLookupDecoding(num_pred_tokens=10).draft([7, 7, 7], 10) == [7] * 10
    assert LlamaPromptLookupDecoding(num_pred_tokens=10).draft([1, 2, 1, 2, 1, 2], 5) == [1, 2, 1, 2, 1]


def test_accepts_numpy_and_tuples() -> None:
    d = LlamaPromptLookupDecoding()
    got = d.draft(np.array([1, 2, 3, 1, 2], dtype=np.int32), 5)
    assert got == [3, 1, 2, 3, 1]
    assert all(type(t) is int for t in got)
    assert d.draft((1, 2, 3, 1, 2, 3), 5) == [1, 2, 3, 1, 2]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("max_n", "min_n"), [(3, 1), (4, 2), (1, 1)])
def test_incremental_index_matches_brute_force(seed: int, max_n: int, min_n: int) -> None:
    rng = random.Random(seed)
    d = LlamaPromptLookupDecoding(max_n, 6, min_ngram_size=min_n, adaptive=False)
    toks: list[int] = []
    vocab = rng.choice([3, 5, 20])
    for _step in range(300):
        r = rng.random()
        if r < 0.05:  # a new prompt: unrelated list
            toks = [rng.randrange(vocab) for _ in range(rng.randrange(0, 15))]
        elif r < 0.08 and toks:  # a rewind: shorter prefix, then a different token
            toks = [*toks[: rng.randrange(len(toks))], vocab]
        elif r < 0.10 and len(toks) > 2:  # same length, one token changed
            toks = list(toks)
            toks[rng.randrange(len(toks))] = vocab + 1
        else:
            toks = toks + [rng.randrange(vocab) for _ in range(rng.randrange(0, 4))]
        k = rng.randrange(0, 9)
        assert d.draft(toks, k) == reference(toks, max_n, min_n, min(k, 6)), (seed, toks, k)


def test_adaptive_length_shrinks_and_recovers() -> None:
    d = LlamaPromptLookupDecoding(num_pred_tokens=10)
    assert d.draft_length == 10
    d.accepted(10, 3)
    assert d.draft_length == 4
    d.accepted(4, 0)
    assert d.draft_length == 1
    d.accepted(1, 0)
    assert d.draft_length == 1  # never below 1
    d.accepted(0, 0)
    assert d.draft_length == 1  # nothing drafted: no evidence
    for want in (2, 4, 8, 10, 10):
        d.accepted(d.draft_length, d.draft_length)
        assert d.draft_length == want
    d.accepted(10, 9)
    assert d.draft_length == 10  # n_accepted + 1 == current length
    # the length caps the draft
    d.accepted(10, 1)
    assert d.draft([1, 2, 3, 4, 5, 1], 10) == [2, 3]
    d.reset()
    assert d.draft_length == 10


def test_non_adaptive_keeps_length() -> None:
    d = LlamaPromptLookupDecoding(num_pred_tokens=5, adaptive=False)
    d.accepted(5, 0)
    assert d.draft_length == 5


def test_llama_cpp_python_call_form() -> None:
    d = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens=3)
    out = d(np.array([4, 5, 6, 7, 8, 4, 5], dtype=np.intc), scores=np.zeros((7, 10)), extra=1)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.intc
    assert out.tolist() == [6, 7, 8]
    empty = d(np.array([1, 2, 3], dtype=np.intc))
    assert empty.dtype == np.intc and empty.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"max_ngram_size": 0}, ValueError),
        ({"num_pred_tokens": 0}, ValueError),
        ({"min_ngram_size": -1}, ValueError),
        ({"max_ngram_size": 2, "min_ngram_size": 3}, ValueError),
        ({"max_ngram_size": 2.0}, TypeError),
        ({"num_pred_tokens": "3"}, TypeError),
        ({"max_ngram_size": True}, TypeError),
        ({"adaptive": 1}, TypeError),
    ],
)
def test_constructor_errors(kwargs: dict[str, object], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        LlamaPromptLookupDecoding(**kwargs)  # type: ignore[arg-type]


def test_call_errors() -> None:
    d = LlamaPromptLookupDecoding()
    with pytest.raises(ValueError):
        d.draft([1, 2], -1)
    with pytest.raises(TypeError):
        d.draft([1, 2], 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        d.accepted(2, 3)
    with pytest.raises(ValueError):
        d.accepted(2, -1)
    with pytest.raises(TypeError):
        d.accepted(2, None)  # type: ignore[arg-type]
    assert LlamaPromptLookupDecoding(np.int64(2), np.int32(4)).max_ngram_size == 2
