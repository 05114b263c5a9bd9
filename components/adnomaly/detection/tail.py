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
without changing a single result bit (the outputs on all of NAB, checkpoints included, are identical to
the plainer version this replaced):
- one function, `_judge_and_learn`, locates r's bin once for the tails that share a grid (a `TailPair`'s
  two memories), takes each one's p-value and adds r to each in one loop: no per-tail method calls, no
  (bin, position) tuple per call. `DecayingTail`'s own `observe` / `add` / `p_value` go through it too,
  so there is a single copy of the arithmetic;
- each tail's growth factor and the grid's edges are computed once (the very expressions that used to
  be evaluated per call, so the same doubles); `max`/`min` of two floats are conditional expressions
  picking the same operand (`max(a, b)` is `b if b > a else a`, ties included);
- the generalised Pareto fit, needed only in the top `TAIL_SHARE` or while the memory fills (2 % of the
  p-values on NAB), is a method apart from the common case;
- the common case is the empirical share above r, a left-to-right float sum over the bins above r's bin,
  started at 0.0 exactly as `sum()` of those bins (CPython 3.11's float `sum` is that plain sum; a running
  suffix sum would round differently), written as a loop over the list so that no slice is built. It
  stops at the highest bin ever filled instead of the grid's top: the grid spans ±20 octaves around the
  first magnitude and a key's magnitudes rarely more than a few, so the bins beyond are exact zeros, which
  add nothing to a float sum (x + 0.0 == x); on NAB the sum runs over 16 bins instead of 39;
- the module's constants are `Final`: compiled, they are C constants rather than a look-up in the module's
  dict on every use (which the compiled profile showed costing more than the arithmetic).
"""

from __future__ import annotations

from math import exp, log2, log10
from typing import Any, Final

BINS_PER_OCTAVE: Final = 2
OCTAVES: Final = 20  # each side of the reference magnitude: a dynamic range of 2^40
NBINS: Final = 2 * OCTAVES * BINS_PER_OCTAVE  # bin 0 is exact zero; 1..NBINS the log grid
TAIL_SHARE: Final = 0.02  # beyond the magnitude only this share exceeds, the exponential tail takes over
MIN_TAIL_MASS: Final = 20.0  # ...but the tail level keeps at least this many (weighted) observations above it
RESCALE_AT: Final = 1e200
BIN_MIDDLE: Final = 2.0 ** (0.5 / BINS_PER_OCTAVE)  # a log bin's geometric middle over its bottom edge
MAX_SHAPE: Final = 0.5  # the tail's shape estimate is capped (beyond it, moments are no longer finite)
# A log bin's bottom edge over the reference magnitude, per bin (bin 0, exact zero, has no edge: unused). The
# magnitude at the edge is ref * EDGE[b], multiplied in that order (a float product does not associate, so
# e.g. ref * (EDGE[b] * BIN_MIDDLE) would not be the same double as (ref * EDGE[b]) * BIN_MIDDLE).
EDGE: Final = [2.0 ** ((b - 1) / BINS_PER_OCTAVE - OCTAVES) for b in range(NBINS + 1)]


def _judge_and_learn(tails: tuple[DecayingTail, ...], r: float, judge: bool, learn: bool = True) -> float:
    """The product of the tails' p-values of r (1.0 unless `judge`), then r added to each (if `learn`).

    The tails share one reference magnitude, so r has the same bin in all of them (a `TailPair`'s two
    memories, or one `DecayingTail`). A product over one tail is its p-value exactly (1.0 * p == p)."""
    ref = tails[0].ref
    # r's bin, and frac: r's position inside it (0 at the bottom edge, 1 at the top)
    if r <= 0.0 or ref == 0.0:
        b, frac = 0, 0.0
    else:
        x = (log2(r / ref) + OCTAVES) * BINS_PER_OCTAVE
        if x < 0.0:
            b, frac = 1, 0.0
        elif x >= NBINS:
            b, frac = NBINS, 1.0
        else:
            i = int(x)
            b, frac = i + 1, x - i
    p = 1.0
    for tail in tails:
        counts, total, weight = tail.counts, tail.total, tail.weight
        if judge and b:  # (bin 0 holds exact zeros: nothing is below zero, so an exact zero's p-value is 1)
            # The share above r's bin, summed left to right from 0.0 as `sum()` of the bins would (the bins
            # above `top` are 0); a loop over the list rather than `sum` of a slice: no list is built.
            above = 0.0
            for j in range(b + 1, tail.top + 1):
                above += counts[j]
            above += (1.0 - frac) * counts[b]
            # max(TAIL_SHARE * total, MIN_TAIL_MASS * total / min(seen, memory)), spelt out (the same value)
            seen, memory = tail.seen, tail.memory
            floor = MIN_TAIL_MASS * total / (memory if memory < seen else seen)
            share = TAIL_SHARE * total
            tail_mass = floor if floor > share else share
            if above >= tail_mass:
                p *= (above + weight) / (total + weight)
            else:
                p *= tail._pareto(r, tail_mass)
        if learn:
            counts[b] += weight
            tail.total = total + weight
            tail.seen += 1
            if b > tail.top:
                tail.top = b
            # The weights grow geometrically instead of every bin shrinking; rescaled long before overflow.
            weight *= tail.growth
            tail.weight = weight
            if weight > RESCALE_AT:
                scale = 1.0 / weight
                tail.counts = [c * scale for c in tail.counts]
                tail.total *= scale
                tail.weight = 1.0
    return p


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

    def observe(self, r: float) -> float | None:
        """p_value(r), then add(r): the way a stream uses the tail (r's bin is located once)."""
        if self.ref == 0.0 and r > 0.0:
            self.ref = r
        warm = self.seen >= self.warmup
        p = _judge_and_learn((self,), r, warm)
        return p if warm else None

    def p_value(self, r: float) -> float | None:
        """The tail probability of r, or None while the key has fewer than `warmup` observations."""
        if self.seen < self.warmup:
            return None
        return _judge_and_learn((self,), r, True, learn=False)

    def add(self, r: float) -> None:
        if self.ref == 0.0 and r > 0.0:
            self.ref = r
        _judge_and_learn((self,), r, False)

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

    __slots__ = ("both", "long", "short")

    def __init__(self, long_memory: int, short_memory: int, warmup: int) -> None:
        self.long = DecayingTail(long_memory, warmup)
        self.short = DecayingTail(short_memory, warmup)
        self.both = (self.long, self.short)

    def surprise(self, r: float) -> float | None:
        long, short = self.long, self.short
        if long.ref == 0.0 and r > 0.0:
            long.ref = short.ref = r
        warm = long.seen >= long.warmup and short.seen >= short.warmup
        p = _judge_and_learn(self.both, r, warm)
        if not warm:
            return None
        return -0.5 * log10(1e-300 if p < 1e-300 else p)  # max(p, 1e-300)

    def state(self) -> list[Any]:
        return [self.long.state(), self.short.state()]

    def load_state(self, state: list[Any]) -> None:
        self.long.load_state(state[0])
        self.short.load_state(state[1])
