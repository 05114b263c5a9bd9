"""The terminal view of `adnomaly up`: a live table on a terminal, periodic plain lines otherwise."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from adnomaly.local.progress import Progress

PLAIN_EVERY_S = 5.0


def _rate(now: int, before: int, seconds: float) -> float:
    return (now - before) / seconds if seconds > 0 else 0.0


class LiveView:
    def __init__(self, pipeline: str, *, live: bool) -> None:
        self.pipeline = pipeline
        self.console = Console()
        self._live = Live(console=self.console, refresh_per_second=2, transient=False) if live else None
        self._previous: Progress | None = None
        self._last_plain = 0.0
        self._messages: list[str] = []

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
        self._messages = [*self._messages[-4:], text]
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    def update(self, progress: Progress) -> None:
        previous = self._previous or progress
        seconds = progress.at - previous.at
        produced_rate = _rate(progress.produced + progress.ingested, previous.produced + previous.ingested, seconds)
        stored_rate = _rate(progress.stored, previous.stored, seconds)
        self._previous = progress
        if self._live is not None:
            table = Table(title=f"pipeline {self.pipeline}", expand=False)
            columns = ("produced", "ingested", "stored", "dead-lettered", "consumer lag", "in ev/s", "stored ev/s",
                       "lake files", "feature windows")
            for column in columns:
                table.add_column(column, justify="right")
            table.add_row(
                f"{progress.produced:,}", f"{progress.ingested:,}", f"{progress.stored:,}", f"{progress.dlq:,}",
                f"{progress.lag:,}", f"{produced_rate:,.0f}", f"{stored_rate:,.0f}", f"{progress.lake_files:,}",
                f"{progress.features:,}",
            )
            self._live.update(table)
        elif progress.at - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = progress.at
            self.console.print(
                f"produced={progress.produced} ingested={progress.ingested} stored={progress.stored} "
                f"dlq={progress.dlq} lag={progress.lag} in={produced_rate:.0f}/s stored={stored_rate:.0f}/s "
                f"lake_files={progress.lake_files} feature_windows={progress.features}"
            )

    def final(self, summary: dict[str, int]) -> None:
        self.console.print("summary: " + " ".join(f"{k}={v}" for k, v in summary.items()))
