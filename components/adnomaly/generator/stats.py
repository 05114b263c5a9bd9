"""What the generator reports: delivery-confirmed counts, the stats file, and the scenario labels file."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from adnomaly.generator.scenarios import ScenarioLabel


@dataclass
class DeliveryCounts:
    """Counted by delivery callbacks only: an event is produced once the broker has acknowledged it."""

    valid: int = 0
    invalid: int = 0
    failed: int = 0
    last_error: str | None = None

    @property
    def produced(self) -> int:
        return self.valid + self.invalid

    def on_valid(self, err: Any, msg: Any) -> None:
        if err is None:
            self.valid += 1
        else:
            self._failed(err)

    def on_invalid(self, err: Any, msg: Any) -> None:
        if err is None:
            self.invalid += 1
        else:
            self._failed(err)

    def _failed(self, err: Any) -> None:
        self.failed += 1
        self.last_error = str(err)


def stats_document(
    counts: DeliveryCounts, *, elapsed_s: float, generated: int, target_rate: float, labels: int, running: bool
) -> dict[str, Any]:
    """The stats file's content; `rate` is delivered events per second over the production window."""
    return {
        "produced": counts.produced,
        "produced_valid": counts.valid,
        "produced_invalid": counts.invalid,
        "rate": round(counts.produced / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        "failed": counts.failed,
        "generated": generated,
        "elapsed_s": round(elapsed_s, 3),
        "target_rate": target_rate,
        "labels": labels,
        "running": running,
    }


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Replace `path` with `document` in one rename, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(msgspec.json.encode(document) + b"\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class LabelWriter:
    """Appends scenario labels to a JSONL file, one line per scenario instance, flushed as written."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        self._handle = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("ab")

    def write(self, labels: list[ScenarioLabel]) -> None:
        for label in labels:
            if self._handle is not None:
                self._handle.write(label.to_json() + b"\n")
            self.count += 1
        if labels and self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_labels(path: Path) -> list[ScenarioLabel]:
    decoder = msgspec.json.Decoder(ScenarioLabel)
    return [decoder.decode(line) for line in path.read_bytes().splitlines() if line.strip()]
