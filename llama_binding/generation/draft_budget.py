"""How many draft tokens one verify decode is worth, on this machine, for this drafter.

A verify decode of ``1 + k`` tokens costs ``t(1) * (1 + c*k)``: ``c`` is about 0.02 on a
GPU (a batch costs little more than one token) and about 0.5 for SmolLM2 on a 2-core CPU.
With a per-token acceptance ``a`` (a draft is accepted up to its first wrong token), a
draft of ``k`` yields ``1 + a + a^2 + ... + a^k`` tokens on average, so the rate is

    gain(k) = (1 + a + ... + a^k) / (1 + c*k)

:class:`DraftBudget` measures both from the run itself: ``c`` by a least-squares line
through (tokens in the decode, seconds), ``a`` from the verify results (accepted tokens over
accepted tokens plus rejections), both with exponential forgetting. :meth:`limit` is the
``k`` that maximises ``gain``. When no draft pays (``k = 0``), drafting pauses for a few
steps, doubling up to 16, with a one-token probe in between, so a drafter that stops
being right costs little and one that becomes right again is noticed.
"""

from __future__ import annotations

__all__ = ["DraftBudget"]

_MAX_PAUSE = 16


class DraftBudget:
    """Measured verify cost and acceptance -> the draft length worth verifying."""

    __slots__ = ("_accepted", "_decay", "_pause", "_rejected", "_s", "_skip")

    def __init__(self, decay: float = 0.9) -> None:
        self._decay = decay
        self._s = [0.0] * 5  # weighted sums of 1, n, n^2, t, n*t over the decodes seen
        self._accepted = 1.6  # a prior of acceptance 0.8 worth two verifies
        self._rejected = 0.4
        self._skip = 0
        self._pause = 1

    def observe_decode(self, n_tokens: int, seconds: float) -> None:
        s, d = self._s, self._decay
        for i in range(5):
            s[i] *= d
        s[0] += 1.0
        s[1] += n_tokens
        s[2] += n_tokens * n_tokens
        s[3] += seconds
        s[4] += n_tokens * seconds

    def observe_verify(self, n_drafted: int, n_accepted: int) -> None:
        if n_drafted <= 0:
            return
        self._accepted = self._accepted * self._decay + n_accepted
        self._rejected = self._rejected * self._decay + (1.0 if n_accepted < n_drafted else 0.0)

    @property
    def acceptance(self) -> float:
        """The per-token acceptance estimate."""
        return self._accepted / (self._accepted + self._rejected)

    @property
    def cost_per_token(self) -> float | None:
        """``c``: the cost of one more token in a decode, relative to a one-token decode;
        None until decodes of different sizes were seen."""
        s0, sn, snn, st, snt = self._s
        den = s0 * snn - sn * sn
        if s0 < 1.5 or den <= 1e-9 * max(1.0, s0 * snn):
            return None
        slope = (s0 * snt - sn * st) / den
        one = (st - slope * sn) / s0 + slope  # the line at n = 1
        if one <= 0.0:
            return None
        return max(slope, 0.0) / one

    def limit(self, cap: int) -> int:
        """The draft length to ask for now (at most ``cap``)."""
        c = self.cost_per_token
        if c is None or cap <= 0:
            return max(cap, 0)
        a = self.acceptance
        best, best_gain = 0, 1.0
        tokens, term = 1.0, 1.0
        for k in range(1, cap + 1):
            term *= a
            tokens += term
            gain = tokens / (1.0 + c * k)
            if gain > best_gain:
                best, best_gain = k, gain
            elif term < 1e-3:
                break
        if best > 0:
            self._pause = 1
            self._skip = 0
            return best
        if self._skip > 0:
            self._skip -= 1
            return 0
        self._skip = self._pause
        self._pause = min(2 * self._pause, _MAX_PAUSE)
        return 1  # a probe, so the acceptance estimate can recover
