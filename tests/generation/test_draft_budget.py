"""Model-free tests of DraftBudget: the draft length one verify decode is worth."""

from __future__ import annotations

import pytest

from llama_binding.generation.speculative import DraftBudget


def feed_costs(b: DraftBudget, one: float, per_token: float, sizes: list[int]) -> None:
    for n in sizes:
        b.observe_decode(n, one + per_token * (n - 1))


def test_unknown_cost_asks_for_the_cap() -> None:
    b = DraftBudget()
    assert b.cost_per_token is None
    assert b.limit(16) == 16
    feed_costs(b, 0.006, 0.003, [5, 5, 5])  # one size only: no slope yet
    assert b.cost_per_token is None and b.limit(7) == 7
    assert b.limit(0) == 0


def test_cost_is_fitted_from_decode_sizes() -> None:
    b = DraftBudget()
    feed_costs(b, 0.006, 0.003, [1, 4, 8, 2, 16, 1])
    assert b.cost_per_token == pytest.approx(0.5, rel=1e-6)
    g = DraftBudget()
    feed_costs(g, 0.001, 0.00002, [1, 17, 9, 17])
    assert g.cost_per_token == pytest.approx(0.02, rel=1e-6)


def test_cheap_batches_draft_long_expensive_ones_short() -> None:
    gpu, cpu = DraftBudget(), DraftBudget()
    feed_costs(gpu, 0.001, 0.00002, [1, 17])
    feed_costs(cpu, 0.006, 0.0033, [1, 17])
    for b in (gpu, cpu):
        for _ in range(20):
            b.observe_verify(8, 7)  # acceptance about 7/8
    assert 0.8 < gpu.acceptance < 0.9
    assert gpu.limit(16) >= 12
    assert 1 <= cpu.limit(16) <= 4
    for _ in range(30):  # a perfect drafter makes long drafts pay even at c = 0.55
        cpu.observe_verify(16, 16)
    assert cpu.limit(16) == 16


def test_poor_acceptance_pauses_with_backoff_and_probes() -> None:
    b = DraftBudget()
    feed_costs(b, 0.006, 0.0033, [1, 2, 1, 2])
    for _ in range(20):
        b.observe_verify(1, 0)
    asked = [b.limit(16) for _ in range(40)]
    probes = [i for i, k in enumerate(asked) if k]
    assert all(k in (0, 1) for k in asked)
    # probe, pause 1, probe, pause 2, probe, pause 4, ... (capped at 16)
    assert probes[:5] == [0, 2, 5, 10, 19]
    # a right probe restores drafting
    for _ in range(15):
        b.observe_verify(1, 1)
    assert b.limit(16) > 1


def test_acceptance_forgets_old_results() -> None:
    b = DraftBudget(decay=0.5)
    for _ in range(10):
        b.observe_verify(4, 0)
    assert b.acceptance < 0.05
    for _ in range(10):
        b.observe_verify(4, 4)
    assert b.acceptance > 0.95
    b.observe_verify(0, 0)  # nothing drafted: no information
    assert b.acceptance > 0.95
