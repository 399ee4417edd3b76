"""Saved states: in memory, per sequence and in files, with our header refusing states of
another model, other context options or damaged bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llama_binding import Llama, LlamaState, StateError

PROMPT = "Once upon a time, there was a little"


def _continue(llm: Llama, n: int = 24) -> list[int]:
    """Greedy tokens after what the context holds (the prompt is its tokens: prefix reuse)."""
    return list(llm.generate(list(llm.input_ids), max_tokens=n, temperature=0.0))


@pytest.mark.parametrize("seq", [None, 0], ids=["context", "sequence"])
def test_restored_state_continues_with_the_same_greedy_tokens(smollm2: Path, seq: int | None) -> None:
    with Llama(smollm2, n_ctx=256) as a, Llama(smollm2, n_ctx=256) as b:
        a.eval(a.tokenize(PROMPT.encode()))
        state = a.save_state(seq)
        assert state.n_tokens == a.n_tokens and state.scope == ("context" if seq is None else "sequence")
        expected = _continue(a)
        b.load_state(state)
        assert list(b.input_ids) == list(state.tokens)
        b.engine.context.perf_reset()
        assert _continue(b) == expected
        assert b.engine.context.perf()["n_p_eval"] <= 1  # the prompt was not evaluated again


def test_session_file_round_trip(stories260k: Path, tmp_path: Path) -> None:
    path = tmp_path / "session.bin"
    with Llama(stories260k, n_ctx=128) as a, Llama(stories260k, n_ctx=128) as b:
        a.eval(a.tokenize(PROMPT.encode()))
        a.save_session(path)
        expected = _continue(a)
        b.load_session(path)
        assert _continue(b) == expected
        assert LlamaState.load(path).to_bytes() == path.read_bytes()


def test_damaged_states_are_refused(stories260k: Path, tmp_path: Path) -> None:
    with Llama(stories260k, n_ctx=128) as llm:
        llm.eval(llm.tokenize(PROMPT.encode()))
        data = llm.save_state().to_bytes()
        kept = list(llm.input_ids)
        for bad, why in [(data[: len(data) // 2], "damaged or truncated"),
                         (data[:100] + bytes([data[100] ^ 1]) + data[101:], "damaged"),
                         (b"hello" * 20, "LBSTATE"), (b"", "LBSTATE")]:
            with pytest.raises(StateError, match=why):
                LlamaState.from_bytes(bad)
        (tmp_path / "cut.bin").write_bytes(data[:-1])
        with pytest.raises(StateError, match="damaged or truncated"):
            llm.load_session(tmp_path / "cut.bin")
        with pytest.raises(StateError, match="cannot read"):
            llm.load_session(tmp_path / "missing.bin")
        with pytest.raises(TypeError):
            llm.load_state(data)  # type: ignore[arg-type]
        assert list(llm.input_ids) == kept  # nothing was lost


def test_state_of_another_model_or_context_is_refused(tiny_model: Callable[..., Path]) -> None:
    base = tiny_model(seed=1)
    same_shape = tiny_model(seed=2)  # other weights, identical shapes
    with Llama(base, n_ctx=128) as a:
        a.eval([1, 100, 200, 300])
        state = a.save_state()
        with Llama(same_shape, n_ctx=128) as b, pytest.raises(StateError, match="another model"):
            b.load_state(state)
        with Llama(base, n_ctx=512) as c, pytest.raises(StateError, match="n_ctx"):
            c.load_state(state)
        with Llama(base, n_ctx=128, type_k=1) as d, pytest.raises(StateError, match="type_k"):
            d.load_state(state)
        with Llama(base, n_ctx=128) as e:
            e.load_state(state)
            assert list(e.input_ids) == [1, 100, 200, 300]
