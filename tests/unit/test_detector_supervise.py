"""The detector survives PostgreSQL/Kafka outages in-process: transient errors rebuild the runner after a
back-off (it resumes from its checkpoint); a clean stop ends the loop; anything else is not hidden."""

from __future__ import annotations

import threading

import psycopg
import pytest
from adnomaly.detector import supervise
from adnomaly.detector.supervise import MAX_DELAY_S, retry_delay, run_until_stopped
from confluent_kafka import KafkaError, KafkaException


class FakeRunner:
    def __init__(self, outcome: BaseException | None, log: list[str]) -> None:
        self.outcome, self.log = outcome, log
        self.stopping = threading.Event()

    def run(self) -> None:
        self.log.append("run")
        if self.outcome is not None:
            raise self.outcome
        self.stopping.set()  # as a SIGTERM would: the shared event ends the loop


def test_retry_delay_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(50) == MAX_DELAY_S


def test_transient_errors_rebuild_the_runner_until_a_clean_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    stopping = threading.Event()
    monkeypatch.setattr(stopping, "wait", lambda timeout=None: waits.append(timeout) or False)
    log: list[str] = []
    outcomes: list[BaseException | None] = [
        psycopg.OperationalError("connection refused"),  # PostgreSQL down while building
        KafkaException(KafkaError(KafkaError._TRANSPORT)),  # broker restarted mid-batch
        None,
    ]

    def make() -> FakeRunner:
        outcome = outcomes.pop(0)
        if isinstance(outcome, psycopg.OperationalError):
            log.append("build-failed")
            raise outcome
        return FakeRunner(outcome, log)

    assert run_until_stopped(make, stopping) == 0
    assert log == ["build-failed", "run", "run"]
    # the back-off restarts at 1 s once a runner was built: each outage is retried promptly
    assert waits == [1.0, 1.0]


def test_a_bug_is_not_retried() -> None:
    with pytest.raises(ZeroDivisionError):
        run_until_stopped(lambda: FakeRunner(ZeroDivisionError(), []), threading.Event())


def test_transient_error_types_cover_database_and_broker() -> None:
    assert issubclass(psycopg.errors.AdminShutdown, supervise.TRANSIENT_ERRORS)
    assert issubclass(KafkaException, supervise.TRANSIENT_ERRORS)
