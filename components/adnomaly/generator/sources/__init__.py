"""Event sources, one per built-in schema: realistic pools, daily drift, and the scenarios each acts out."""

from __future__ import annotations

import random

from adnomaly.generator.sources.base import EventSource, Faults
from adnomaly.generator.sources.clickstream import ClickstreamSource
from adnomaly.generator.sources.download import DownloadSource
from adnomaly.generator.sources.probe import ProbeSource
from adnomaly.generator.sources.signal import SignalSource

SOURCES: dict[str, type[EventSource]] = {
    s.schema: s for s in (ClickstreamSource, SignalSource, ProbeSource, DownloadSource)
}


def source_for(schema: str, seed: int, rng: random.Random, start_s: float) -> EventSource:
    """The event source of a built-in schema; a clear error for anything else (custom JSON Schemas)."""
    try:
        cls = SOURCES[schema]
    except KeyError:
        raise ValueError(
            f"the generator makes events of the built-in schemas only ({', '.join(SOURCES)}), not {schema!r}"
        ) from None
    return cls(seed, rng, start_s)


__all__ = ["SOURCES", "EventSource", "Faults", "source_for"]
