"""The processor against real Kafka and PostgreSQL: exactly-once storage, dead letters, crashes, outages.

The processor runs as its own process (`python -m adnomaly.processor --config PATH`), as deployed, so
that `kill -9`, SIGTERM and "the same PID survived an outage" mean what they say.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from adnomaly.bench.processor import fill_topic, sample_events
from adnomaly.config import ComponentConfig, SecretEnv
from adnomaly.events.dead_letter import distinct_dead_letters
from adnomaly.kafka_client import (
    TopicSettings,
    committed_offsets,
    consumer_config,
    consumer_lag,
    ensure_topics,
    producer_config,
)
from adnomaly.plan import Endpoints, plan
from adnomaly.processor.batch import copy_row
from adnomaly.processor.migrate import load_migrations
from adnomaly.processor.store import EventStore, count_duplicates, count_stored, stored_ids
from adnomaly.services.base import free_port
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.spec import parse_pipeline
from confluent_kafka import Consumer, Producer, TopicPartition

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


# -- helpers -----------------------------------------------------------------------------------------------


def unique(hint: str) -> str:
    return f"{hint}_{uuid.uuid4().hex[:10]}"


def processor_config(
    kafka: KafkaBroker, raw: str, dlq: str, *, batch_size: int = 1000, metrics_port: int = 0
) -> ComponentConfig:
    """A real planned processor config, pointed at this test's topics, group and database schema."""
    pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "itest"}, "spec": {
        "events": {"schema": "clickstream"},
        "lake": {"enabled": False},  # the processor needs no lake
        "components": {"processor": {"batchSize": batch_size}},
    }})  # fmt: skip
    config = plan(pipeline, Endpoints(kafka_bootstrap=kafka.bootstrap_servers)).components["processor"].config
    assert config.processor is not None
    return config.model_copy(update={
        "metrics_port": metrics_port,
        "kafka": config.kafka.model_copy(update={"topics": config.kafka.topics.model_copy(update={
            "raw": raw, "dlq": dlq})}),
        "processor": config.processor.model_copy(update={
            "group_id": unique("group"), "db_schema": unique("p"), "batch_timeout_s": 0.1}),
    })  # fmt: skip


class ProcessorProcess:
    """`python -m adnomaly.processor` as a child process, its log in a file."""

    def __init__(self, config: ComponentConfig, dsn: str, workdir: Path, name: str = "processor") -> None:
        self.config = config
        self.config_path = workdir / f"{name}.json"
        self.config_path.write_text(config.to_json())
        self.log_path = workdir / f"{name}.log"
        self._dsn = dsn
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> ProcessorProcess:
        env = {**os.environ, SecretEnv.POSTGRES_DSN: self._dsn, "PYTHONUNBUFFERED": "1"}
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"---- start #{self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "adnomaly.processor", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def cleanup(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def processes() -> Iterable[list[ProcessorProcess]]:
    started: list[ProcessorProcess] = []
    yield started
    for proc in started:
        proc.cleanup()


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, procs: Iterable[ProcessorProcess] = (), poll: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for proc in procs:
            assert proc.process is None or proc.alive() or proc.process.returncode == 0, (
                f"processor died (exit {proc.process.returncode}):\n{proc.log()[-4000:]}"
            )
        time.sleep(poll)
    logs = "\n".join(p.log()[-3000:] for p in procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def topics(kafka: KafkaBroker, partitions: int) -> tuple[str, str]:
    raw, dlq = unique("raw"), unique("dlq")
    ensure_topics(kafka.bootstrap_servers, {raw: TopicSettings(partitions), dlq: TopicSettings(1)})
    return raw, dlq


def produce(kafka: KafkaBroker, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    """Produce (key, value) records; fail unless all were acknowledged."""
    errors: list[Any] = []
    producer = Producer(producer_config(kafka.bootstrap_servers, message_max_bytes=2_000_000))
    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and not errors, errors


@dataclass
class DeadLetter:
    value: bytes | None
    key: bytes | None
    headers: dict[str, str]


class Trickle:
    """Produces `values` in chunks from a background thread: a stream that is still flowing mid-test."""

    def __init__(
        self, kafka: KafkaBroker, topic: str, values: list[bytes], chunk: int = 1000, pause_s: float = 0.3
    ) -> None:
        self._args = (kafka.bootstrap_servers, topic, values, chunk, pause_s)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def _run(self) -> None:
        bootstrap, topic, values, chunk, pause_s = self._args
        try:
            for start in range(0, len(values), chunk):
                if self._stop.is_set():
                    return
                fill_topic(bootstrap, topic, iter(values[start : start + chunk]))
                time.sleep(pause_s)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    @property
    def flowing(self) -> bool:
        return self._thread.is_alive()

    def finish(self, timeout: float = 120.0) -> None:
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), "the producer did not finish"
        assert self.error is None, self.error


def read_dead_letters(kafka: KafkaBroker, topic: str, count: int, timeout: float = 60.0) -> list[DeadLetter]:
    consumer = Consumer(consumer_config(kafka.bootstrap_servers, unique("dlq-reader")))
    consumer.subscribe([topic])
    letters: list[DeadLetter] = []
    deadline = time.monotonic() + timeout
    try:
        while len(letters) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is None:
                    headers = {k: v.decode() for k, v in (msg.headers() or [])}
                    letters.append(DeadLetter(msg.value(), msg.key(), headers))
        # Nothing more than expected (e.g. duplicated dead letters) shows up a little later either.
        for msg in consumer.consume(num_messages=1000, timeout=1.0):
            if msg.error() is None:
                letters.append(DeadLetter(msg.value(), msg.key(), {}))
    finally:
        consumer.close()
    return letters


def ids_of(values: Iterable[bytes]) -> set[str]:
    return {msgspec.json.decode(v)["event_id"] for v in values}


def not_utf8(event: bytes) -> bytes:
    """`event` with an invalid UTF-8 byte inside its platform string."""
    for platform in (b'"web"', b'"ios"', b'"android"'):
        event = event.replace(platform, platform[:2] + b"\xff" + platform[3:])
    return event


def events(prefix: str, count: int, start: int = 0) -> list[bytes]:
    return list(sample_events(count, prefix=prefix, start=start))


def assert_exactly(dsn: str, db_schema: str, expected: set[str]) -> None:
    stored = stored_ids(dsn, db_schema)
    assert len(stored) == len(set(stored)), "an event id is stored twice"
    missing, extra = expected - set(stored), set(stored) - expected
    assert not missing and not extra, f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} extra"


def metrics_text(port: int) -> str:
    """The /metrics page ("" while the process is not serving it yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def metric_value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not in metrics")


def fully_committed(kafka: KafkaBroker, config: ComponentConfig) -> bool:
    assert config.processor is not None
    lag = consumer_lag(kafka.bootstrap_servers, config.processor.group_id, config.kafka.topics.raw)
    return sum(lag.values()) == 0


# -- 1. happy path -----------------------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0).isoformat()


def test_valid_events_are_stored_once_and_invalid_ones_dead_lettered(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path, processes: list[ProcessorProcess]
) -> None:
    raw, dlq = topics(kafka, partitions=3)
    port = free_port()
    config = processor_config(kafka, raw, dlq, batch_size=500, metrics_port=port)
    assert config.processor is not None
    valid = events(unique("ok"), 3000)
    kinds = [b'{"timestamp": "' + NOW.encode(), b"", not_utf8(valid[0]), b"[1, 2]", b'{"geo": 5}']
    invalid = {f"bad-{i}".encode(): value for i, value in enumerate(kinds * 6)}
    records: list[tuple[bytes | None, bytes | None]] = [(str(i).encode(), v) for i, v in enumerate(valid)]
    records[1000:1000] = list(invalid.items())
    records += [(b"dup", v) for v in valid[:200]]  # duplicates: the same event ids again
    produce(kafka, raw, records)

    proc = ProcessorProcess(config, postgres.dsn, tmp_path).start()
    processes.append(proc)
    schema = config.processor.db_schema
    wait_for(lambda: fully_committed(kafka, config), 90, "all offsets committed", [proc])
    assert_exactly(postgres.dsn, schema, ids_of(valid))

    letters = read_dead_letters(kafka, dlq, len(invalid))
    assert len(letters) == len(invalid)
    for letter in letters:
        assert letter.key in invalid and letter.value == invalid[letter.key], "original bytes and key kept"
        h = letter.headers
        assert h["reason"].startswith(h["reason_code"] + ": ") and len(h["reason"]) > len(h["reason_code"]) + 2
        assert h["source_topic"] == raw and h["pipeline"] == "itest"
        assert 0 <= int(h["source_partition"]) < 3 and int(h["source_offset"]) >= 0
        assert h["dead_letter_id"] == f"{raw}/{h['source_partition']}/{h['source_offset']}"
    codes = sorted(letter.headers["reason_code"] for letter in letters)
    assert codes == sorted(["malformed_json", "empty", "invalid_utf8", "schema_violation", "schema_violation"] * 6)

    text = metrics_text(port)
    assert metric_value(text, 'adnomaly_processor_events_total{result="stored"}') == 3000
    assert metric_value(text, 'adnomaly_processor_events_total{result="duplicate"}') == 200
    assert metric_value(text, 'adnomaly_processor_events_total{result="invalid"}') == 30
    assert metric_value(text, 'adnomaly_dlq_events_total{reason_code="empty"}') == 6
    assert "adnomaly_processor_batch_seconds_bucket" in text
    lag_samples = [f'adnomaly_consumer_lag{{partition="{p}",topic="{raw}"}}' for p in range(3)]
    wait_for(lambda: all(s in metrics_text(port) for s in lag_samples), 15, "the lag gauges", [proc])
    assert [metric_value(metrics_text(port), s) for s in lag_samples] == [0, 0, 0]

    assert proc.terminate() == 0
    assert "SIGTERM received" in proc.log()


# -- 2. kill -9 mid-stream ---------------------------------------------------------------------------------


def test_kill_9_mid_stream_dead_letters_are_exactly_once_by_identity(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path, processes: list[ProcessorProcess]
) -> None:
    """Killed between its dead letters and its offset commit, the processor dead-letters the batch's invalid
    records again after the restart: every copy carries the same `dead_letter_id`, so counted by identity
    each invalid record is in the dead-letter topic exactly once (and none is missing)."""
    raw, dlq = topics(kafka, partitions=2)
    config = processor_config(kafka, raw, dlq, batch_size=200)
    assert config.processor is not None
    valid = events(unique("dk9"), 12_000)
    values = [b"[%d]" % i if i % 40 == 0 else v for i, v in enumerate(valid)]  # 300 invalid, spread out
    fill_topic(kafka.bootstrap_servers, raw, iter(values))
    proc = ProcessorProcess(config, postgres.dsn, tmp_path)
    processes.append(proc)
    proc.start()
    wait_for(lambda: count_stored(postgres.dsn, config.processor.db_schema) >= 1_500, 60, "the first batches",
             [proc], poll=0.02)  # fmt: skip
    proc.kill9()
    proc.start()
    wait_for(lambda: fully_committed(kafka, config), 120, "all offsets committed after the restart", [proc])
    assert proc.terminate() == 0
    consumer = Consumer(consumer_config(kafka.bootstrap_servers, unique("dlq-reader")))
    consumer.subscribe([dlq])
    letters: list[Any] = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 3:
        batch = [m for m in consumer.consume(1000, timeout=0.5) if m.error() is None]
        letters += batch
        quiet_since = time.monotonic() if batch else quiet_since
    consumer.close()
    distinct = distinct_dead_letters(letters)
    expected = {v for v in values if v.startswith(b"[")}
    assert sorted(m.value() for m in distinct) == sorted(expected)  # each invalid record once, none missing
    for message in letters:
        h = {k: v.decode() for k, v in message.headers()}
        assert h["dead_letter_id"] == f"{raw}/{h['source_partition']}/{h['source_offset']}"
    print(f"dead letters in the topic: {len(letters)}, distinct by identity: {len(distinct)}")



def test_kill_9_mid_stream_then_restart_stores_every_event_exactly_once(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path, processes: list[ProcessorProcess]
) -> None:
    raw, dlq = topics(kafka, partitions=4)
    config = processor_config(kafka, raw, dlq, batch_size=500)
    assert config.processor is not None
    schema = config.processor.db_schema
    all_events = events(unique("k9"), 25_000)
    fill_topic(kafka.bootstrap_servers, raw, iter(all_events[:15_000]))  # a backlog keeps it busy writing
    proc = ProcessorProcess(config, postgres.dsn, tmp_path)
    processes.append(proc)
    proc.start()
    with Trickle(kafka, raw, all_events[15_000:]) as stream:
        wait_for(lambda: count_stored(postgres.dsn, schema) >= 2_000, 60, "the first batches", [proc], poll=0.02)
        assert stream.flowing
        proc.kill9()  # mid-stream: a batch being written, events still arriving
        at_kill = count_stored(postgres.dsn, schema)
        time.sleep(1)
        proc.start()
        stream.finish()
    assert at_kill < len(all_events)
    wait_for(lambda: fully_committed(kafka, config), 120, "all offsets committed after the restart", [proc])
    assert_exactly(postgres.dsn, schema, ids_of(all_events))
    assert proc.terminate() == 0


def test_sigterm_mid_stream_commits_only_stored_events_leaves_the_group_and_exits_0(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path, processes: list[ProcessorProcess]
) -> None:
    raw, dlq = topics(kafka, partitions=3)
    config = processor_config(kafka, raw, dlq, batch_size=500)
    assert config.processor is not None
    schema = config.processor.db_schema
    proc = ProcessorProcess(config, postgres.dsn, tmp_path).start()
    processes.append(proc)
    with Trickle(kafka, raw, events(unique("term"), 20_000)) as stream:
        wait_for(lambda: count_stored(postgres.dsn, schema) >= 3_000, 60, "the first batches", [proc])
        assert stream.flowing
        started = time.monotonic()
        assert proc.terminate(timeout=30) == 0
        assert time.monotonic() - started < 15
    committed = committed_offsets(
        kafka.bootstrap_servers, config.processor.group_id, [TopicPartition(raw, p) for p in range(3)]
    )
    with psycopg.connect(postgres.dsn) as conn:
        stored = conn.execute(f'SELECT kafka_partition, kafka_offset FROM "{schema}".events').fetchall()
    stored_offsets: dict[int, set[int]] = {}
    for partition, offset in stored:
        stored_offsets.setdefault(partition, set()).add(offset)
    assert sum(max(0, o) for o in committed.values()) > 0, "nothing committed before the stop"
    for partition, offset in committed.items():
        missing = set(range(max(0, offset))) - stored_offsets.get(partition, set())
        assert not missing, f"committed up to {offset} on partition {partition} but {len(missing)} not stored"
    # It left the group: a newcomer in the same group gets every partition without waiting out a session.
    newcomer = Consumer(consumer_config(kafka.bootstrap_servers, config.processor.group_id))
    newcomer.subscribe([raw])
    try:
        deadline = time.monotonic() + 8  # well below the 10 s session timeout of a member that vanished
        while len(newcomer.assignment()) < 3 and time.monotonic() < deadline:
            newcomer.consume(num_messages=1, timeout=0.2)
        assert len(newcomer.assignment()) == 3
    finally:
        newcomer.close()


# -- 3. PostgreSQL outage ------------------------------------------------------------------------------------


def test_postgres_down_for_10s_no_loss_no_duplicate_no_restart(
    kafka: KafkaBroker,
    make_postgres: Callable[..., PostgresServer],
    tmp_path: Path,
    processes: list[ProcessorProcess],
) -> None:
    pg = make_postgres()
    raw, dlq = topics(kafka, partitions=3)
    port = free_port()
    config = processor_config(kafka, raw, dlq, batch_size=500, metrics_port=port)
    assert config.processor is not None
    schema = config.processor.db_schema
    prefix = unique("pg")
    batches = [events(prefix, 3000, start=i * 3000) for i in range(3)]
    proc = ProcessorProcess(config, pg.dsn, tmp_path).start()
    processes.append(proc)
    pid = proc.pid

    fill_topic(kafka.bootstrap_servers, raw, iter(batches[0]))
    wait_for(lambda: count_stored(pg.dsn, schema) == 3000, 60, "the first events", [proc])

    pg.kill()  # a crash: backends gone, connections reset
    fill_topic(kafka.bootstrap_servers, raw, iter(batches[1]))  # arrives during the outage
    time.sleep(10)
    assert proc.alive() and proc.pid == pid
    pg.start()
    fill_topic(kafka.bootstrap_servers, raw, iter(batches[2]))

    wait_for(lambda: fully_committed(kafka, config), 120, "recovery after the outage", [proc])
    assert proc.alive() and proc.pid == pid, "recovered without a restart"
    assert_exactly(pg.dsn, schema, ids_of(batches[0] + batches[1] + batches[2]))
    text = metrics_text(port)
    assert metric_value(text, "adnomaly_processor_db_retries_total") >= 1
    assert metric_value(text, "adnomaly_processor_db_errors_total") >= 1
    log = proc.log()
    assert "retrying in" in log
    assert pg.password not in log, "the DSN's password leaked into the log"
    assert proc.terminate() == 0


# -- 4. malformed input ------------------------------------------------------------------------------------


def test_malformed_input_is_dead_lettered_with_its_reason_and_does_not_block(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path, processes: list[ProcessorProcess]
) -> None:
    raw, dlq = topics(kafka, partitions=1)
    config = processor_config(kafka, raw, dlq, batch_size=100)
    assert config.processor is not None
    prefix = unique("mal")
    [good] = events(prefix, 1)
    doc = msgspec.json.decode(good)
    probe = {
        "node_id": "n1",
        "node_name": "edge",
        "region": "eu",
        "latency_ms": 3.0,
        "uptime": 1.0,
        "packet_loss": 0.0,
        "ts": NOW,
    }
    bad: dict[str, tuple[bytes, str]] = {
        "truncated": (good[: len(good) // 2], "malformed_json"),
        "wrong-type": (msgspec.json.encode({**doc, "event_id": "wt", "CTR": "high"}), "schema_violation"),
        "missing-field": (msgspec.json.encode({k: v for k, v in doc.items() if k != "geo"}), "schema_violation"),
        "oversize": (msgspec.json.encode({**doc, "user_agent": "x" * 70_000}), "oversize"),
        "non-utf8": (not_utf8(good), "invalid_utf8"),
        "wrong-schema": (msgspec.json.encode(probe), "schema_violation"),
        "empty": (b"", "empty"),
        "not-json": (b"hello world", "malformed_json"),
        "nul-char": (msgspec.json.encode({**doc, "event_id": "nul", "user_agent": "a\x00b"}), "unstorable"),
        "far-future": (
            msgspec.json.encode({**doc, "event_id": "ff", "timestamp": "2999-01-01T00:00:00Z"}),
            "invalid_time",
        ),
    }
    after = events(prefix, 50, start=1)
    produce(
        kafka, raw, [(b"good", good)] + [(k.encode(), v) for k, (v, _) in bad.items()] + [(b"after", v) for v in after]
    )
    proc = ProcessorProcess(config, postgres.dsn, tmp_path).start()
    processes.append(proc)

    wait_for(lambda: fully_committed(kafka, config), 60, "every message handled", [proc])
    assert_exactly(postgres.dsn, config.processor.db_schema, ids_of([good, *after]))
    letters = {letter.key.decode(): letter for letter in read_dead_letters(kafka, dlq, len(bad)) if letter.key}
    assert set(letters) == set(bad)
    for name, (value, code) in bad.items():
        assert letters[name].value == value, name
        assert letters[name].headers["reason_code"] == code, (name, letters[name].headers["reason"])
    assert proc.alive()
    assert proc.terminate() == 0


# -- 5. rebalance ------------------------------------------------------------------------------------------


def test_a_second_processor_joining_and_leaving_mid_stream_changes_nothing(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path, processes: list[ProcessorProcess]
) -> None:
    raw, dlq = topics(kafka, partitions=6)
    config = processor_config(kafka, raw, dlq, batch_size=300)
    assert config.processor is not None
    schema = config.processor.db_schema
    all_events = events(unique("rb"), 30_000)
    second_port = free_port()
    first = ProcessorProcess(config, postgres.dsn, tmp_path, "first").start()
    second = ProcessorProcess(config.model_copy(update={"metrics_port": second_port}), postgres.dsn, tmp_path, "second")
    processes.extend([first, second])
    with Trickle(kafka, raw, all_events, pause_s=0.5) as stream:
        wait_for(lambda: count_stored(postgres.dsn, schema) >= 3_000, 60, "the first processor", [first])
        second.start()
        wait_for(
            lambda: "assigned " in second.log() and "assigned nothing" not in second.log().split("assigned ")[-1],
            60,
            "the second processor to get partitions",
            [first, second],
        )
        stored_by_second = 'adnomaly_processor_events_total{result="stored"}'
        wait_for(
            lambda: (
                stored_by_second in (text := metrics_text(second_port)) and metric_value(text, stored_by_second) > 0
            ),
            60,
            "the second one to store events",
            [second],
        )
        assert stream.flowing
        assert second.terminate() == 0  # leaves the group mid-stream
        assert "revoked " in second.log()
        stream.finish()
    wait_for(
        lambda: fully_committed(kafka, config) and count_stored(postgres.dsn, schema) >= 30_000,
        120,
        "the first processor to finish alone",
        [first],
    )
    assert_exactly(postgres.dsn, schema, ids_of(all_events))
    assert first.terminate() == 0


# -- 6. storage: migrations under concurrency, idempotent batches ---------------------------------------------


def test_migrations_are_applied_once_by_concurrent_starters_and_rerunning_is_a_no_op(
    postgres: PostgresServer,
) -> None:
    schema = unique("mig")
    starters = 8
    barrier = threading.Barrier(starters)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        store = EventStore(postgres.dsn, schema, "timestamp")
        barrier.wait()
        try:
            results.append(store.migrate())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    versions = [m.version for m in load_migrations()]
    assert sorted(results, key=len) == [[]] * (starters - 1) + [versions]
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(f'SELECT version FROM "{schema}".schema_migrations ORDER BY version').fetchall()
        assert [r[0] for r in rows] == versions
        indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s", (schema,)).fetchall()
        assert any("(event_time)" in r[0] for r in indexes)
    assert EventStore(postgres.dsn, schema, "timestamp").migrate() == []


def test_store_writes_are_idempotent_within_and_across_batches_and_keep_every_field(
    postgres: PostgresServer,
) -> None:
    schema = unique("st")
    store = EventStore(postgres.dsn, schema, "timestamp")
    store.migrate()
    weird_ids = ["tab\there", "back\\slash", "new\nline", "cr\rhere", "quote'\"", "ünïcødé-✓"]
    docs = [
        {"event_id": eid, "timestamp": f"2025-03-0{i + 1}T10:00:00.123456+02:00", "ua": 'a\\b"c\td'}
        for i, eid in enumerate(weird_ids)
    ]
    rows = [copy_row(d["event_id"], msgspec.json.encode(d), 7, 100 + i) for i, d in enumerate(docs)]
    try:
        assert store.write(rows + rows[:2]) == len(rows)  # the same id twice in one batch: stored once
        assert store.write(rows) == 0
        assert count_stored(postgres.dsn, schema) == len(rows)
        with psycopg.connect(postgres.dsn) as conn:
            stored = conn.execute(
                f'SELECT event_id, event_time, payload, kafka_partition, kafka_offset FROM "{schema}".events'
            ).fetchall()
    finally:
        store.close()
    by_id = {row[0]: row for row in stored}
    assert set(by_id) == set(weird_ids)
    for i, doc in enumerate(docs):
        _, event_time, payload, partition, offset = by_id[doc["event_id"]]
        assert event_time == datetime.fromisoformat(doc["timestamp"])
        assert payload == doc
        assert (partition, offset) == (7, 100 + i)


def test_re_sent_events_are_recorded_once_and_replays_are_not(postgres: PostgresServer) -> None:
    """A re-send (the same id at another position of the raw topic) is a duplicate, recorded once however
    often its batch is written; a replay of the stored copy itself (same position) is not a duplicate."""
    schema = unique("dup")
    store = EventStore(postgres.dsn, schema, "timestamp")
    store.migrate()

    def rows(partition: int, first_offset: int, ids: list[str]) -> list[bytes]:
        return [copy_row(eid, msgspec.json.encode({"event_id": eid, "timestamp": "2025-03-01T10:00:00Z"}),
                         partition, first_offset + n) for n, eid in enumerate(ids)]  # fmt: skip

    ids = [f"e{n}" for n in range(6)]
    try:
        assert count_duplicates(postgres.dsn, schema) == 0
        assert store.write(rows(0, 100, ids)) == 6
        assert store.write(rows(0, 100, ids)) == 0  # the processor replays its batch after a crash
        assert count_duplicates(postgres.dsn, schema) == 0
        resent = rows(1, 500, ids[:4]) + rows(0, 106, ["e6"])  # a client retried four; one is new
        assert store.write(resent) == 1
        assert store.write(resent) == 0  # ...and that batch is replayed too
        assert count_duplicates(postgres.dsn, schema) == 4
        assert store.write(rows(0, 107, ["e7", "e7"])) == 1  # twice in one batch at two positions
        assert count_duplicates(postgres.dsn, schema) == 5
        assert count_stored(postgres.dsn, schema) == 8
    finally:
        store.close()
