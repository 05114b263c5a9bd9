"""Cheap, deterministic random draws for the per-event hot path.

A weighted choice costs one `getrandbits` and a list index when the weights are spread over a lookup
table (built once, or once per simulated minute when the weights drift), instead of `random.choices`'
bisect over cumulative weights. Noise with a heavy tail (log-normal) comes from a table of quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import TypeVar

T = TypeVar("T")

TABLE_BITS = 12  # 4096 entries: shares are exact to 1/4096


def lookup_table(items: Sequence[T], weights: Sequence[float], bits: int = TABLE_BITS) -> list[T]:
    """A list of 2**bits items in which each item appears in proportion to its weight.

    Largest-remainder rounding, so the shares are exact to one entry; every item with a positive weight
    gets at least one entry. Pick with `table[rng.getrandbits(bits)]`.
    """
    if len(items) != len(weights) or not items:
        raise ValueError("lookup_table needs as many weights as items, and at least one item")
    size = 1 << bits
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    if sum(1 for w in weights if w > 0) > size:
        raise ValueError(f"more weighted items than a table of {size} entries can hold")
    total = float(sum(weights))
    exact = [w / total * size for w in weights]
    counts = [max(1, int(x)) if w > 0 else 0 for x, w in zip(exact, weights, strict=True)]
    by_remainder = sorted(range(len(items)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    i = 0
    while sum(counts) < size:
        idx = by_remainder[i % len(by_remainder)]
        if weights[idx] > 0:
            counts[idx] += 1
        i += 1
    while sum(counts) > size:  # the minimum of one entry pushed us over: take from the largest
        largest = max(range(len(items)), key=lambda j: counts[j])
        counts[largest] -= 1
    table: list[T] = []
    for item, count in zip(items, counts, strict=True):
        table.extend([item] * count)
    return table


def lognormal_table(sigma: float, bits: int = TABLE_BITS) -> list[float]:
    """2**bits evenly spaced quantiles of a log-normal with median 1 and shape `sigma`."""
    size = 1 << bits
    normal = NormalDist()
    return [math.exp(sigma * normal.inv_cdf((i + 0.5) / size)) for i in range(size)]


def decimals(value: float, places: int) -> float:
    """`value` rounded half up to `places` decimals (cheaper than `round` on the hot path)."""
    scale = 10.0**places
    return int(value * scale + 0.5) / scale


def clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value
