"""Labelled anomaly scenarios: when each runs, what it hits, and the labels a detector is scored against.

Simulated time is cut into slots of `every_s`; after `first_after_s` of normal traffic (a baseline for
detectors), slot k runs the k-th configured scenario (round robin) for `duration_s`, starting at an
offset drawn from the seed. The key (geo and platform, campaign, region) is drawn from the seed too, so a
seed and a start time fix every label. Only one scenario runs at a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import get_args

import msgspec

from adnomaly.generator.sources import EventSource
from adnomaly.spec import ScenarioName

SCENARIO_NAMES: tuple[str, ...] = get_args(ScenarioName)
MALFORMED_STORM = "malformedStorm"
STORM_INVALID_RATE = 0.5  # share of malformed events while a storm runs
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000


class ScenarioLabel(msgspec.Struct, frozen=True, kw_only=True):
    """Ground truth for one scenario instance: in [start, end) events matching `key` are anomalous."""

    scenario: str
    schema: str
    start: datetime
    end: datetime
    key: dict[str, str]

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True)
class ScheduleSettings:
    first_after_s: float = 300.0  # normal traffic before the first scenario
    every_s: float = 600.0  # one scenario slot per this much simulated time
    duration_s: float = 180.0  # how long each scenario runs

    def __post_init__(self) -> None:
        if self.first_after_s < 0 or self.every_s <= 0 or self.duration_s <= 0:
            raise ValueError("scenario schedule: first_after_s >= 0, every_s > 0 and duration_s > 0")
        if self.duration_s > self.every_s:
            raise ValueError(
                f"scenario schedule: a scenario ({self.duration_s:g}s) must fit its slot ({self.every_s:g}s)"
            )


def check_applicable(names: tuple[str, ...], source: EventSource | type[EventSource]) -> None:
    """Reject scenarios the schema cannot show (malformedStorm fits every schema)."""
    for name in names:
        if name not in SCENARIO_NAMES:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_NAMES)}")
        if name != MALFORMED_STORM and name not in source.scenarios:
            fitting = sorted({*source.scenarios, MALFORMED_STORM})
            raise ValueError(
                f"scenario {name} does not apply to schema {source.schema}; "
                f"scenarios for {source.schema}: {', '.join(fitting)}"
            )


class ScenarioSchedule:
    """The (endless, lazily computed) sequence of scenario windows of one run."""

    def __init__(
        self,
        names: tuple[str, ...],
        source: EventSource,
        seed: int,
        start_us: int,
        settings: ScheduleSettings = ScheduleSettings(),
    ) -> None:
        check_applicable(names, source)
        self.names = tuple(dict.fromkeys(names))  # order kept, duplicates dropped
        self.source = source
        self.seed = seed
        self.start_us = start_us
        self.settings = settings
        self._first_us = start_us + int(settings.first_after_s * _US)
        self._every_us = int(settings.every_s * _US)
        self._duration_us = int(settings.duration_s * _US)
        self._cache: dict[int, tuple[int, int, ScenarioLabel]] = {}

    def window(self, k: int) -> tuple[int, int, ScenarioLabel]:
        """Slot k's window as (start_us, end_us, label)."""
        if not self.names:
            raise IndexError("no scenarios are configured")
        cached = self._cache.get(k)
        if cached is None:
            rng = random.Random(f"adnomaly-generator:{self.seed}:{self.source.schema}:scenario:{k}")
            name = self.names[k % len(self.names)]
            slack = min(self._every_us - self._duration_us, self._every_us // 4)
            start = self._first_us + k * self._every_us + int(rng.random() * slack)
            end = start + self._duration_us
            key = {} if name == MALFORMED_STORM else self.source.scenario_key(name, rng)
            label = ScenarioLabel(
                scenario=name, schema=self.source.schema, start=_to_datetime(start), end=_to_datetime(end), key=key,
            )  # fmt: skip
            cached = (start, end, label)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[k] = cached
        return cached

    def slot(self, t_us: int) -> int:
        return max(0, (t_us - self._first_us) // self._every_us)

    def active(self, t_us: int) -> tuple[ScenarioLabel | None, int]:
        """The scenario running at `t_us` (or None) and the next instant at which that may change."""
        if not self.names:
            return None, 1 << 62
        if t_us < self._first_us:
            return None, self.window(0)[0]
        k = self.slot(t_us)
        start, end, label = self.window(k)
        if t_us < start:
            return None, start
        if t_us < end:
            return label, end
        return None, self.window(k + 1)[0]

    def feed(self) -> LabelFeed:
        return LabelFeed(self)


class LabelFeed:
    """Hands out each label once, as soon as simulated time reaches the scenario's start."""

    def __init__(self, schedule: ScenarioSchedule) -> None:
        self.schedule = schedule
        self._next = 0

    def started_by(self, t_us: int) -> list[ScenarioLabel]:
        labels: list[ScenarioLabel] = []
        if not self.schedule.names:
            return labels
        while True:
            start, _, label = self.schedule.window(self._next)
            if start > t_us:
                return labels
            labels.append(label)
            self._next += 1


def _to_datetime(t_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=t_us)
