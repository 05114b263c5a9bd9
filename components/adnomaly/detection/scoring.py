"""Score alarms against labelled scenario instances (the generator's ground truth).

Matching: an alarm (an opened anomaly, at its `detected_at`) is a true positive when its dimensions equal
the label's key and start < detected_at <= end + one window (the grace for the window that holds the end
to fire). Precision is over alarms, recall over labels (a label counts as detected when at least one
alarm matches it). False alarms per hour are the unmatched alarms over the hours of normal traffic: the
run's span minus every label's [start, end + window]. The delay of a detected label is its first matching
alarm's detected_at minus the label's start; the median is over detected labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median


@dataclass(frozen=True)
class Alarm:
    key: dict[str, str]
    at: datetime


@dataclass(frozen=True)
class Label:
    key: dict[str, str]
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    f1: float
    false_alarms_per_hour: float
    median_delay_s: float | None
    alarms: int
    labels: int
    false_alarms: int
    normal_hours: float

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _matches(alarm: Alarm, label: Label, grace: timedelta) -> bool:
    return alarm.key == label.key and label.start < alarm.at <= label.end + grace


def normal_hours(labels: Sequence[Label], span: tuple[datetime, datetime], grace: timedelta) -> float:
    begin, finish = span
    busy = timedelta(0)
    cursor = begin
    for label in sorted(labels, key=lambda x: x.start):
        lo, hi = max(label.start, cursor), min(label.end + grace, finish)
        if hi > lo:
            busy += hi - lo
            cursor = hi
    return max(0.0, ((finish - begin) - busy).total_seconds() / 3600.0)


def score(alarms: Sequence[Alarm], labels: Sequence[Label], span: tuple[datetime, datetime],
          window: timedelta) -> Score:  # fmt: skip
    true_alarms = sum(1 for a in alarms if any(_matches(a, lb, window) for lb in labels))
    delays = []
    for label in labels:
        hits = sorted(a.at for a in alarms if _matches(a, label, window))
        if hits:
            delays.append((hits[0] - label.start).total_seconds())
    precision = true_alarms / len(alarms) if alarms else 1.0
    recall = len(delays) / len(labels) if labels else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    hours = normal_hours(labels, span, window)
    false_alarms = len(alarms) - true_alarms
    return Score(
        precision=precision, recall=recall, f1=f1,
        false_alarms_per_hour=false_alarms / hours if hours else 0.0,
        median_delay_s=median(delays) if delays else None, alarms=len(alarms), labels=len(labels),
        false_alarms=false_alarms, normal_hours=hours,
    )  # fmt: skip
