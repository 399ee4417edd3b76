"""Speculative decoding (SpeculativeSteps) against the plain loop (generate_tokens), on real
GGUF models: tiny random Llamas written by the fixtures, stories260K and SmolLM2.

**The exactness rule.** Speculation verifies ``[token, *draft]`` in one batched decode, and
batched kernels give logits that differ from one-token decodes in the last bits (measured by
``test_batched_rows_differ_from_single_token_rows_only_by_kernel_noise``). So "speculative
greedy == plain greedy" is checked *teacher-forced*: the speculative output is evaluated
again token by token with the plain loop's mechanics (a fresh context, the prompt prefilled
in one batch, then one ``decode_token`` per token) and every speculative token must be the
argmax there, except at a **near-tie**: a position where the plain top logit beats the
speculative token's logit by at most ``NEAR_TIE_REL * max|logit|``. Near-ties are never
hidden: each one is kept in ``NEAR_TIES``, reported with a :class:`NearTieWarning` and
``record_property``, and their number is bounded per test. The direct comparison (speculative
output == plain output) must hold for most prompts, and where it does not, the first
divergence must be one of those near-ties.
"""

from __future__ import annotations

import itertools
import math
import random
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from llama_binding import _backend
from llama_binding.core import Context, ContextParams, Model, Vocab
from llama_binding.core.batch import Batch
from llama_binding.core.sampler import SamplerChain
from llama_binding.generation.drafters import Drafter, LlamaPromptLookupDecoding, ModelDrafter
from llama_binding.generation.sampling import SamplingParams, build_chain
from llama_binding.generation.speculative import SpeculativeStats, SpeculativeSteps
from llama_binding.generation.steps import SequenceState, generate_tokens, prefill

# One thread: the tiny models gain nothing from more, and a busy-waiting thread pool on a
# shared 2-core runner can slow a decode down a hundredfold.
TINY_CTX = ContextParams(n_ctx=256, n_batch=64, n_threads=1, n_threads_batch=1)
N_TOKENS = 32
N_PROMPTS = 32

#: Target models (TinySpec fields). All share the llama-spm vocabulary (32000 tokens).
TARGETS: dict[str, dict[str, object]] = {
    # untied output, 4 heads: varied output, now and then a short cycle
    "cycles": {"seed": 12, "n_embd": 64, "n_head": 4, "n_head_kv": 2, "n_ff": 128, "tied_embeddings": False},
    # untied, narrow: varied output, few repeats
    "varied": {"seed": 11, "n_embd": 32, "n_head": 2, "n_head_kv": 1, "n_ff": 64, "tied_embeddings": False},
    # tied, large weights: logits of size ~70, so kernel noise is largest here
    "sharp": {"seed": 14, "n_embd": 32, "n_head": 2, "n_head_kv": 2, "n_ff": 64, "scale": 3.0},
    # the default shape: it repeats one token forever (prompt lookup drafts at every step)
    "repeater": {"seed": 15},
}
#: A draft model with other weights, the same vocabulary: one layer, tied embeddings (it
#: mostly predicts a repeat of the last token, so a target that repeats accepts some drafts).
OTHER_DRAFT: dict[str, object] = {"seed": 101, "n_embd": 32, "n_head": 2, "n_head_kv": 1, "n_ff": 64,
                                  "n_layer": 1}
REPEATER = TARGETS["repeater"]

#: Largest measured |batched row - one-token row| / max|logit| on the CPU is 1.6e-3 (the "sharp"
#: model; 2e-4 for the others, 0 for SmolLM2's Q4_1). Flipping an argmax takes a gap of at most
#: twice that, so 5e-3 leaves a margin; the noise test below keeps the measurement under half of
#: it. CUDA's batched and one-token kernels differ more (1.76e-2 for "sharp" on an H200, with 22
#: of its 32 outputs equal to the plain ones under self-drafting), so a GPU build gets 4e-2.
GPU = _backend.has_local_gpu()
NEAR_TIE_REL = 4e-2 if GPU else 5e-3
#: The share of prompts whose speculative output must equal the plain one outright.
MIN_EQUAL_SHARE = 0.6 if GPU else 0.9
#: At most this fraction of checked positions may be near-ties (besides one free one per test).
MAX_NEAR_TIE_FRACTION = 0.02


class NearTieWarning(UserWarning):
    """A speculative greedy token that differs from the plain argmax at a near-tie."""


@dataclass(frozen=True)
class NearTie:
    where: str
    position: int
    plain: int
    speculative: int
    gap: float
    scale: float


#: Every near-tie seen in this module, for the record (each test also warns about its own).
NEAR_TIES: list[NearTie] = []


# --- models, reference runs ----------------------------------------------------------------------


@dataclass
class Loaded:
    """A model with its vocabulary, and caches of plain runs and teacher-forced checks."""

    model: Model
    vocab: Vocab
    params: ContextParams = TINY_CTX
    plain_cache: dict[tuple[object, ...], list[int]] = field(default_factory=dict)
    teacher_cache: dict[tuple[tuple[int, ...], tuple[int, ...]], list[tuple[int, float, float, float]]] = (
        field(default_factory=dict))

    def context(self, params: ContextParams | None = None) -> Context:
        return Context(self.model, params or self.params)

    def greedy_chain(self) -> SamplerChain:
        chain = build_chain(SamplingParams(temperature=0.0), self.vocab, self.params.n_ctx or 0)
        assert chain.names() == ["greedy"]
        return chain

    def chain(self, kind: str) -> SamplerChain | None:
        return None if kind == "argmax" else self.greedy_chain()

    def plain(self, prompt: Sequence[int], max_tokens: int | None = N_TOKENS, kind: str = "argmax",
              params: ContextParams | None = None) -> list[int]:
        """The plain loop's greedy output, in a fresh context."""
        key = (tuple(prompt), max_tokens, kind, params)
        if key not in self.plain_cache:
            ctx = self.context(params)
            self.plain_cache[key] = list(generate_tokens(ctx, self.vocab, self.chain(kind), list(prompt),
                                                         SequenceState(ctx), max_tokens))
        return self.plain_cache[key]

    def teacher(self, prompt: Sequence[int], out: Sequence[int]) -> list[tuple[int, float, float, float]]:
        """Per position of ``out``: (argmax, top logit, logit of out[i], max|logit|) of the plain
        loop's logits for ``prompt + out[:i]``, computed as the plain loop computes them."""
        key = (tuple(prompt), tuple(out))
        if key not in self.teacher_cache:
            ctx = self.context()
            state = SequenceState(ctx)
            batch = Batch(min(ctx.n_batch, len(prompt)))
            prefill(ctx, batch, list(prompt), state)
            rows = []
            for i, tok in enumerate(out):
                if i:
                    ctx.decode_token(batch, out[i - 1], len(prompt) + i - 1, state.seq_id)
                x = ctx.logits(-1)
                top = int(np.argmax(x))
                rows.append((top, float(x[top]), float(x[tok]), float(np.abs(x).max())))
            self.teacher_cache[key] = rows
        return self.teacher_cache[key]


@pytest.fixture(scope="module")
def tiny(tiny_model: Callable[..., Path]) -> Callable[[dict[str, object]], Loaded]:
    """Loads tiny models by TinySpec fields, once per module."""
    loaded: dict[tuple[tuple[str, object], ...], Loaded] = {}

    def get(spec: dict[str, object]) -> Loaded:
        key = tuple(sorted(spec.items()))
        if key not in loaded:
            model = Model(tiny_model(**spec))
            loaded[key] = Loaded(model, Vocab(model))
        return loaded[key]

    return get


def random_prompts(seed: int, n: int, n_vocab: int) -> list[list[int]]:
    """``n`` prompts of 1..40 tokens: random ids, repeated patterns, copied spans, a tiny
    alphabet (the last three have repeated n-grams, so prompt lookup drafts)."""
    rng = random.Random(seed)

    def tok() -> int:
        return rng.randrange(3, n_vocab)  # not unk/bos/eos

    prompts = []
    for k in range(n):
        length = rng.randint(1, 40)
        kind = k % 4
        if kind == 0:
            p = [tok() for _ in range(length)]
        elif kind == 1:  # a pattern repeated after a random lead-in
            pattern = [tok() for _ in range(rng.randint(1, 6))]
            lead = [tok() for _ in range(rng.randint(0, 5))]
            p = (lead + pattern * 40)[:length]
        elif kind == 2:  # random text with one span copied to the end
            p = [tok() for _ in range(max(1, length // 2))]
            i = rng.randrange(len(p))
            p = (p + p[i : i + rng.randint(1, 8)])[:length]
        else:  # few distinct tokens: many repeated n-grams
            alphabet = [tok() for _ in range(rng.randint(2, 5))]
            p = [rng.choice(alphabet) for _ in range(length)]
        if k % 3 == 0 and len(p) < 40:
            p = [1, *p]  # BOS
        prompts.append(p)
    return prompts


# --- checks ---------------------------------------------------------------------------------------


def near_tie_limit(n_positions: int) -> int:
    return 1 + int(MAX_NEAR_TIE_FRACTION * n_positions)


def report_near_ties(ties: Sequence[NearTie], n_positions: int,
                     record_property: Callable[[str, object], None] | None = None) -> None:
    """Record and bound the near-ties one test saw (each was warned about when found)."""
    if record_property is not None:
        record_property("checked_positions", n_positions)
        record_property("near_ties", [(t.where, t.position, t.gap) for t in ties])
    assert len(ties) <= near_tie_limit(n_positions), (
        f"{len(ties)} near-ties in {n_positions} positions: {ties}")


def check_teacher_forced(m: Loaded, prompt: Sequence[int], out: Sequence[int], where: str) -> list[NearTie]:
    """Every token of ``out`` is the plain argmax after ``prompt + out[:i]``, or a near-tie
    (kept in NEAR_TIES, warned about with NearTieWarning, and returned)."""
    ties = []
    for i, (tok, (top, top_logit, tok_logit, scale)) in enumerate(zip(out, m.teacher(prompt, out))):
        if tok == top:
            continue
        gap = top_logit - tok_logit
        assert gap <= NEAR_TIE_REL * max(scale, 1.0), (
            f"{where}: token {i} is {tok}, the plain argmax is {top} with a logit larger by {gap} "
            f"(max|logit| {scale}): not a near-tie")
        tie = NearTie(where, i, top, tok, gap, scale)
        warnings.warn(f"near-tie at {where} position {i}: plain {top}, speculative {tok}, gap {gap:.3g} "
                      f"(max|logit| {scale:.3g})", NearTieWarning, stacklevel=2)
        ties.append(tie)
    NEAR_TIES.extend(ties)
    return ties


def check_against_plain(m: Loaded, prompt: Sequence[int], out: Sequence[int], plain: Sequence[int],
                        where: str) -> tuple[bool, list[NearTie]]:
    """The teacher-forced rule, then the direct comparison: equal, or the first divergence is
    a near-tie. Returns (equal, near-ties)."""
    ties = check_teacher_forced(m, prompt, out, where)
    if list(out) == list(plain):
        return True, ties
    j = next((i for i, (a, b) in enumerate(zip(out, plain)) if a != b), min(len(out), len(plain)))
    assert j < min(len(out), len(plain)), f"{where}: one output is a prefix of the other: {out} {plain}"
    # up to j the histories are equal, so the teacher-forced row j is the plain loop's own row
    assert m.teacher(prompt, out)[j][0] == plain[j], f"{where}: the teacher-forced harness drifted"
    assert any(t.position == j for t in ties), f"{where}: first divergence at {j} is not a near-tie"
    return False, ties


def check_stats(stats: SpeculativeStats, out: Sequence[int]) -> None:
    """The counters agree with each other and with the output of a run that went to its end."""
    assert stats.generated == len(out)
    assert 0 <= stats.accepted <= stats.drafted
    assert stats.drafted - stats.accepted <= stats.target_decodes  # a walk ends at its first rejection
    if len(out) > 1:
        assert stats.target_decodes >= 1
    # the first token comes from the prompt; every decode adds its accepted drafts plus the
    # target's own token, except a last one that ended at an accepted end-of-generation draft
    assert stats.generated - 1 - stats.accepted - stats.target_decodes in (0, -1), stats
    assert 0.0 <= stats.acceptance_rate <= 1.0


def check_memory(ctx: Context, state: SequenceState, prompt: Sequence[int], out: Sequence[int]) -> None:
    """The KV memory holds exactly ``state.tokens``, a prefix of prompt + output that lacks at
    most the last token (never decoded, as in the plain loop)."""
    history = [*prompt, *out]
    assert state.tokens == history[: len(state.tokens)]
    assert len(state.tokens) >= len(history) - 1
    assert ctx.seq_pos_max(state.seq_id) == len(state.tokens) - 1


def speculate(m: Loaded, prompt: Sequence[int], drafter: Drafter, max_tokens: int | None = N_TOKENS,
              chain: SamplerChain | None = None, ctx: Context | None = None,
              state: SequenceState | None = None, **kwargs: object) -> tuple[list[int], SpeculativeSteps]:
    ctx = ctx if ctx is not None else m.context()
    state = state if state is not None else SequenceState(ctx)
    steps = SpeculativeSteps(ctx, m.vocab, chain, list(prompt), state, drafter, max_tokens,
                             **kwargs)  # type: ignore[arg-type]
    return list(steps), steps


class ScriptedDrafter:
    """Drafts from a known continuation ``script`` of ``prompt``: at each call the first
    ``n_right(call)`` tokens are the script's, the rest are wrong on purpose
    (``(script[j] + 1) % n_vocab``). ``length`` None drafts what is asked; a number ignores
    ``max_tokens`` (the loop must cut the draft itself). Records what it was told."""

    def __init__(self, prompt: Sequence[int], script: Sequence[int], n_vocab: int,
                 n_right: Callable[[int], int] = lambda call: 0, length: int | None = None) -> None:
        self.prompt = list(prompt)
        self.script = list(script)
        self.n_vocab = n_vocab
        self.n_right = n_right
        self.length = length
        self.asked: list[int] = []
        self.feedback: list[tuple[int, int]] = []

    def draft(self, tokens: Sequence[int], max_tokens: int) -> list[int]:
        assert list(tokens[: len(self.prompt)]) == self.prompt
        self.asked.append(max_tokens)
        i = len(tokens) - len(self.prompt)
        n = max_tokens if self.length is None else self.length
        right = self.n_right(len(self.asked) - 1)
        out = []
        for j in range(i, i + n):
            good = self.script[j] if j < len(self.script) else 3
            out.append(good if j - i < right else (good + 1) % self.n_vocab)
        return out

    def accepted(self, n_drafted: int, n_accepted: int) -> None:
        self.feedback.append((n_drafted, n_accepted))


class NoDrafter:
    def draft(self, tokens: Sequence[int], max_tokens: int) -> list[int]:
        return []

    def accepted(self, n_drafted: int, n_accepted: int) -> None:
        raise AssertionError("no draft, no feedback")


def make_drafter(kind: str, m: Loaded, tiny: Callable[[dict[str, object]], Loaded],
                 params: ContextParams | None = None) -> Drafter:
    if kind == "lookup":
        return LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=10)
    d = m if kind == "self" else tiny(OTHER_DRAFT)
    assert m.vocab.mismatch(d.vocab) is None
    return ModelDrafter(d.context(params), d.vocab, num_pred_tokens=8)


# --- 1. greedy speculation == plain greedy --------------------------------------------------------


def test_the_near_tie_rule_itself(tiny: Callable[[dict[str, object]], Loaded]) -> None:
    """The harness: a token that is not the plain argmax passes only within NEAR_TIE_REL,
    is recorded, and a first divergence elsewhere fails the direct comparison."""
    m = tiny(TARGETS["varied"])
    prompt = [1, 400, 500]
    plain = m.plain(prompt, max_tokens=2)
    out = [plain[0], (plain[1] + 1) % m.vocab.n_tokens]
    top, top_logit, _, scale = m.teacher(prompt, out)[1]
    fake = Loaded(m.model, m.vocab)
    rows = list(m.teacher(prompt, out))
    fake.teacher_cache[(tuple(prompt), tuple(out))] = rows
    rows[1] = (top, top_logit, top_logit - 0.9 * NEAR_TIE_REL * max(scale, 1.0), scale)
    before = len(NEAR_TIES)
    with pytest.warns(NearTieWarning, match="harness position 1"):
        equal, ties = check_against_plain(fake, prompt, out, plain, "harness")
    assert not equal and [t.position for t in ties] == [1]
    del NEAR_TIES[before:]  # made up: not a real near-tie
    rows[1] = (top, top_logit, top_logit - 1.1 * NEAR_TIE_REL * max(scale, 1.0), scale)
    with pytest.raises(AssertionError, match="not a near-tie"):
        check_teacher_forced(fake, prompt, out, "harness")
    with pytest.raises(AssertionError, match="near-ties in"):
        report_near_ties([ties[0]] * 3, 10)

@pytest.mark.parametrize("chain_kind", ["argmax", "greedy_chain"])
@pytest.mark.parametrize("drafter_kind", ["lookup", "self", "other"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_speculative_greedy_equals_plain_greedy(tiny: Callable[[dict[str, object]], Loaded], target: str,
                                                 drafter_kind: str, chain_kind: str,
                                                 record_property: Callable[[str, object], None]) -> None:
    m = tiny(TARGETS[target])
    prompts = random_prompts(1000 + list(TARGETS).index(target), N_PROMPTS, m.vocab.n_tokens)
    kind = "argmax" if chain_kind == "argmax" else "chain"
    total = SpeculativeStats()
    ties: list[NearTie] = []
    n_equal = n_positions = 0
    drafter = make_drafter(drafter_kind, m, tiny)  # one drafter for all prompts, as a server would
    for k, prompt in enumerate(prompts):
        where = f"{target}/{drafter_kind}/{chain_kind}/prompt {k}"
        plain = m.plain(prompt, kind=kind)
        assert [r[0] for r in m.teacher(prompt, plain)] == plain  # the harness is the plain loop
        out, steps = speculate(m, prompt, drafter, chain=m.chain(kind))
        assert len(out) == N_TOKENS or m.vocab.is_eog(out[-1])
        equal, found = check_against_plain(m, prompt, out, plain, where)
        n_equal += equal
        ties += found
        n_positions += len(out)
        check_stats(steps.stats, out)
        check_memory(steps.ctx, steps.state, prompt, out)
        total.add(steps.stats)
    record_property("stats", total.as_dict())
    report_near_ties(ties, n_positions, record_property)
    assert n_equal >= MIN_EQUAL_SHARE * len(prompts), f"only {n_equal} of {len(prompts)} equal the plain ones"
    assert total.drafted > 0
    if drafter_kind == "self":  # the draft is the target: only near-ties can be rejected
        assert total.acceptance_rate >= 0.95, total
    if drafter_kind == "lookup" and target == "cycles":
        assert total.accepted > 0, total


def test_batched_rows_differ_from_single_token_rows_only_by_kernel_noise(
        tiny: Callable[[dict[str, object]], Loaded], record_property: Callable[[str, object], None]) -> None:
    """The measurement behind NEAR_TIE_REL: the rows a verify decode samples from (read with
    ``logits_hook``) against the plain loop's rows for the same history."""
    overall = 0.0
    for name, spec in TARGETS.items():
        m = tiny(spec)
        worst = 0.0
        for prompt in random_prompts(7, 6, m.vocab.n_tokens):
            rows: dict[int, np.ndarray] = {}

            def hook(history: Sequence[int], x: np.ndarray, rows: dict[int, np.ndarray] = rows) -> None:
                rows[len(history)] = x.copy()

            out, _ = speculate(m, prompt, make_drafter("self", m, tiny), logits_hook=hook)
            ctx = m.context()
            state = SequenceState(ctx)
            batch = Batch(min(ctx.n_batch, len(prompt)))
            prefill(ctx, batch, prompt, state)
            for i in range(len(out)):
                if i:
                    ctx.decode_token(batch, out[i - 1], len(prompt) + i - 1, 0)
                single = ctx.logits(-1)
                diff = float(np.abs(rows[len(prompt) + i] - single).max())
                worst = max(worst, diff / max(float(np.abs(single).max()), 1.0))
        record_property(f"worst_relative_noise_{name}", worst)
        overall = max(overall, worst)
    assert overall <= NEAR_TIE_REL / 2


# --- 2. stats -------------------------------------------------------------------------------------


def test_stats_when_the_draft_model_is_the_target(tiny: Callable[[dict[str, object]], Loaded]) -> None:
    m = tiny(TARGETS["varied"])
    prompt = random_prompts(3, 1, m.vocab.n_tokens)[0]
    out, steps = speculate(m, prompt, make_drafter("self", m, tiny), max_tokens=48)
    stats = steps.stats
    check_stats(stats, out)
    ties = check_teacher_forced(m, prompt, out, "stats/self")
    report_near_ties(ties, len(out))
    if not ties:  # (a near-tie could reject one draft)
        assert stats.acceptance_rate == 1.0
        # 1 token from the prompt, then drafts of 8 (+1 from the target) and a shorter last one
        assert stats.target_decodes == math.ceil((48 - 1) / 9)
    assert stats.acceptance_rate >= 0.9
    assert stats.tokens_per_decode > 5


def test_stats_when_prompt_lookup_helps(tiny: Callable[[dict[str, object]], Loaded]) -> None:
    """A model that repeats one token: once two copies are out, lookup guesses right.

    Lookup proposes what followed the *most recent* earlier match, one period back in a
    loop, and continues the pattern past the end of the history, so the whole loop is
    drafted, not one period at a time."""
    m = tiny(REPEATER)
    prompt = [1, *range(500, 540)]
    plain = m.plain(prompt, max_tokens=48)
    assert len(set(plain)) == 1  # the premise: it repeats
    out, steps = speculate(m, prompt, make_drafter("lookup", m, tiny), max_tokens=48)
    assert out == plain
    check_stats(steps.stats, out)
    s = steps.stats
    assert s.acceptance_rate == 1.0
    # no draft after the first token (it has no earlier match); then the loop is drafted in
    # full (the pattern continues past the end of the history), the length doubling 1, 2, 4,
    # ... up to num_pred_tokens
    assert (s.drafted, s.accepted, s.target_decodes) == (42, 42, 5)
    assert s.tokens_per_decode == pytest.approx(48 / 5)


def test_stats_without_drafts_count_one_decode_per_token(tiny: Callable[[dict[str, object]], Loaded]) -> None:
    m = tiny(TARGETS["cycles"])
    prompt = random_prompts(4, 1, m.vocab.n_tokens)[0]
    out, steps = speculate(m, prompt, NoDrafter(), max_tokens=20)
    assert out == m.plain(prompt, max_tokens=20)
    s = steps.stats
    assert (s.drafted, s.accepted, s.generated, s.target_decodes) == (0, 0, 20, 19)
    # the first token comes from the prompt's decode, which is not counted
    assert s.tokens_per_decode == pytest.approx(20 / 19)
    assert s.acceptance_rate == 0.0


# --- 3. rollback ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["cycles", "varied"])
def test_every_draft_rejected_rolls_back(tiny: Callable[[dict[str, object]], Loaded], target: str) -> None:
    m = tiny(TARGETS[target])
    for k, prompt in enumerate(random_prompts(11, 6, m.vocab.n_tokens)):
        plain = m.plain(prompt)
        assert len(plain) == N_TOKENS
        ctx = m.context()
        state = SequenceState(ctx)
        drafter = ScriptedDrafter(prompt, plain, m.vocab.n_tokens)
        out, steps = speculate(m, prompt, drafter, ctx=ctx, state=state)
        check_against_plain(m, prompt, out, plain, f"reject-all/{target}/{k}")
        s = steps.stats
        check_stats(s, out)
        # every decode but the last (max_tokens leaves it no room) verified a draft that was
        # rejected at its first token
        assert (s.accepted, s.target_decodes, s.drafted) == (0, N_TOKENS - 1, N_TOKENS - 2)
        assert drafter.feedback == [(1, 0)] * (N_TOKENS - 2)
        assert state.tokens == [*prompt, *out[:-1]]
        assert ctx.seq_pos_max(0) == len(state.tokens) - 1
        # what is in memory is right, not only its length: a plain continuation reuses it and
        # gives what a fresh context gives
        more = [*prompt, *out, 777]
        ctx.perf_reset()
        again = list(generate_tokens(ctx, m.vocab, None, more, state, 8))
        assert ctx.perf()["n_p_eval"] == 2  # the last output token and 777
        check_against_plain(m, more, again, m.plain(more, max_tokens=8), f"after/{target}/{k}")


def test_partly_rejected_drafts_roll_back_the_rest(tiny: Callable[[dict[str, object]], Loaded]) -> None:
    m = tiny(TARGETS["cycles"])
    for k, prompt in enumerate(random_prompts(12, 6, m.vocab.n_tokens)):
        plain = m.plain(prompt)
        ctx = m.context()
        state = SequenceState(ctx)
        drafter = ScriptedDrafter(prompt, plain, m.vocab.n_tokens, n_right=lambda call: call % 4, length=5)
        out, steps = speculate(m, prompt, drafter, ctx=ctx, state=state)
        check_against_plain(m, prompt, out, plain, f"partial/{k}")
        s = steps.stats
        check_stats(s, out)
        assert 0 < s.accepted < s.drafted
        # each walk stops at the first wrong token: as many accepted as were right
        assert all(ok == min(call % 4, drafted) for call, (drafted, ok) in enumerate(drafter.feedback))
        check_memory(ctx, state, prompt, out)
        assert state.tokens == [*prompt, *out[:-1]]


# --- 4. early stop --------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [1, 2, 5, 9, 12])
@pytest.mark.parametrize("drafter_kind", ["script", "self", "lookup"])
def test_closing_mid_draft_keeps_memory_in_step(tiny: Callable[[dict[str, object]], Loaded], stop: int,
                                                drafter_kind: str) -> None:
    m = tiny(TARGETS["cycles"])
    prompt = random_prompts(21, 2, m.vocab.n_tokens)[1]  # a repeated pattern
    plain = m.plain(prompt)
    drafter = (ScriptedDrafter(prompt, plain, m.vocab.n_tokens, n_right=lambda call: 99)
               if drafter_kind == "script" else make_drafter(drafter_kind, m, tiny))
    ctx = m.context()
    state = SequenceState(ctx)
    steps = SpeculativeSteps(ctx, m.vocab, None, prompt, state, drafter, N_TOKENS)
    got = list(itertools.islice(steps, stop))
    steps.close()
    check_against_plain(m, prompt, got, plain[:stop], f"early/{drafter_kind}/{stop}")
    if drafter_kind == "script" and stop > 2:
        assert steps.stats.accepted >= stop - 2  # it did stop inside an accepted draft
    # the token being held when the caller stopped is not in memory; all before it are
    assert state.tokens == [*prompt, *got[:-1]]
    assert ctx.seq_pos_max(0) == len(state.tokens) - 1
    more = [*prompt, *got, 4242, 4243]
    kept = len(state.tokens)
    ctx.perf_reset()
    again = list(generate_tokens(ctx, m.vocab, None, more, state, 10))
    assert ctx.perf()["n_p_eval"] == len(more) - kept
    fresh = m.plain(more, max_tokens=10)
    check_against_plain(m, more, again, fresh, f"early-after/{drafter_kind}/{stop}")


def test_stats_count_the_tokens_received_before_closing(tiny: Callable[[dict[str, object]], Loaded]) -> None:
    m = tiny(TARGETS["cycles"])
    prompt = random_prompts(21, 2, m.vocab.n_tokens)[1]
    plain = m.plain(prompt)
    drafter = ScriptedDrafter(prompt, plain, m.vocab.n_tokens, n_right=lambda call: 99)
    ctx = m.context()
    steps = SpeculativeSteps(ctx, m.vocab, None, prompt, SequenceState(ctx), drafter, N_TOKENS)
    got = list(itertools.islice(steps, 5))
    steps.close()
    assert steps.stats.generated == len(got) == 5
    assert steps.stats.accepted <= steps.stats.generated - 1


# --- 5. limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [1, 2, 3, 8, 17])
@pytest.mark.parametrize("drafter_kind", ["long-script", "lookup", "self"])
def test_max_tokens_is_a_hard_limit(tiny: Callable[[dict[str, object]], Loaded], max_tokens: int,
                                    drafter_kind: str) -> None:
    m = tiny(TARGETS["cycles"])
    prompt = random_prompts(31, 2, m.vocab.n_tokens)[1]
    plain = m.plain(prompt, max_tokens=64)
    assert not any(m.vocab.is_eog(t) for t in plain)
    # a scripted drafter that always offers 64 right tokens, whatever it is asked for
    drafter = (ScriptedDrafter(prompt, plain, m.vocab.n_tokens, n_right=lambda call: 99, length=64)
               if drafter_kind == "long-script" else make_drafter(drafter_kind, m, tiny))
    ctx = m.context()
    state = SequenceState(ctx)
    out, steps = speculate(m, prompt, drafter, max_tokens=max_tokens, ctx=ctx, state=state)
    assert len(out) == max_tokens
    check_against_plain(m, prompt, out, plain[:max_tokens], f"max/{drafter_kind}/{max_tokens}")
    check_stats(steps.stats, out)
    check_memory(ctx, state, prompt, out)
    if max_tokens == 1:
        assert (steps.stats.target_decodes, steps.stats.drafted) == (0, 0)
        assert state.tokens == prompt
    if isinstance(drafter, ScriptedDrafter):
        # asked for exactly the room left: max_tokens - 1 tokens after the prompt's one
        assert drafter.asked[:1] == ([max_tokens - 2] if max_tokens > 2 else [])
        assert steps.stats.target_decodes == (1 if max_tokens > 1 else 0)


def test_max_tokens_zero_yields_nothing(tiny: Callable[[dict[str, object]], Loaded]) -> None:
    m = tiny(TARGETS["cycles"])
    prompt = [1, 500, 600, 500]
    assert m.plain(prompt, max_tokens=0) == []
    out, _ = speculate(m, prompt, make_drafter("lookup", m, tiny), max_tokens=0)
    assert out == []


@pytest.mark.parametrize("fill", [0, 1, 6, 20])
@pytest.mark.parametrize("drafter_kind", ["long-script", "lookup", "self"])
def test_generates_until_the_context_is_full(tiny: Callable[[dict[str, object]], Loaded], fill: int,
                                             drafter_kind: str) -> None:
    """A prompt that leaves ``fill`` free cells of a small context: the plain loop's count
    (it stops when the next token has no cell: the last token is sampled but not decoded).
    llama.cpp raises the asked n_ctx=64 to its minimum of 256 cells."""
    params = ContextParams(n_ctx=64, n_batch=64, n_threads=1, n_threads_batch=1)
    m = tiny(TARGETS["cycles"])
    n_ctx = m.context(params).n_ctx_seq
    assert 64 <= n_ctx <= 256
    rng = random.Random(fill)
    pattern = [rng.randrange(3, m.vocab.n_tokens) for _ in range(5)]
    prompt = (pattern * n_ctx)[: n_ctx - fill]
    plain = m.plain(prompt, max_tokens=None, params=params)
    assert not any(m.vocab.is_eog(t) for t in plain)
    assert len(plain) == fill + 1
    drafter = (ScriptedDrafter(prompt, plain, m.vocab.n_tokens, n_right=lambda call: 99, length=64)
               if drafter_kind == "long-script" else make_drafter(drafter_kind, m, tiny, params))
    ctx = m.context(params)
    state = SequenceState(ctx)
    out, steps = speculate(m, prompt, drafter, max_tokens=None, ctx=ctx, state=state)
    assert len(out) == len(plain)
    check_against_plain(m, prompt, out, plain, f"full/{drafter_kind}/{fill}")
    check_stats(steps.stats, out)
    assert state.tokens == [*prompt, *out[:-1]]
    assert ctx.seq_pos_max(0) == n_ctx - 1


# --- 6. sampling ----------------------------------------------------------------------------------


def chi2_critical(df: int, z: float = 4.265) -> float:
    """Upper quantile of chi-square with ``df`` degrees of freedom (Wilson-Hilferty); the
    default z is the normal quantile for a 1e-5 tail."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


def chi2_fit(counts: Counter[int], probs: dict[int, float], min_expected: float = 5.0) -> tuple[float, int]:
    """Pearson's statistic of ``counts`` against ``probs``, and its degrees of freedom: one
    cell per token expected at least ``min_expected`` times, one cell for all other tokens
    (merged into the smallest cell when it is expected less often than that)."""
    n = sum(counts.values())
    cells = sorted((t for t, p in probs.items() if p * n >= min_expected), key=lambda t: probs[t])
    observed = [float(counts[t]) for t in cells]
    expected = [probs[t] * n for t in cells]
    rest_obs, rest_exp = n - sum(observed), n - sum(expected)
    if rest_exp >= min_expected or not cells:
        observed.append(rest_obs)
        expected.append(max(rest_exp, 1e-9))
    else:
        observed[0] += rest_obs
        expected[0] += rest_exp
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    return stat, max(len(observed) - 1, 1)


def chi2_two_samples(a: Counter[int], b: Counter[int], min_count: int = 10) -> tuple[float, int]:
    """Pearson's statistic that two equally large samples come from one distribution, and its
    degrees of freedom (tokens seen fewer than ``min_count`` times in both pooled together)."""
    assert sum(a.values()) == sum(b.values())
    cells = [t for t in set(a) | set(b) if a[t] + b[t] >= min_count]
    pairs = [(a[t], b[t]) for t in cells]
    rest = (sum(a.values()) - sum(x for x, _ in pairs), sum(b.values()) - sum(y for _, y in pairs))
    if sum(rest):
        pairs.append(rest)
    stat = sum((x - y) ** 2 / (x + y) for x, y in pairs)
    return stat, max(len(pairs) - 1, 1)


def test_sampling_follows_the_target_distribution(stories260k: Path,
                                                  record_property: Callable[[str, object], None]) -> None:
    """Temperature 1, no truncation: the second token (the first one a draft is verified for)
    of speculative sampling has the target's exact distribution, as the plain loop's has.

    Exact reference: P(t1 = x) = sum over t0 of p(t0 | prompt) p(x | prompt, t0), from the
    logits. Each run is seeded, so it is deterministic; the plain and speculative runs use
    disjoint seeds. The test would catch a wrong acceptance rule: accepting every draft gives
    t1 = argmax(. | prompt, t0) always, a distribution the same check rejects by far, and so
    does the acceptance rate (its expectation is E[p(draft)], computed exactly too)."""
    model = Model(stories260k)
    vocab = Vocab(model)
    params = ContextParams(n_ctx=64, n_batch=64, n_threads=1, n_threads_batch=1)
    prompt = vocab.tokenize("She said")
    runs = 600

    def chain(seed: int) -> SamplerChain:
        c = build_chain(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed), vocab, 64)
        assert c.names() == ["?temp", "dist"]  # llama.cpp's temperature 1 is a no-op ("?")
        return c

    # the exact distributions
    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x.astype(np.float64) - float(x.max()))
        return e / e.sum()

    ctx = Context(model, params)
    state = SequenceState(ctx)
    batch = Batch(len(prompt))
    prefill(ctx, batch, prompt, state)
    p0 = softmax(ctx.logits(-1))
    p1: dict[int, float] = {}
    p1_always_accept: dict[int, float] = {}
    expected_acceptance = 0.0
    for t0 in np.flatnonzero(p0 > 1e-7):
        ctx.seq_rm(0, len(prompt), -1)
        ctx.decode_token(batch, int(t0), len(prompt), 0)
        q = softmax(ctx.logits(-1))
        for x in np.flatnonzero(q > 1e-9):
            p1[int(x)] = p1.get(int(x), 0.0) + float(p0[t0] * q[x])
        top = int(np.argmax(q))
        p1_always_accept[top] = p1_always_accept.get(top, 0.0) + float(p0[t0])
        expected_acceptance += float(p0[t0] * q[top])

    # plain runs, seeds 0..runs-1
    ctx = Context(model, params)
    state = SequenceState(ctx)
    plain = [list(generate_tokens(ctx, vocab, chain(s), prompt, state, 3)) for s in range(runs)]
    # speculative runs: the same seeds (coupled), then other seeds (independent)
    ctx = Context(model, params)
    state = SequenceState(ctx)
    drafter = ModelDrafter(Context(model, params), vocab, num_pred_tokens=4)
    coupled, independent, stats = [], [], SpeculativeStats()
    for s in range(2 * runs):
        steps = SpeculativeSteps(ctx, vocab, chain(s), prompt, state, drafter, 3)
        (coupled if s < runs else independent).append(list(steps))
        check_stats(steps.stats, coupled[-1] if s < runs else independent[-1])
        if s >= runs:
            stats.add(steps.stats)

    observed_plain = Counter(r[1] for r in plain)
    observed_spec = Counter(r[1] for r in independent)
    stat_plain, df_plain = chi2_fit(observed_plain, p1)
    stat_spec, df_spec = chi2_fit(observed_spec, p1)
    stat_wrong, df_wrong = chi2_fit(observed_spec, p1_always_accept)
    record_property("chi2", {"plain": (stat_plain, df_plain), "speculative": (stat_spec, df_spec),
                             "always_accept_model": (stat_wrong, df_wrong)})
    assert stat_plain <= chi2_critical(df_plain)
    assert stat_spec <= chi2_critical(df_spec)
    assert stat_wrong > 10 * chi2_critical(df_wrong)  # the check has power against that rule
    # the plain and speculative samples of the second and third tokens against each other
    for position in (1, 2):
        stat, df = chi2_two_samples(Counter(r[position] for r in plain),
                                    Counter(r[position] for r in independent))
        record_property(f"chi2_two_samples_{position}", (stat, df))
        assert stat <= chi2_critical(df), (position, stat, df)

    # every run drafted once after the first token (max_tokens=3 leaves room for one)
    assert stats.drafted == runs
    se = math.sqrt(expected_acceptance * (1 - expected_acceptance) / runs)
    record_property("acceptance", (stats.acceptance_rate, expected_acceptance))
    assert expected_acceptance < 0.8  # the premise: acceptance is far from certain here
    assert abs(stats.acceptance_rate - expected_acceptance) <= 4.5 * se

    # same seed, same tokens: each output token costs the chain one draw either way (the
    # rows differ only by kernel noise, which moves a draw across a boundary very rarely)
    same = sum(a == b for a, b in zip(plain, coupled))
    assert same >= 0.99 * runs, f"{runs - same} seeds gave other tokens"


# --- 7. a real model ------------------------------------------------------------------------------


def test_smollm2_prompt_lookup_on_a_copy_task(smollm2: Path,
                                              record_property: Callable[[str, object], None]) -> None:
    model = Model(smollm2)
    m = Loaded(model, Vocab(model), ContextParams(n_ctx=512))
    paragraph = ("The old lighthouse stood at the edge of the cliff, its white paint peeling in the salt "
                 "wind. Every evening the keeper climbed the spiral stairs, trimmed the wick, and watched "
                 "the ships pass safely through the narrow channel below.")
    prompt = m.vocab.tokenize(f"Repeat the following text exactly.\n\nText: {paragraph}\n\n"
                              "Repeated text: The old lighthouse")
    plain = m.plain(prompt, max_tokens=64)
    out, steps = speculate(m, prompt, LlamaPromptLookupDecoding(), max_tokens=64)
    _, ties = check_against_plain(m, prompt, out, plain, "smollm2/copy")
    report_near_ties(ties, len(out), record_property)
    record_property("stats", steps.stats.as_dict())
    check_stats(steps.stats, out)
    check_memory(steps.ctx, steps.state, prompt, out)
    assert b"spiral stairs, trimmed the wick" in m.vocab.detokenize(out)  # it did copy
    assert steps.stats.acceptance_rate > 0.5
    assert steps.stats.tokens_per_decode > 4
