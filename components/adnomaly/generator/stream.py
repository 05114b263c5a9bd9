"""The pure core of the generator: settings in, an endless, reproducible sequence of Kafka records out.

Event i happens at simulated time `start + i / rate`; no wall clock is read here. The same settings (seed,
start time, rate, schema, invalid rate, scenarios) always give byte-identical records. The live producer
(`adnomaly.generator.runner`) passes start = now and sends event i when the wall clock reaches its time.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, NamedTuple

import msgspec

from adnomaly.config import ComponentConfig
from adnomaly.events.codec import DEFAULT_MAX_EVENT_BYTES
from adnomaly.events.schemas import BUILTIN_SCHEMAS
from adnomaly.generator.drift import REFRESH_S
from adnomaly.generator.ids import id_prefix
from adnomaly.generator.malformed import Malformer
from adnomaly.generator.scenarios import (
    MALFORMED_STORM,
    STORM_INVALID_RATE,
    LabelFeed,
    ScenarioLabel,
    ScenarioSchedule,
    ScheduleSettings,
    check_applicable,
)
from adnomaly.generator.sources import SOURCES, EventSource, source_for

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REFRESH_US = int(REFRESH_S * 1_000_000)
MIN_EVENT_BYTES = 1024  # every valid generated event is smaller than this (the largest are ~600 bytes)


@dataclass(frozen=True)
class GeneratorSettings:
    schema: str
    seed: int
    rate: float  # events per second of simulated time
    start: datetime  # simulated time of event 0 (aware)
    invalid_rate: float = 0.0
    scenarios: tuple[str, ...] = ()
    dimensions: tuple[str, ...] | None = None  # fields of the Kafka key; the schema's defaults when None
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)

    def __post_init__(self) -> None:
        if self.schema not in BUILTIN_SCHEMAS:
            raise ValueError(
                f"the generator makes events of the built-in schemas only ({', '.join(BUILTIN_SCHEMAS)}), "
                f"not {self.schema!r}"
            )
        if not self.rate > 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if not 0.0 <= self.invalid_rate <= 1.0:
            raise ValueError(f"invalid_rate must be within 0..1, got {self.invalid_rate}")
        if self.max_event_bytes < MIN_EVENT_BYTES:
            raise ValueError(
                f"max_event_bytes {self.max_event_bytes} is too small for generated events: "
                f"the generator needs at least {MIN_EVENT_BYTES}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.start.tzinfo is None:
            raise ValueError("start must be a timezone-aware datetime")
        check_applicable(self.scenarios, SOURCES[self.schema])
        fields = set(BUILTIN_SCHEMAS[self.schema].struct.__struct_fields__)
        unknown = [d for d in self.dimensions or () if d not in fields]
        if unknown:
            raise ValueError(f"key dimensions {unknown} are not fields of schema {self.schema}")

    @property
    def key_dimensions(self) -> tuple[str, ...]:
        return self.dimensions if self.dimensions is not None else BUILTIN_SCHEMAS[self.schema].dimensions

    @classmethod
    def from_config(cls, config: ComponentConfig, start: datetime, **overrides: Any) -> GeneratorSettings:
        """Settings from a component config's `generator` and `events` sections (overrides win)."""
        if config.generator is None:
            raise ValueError("the component config has no `generator` section")
        gen, events = config.generator, config.events
        values: dict[str, Any] = {
            "schema": events.schema_name, "seed": gen.seed, "rate": gen.events_per_second, "start": start,
            "invalid_rate": gen.invalid_rate, "scenarios": tuple(gen.scenarios),
            "dimensions": tuple(events.dimensions), "max_event_bytes": events.max_event_bytes,
        }  # fmt: skip
        if gen.scenario_schedule is not None:
            values["schedule"] = ScheduleSettings(**gen.scenario_schedule.model_dump())
        values.update(overrides)
        return cls(**values)


class GeneratedEvent(NamedTuple):
    seq: int
    time_us: int  # simulated event time, microseconds since the epoch
    key: bytes | None  # Kafka key: the event's dimension values joined by "|"
    value: bytes
    malformed: str | None  # the malformed kind, None for a valid event


def key_function(dimensions: tuple[str, ...]) -> Callable[[msgspec.Struct], bytes | None]:
    if not dimensions:
        return lambda event: None
    if len(dimensions) == 1:
        name = dimensions[0]
        return lambda event: str(getattr(event, name)).encode()
    getter = operator.attrgetter(*dimensions)
    return lambda event: "|".join(map(str, getter(event))).encode()


class EventStream:
    """A reproducible stream of records for one schema; iterate it (endless) or `take(n)`."""

    def __init__(self, settings: GeneratorSettings) -> None:
        self.settings = settings
        start = settings.start.astimezone(UTC)
        self.start_us = (start - EPOCH) // timedelta(microseconds=1)
        self._rng = random.Random(f"adnomaly-generator:{settings.seed}:{settings.schema}:events")
        self.source = source_for(settings.schema, settings.seed, self._rng, self.start_us / 1e6)
        self.schedule = ScenarioSchedule(
            settings.scenarios, self.source, settings.seed, self.start_us, settings.schedule
        )
        self._foreign: dict[str, EventSource] = {}
        self.malformer = Malformer(self.source, self._rng, settings.max_event_bytes, self._foreign_source)
        self._key = key_function(settings.key_dimensions)
        self._prefix = id_prefix(settings.seed, self.start_us)
        self._iterator: Iterator[GeneratedEvent] | None = None

    def _foreign_source(self, schema: str) -> EventSource:
        """Another schema's source (for `wrong_schema` events), built on first use from the same seed."""
        if schema not in self._foreign:
            rng = random.Random(f"adnomaly-generator:{self.settings.seed}:{schema}:foreign")
            self._foreign[schema] = source_for(schema, self.settings.seed, rng, self.start_us / 1e6)
        return self._foreign[schema]

    def labels(self) -> LabelFeed:
        return self.schedule.feed()

    def take(self, count: int) -> list[GeneratedEvent]:
        """The next `count` records (continuing where the last call stopped)."""
        if self._iterator is None:
            self._iterator = iter(self)
        return list(islice(self._iterator, count))

    def __iter__(self) -> Iterator[GeneratedEvent]:
        settings = self.settings
        rng_random = self._rng.random
        source, malformer, schedule = self.source, self.malformer, self.schedule
        make, key_of, encode = source.make, self._key, msgspec.json.Encoder().encode
        prefix, start_us, step_us = self._prefix, self.start_us, 1_000_000.0 / settings.rate
        next_refresh = start_us + _REFRESH_US
        active, next_change = schedule.active(start_us)
        invalid_rate = self._activate(active)
        seq = 0
        while True:
            t_us = start_us + int(seq * step_us)
            if t_us >= next_refresh:
                source.refresh(t_us / 1e6)
                next_refresh = t_us - (t_us - start_us) % _REFRESH_US + _REFRESH_US
            if t_us >= next_change:
                active, next_change = schedule.active(t_us)
                invalid_rate = self._activate(active)
            when = EPOCH + timedelta(microseconds=t_us)
            t_s = t_us / 1e6
            event = make(f"{prefix}{seq:012x}", when, t_s)
            if invalid_rate and rng_random() < invalid_rate:
                kind = malformer.pick_kind()
                yield GeneratedEvent(seq, t_us, key_of(event), malformer.spoil(kind, event, when, t_s), kind)
            else:
                yield GeneratedEvent(seq, t_us, key_of(event), encode(event), None)
            seq += 1

    def _activate(self, label: ScenarioLabel | None) -> float:
        """Point the source at the running scenario; return the invalid rate in force meanwhile."""
        name = label.scenario if label is not None else None
        if name == MALFORMED_STORM:
            self.source.activate(None, None)
            return max(self.settings.invalid_rate, STORM_INVALID_RATE)
        self.source.activate(name, None if label is None else label.key)
        return self.settings.invalid_rate
