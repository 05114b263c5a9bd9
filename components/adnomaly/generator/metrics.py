"""The generator's Prometheus metrics (updated in batches by the runner, never per event)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS = Counter(
    "adnomaly_generator_events_total", "Events the broker acknowledged, by kind", ["kind"]
)  # kind: valid | invalid
DELIVERY_FAILURES = Counter(
    "adnomaly_generator_delivery_failures_total", "Events the producer gave up on (not produced)"
)
BUFFER_FULL = Counter(
    "adnomaly_generator_buffer_full_total", "Times the producer queue was full and the generator had to wait"
)
SCENARIOS = Counter("adnomaly_generator_scenarios_total", "Scenario instances started", ["scenario"])
TARGET_RATE = Gauge("adnomaly_generator_target_events_per_second", "Configured events per second")
RATE = Gauge("adnomaly_generator_events_per_second", "Acknowledged events per second since start")
LAG = Gauge("adnomaly_generator_schedule_lag_seconds", "How far sending is behind the event schedule")
