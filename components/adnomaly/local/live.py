"""The terminal view of `adnomaly up`: a live table on a terminal, periodic plain lines otherwise.

Below the counters, the newest anomalies (detector, key, severity, observed vs expected, score, open or
resolved); each opening and resolution is also printed as a line, so it stays in the scrollback and shows
without a terminal too. Rates are over the last RATE_WINDOW_S seconds of samples: the sources report in
steps, and a rate between two consecutive samples swings with where the steps fall.
"""

from __future__ import annotations

import time
from collections import deque
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from adnomaly.anomalies.models import AnomalyOut
from adnomaly.local.anomalies import key_text, transitions
from adnomaly.local.progress import Progress, rate

PLAIN_EVERY_S = 5.0
RATE_WINDOW_S = 5.0


class LiveView:
    def __init__(self, pipeline: str, *, live: bool, stderr: bool = False) -> None:
        self.pipeline = pipeline
        self.console = Console(stderr=stderr)  # stderr: when stdout carries a result (a benchmark's JSON)
        self._live = Live(console=self.console, refresh_per_second=2, transient=False) if live else None
        self._samples: deque[Progress] = deque()
        self._last_plain = 0.0
        self._seen: dict[str, str] | None = None  # anomaly id → status, once the first sample is in
        self._stale: str | None = None  # why the counters are not current (e.g. a service restarting)
        self.replicas: dict[str, int] = {}  # of the autoscaled components, kept current by the caller

    def __enter__(self) -> LiveView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def message(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    def stale(self, reason: str) -> None:
        """The counters could not be read: said once per outage, not once per second."""
        if reason != self._stale:
            self.message(f"counters not current: {reason}")
        self._stale = reason

    def _rates(self, progress: Progress) -> tuple[float, float]:
        samples = self._samples
        samples.append(progress)
        while len(samples) > 2 and progress.at - samples[1].at >= RATE_WINDOW_S:
            samples.popleft()
        incoming = rate([(s.at, s.produced + s.ingested) for s in samples])
        return incoming, rate([(s.at, s.stored) for s in samples])

    def _announce(self, recent: tuple[AnomalyOut, ...]) -> None:
        if self._seen is None:  # anomalies of earlier runs are listed, not announced
            self._seen = {row.id: row.status for row in recent}
            return
        for line in transitions(self._seen, list(recent)):
            self.message(line)

    def update(self, progress: Progress) -> None:
        if self._stale is not None:
            self.message("counters current again")
            self._stale = None
        produced_rate, stored_rate = self._rates(progress)
        self._announce(progress.recent)
        if self._live is not None:
            counters = counters_table(self.pipeline, progress, produced_rate, stored_rate)
            if self.replicas:
                counters.caption = f"replicas: {replicas_text(self.replicas)}"
            self._live.update(Group(counters, anomalies_table(progress.recent)))
        elif progress.at - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = progress.at
            self.console.print(
                f"produced={progress.produced} ingested={progress.ingested} stored={progress.stored} "
                f"dlq={progress.dlq} lag={progress.lag} in={produced_rate:.0f}/s stored={stored_rate:.0f}/s "
                f"lake_files={progress.lake_files} feature_windows={progress.features} "
                f"anomalies_opened={progress.opened} anomalies_resolved={progress.resolved}"
                + (f" replicas={replicas_text(self.replicas)}" if self.replicas else "")
            )

    def final(self, summary: dict[str, Any]) -> None:
        self.console.print("summary: " + " ".join(f"{k}={v}" for k, v in _flat(summary).items()))


def _flat(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}_"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def replicas_text(replicas: dict[str, int]) -> str:
    return ",".join(f"{name}:{count}" for name, count in sorted(replicas.items()))


def counters_table(pipeline: str, progress: Progress, produced_rate: float, stored_rate: float) -> Table:
    table = Table(title=f"pipeline {pipeline}", expand=False)
    columns = ("produced", "ingested", "stored", "dead-lettered", "consumer lag", "in ev/s", "stored ev/s",
               "lake files", "feature windows", "anomalies")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(
        f"{progress.produced:,}", f"{progress.ingested:,}", f"{progress.stored:,}", f"{progress.dlq:,}",
        f"{progress.lag:,}", f"{produced_rate:,.0f}", f"{stored_rate:,.0f}", f"{progress.lake_files:,}",
        f"{progress.features:,}", f"{progress.opened} opened, {progress.resolved} resolved",
    )
    return table


def anomalies_table(recent: tuple[AnomalyOut, ...]) -> Table:
    table = Table(title="anomalies (newest first)", expand=False)
    for column, justify in (("status", "left"), ("detector", "left"), ("key", "left"), ("severity", "left"),
                            ("observed", "right"), ("expected", "right"), ("score", "right"),
                            ("window end", "left")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    if not recent:
        table.add_row("[dim]none yet[/dim]", "", "", "", "", "", "", "")
    for row in recent:
        status = "[bold red]open[/bold red]" if row.status == "open" else "[green]resolved[/green]"
        severity = f"[red]{row.severity}[/red]" if row.severity == "critical" else f"[yellow]{row.severity}[/yellow]"
        table.add_row(
            status, row.detector, key_text(row), severity, f"{row.observed:.4g}",
            "" if row.expected is None else f"{row.expected:.4g}", f"{row.score:.3f}",
            f"{row.detected_at:%H:%M:%S}" + (f" → {row.resolved_at:%H:%M:%S}" if row.resolved_at else ""),
        )  # fmt: skip
    return table
