"""A benchmark's figure next to its ceiling, measured in the same run, and the ratio of the two.

On a shared 2-core machine a wall-clock rate swings 2x between identical runs, so a figure alone says
little. Each benchmark therefore also measures, in the same run and on the same services, the simplest
thing that does the same work without our code in the way (PostgreSQL's own COPY + upsert of prepared
rows, a bare Redis round trip, producing the same bytes straight to Kafka, ...). Load slows both alike, so
their ratio is the steadier figure: 1.0 means our code costs nothing on top of what the machine can do.

Pure, apart from `machine_load` (the load average and the CPUs this process may use), `cpu_times` (the
machine's busy and total CPU seconds so far) and `process_cpu_seconds` (one process's).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
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


def cpu_bound(nproc: int, cpu_us_per_event: Sequence[float]) -> float | None:
    """Events/s the machine could reach if its `nproc` CPUs did nothing but this work, each event costing the
    sum of the processes' CPU microseconds (None when nothing was measured).

    The bound of work that waits on nothing: a pipeline at it is limited by the CPU it spends, and only less
    CPU per event (in any of the processes) can raise it, not more overlap or more connections."""
    total = sum(cpu_us_per_event)
    if nproc <= 0 or total <= 0:
        return None
    return nproc * 1e6 / total


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


def process_cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds process `pid` has used so far (plus those of its reaped children, if asked),
    from `/proc/<pid>/stat`. Raises OSError when the process (or /proc) is gone."""
    # After the command's closing parenthesis: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime ... (proc(5)); the command itself may hold spaces and parentheses.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    ticks = utime + stime + (cutime + cstime if reaped_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> tuple[list[int], int]:
    """The machine's CPU time since boot, over every CPU, in clock ticks (`/proc/stat`'s first line: user nice
    system idle iowait irq softirq steal guest guest_nice), and the ticks per second."""
    with open("/proc/stat") as stat:
        return [int(v) for v in stat.readline().split()[1:]], os.sysconf("SC_CLK_TCK")


def cpu_times() -> tuple[float, float]:
    """The machine's (busy, total) CPU seconds since boot, over every CPU (`/proc/stat`; idle and iowait
    count as not busy)."""
    fields, ticks = _cpu_ticks()
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    return (total - idle) / ticks, total / ticks


def steal_times() -> tuple[float, float]:
    """The machine's (steal, total) CPU seconds since boot (`/proc/stat`): time a virtual CPU was ready to run
    but the hypervisor ran someone else. Steal is what makes one hour of this shared host 3x slower than the
    next; a figure taken while it was high says more about the host than about the code."""
    fields, ticks = _cpu_ticks()
    return (fields[7] if len(fields) > 7 else 0) / ticks, sum(fields[:8]) / ticks


def share(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """The part / whole between two (part, whole) readings such as `steal_times`' (None: nothing measured)."""
    part, whole = after[0] - before[0], after[1] - before[1]
    return round(part / whole, 3) if whole > 0 else None


def spare_capacity_speedup(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """How many times faster the work done between two `cpu_times` readings could at most have gone, had
    it used every CPU: total / busy CPU time. Work that kept the machine 80 % busy can gain at most 1.25x
    from more processes, however they are scheduled (None when nothing was measured)."""
    busy, total = after[0] - before[0], after[1] - before[1]
    if busy <= 0 or total <= 0:
        return None
    return round(total / busy, 2)
