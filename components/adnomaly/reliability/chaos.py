"""Execute a chaos schedule against a running harness and measure how long each target takes to recover.

Recovery of one fault: from the moment the target is started again until the consumer group that depends
on it has committed past everything that was in its topic at that moment and, for a killed component when
new data has come since, its new process shows in its own metrics that it is consuming again (a consumer
lag series, which appears once it holds positioned partitions; the detector: a judged record). For the
ingest API: until it is ready again. Runs on the harness's thread (it restarts processes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adnomaly.reliability.harness import PROGRESS_GROUPS, Harness
from adnomaly.reliability.schedule import FaultAction

RECOVERY_TIMEOUT_S = 300.0
# Transactional topics (features) end with a commit marker a consumer never commits past.
MARKER_SLACK = 1
# What a restarted component's own metrics show once it works again: a consumer lag series appears when it
# has been assigned partitions and positioned (processor, sinks); the detector counts judged records.
PROCESSING_METRICS = {
    "processor": ("adnomaly_consumer_lag", False),
    "lake-sink": ("adnomaly_consumer_lag", False),
    "feature-sink": ("adnomaly_consumer_lag", False),
    "detector": ("adnomaly_detector_records_total", True),
}


@dataclass
class FaultRecord:
    action: FaultAction
    started_s: float  # when the fault began, seconds after the load started
    restart_s: float  # how long the restart call took (JVM start, recovery of logs/WAL)
    recovery_s: float | None  # None: did not recover within RECOVERY_TIMEOUT_S

    def as_dict(self) -> dict[str, object]:
        return {
            "at_s": round(self.started_s, 2), "target": self.action.target, "kind": self.action.kind,
            "down_s": self.action.down_s, "restart_s": round(self.restart_s, 2),
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2),
        }  # fmt: skip


def caught_up(committed: Mapping[int, int], targets: Mapping[int, int], slack: int = MARKER_SLACK) -> bool:
    """True when every partition's committed offset has reached its target (less `slack`)."""
    return all(committed.get(p, -1) >= max(0, end - slack) for p, end in targets.items() if end > 0)


def processing(metrics_text: str, metric: str, positive: bool) -> bool:
    """True when the Prometheus exposition has a sample of `metric` (with a value > 0 if `positive`)."""
    for line in metrics_text.splitlines():
        if line.startswith("#") or re.split(r"[{ ]", line, maxsplit=1)[0] != metric:
            continue
        value = float(line.rsplit(" ", 1)[-1])
        if not positive or value > 0:
            return True
    return False


class ChaosDriver:
    def __init__(self, harness: Harness, schedule: list[FaultAction], say: Callable[[str], None] = print) -> None:
        self.harness = harness
        self.schedule = schedule
        self.say = say
        self.records: list[FaultRecord] = []

    def run(self, started_at: float, until_s: float) -> list[FaultRecord]:
        """Inject every fault at its time (never two at once), supervising in between; return at `until_s`."""
        for action in self.schedule:
            self._sleep_until(started_at + action.at_s)
            self.records.append(self._inject(action, started_at))
        self._sleep_until(started_at + until_s)
        return self.records

    def _sleep_until(self, moment: float) -> None:
        while time.monotonic() < moment:
            self.harness.supervise()
            time.sleep(min(0.5, max(0.0, moment - time.monotonic())))

    def _inject(self, action: FaultAction, started_at: float) -> FaultRecord:
        harness = self.harness
        began = time.monotonic()
        self.say(f"[{began - started_at:6.1f}s] {action.kind} {action.target} for {action.down_s:.1f}s")
        harness.kill(action.target)
        time.sleep(action.down_s)
        restart_began = time.monotonic()
        harness.restart(action.target)
        restarted = time.monotonic()
        recovered = self._recovered_at(action.target)
        recovery = None if recovered is None else recovered - restart_began
        self.say(
            f"[{time.monotonic() - started_at:6.1f}s] {action.target} restarted in {restarted - restart_began:.1f}s, "
            + ("did NOT recover" if recovery is None else f"recovered in {recovery:.1f}s")
        )
        return FaultRecord(action, began - started_at, restarted - restart_began, recovery)

    def _recovered_at(self, target: str) -> float | None:
        if target == "ingest":
            return time.monotonic()  # restart() waited for /readyz
        component, role = PROGRESS_GROUPS[target]
        harness = self.harness
        targets: dict[int, int] = {}

        def sampled() -> bool:
            targets.update(harness.high_watermarks(role))
            return True

        if not harness.wait_for(sampled, RECOVERY_TIMEOUT_S, interval=0.5):
            return None
        if not harness.wait_for(
            lambda: caught_up(harness.committed(component, role), targets), RECOVERY_TIMEOUT_S, 0.5
        ):
            return None
        if target in PROCESSING_METRICS and not _unchanged(harness, role, targets):
            # New data arrived since the restart: the new process must show it is taking it.
            metric, positive = PROCESSING_METRICS[target]
            if not harness.wait_for(lambda: processing(harness.metrics_text(target), metric, positive),
                                    RECOVERY_TIMEOUT_S, 0.5):  # fmt: skip
                return None
        return time.monotonic()


def _unchanged(harness: Harness, role: str, before: Mapping[int, int]) -> bool:
    try:
        return harness.high_watermarks(role) == dict(before)
    except Exception:  # the broker is restarting: treat as new data coming
        return False
