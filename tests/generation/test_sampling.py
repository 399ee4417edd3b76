"""SamplingParams -> sampler plan (model-free), and the native chain built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_binding.core import Model, Vocab
from llama_binding.errors import SamplerError
from llama_binding.generation.sampling import SamplingParams, build_chain, plan


def names(p: SamplingParams, n_vocab: int = 1000) -> list[str]:
    return [s.name for s in plan(p, n_vocab, n_ctx=512)]


def test_defaults_follow_llama_cpp_python() -> None:
    p = SamplingParams()
    assert (p.temperature, p.top_p, p.min_p, p.top_k, p.repeat_penalty) == (0.8, 0.95, 0.05, 40, 1.0)
    assert names(p) == ["top_k", "top_p", "min_p", "temp", "dist"]


def test_zero_temperature_is_greedy_and_keeps_constraints() -> None:
    p = SamplingParams(temperature=0.0, repeat_penalty=1.1, logit_bias={3: -5.0}, grammar='root ::= "a"')
    assert names(p) == ["logit_bias", "grammar", "penalties", "greedy"]
    assert p.is_greedy


def test_disabled_samplers_are_left_out() -> None:
    p = SamplingParams(top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0)
    assert names(p) == ["temp", "dist"]
    assert "top_k" not in names(SamplingParams(top_k=5000), n_vocab=1000)  # k >= vocab is a no-op


def test_full_order_matches_llama_cpp_tools() -> None:
    p = SamplingParams(repeat_penalty=1.1, dry_multiplier=0.8, top_n_sigma=1.5, typical_p=0.9,
                       xtc_probability=0.5, dynatemp_range=0.2, seed=7)
    assert names(p) == ["penalties", "dry", "top_n_sigma", "top_k", "typical", "top_p", "min_p",
                        "xtc", "temp_ext", "dist"]
    steps = plan(p, 1000, n_ctx=512)
    assert steps[-1].args == (7,)
    assert steps[1].args[3] == 512  # dry_penalty_last_n=-1: the whole context


def test_whole_context_windows_need_the_context_size() -> None:
    with pytest.raises(ValueError, match="context size"):
        plan(SamplingParams(dry_multiplier=0.8), 1000)
    assert plan(SamplingParams(repeat_penalty=1.1, penalty_last_n=-1), 1000, n_ctx=99)[0].args[1] == 99


@pytest.mark.parametrize("mode, last", [(1, "mirostat"), (2, "mirostat_v2")])
def test_mirostat_replaces_the_truncation_samplers(mode: int, last: str) -> None:
    assert names(SamplingParams(mirostat_mode=mode)) == ["temp", last]


def test_lazy_grammar_when_triggers_are_given() -> None:
    p = SamplingParams(grammar='root ::= "x"', grammar_trigger_patterns=["<tool>"])
    assert plan(p, 10)[0].name == "grammar_lazy"


@pytest.mark.parametrize("bad", [
    {"temperature": float("nan")}, {"top_p": "high"}, {"mirostat_mode": 3},
    {"repeat_penalty": 0.0}, {"min_keep": 0},
])
def test_bad_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**bad)  # type: ignore[arg-type]


def test_seed_none_means_random_seed() -> None:
    assert plan(SamplingParams(), 10)[-1].args == (0xFFFFFFFF,)


def test_build_chain_on_a_real_vocab(stories260k: Path) -> None:
    with Model(stories260k) as model:
        vocab = Vocab(model)
        chain = build_chain(SamplingParams(repeat_penalty=1.1, dry_multiplier=0.5, seed=1), vocab, 256)
        assert chain.names() == ["penalties", "dry", "top-k", "top-p", "min-p", "temp", "dist"]
        with pytest.raises(SamplerError):
            build_chain(SamplingParams(grammar="root ::= nowhere"), vocab, 256)
