"""The chaos schedule: a pure function of a seed → the faults to inject and when.

Faults are spread over the load window in equal slots, one fault at a random moment of each slot, so two
faults never overlap and each is over (down time and restart) before the next begins. Every target is hit
at least once when there are at least as many faults as targets; the rest are drawn at random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Kind = Literal["kill", "outage"]

# The processes the suite kills with SIGKILL and restarts (the chaos driver knows how to reach each).
COMPONENT_TARGETS = ("processor", "detector", "lake-sink", "feature-sink", "ingest")
SERVICE_TARGETS = ("kafka", "postgres", "redis")
OUTAGE_TARGETS = ("s3",)  # made unavailable for a while (MinIO stopped), then back
ALL_TARGETS = COMPONENT_TARGETS + SERVICE_TARGETS + OUTAGE_TARGETS


@dataclass(frozen=True)
class FaultAction:
    at_s: float  # seconds after the load started
    target: str
    kind: Kind
    down_s: float  # how long the target stays down before it is restarted


def kind_of(target: str) -> Kind:
    return "outage" if target in OUTAGE_TARGETS else "kill"


def build_schedule(
    seed: int,
    duration_s: float,
    faults: int,
    *,
    targets: tuple[str, ...] = ALL_TARGETS,
    min_down_s: float = 0.5,
    max_down_s: float = 5.0,
    outage_s: tuple[float, float] = (4.0, 10.0),
    settle_s: float = 3.0,
    lead_in_s: float = 10.0,
) -> list[FaultAction]:
    """`faults` actions in time order within [lead_in_s, duration_s).

    Each action sits in its own slot of the window and leaves at least `settle_s` of its slot free after its
    down time, for the restart. A slot too short for that raises ValueError (ask for fewer faults or more
    time). A restart that takes longer than its slot (a JVM) delays the next fault: the driver never
    overlaps two.
    """
    if faults < 0 or duration_s <= 0:
        raise ValueError("faults must be >= 0 and duration_s > 0")
    if not targets or any(t not in ALL_TARGETS for t in targets):
        raise ValueError(f"targets must be a non-empty subset of {ALL_TARGETS}")
    if faults == 0:
        return []
    rng = random.Random(f"adnomaly-chaos:{seed}")
    slot = (duration_s - lead_in_s) / faults
    longest = max(max_down_s, outage_s[1])
    if slot < longest + settle_s:
        raise ValueError(
            f"{faults} faults in {duration_s:.0f}s leave {slot:.1f}s per fault; each needs "
            f"{longest + settle_s:.0f}s (down time + settling)"
        )
    chosen = list(targets) if faults >= len(targets) else []
    chosen += [rng.choice(targets) for _ in range(faults - len(chosen))]
    rng.shuffle(chosen)
    actions = []
    for index, target in enumerate(chosen):
        kind = kind_of(target)
        low, high = outage_s if kind == "outage" else (min_down_s, max_down_s)
        down = round(rng.uniform(low, high), 2)
        start = lead_in_s + index * slot
        at = round(start + rng.uniform(0.0, slot - down - settle_s), 2)
        actions.append(FaultAction(at, target, kind, down))
    return actions
