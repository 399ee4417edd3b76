"""The step generator on real models: greedy output equals llama.cpp's llama-completion."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from llama_binding.capi import _loader
from llama_binding.core import Context, ContextParams, Model, Vocab
from llama_binding.errors import ContextOverflowError
from llama_binding.generation.sampling import SamplingParams, build_chain
from llama_binding.generation.steps import SequenceState, common_prefix, generate_tokens

GREEDY = SamplingParams(temperature=0.0)


def _completion_tool() -> Path:
    tool = _loader.lib_dir().parent / "bin" / "llama-completion"
    if not tool.is_file():
        pytest.skip("llama-completion not built: install with LLAMA_BINDING_TOOLS=ON (CI does)")
    return tool


def _ours(model: Model, prompt: str, n: int, n_ctx: int = 512) -> bytes:
    ctx = Context(model, ContextParams(n_ctx=n_ctx))
    vocab = Vocab(model)
    tokens = vocab.tokenize(prompt)
    chain = build_chain(GREEDY, vocab, ctx.n_ctx)
    out = [vocab.token_to_piece(t) for t in generate_tokens(ctx, vocab, chain, tokens, SequenceState(ctx), n)
           if not vocab.is_eog(t)]
    return vocab.detokenize(tokens) + b"".join(out)


def _theirs(model_path: Path, prompt: str, n: int) -> tuple[bytes, bool]:
    """llama-completion's greedy text, and whether the run was complete.

    This build of llama-completion prints through an asynchronous logger that can lose its
    tail at exit: status 0 with stdout and log cut short, seen about 1 run in 10 here and
    most runs on a loaded machine. A run is complete when its log reaches the final
    timings; after 8 incomplete runs the longest one is returned, which is still a prefix
    of the full text."""
    cmd = [str(_completion_tool()), "-m", str(model_path), "-p", prompt, "-n", str(n), "--temp", "0",
           "-no-cnv", "--simple-io", "--no-warmup", "-c", "512", "-t", str(ContextParams().to_c().n_threads)]
    longest = b""
    for _ in range(8):
        proc = subprocess.run(cmd, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr[-2000:]
        if b"common_perf_print" in proc.stderr:
            return proc.stdout, True
        longest = max(longest, proc.stdout, key=len)
    return longest, False


def _check(theirs: tuple[bytes, bool], ours: bytes, prompt: str) -> None:
    text, complete = theirs
    if complete:
        assert text.rstrip(b"\n") == ours.rstrip(b"\n")
    else:  # only a cut-short oracle was had: it must still be a prefix of ours
        assert len(text) > len(prompt) and ours.startswith(text), (text, ours)


@pytest.mark.parametrize("prompt", ["Once upon a time", "The little dog", "Tom and Sue went to"])
def test_greedy_equals_llama_completion_stories(stories260k: Path, prompt: str) -> None:
    with Model(stories260k) as model:
        ours = _ours(model, prompt, 40)
    _check(_theirs(stories260k, prompt, 40), ours, prompt)


@pytest.mark.parametrize("prompt", ["The capital of France is", "def fibonacci(n):"])
def test_greedy_equals_llama_completion_smollm2(smollm2: Path, prompt: str) -> None:
    with Model(smollm2) as model:
        ours = _ours(model, prompt, 32)
    _check(_theirs(smollm2, prompt, 32), ours, prompt)


def test_prefix_reuse_evaluates_only_the_new_suffix(stories260k: Path) -> None:
    model = Model(stories260k)
    vocab = Vocab(model)
    ctx = Context(model, ContextParams(n_ctx=256))
    state = SequenceState(ctx)
    first = vocab.tokenize("Once upon a time, there was")
    list(generate_tokens(ctx, vocab, build_chain(GREEDY, vocab, 256), first, state, 4))
    assert state.tokens[: len(first)] == first
    second = vocab.tokenize("Once upon a time, there was a dog")
    kept = common_prefix(state.tokens, second)  # the prompt and what was generated after it
    assert kept >= common_prefix(first, second) > 0
    ctx.perf_reset()
    again = list(generate_tokens(ctx, vocab, build_chain(GREEDY, vocab, 256), second, state, 8))
    assert ctx.perf()["n_p_eval"] == len(second) - kept
    fresh_ctx = Context(model, ContextParams(n_ctx=256))
    fresh = list(generate_tokens(fresh_ctx, vocab, build_chain(GREEDY, vocab, 256), second,
                                 SequenceState(fresh_ctx), 8))
    assert again == fresh


def test_prompt_longer_than_context_is_refused(stories260k: Path) -> None:
    model = Model(stories260k)
    vocab = Vocab(model)
    ctx = Context(model, ContextParams(n_ctx=32))
    chain = build_chain(GREEDY, vocab, 32)
    with pytest.raises(ContextOverflowError, match=f"context holds {ctx.n_ctx_seq}"):
        next(generate_tokens(ctx, vocab, chain, [1] + [400] * ctx.n_ctx_seq, SequenceState(ctx)))
    with pytest.raises(ValueError, match="empty"):
        next(generate_tokens(ctx, vocab, chain, [], SequenceState(ctx)))


def test_generation_stops_when_the_context_is_full(stories260k: Path) -> None:
    model = Model(stories260k)
    vocab = Vocab(model)
    ctx = Context(model, ContextParams(n_ctx=32))
    prompt = vocab.tokenize("Once upon a time")
    chain = build_chain(SamplingParams(temperature=0.0, logit_bias={2: -1000.0}), vocab, 32)  # no EOS
    out = list(generate_tokens(ctx, vocab, chain, prompt, SequenceState(ctx), None))
    assert len(prompt) + len(out) == ctx.n_ctx_seq + 1  # the last sampled token is never decoded


def test_lookahead_gives_the_same_tokens_and_keeps_memory_in_step(stories260k: Path) -> None:
    model = Model(stories260k)
    ctx = Context(model, ContextParams(n_ctx=256))
    vocab = Vocab(model)
    prompt = vocab.tokenize("Once upon a time")
    other = Context(model, ContextParams(n_ctx=256))
    plain = list(generate_tokens(other, vocab, build_chain(GREEDY, vocab, 256), prompt,
                                 SequenceState(other), 20))
    ahead_state = SequenceState(ctx)
    ahead = list(generate_tokens(ctx, vocab, build_chain(GREEDY, vocab, 256), prompt, ahead_state, 20,
                                 lookahead=True))
    assert ahead == plain
    steps = generate_tokens(ctx, vocab, build_chain(GREEDY, vocab, 256), prompt, ahead_state, 20,
                            lookahead=True)
    for i, _tok in enumerate(steps):
        if i == 4:
            break
    steps.close()  # type: ignore[attr-defined]
    # the caller stopped after 5 tokens; the 5th was already decoded and is accounted for
    assert ahead_state.tokens == prompt + plain[:5]
    assert ctx.seq_pos_max(0) == len(ahead_state.tokens) - 1
    again = list(generate_tokens(ctx, vocab, build_chain(GREEDY, vocab, 256), prompt + plain[:5],
                                 ahead_state, 5, lookahead=True))
    assert again == plain[5:10]


@pytest.mark.parametrize("lookahead", [False, True])
def test_argmax_without_a_chain_equals_the_greedy_chain(stories260k: Path, lookahead: bool) -> None:
    """chain=None samples by the host's argmax of the logits: the same tokens as llama.cpp's
    greedy sampler, with and without lookahead, and memory stays in step."""
    model = Model(stories260k)
    vocab = Vocab(model)
    prompt = vocab.tokenize("Once upon a time")
    ctx = Context(model, ContextParams(n_ctx=256))
    greedy = build_chain(GREEDY, vocab, 256)
    chained = list(generate_tokens(ctx, vocab, greedy, prompt, SequenceState(ctx), 24))
    ctx2 = Context(model, ContextParams(n_ctx=256))
    state = SequenceState(ctx2)
    argmax = list(generate_tokens(ctx2, vocab, None, prompt, state, 24, lookahead=lookahead))
    assert argmax == chained
    assert ctx2.seq_pos_max(0) == len(state.tokens) - 1
    assert state.tokens == prompt + argmax[: len(state.tokens) - len(prompt)]
