"""How rare is this magnitude for this key? An empirical tail probability with bounded, decaying state.

Why not a z-score: real series are zero-inflated (tweet counts at night), quantised (EC2 CPU in 0.066 %
steps), constant for hours, or heavy-tailed (travel times). Any scale estimate (standard deviation, MAD)
collapses to ~0 on such a series and turns the next ordinary value into z ≈ 10⁶. A rank does not: the
p-value of a residual magnitude r is the share of the key's own past magnitudes that were at least r, so a
value seen often before is never rare, whatever its distance from the mean.

State: a histogram of past magnitudes on a log₂ grid (half-octave bins over ±20 octaves around the first
non-zero magnitude the key showed, plus one bin for exact zeros), weighted by recency with an exponential
forgetting factor (an effective memory of `memory` observations). The weights grow geometrically instead
of every bin shrinking (one multiplication per update, not one per bin), and are rescaled long before they
overflow. Beyond the largest magnitudes seen the empirical share runs out, so past the level that only
`TAIL_SHARE` of the mass exceeds, the tail is a generalised Pareto distribution fitted to the excesses over
that level by their moments (the peaks-over-threshold model of SPOT, Siffer et al., KDD 2017): a magnitude
twice as far out is rarer still, never "as rare as the rarest seen", and a heavy-tailed series (counts,
latencies) gets a heavy tail rather than the overconfident exponential one.

Speed. `auto` asks eight of these tails (four models, a long and a short memory each) about every window,
so this is the method's hot path; it is written to do no more work per window than the arithmetic needs,
without changing a single result bit: each tail's growth factor and the grid's edges are computed once
(the very expressions that used to be evaluated per call, so the same doubles), `max`/`min` of two floats
are conditional expressions (the same value, also on ties: `max(a, b)` is `b if b > a else a`), and the
generalised Pareto fit, needed only in the top `TAIL_SHARE` or while the memory fills (2 % of the calls
on NAB), lives apart from the common case. That common case is the empirical share above r, one C-level
`sum` over the bins above r's bin, and it must stay that very left-to-right sum to round the same (a
running suffix sum would not). It only stops at the highest bin ever filled instead of the grid's top:
the grid spans ±20 octaves around the first magnitude and a key's magnitudes rarely more than a few, so the
bins beyond are exact zeros, which add nothing to a float sum (x + 0.0 == x), and on NAB the sum is over
16 bins instead of 39.
"""

from __future__ import annotations

from math import exp, log2, log10
from typing import Any

BINS_PER_OCTAVE = 2
OCTAVES = 20  # each side of the reference magnitude: a dynamic range of 2^40
NBINS = 2 * OCTAVES * BINS_PER_OCTAVE  # bin 0 is exact zero; 1..NBINS the log grid
TAIL_SHARE = 0.02  # beyond the magnitude only this share exceeds, the exponential tail takes over
MIN_TAIL_MASS = 20.0  # ...but the tail level keeps at least this many (weighted) observations above it
RESCALE_AT = 1e200
BIN_MIDDLE = 2.0 ** (0.5 / BINS_PER_OCTAVE)  # a log bin's geometric middle over its bottom edge
MAX_SHAPE = 0.5  # the tail's shape estimate is capped (beyond it, moments are no longer finite)
# A log bin's bottom edge over the reference magnitude, per bin (bin 0, exact zero, has no edge: unused). The
# magnitude at the edge is ref * EDGE[b], multiplied in that order (a float product does not associate, so
# e.g. ref * (EDGE[b] * BIN_MIDDLE) would not be the same double as (ref * EDGE[b]) * BIN_MIDDLE).
EDGE = [2.0 ** ((b - 1) / BINS_PER_OCTAVE - OCTAVES) for b in range(NBINS + 1)]


class DecayingTail:
    """P(past magnitude >= r) for a key, from an exponentially weighted histogram of its magnitudes."""

    __slots__ = ("counts", "growth", "memory", "ref", "seen", "top", "total", "warmup", "weight")

    def __init__(self, memory: int, warmup: int) -> None:
        self.memory = memory
        self.warmup = warmup
        self.growth = 1.0 + 1.0 / memory  # the next weight over this one (derived, not state)
        self.ref = 0.0  # the reference magnitude: the grid's centre (0 until a non-zero one is seen)
        self.counts = [0.0] * (NBINS + 1)
        self.top = 0  # the highest bin ever added to: every bin above it is 0 (derived, not state)
        self.weight = 1.0  # the weight of the next observation
        self.total = 0.0
        self.seen = 0

    def _bin(self, r: float) -> tuple[int, float]:
        """The bin of r and r's position inside it (0 at the bottom edge, 1 at the top)."""
        ref = self.ref
        if r <= 0.0 or ref == 0.0:
            return 0, 0.0
        x = (log2(r / ref) + OCTAVES) * BINS_PER_OCTAVE
        if x < 0.0:
            return 1, 0.0
        if x >= NBINS:
            return NBINS, 1.0
        i = int(x)
        return i + 1, x - i

    def _edge(self, b: int) -> float:
        """The magnitude at the bottom edge of log bin b."""
        return self.ref * EDGE[b]

    def observe(self, r: float) -> float | None:
        """p_value(r), then add(r): the way a stream uses the tail (r's bin is located once)."""
        if self.ref == 0.0 and r > 0.0:
            self.ref = r
        b, frac = self._bin(r)
        p = self._p_value(r, b, frac) if self.seen >= self.warmup else None
        self._add(b)
        return p

    def p_value(self, r: float) -> float | None:
        """The tail probability of r, or None while the key has fewer than `warmup` observations."""
        if self.seen < self.warmup:
            return None
        b, frac = self._bin(r)
        return self._p_value(r, b, frac)

    def _p_value(self, r: float, b: int, frac: float) -> float:
        if b == 0:
            return 1.0  # nothing is below zero: an exact zero is never rare
        counts, total = self.counts, self.total
        above = sum(counts[b + 1 : self.top + 1]) + (1.0 - frac) * counts[b]  # the bins above top are 0
        # max(TAIL_SHARE * total, MIN_TAIL_MASS * total / min(seen, memory)), spelt out (the same value)
        seen, memory = self.seen, self.memory
        floor = MIN_TAIL_MASS * total / (memory if memory < seen else seen)
        share = TAIL_SHARE * total
        tail_mass = floor if floor > share else share
        if above >= tail_mass:
            weight = self.weight
            return (above + weight) / (total + weight)
        return self._pareto(r, tail_mass)

    def _pareto(self, r: float, tail_mass: float) -> float:
        """Beyond the empirical share: a generalised Pareto tail above the level u that `tail_mass` of the
        past exceeds, its shape and scale from the moments of the excesses (an exponential tail has shape 0;
        heavy tails, e.g. counts, more)."""
        counts, total, ref, top = self.counts, self.total, self.ref, self.top
        mass = 0.0
        # From the grid's top down, skipping the empty bins above `top` (with tail_mass > 0 the walk passes
        # them with mass exactly 0.0, so starting at top is the same walk).
        level = top if top > 1 else 1
        while level > 1 and mass + counts[level] < tail_mass:
            mass += counts[level]
            level -= 1
        u = ref * EDGE[level]
        mass += counts[level]
        m1 = m2 = 0.0
        for j in range(level, top + 1):
            c = counts[j]
            if c:
                e = ref * EDGE[j] * BIN_MIDDLE - u
                m1 += c * e
                m2 += c * e * e
        mean = m1 / mass if mass else 0.0
        var = m2 / mass - mean * mean if mass else 0.0
        ratio = mean * mean / var if var > 0.0 else 1.0
        shape = min(MAX_SHAPE, max(0.0, 0.5 * (1.0 - ratio)))
        # The scale is the moment estimate that goes with the unclamped shape. Where the excesses look
        # lighter-tailed than exponential (shape < 0: a bounded tail), that is wider than their mean: a tail
        # fitted to a few dozen excesses is not extrapolated as light, so far values stay merely very rare.
        scale = max(0.5 * mean * (ratio + 1.0) if var > 0.0 else mean, 0.1 * u, 1e-300)
        share = (mass + self.weight) / (total + self.weight)
        excess = max(0.0, r - u) / scale
        if shape < 1e-6:
            return share * exp(-excess)
        return share * (1.0 + shape * excess) ** (-1.0 / shape)

    def add(self, r: float) -> None:
        if self.ref == 0.0 and r > 0.0:
            self.ref = r
        self._add(self._bin(r)[0])

    def _add(self, b: int) -> None:
        weight = self.weight
        self.counts[b] += weight
        self.total += weight
        self.seen += 1
        if b > self.top:
            self.top = b
        weight *= self.growth
        self.weight = weight
        if weight > RESCALE_AT:
            scale = 1.0 / weight
            self.counts = [c * scale for c in self.counts]
            self.total *= scale
            self.weight = 1.0

    def state(self) -> list[Any]:
        """Plain values; the histogram sparse ([bin, weight, bin, weight, ...]: most bins stay empty)."""
        sparse: list[float] = []
        for i, c in enumerate(self.counts):
            if c:
                sparse += (i, c)
        return [self.ref, self.weight, self.total, self.seen, sparse]

    def load_state(self, state: list[Any]) -> None:
        self.ref, self.weight, self.total, self.seen, sparse = state
        self.counts = [0.0] * (NBINS + 1)
        self.top = 0
        for i in range(0, len(sparse), 2):
            b = int(sparse[i])
            self.counts[b] = sparse[i + 1]
            self.top = max(self.top, b)


class TailPair:
    """A long and a short memory of the same magnitudes: rare against weeks *and* against days.

    Both see the same stream, so they share the reference magnitude and every bin look-up; `surprise` is
    the geometric mean of their two p-values on a -log10 scale (None while either warms up)."""

    __slots__ = ("long", "short")

    def __init__(self, long_memory: int, short_memory: int, warmup: int) -> None:
        self.long = DecayingTail(long_memory, warmup)
        self.short = DecayingTail(short_memory, warmup)

    def surprise(self, r: float) -> float | None:
        long, short = self.long, self.short
        if long.ref == 0.0 and r > 0.0:
            long.ref = short.ref = r
        b, frac = long._bin(r)
        warm = long.seen >= long.warmup and short.seen >= short.warmup
        p = long._p_value(r, b, frac) * short._p_value(r, b, frac) if warm else 0.0
        long._add(b)
        short._add(b)
        if not warm:
            return None
        return -0.5 * log10(1e-300 if p < 1e-300 else p)  # max(p, 1e-300)

    def state(self) -> list[Any]:
        return [self.long.state(), self.short.state()]

    def load_state(self, state: list[Any]) -> None:
        self.long.load_state(state[0])
        self.short.load_state(state[1])
