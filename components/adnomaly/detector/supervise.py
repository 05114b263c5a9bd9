"""Keep the detector running through outages of PostgreSQL or Kafka without a process restart.

A transient failure (the database or the broker gone, a coordinator moved) ends the current runner; a new
one is built after a back-off and resumes exactly where a restarted process would: from the checkpoint
whose offsets Kafka committed (see `adnomaly.detector.checkpoint`). Anything else is a bug and ends the
process, so that it shows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import KafkaException

from adnomaly.processor.retry import backoff_delay
from adnomaly.processor.store import TRANSIENT_ERRORS as POSTGRES_TRANSIENT_ERRORS

_log = logging.getLogger("adnomaly.detector")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (*POSTGRES_TRANSIENT_ERRORS, KafkaException)
MAX_DELAY_S = 30.0


class Runner(Protocol):
    stopping: threading.Event

    def run(self) -> None: ...


def retry_delay(attempt: int) -> float:
    """Seconds to wait before attempt `attempt` (1, 2, 4, ... capped at MAX_DELAY_S): the processor's
    back-off without jitter (one detector per pipeline: nothing to keep out of lock-step)."""
    return backoff_delay(max(0, attempt - 1), base=1.0, cap=MAX_DELAY_S, rand=lambda: 1.0)


def run_until_stopped(make_runner: Callable[[], Runner], stopping: threading.Event) -> int:
    """Build and run runners until `stopping` is set; 0 on a clean stop. Transient errors (also while
    building, e.g. PostgreSQL still down at start-up) are retried after `retry_delay`."""
    attempt = 0
    while not stopping.is_set():
        try:
            runner = make_runner()
            runner.stopping = stopping
            attempt = 0
            runner.run()
        except TRANSIENT_ERRORS as exc:
            attempt += 1
            delay = retry_delay(attempt)
            _log.warning("detector interrupted (%s: %s); resuming from its checkpoint in %.0f s",
                         type(exc).__name__, exc, delay)  # fmt: skip
            stopping.wait(delay)
    return 0
