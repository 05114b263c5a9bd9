"""What every schema's event source provides to the stream (`adnomaly.generator.stream`).

A source owns the realistic part: pools drawn once from the seed (users, campaigns, nodes, content),
weights that drift with the simulated hour (`refresh`), and the scenarios it can act out. It draws every
per-event decision from the stream's one `random.Random`, so a seed fixes the whole event sequence.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

import msgspec


class Faults(NamedTuple):
    """Where a schema's events can be spoiled (used by `adnomaly.generator.malformed`)."""

    text_field: str  # a string field: padded for `oversize`, given invalid bytes for `non_utf8`
    nan_path: tuple[str, ...]  # path of a value that may hold a number: replaced by the literal NaN
    wrong_types: Mapping[str, Any]  # field -> a value of the wrong JSON type
    out_of_range: Mapping[str, Any]  # field -> a value of the right type outside the schema's bounds


class EventSource(ABC):
    schema: ClassVar[str]
    scenarios: ClassVar[frozenset[str]]  # scenarios this source acts out (malformedStorm is the stream's)
    faults: ClassVar[Faults]

    def __init__(self, seed: int, rng: random.Random, start_s: float) -> None:
        self.seed = seed
        self.rng = rng
        self.start_s = start_s

    def pool_rng(self) -> random.Random:
        """A generator for the seed's pools, independent of the per-event draws."""
        return random.Random(f"adnomaly-generator:{self.seed}:{self.schema}:pools")

    @abstractmethod
    def refresh(self, t_s: float) -> None:
        """Recompute the weights that drift with the simulated time of day (called once a minute)."""

    @abstractmethod
    def scenario_key(self, scenario: str, rng: random.Random) -> dict[str, str]:
        """Choose the dimension values (geo, campaign, region, ...) one scenario instance hits."""

    @abstractmethod
    def activate(self, scenario: str | None, key: Mapping[str, str] | None) -> None:
        """Start acting out `scenario` for `key` (None: back to normal traffic)."""

    @abstractmethod
    def make(self, event_id: str, when: datetime, t_s: float) -> msgspec.Struct:
        """One valid event at `when` (`t_s` is the same instant as a unix timestamp)."""
