"""A benchmark's figure next to its ceiling, measured in the same run, and the ratio of the two.

On a shared 2-core machine a wall-clock rate swings 2x between identical runs, so a figure alone says
little. Each benchmark therefore also measures, in the same run and on the same services, the simplest
thing that does the same work without our code in the way (PostgreSQL's own COPY + upsert of prepared
rows, a bare Redis round trip, producing the same bytes straight to Kafka, ...). Load slows both alike, so
their ratio is the steadier figure: 1.0 means our code costs nothing on top of what the machine can do.

Pure, apart from `machine_load`, which reads the load average and the CPUs this process may use.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any


def ratio(value: float, ceiling: float, *, higher_is_better: bool = True) -> float | None:
    """How close `value` comes to `ceiling`, 1.0 meaning at the ceiling (None when either is not positive).

    Rates (higher is better) give value / ceiling; latencies (lower is better) give ceiling / value, so
    below 1 always means "short of the ceiling".
    """
    if value <= 0 or ceiling <= 0:
        return None
    return round(value / ceiling if higher_is_better else ceiling / value, 3)


def with_ceiling(metric: str, value: float, ceiling: float, *, higher_is_better: bool = True) -> dict[str, Any]:
    """`{metric: value, "ceiling_<metric>": ceiling, "ratio": ...}`, the shape every benchmark reports."""
    return {
        metric: value,
        f"ceiling_{metric}": ceiling,
        "ratio": ratio(value, ceiling, higher_is_better=higher_is_better),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile (0 < q <= 1) of `values` (sorted or not)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def machine_load() -> dict[str, Any]:
    """The 1-minute load average and the CPUs available (what `nproc` prints), to report with each figure."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return {"load_average_1m": round(os.getloadavg()[0], 2), "nproc": cpus}
