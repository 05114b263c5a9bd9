"""Synthetic event generator: realistic, reproducible events for the built-in schemas, malformed events,
and labelled anomaly scenarios.

The pure core (`stream.EventStream`) turns settings (schema, seed, start time, rate, invalid rate,
scenarios) into an endless, byte-reproducible sequence of Kafka records; the runner (`runner`) paces it
against the wall clock and produces it to the raw topic. Run it as `python -m adnomaly.generator`.
"""

from adnomaly.generator.malformed import MALFORMED_KINDS
from adnomaly.generator.scenarios import ScenarioLabel, ScheduleSettings
from adnomaly.generator.stream import EventStream, GeneratedEvent, GeneratorSettings

__all__ = [
    "MALFORMED_KINDS",
    "EventStream",
    "GeneratedEvent",
    "GeneratorSettings",
    "ScenarioLabel",
    "ScheduleSettings",
]
