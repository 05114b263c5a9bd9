"""Load for the fault suite: generator events straight to the raw topic, and a share through the ingest API.

The ids that count as produced are recorded on the producer side, independently of the pipeline:
- to Kafka: an id is produced once its delivery report says Kafka has it (acks=all, idempotent producer;
  the message timeout is longer than any outage the suite makes, so nothing is given up);
- through the ingest API: once the API answered 202 for its request.
A request whose outcome is unknown (the API died mid-request, or answered 503 after producing part of it)
is NOT retried: its ids are `ambiguous` (they may or may not be in the pipeline; neither counts as lost).
Retrying them would put a second copy in the raw topic, which is the client's at-least-once, not the
pipeline's. A request the API never received (connection refused) is retried until it is answered.

Re-sends are made on purpose instead: every `resend_every`-th accepted ingest batch is sent again at once, as
a client that lost the answer to a request it made would. Those ids are then twice in the raw topic, and the
checks hold the pipeline to its promise that an event id counts once everywhere: one row in PostgreSQL, one
in the lake, and once in the features (which the suite recomputes from the lake).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from confluent_kafka import Producer

from adnomaly.generator.ids import event_id, id_prefix
from adnomaly.generator.stream import EventStream, GeneratorSettings
from adnomaly.kafka_client import producer_config

NDJSON = "application/x-ndjson"


@dataclass
class Produced:
    """What the load sent, by outcome (event ids)."""

    acked: set[str] = field(default_factory=set)  # Kafka acknowledged (generator path)
    ingested: set[str] = field(default_factory=set)  # the ingest API answered 202
    ambiguous: set[str] = field(default_factory=set)  # outcome unknown (not retried)
    failed: set[str] = field(default_factory=set)  # delivery failed for sure
    ingest_requests: int = 0
    ingest_retries: int = 0
    resent: int = 0  # events sent a second time on purpose (their first copy was accepted)

    @property
    def ids(self) -> set[str]:
        return self.acked | self.ingested


@dataclass(frozen=True)
class LoadSettings:
    seed: int
    rate: float = 2000.0  # events per second, both paths together
    ingest_every: int = 20  # every Nth event goes through the ingest API (5%)
    ingest_batch: int = 200
    resend_every: int = 10  # every Nth accepted ingest batch is sent again (0: never)
    message_timeout_s: float = 600.0


class Load:
    """Start with `start()`, end with `stop()`: the producers flush and every id is accounted for."""

    def __init__(
        self, settings: LoadSettings, bootstrap: str, raw_topic: str, ingest_url: str, ingest_token: str
    ) -> None:
        self.settings = settings
        self.raw_topic = raw_topic
        self.ingest_url = ingest_url
        self.ingest_token = ingest_token
        self.produced = Produced()
        self.generated = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._producer = Producer(producer_config(
            bootstrap, **{"client.id": "reliability-load", "message.timeout.ms": int(settings.message_timeout_s * 1000),
                          "queue.buffering.max.messages": 1_000_000, "log_level": 0},
        ))  # fmt: skip
        start = datetime.now(UTC)
        self._stream = EventStream(GeneratorSettings(schema="clickstream", seed=settings.seed, rate=settings.rate,
                                                     start=start))
        self._prefix = id_prefix(settings.seed, self._stream.start_us)
        self._threads = [
            threading.Thread(target=self._generate, name="load-generator", daemon=True),
            threading.Thread(target=self._ingest, name="load-ingest", daemon=True),
        ]
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self, flush_timeout_s: float = 300.0) -> Produced:
        """Stop generating, deliver what is queued (ingest queue and Kafka producer), return the ids."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=flush_timeout_s)
        left = self._producer.flush(flush_timeout_s)
        if left:
            raise RuntimeError(f"{left} generator events were still undelivered after {flush_timeout_s:.0f}s")
        return self.produced

    # -- generator path ---------------------------------------------------------------------------------

    def _on_delivery(self, eid: str) -> Any:
        def report(err: Any, _msg: Any) -> None:
            with self._lock:
                (self.produced.failed if err is not None else self.produced.acked).add(eid)

        return report

    def _generate(self) -> None:
        rate, every = self.settings.rate, self.settings.ingest_every
        events = iter(self._stream)
        producer, topic = self._producer, self.raw_topic
        while not self._stop.is_set():
            due = int((time.monotonic() - self.started_at) * rate)
            while self.generated < due:
                event = next(events)
                eid = event_id(self._prefix, event.seq)
                if every and event.seq % every == 0:
                    self._queue.append((eid, event.value))
                else:
                    while True:
                        try:
                            producer.produce(topic, event.value, event.key, on_delivery=self._on_delivery(eid))
                            break
                        except BufferError:
                            producer.poll(0.1)
                self.generated += 1
            producer.poll(0.01)

    # -- ingest path ------------------------------------------------------------------------------------

    def _ingest(self) -> None:
        headers = {"Authorization": f"Bearer {self.ingest_token}", "Content-Type": NDJSON}
        accepted = 0  # ingest batches accepted whole so far
        with httpx.Client(timeout=30.0) as client:
            while True:
                if not self._queue:
                    if self._stop.is_set():
                        return
                    time.sleep(0.1)
                    continue
                batch = [self._queue.popleft() for _ in range(min(self.settings.ingest_batch, len(self._queue)))]
                while not self._send(client, headers, batch):
                    self.produced.ingest_retries += 1
                    time.sleep(0.2)
                accepted += all(eid in self.produced.ingested for eid, _ in batch)
                if self.settings.resend_every and accepted % self.settings.resend_every == 0:
                    self._resend(client, headers, batch)
                time.sleep(0.05)

    def _resend(self, client: httpx.Client, headers: dict[str, str], batch: list[tuple[str, bytes]]) -> None:
        """Send an accepted batch again; its ids are already definite, so whatever happens adds nothing but the
        count of copies that Kafka took."""
        body = b"\n".join(value for _, value in batch) + b"\n"
        try:
            response = client.post(self.ingest_url, content=body, headers=headers)
        except httpx.HTTPError:
            return
        if response.status_code == 202:
            with self._lock:
                self.produced.resent += int(response.json().get("accepted", 0))

    def _send(self, client: httpx.Client, headers: dict[str, str], batch: list[tuple[str, bytes]]) -> bool:
        """POST one batch; False when it never reached the API (safe to send again)."""
        ids = [eid for eid, _ in batch]
        body = b"\n".join(value for _, value in batch) + b"\n"
        self.produced.ingest_requests += 1
        try:
            response = client.post(self.ingest_url, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return False
        except httpx.HTTPError:
            with self._lock:
                self.produced.ambiguous.update(ids)
            return True
        with self._lock:
            if response.status_code == 202 and response.json().get("accepted") == len(ids):
                self.produced.ingested.update(ids)
            elif response.status_code in (401, 403, 413, 415):  # nothing was produced: a bug in this client
                raise RuntimeError(f"ingest API refused the load: {response.status_code} {response.text[:200]}")
            else:
                self.produced.ambiguous.update(ids)
        return True
