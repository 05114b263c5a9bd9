"""The bad-input corpus (adnomaly.events.corpus) against the real services: every input is accounted for.

(a) Through the real ingest API process: every item as its own request, then as NDJSON batches. Every request
    gets an answer below 500; accepted lines are in the raw topic, rejected ones in the DLQ with their reason;
    then a real processor stores every accepted event in PostgreSQL and dead-letters none of them.
(b) Straight into the raw topic of the real processor process (plus a tombstone, a message over the
    producer's size limit and seeded mutants of the corpus): accepted items are rows in PostgreSQL with the
    event time the codec read, the others dead letters with the expected `reason_code` and their original
    bytes; the consumer lag drains to 0 and the process lives.
In both, accepted + rejected-with-reason == sent, per schema.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from adnomaly.config import ComponentConfig, TopicNames
from adnomaly.events import codec_for
from adnomaly.events.codec import DLQ_MAX_VALUE_BYTES, EMPTY, OVERSIZE, InvalidEvent
from adnomaly.events.corpus import ACCEPTED, CorpusItem, build_corpus, mutate
from adnomaly.events.schemas import SCHEMA_NAMES
from adnomaly.ingest.openapi import MAX_ERRORS
from adnomaly.plan import Endpoints, plan
from adnomaly.processor.store import stored_ids
from adnomaly.services.base import free_port
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.spec import parse_pipeline
from psycopg import sql

from tests.integration.test_ingest_api import AUTH, LiveIngest, read_topic
from tests.integration.test_processor import (
    ProcessorProcess,
    assert_exactly,
    fully_committed,
    produce,
    read_dead_letters,
    topics,
    unique,
    wait_for,
)

BODY_LIMIT = 2 * 1024 * 1024  # room for the corpus' largest items (512 KiB) in one request


def pipeline_plan(schema: str, bootstrap: str, ingest_port: int = 0) -> dict[str, ComponentConfig]:
    pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "badinput"}, "spec": {
        "events": {"schema": schema},
        "source": {"ingest": {"maxBodyBytes": BODY_LIMIT}},
        "lake": {"enabled": False},
    }})  # fmt: skip
    endpoints = Endpoints(kafka_bootstrap=bootstrap, ingest_host="127.0.0.1", ingest_port=ingest_port)
    return {name: component.config for name, component in plan(pipeline, endpoints).components.items()}


def with_topics(config: ComponentConfig, raw: str, dlq: str) -> ComponentConfig:
    names = TopicNames(raw=raw, dlq=dlq, features=f"{raw}-features", anomalies=f"{raw}-anomalies")
    return config.model_copy(update={"kafka": config.kafka.model_copy(update={"topics": names}), "metrics_port": 0})


def corpus_for(schema: str) -> list[CorpusItem]:
    return build_corpus(now=datetime.now(UTC), schemas=(schema,))


def event_id(schema: str, raw: bytes) -> str:
    return codec_for(schema=schema).decode(raw).event_id


# -- (a) the ingest API ------------------------------------------------------------------------------------------


@pytest.fixture
def ingest_for(kafka: KafkaBroker, tmp_path: Path) -> Iterator[Callable[[str], tuple[LiveIngest, str, str]]]:
    started: list[LiveIngest] = []

    def start(schema: str) -> tuple[LiveIngest, str, str]:
        raw, dlq = topics(kafka, partitions=3)
        config = with_topics(pipeline_plan(schema, kafka.bootstrap_servers, free_port())["ingest"], raw, dlq)
        server = LiveIngest(config, tmp_path)
        started.append(server)
        server.start()
        return server, raw, dlq

    yield start
    for server in started:
        server.process.stop(timeout=40)


def expect_single(item: CorpusItem, response: httpx.Response) -> str | None:
    """Why `response` is not the answer `item` must get as a single-event request (None: it is)."""
    body: dict[str, Any] = response.json()
    if not item.raw.strip():
        ok = response.status_code == 400 and body.get("error") == "empty_body"
    elif item.accepted:
        ok = response.status_code == 202 and (body["accepted"], body["rejected"]) == (1, 0)
    else:
        ok = (
            response.status_code == 400
            and (body["accepted"], body["rejected"]) == (0, 1)
            and [e["code"] for e in body["errors"]] == [item.expected]
        )
    return None if ok else f"{item.name}: expected {item.expected}, got {response.status_code} {response.text[:200]}"


@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_corpus_through_the_ingest_api_is_fully_accounted_for(
    kafka: KafkaBroker,
    postgres: PostgresServer,
    ingest_for: Callable[[str], tuple[LiveIngest, str, str]],
    tmp_path: Path,
    processes: list[ProcessorProcess],
    schema: str,
) -> None:
    server, raw_topic, dlq_topic = ingest_for(schema)
    items = corpus_for(schema)
    wrong: list[str] = []
    sent_raw: Counter[str] = Counter()  # event ids that must be in the raw topic (with multiplicity)
    sent_dlq: Counter[tuple[bytes, str]] = Counter()  # (line, code) that must be dead-lettered
    refused = 0  # blank bodies: refused as a whole, nothing to dead-letter
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as http:
        for item in items:
            response = http.post("/v1/events", content=item.raw, headers={"Content-Type": "application/json"})
            assert response.status_code < 500, (item.name, response.status_code, response.text)
            problem = expect_single(item, response)
            if problem:
                wrong.append(problem)
            elif not item.raw.strip():
                refused += 1
            elif item.accepted:
                sent_raw[event_id(schema, item.raw)] += 1
            else:
                sent_dlq[(item.raw, item.expected)] += 1

        # NDJSON: every item that is one non-blank line, in batches whose errors are all listed.
        lines = [i for i in items if b"\n" not in i.raw and i.raw.strip()]
        for start in range(0, len(lines), MAX_ERRORS):
            chunk = lines[start : start + MAX_ERRORS]
            response = http.post(
                "/v1/events", content=b"\n".join(i.raw for i in chunk) + b"\n",
                headers={"Content-Type": "application/x-ndjson"},
            )  # fmt: skip
            assert response.status_code == 202, response.text[:500]
            body = response.json()
            assert body["accepted"] + body["rejected"] == len(chunk)
            assert [(e["line"], e["code"]) for e in body["errors"]] == [
                (n, i.expected) for n, i in enumerate(chunk, 1) if not i.accepted
            ]
            for item in chunk:
                if item.accepted:
                    sent_raw[event_id(schema, item.raw)] += 1
                else:
                    sent_dlq[(item.raw, item.expected)] += 1
    assert not wrong, "\n".join(wrong)
    single_lines = len(items) - refused
    assert sum(sent_raw.values()) + sum(sent_dlq.values()) == single_lines + len(lines)

    in_raw = read_topic(kafka.bootstrap_servers, raw_topic, expected=sum(sent_raw.values()), timeout=60)
    assert Counter(m.key().decode() for m in in_raw) == sent_raw
    dead = read_topic(kafka.bootstrap_servers, dlq_topic, expected=sum(sent_dlq.values()), timeout=60)
    reasons = [dict(m.headers())["reason"].decode() for m in dead]
    assert all(": " in r and r.split(": ", 1)[1] for r in reasons), "every dead letter says why"
    assert Counter((m.value() or b"", r.split(":", 1)[0]) for m, r in zip(dead, reasons, strict=True)) == sent_dlq

    assert server.process.running, server.log
    assert "Traceback" not in server.log and "internal_error" not in server.log, server.log

    # What the API accepted, the processor stores: every id in PostgreSQL, not one dead letter more.
    _, processor_dlq = topics(kafka, partitions=1)
    config = processor_config_for(schema, kafka, raw_topic, processor_dlq)
    assert config.processor is not None
    proc = ProcessorProcess(config, postgres.dsn, tmp_path).start()
    processes.append(proc)
    wait_for(lambda: fully_committed(kafka, config), 120, "the processor to read the raw topic", [proc])
    late = read_dead_letters(kafka, processor_dlq, 0)
    assert not late, [(letter.key, letter.headers.get("reason")) for letter in late]
    assert_exactly(postgres.dsn, config.processor.db_schema, set(sent_raw))
    assert proc.terminate() == 0


# -- (b) the processor -------------------------------------------------------------------------------------------


MUTANTS = 300


def mutants(schema: str, items: list[CorpusItem]) -> list[CorpusItem]:
    """Seeded mutants of `items`, each expecting what the codec makes of it; none repeats an accepted id."""
    codec = codec_for(schema=schema)
    rng = random.Random(f"adnomaly-mutants:{schema}")
    ids = {event_id(schema, item.raw) for item in items if item.accepted}
    made: list[CorpusItem] = []
    for n in range(MUTANTS):
        raw = mutate(rng.choice(items).raw, n)
        try:
            accepted_id: str | None = codec.decode(raw).event_id
            expected = ACCEPTED
        except InvalidEvent as exc:
            accepted_id, expected = None, exc.code
        if accepted_id is not None:
            if accepted_id in ids:
                continue  # the same event again (e.g. only whitespace changed): stored once, not countable
            ids.add(accepted_id)
        made.append(CorpusItem(schema, "mutant", str(n), raw, expected))
    return made


def processor_config_for(schema: str, kafka: KafkaBroker, raw: str, dlq: str) -> ComponentConfig:
    config = with_topics(pipeline_plan(schema, kafka.bootstrap_servers)["processor"], raw, dlq)
    assert config.processor is not None
    return config.model_copy(update={"processor": config.processor.model_copy(update={
        "group_id": unique("group"), "db_schema": unique("bad"), "batch_timeout_s": 0.1, "batch_size": 100,
    })})  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_corpus_straight_into_the_raw_topic_is_stored_or_dead_lettered(
    kafka: KafkaBroker,
    postgres: PostgresServer,
    tmp_path: Path,
    processes: list[ProcessorProcess],
    schema: str,
) -> None:
    raw_topic, dlq_topic = topics(kafka, partitions=3)
    config = processor_config_for(schema, kafka, raw_topic, dlq_topic)
    assert config.processor is not None
    corpus = corpus_for(schema)
    # The corpus, a Kafka tombstone (no value at all) and mutants of corpus items: corrupted bytes whose
    # outcome the codec decides (the processor must agree with it, and account for each of them too).
    # And one message bigger than a producer takes by default (~1 MB), which the broker (~1 MiB) still takes.
    too_big = CorpusItem(schema, "beyond_producer_limit", "1040000_bytes", b"[" + b" " * 1_039_998 + b"]", OVERSIZE)
    tombstone = CorpusItem(schema, "tombstone", "null_value", b"", EMPTY)
    items = [*corpus, tombstone, too_big, *mutants(schema, corpus)]
    proc = ProcessorProcess(config, postgres.dsn, tmp_path).start()
    processes.append(proc)
    # Half before the processor has joined, half while it runs; keyed by item name to find each one again.
    records = [(item.name.encode(), None if item.category == "tombstone" else item.raw) for item in items]
    produce(kafka, raw_topic, records[: len(records) // 2])
    wait_for(lambda: "assigned " in proc.log(), 60, "the processor to join its group", [proc])
    produce(kafka, raw_topic, records[len(records) // 2 :])

    wait_for(lambda: fully_committed(kafka, config), 120, "the lag to drain to 0", [proc])
    rejected = [item for item in items if not item.accepted]
    letters = read_dead_letters(kafka, dlq_topic, len(rejected))
    by_name = {(letter.key or b"").decode(): letter for letter in letters}
    assert len(by_name) == len(letters), "one dead letter per message, no more"
    stored = stored_ids(postgres.dsn, config.processor.db_schema)
    assert len(stored) == len(set(stored)), "an event id is stored twice"
    wrong: list[str] = []
    for item in items:  # what became of each one: a row, or a dead letter with its reason (never both)
        letter = by_name.pop(item.name, None)
        if item.accepted and letter is not None:
            wrong.append(f"{item.name}: expected a row, dead-lettered: {letter.headers['reason']}")
        elif not item.accepted and letter is None:
            wrong.append(f"{item.name}: expected {item.expected}, no dead letter")
        elif letter is not None and letter.headers["reason_code"] != item.expected:
            wrong.append(f"{item.name}: expected {item.expected}, got {letter.headers['reason']}")
        elif letter is not None and (letter.value or b"") != item.raw[:DLQ_MAX_VALUE_BYTES]:
            wrong.append(f"{item.name}: the dead letter does not keep the original bytes")
        elif (
            letter is not None
            and len(item.raw) > DLQ_MAX_VALUE_BYTES
            and (letter.headers.get("truncated_from") != str(len(item.raw)))
        ):
            wrong.append(f"{item.name}: cut without a truncated_from header: {letter.headers}")
    assert not wrong, "\n".join(wrong)
    assert_exactly(postgres.dsn, config.processor.db_schema, {event_id(schema, i.raw) for i in items if i.accepted})
    # PostgreSQL reads each stored event as the codec did (duplicate keys: the last wins in both; odd but
    # valid timestamps: lowercase, space separator, nanoseconds, offsets): the same id and event time.
    codec = codec_for(schema=schema)
    decoded = {event.event_id: event.event_time for event in (codec.decode(i.raw) for i in items if i.accepted)}
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT event_id, event_time, payload ->> 'event_id' FROM {}").format(
                sql.Identifier(config.processor.db_schema, "events")
            )
        ).fetchall()
    assert {row[0]: row[1] for row in rows} == decoded
    assert all(row[2] in (None, row[0]) for row in rows), "the stored payload names another id"
    assert len(stored) + len(letters) == len(items)  # accepted + rejected-with-reason == sent

    assert proc.alive(), proc.log()[-3000:]
    assert "codec failed unexpectedly" not in proc.log()
    assert proc.terminate() == 0


@pytest.fixture
def processes() -> Iterator[list[ProcessorProcess]]:
    started: list[ProcessorProcess] = []
    yield started
    for proc in started:
        proc.cleanup()
