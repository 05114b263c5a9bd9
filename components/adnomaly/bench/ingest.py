"""`adnomaly bench ingest`: events/s through the HTTP ingest API into a real Kafka broker.

Starts a Kafka broker in a temporary directory and the ingest API as its own process(es) (`python -m
adnomaly.ingest`, exactly as deployed: uvicorn, uvloop, httptools, one worker each), then drives it from
this process with an asyncio httpx client over keep-alive connections: first NDJSON batches, then single
JSON events, `--seconds` each. Every answer must be 202; afterwards the raw topic must hold exactly the
number of events the API said it accepted. On a 2-core box the client, the API and the broker share the
cores, so the CPU seconds each of them used are reported next to the rates.

The ceiling, measured in the same run on the same broker: the same NDJSON lines produced straight to a
topic with as many partitions as the raw one by confluent-kafka from this process (the same producer
settings as the API: acks=all, idempotence), flat out for `--seconds`, until every message is
acknowledged. `ratio` is the API's batched rate over it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from adnomaly.bench.ceiling import machine_load, process_cpu_seconds, with_ceiling
from adnomaly.bench.processor import sample_events
from adnomaly.config import ComponentConfig, SecretEnv
from adnomaly.kafka_client import TopicSettings, consumer_config, ensure_topics, producer_config
from adnomaly.plan import Endpoints, plan
from adnomaly.services.base import ManagedProcess, free_port
from adnomaly.services.kafka import KafkaBroker
from adnomaly.spec import parse_pipeline

PIPELINE = "bench"
RAW_PARTITIONS = 6
DISTINCT_BODIES = 16  # batch bodies cycled through (events repeat across cycles: fine for throughput)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("ingest", help="events/s through the HTTP ingest API into Kafka")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase (batched, single)")
    parser.add_argument("--batch-size", type=int, default=500, help="events per NDJSON request")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (keep-alive connections)")
    parser.add_argument("--servers", type=int, default=1, help="ingest API processes (one uvicorn worker each)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


# -- measurement helpers ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[min(998, max(0, round(q * 1000) - 1))]


@dataclass
class Phase:
    name: str
    events_per_request: int
    requests: int = 0
    events: int = 0
    failures: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "events_per_second": round(self.events / self.elapsed) if self.elapsed else 0,
            "requests_per_second": round(self.requests / self.elapsed) if self.elapsed else 0,
            "requests": self.requests,
            "events": self.events,
            "non_202": dict(self.failures),
            "p50_ms": round(percentile(self.latencies, 0.50) * 1000, 2),
            "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 2),
            "cpu_cores": {who: round(seconds / self.elapsed, 2) for who, seconds in self.cpu.items()},
            # CPU the API process(es) spent per event: the figure least disturbed by other load on the box.
            "ingest_cpu_us_per_event": round(
                sum(v for k, v in self.cpu.items() if k.startswith("ingest_")) / max(1, self.events) * 1e6, 1
            ),
        }


# -- the system under test ---------------------------------------------------------------------------------


def bench_config(bootstrap: str, port: int, max_body_bytes: int) -> ComponentConfig:
    pipeline = parse_pipeline({
        "apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": PIPELINE},
        "spec": {"source": {"ingest": {"maxBodyBytes": max_body_bytes}},
                 "kafka": {"topics": {"raw": {"partitions": RAW_PARTITIONS, "retention": "1d"}}}},
    })  # fmt: skip
    endpoints = Endpoints(kafka_bootstrap=bootstrap, ingest_host="127.0.0.1", ingest_port=port)
    config = plan(pipeline, endpoints).components["ingest"].config
    # metrics_port 0, not None: None is left out of the JSON and reads back as the default port.
    return config.model_copy(update={"metrics_port": 0})


@contextlib.contextmanager
def ingest_servers(
    workdir: Path, bootstrap: str, count: int, token: str, max_body_bytes: int
) -> Iterator[list[ManagedProcess]]:
    processes: list[ManagedProcess] = []
    try:
        for n in range(count):
            config = bench_config(bootstrap, free_port(), max_body_bytes)
            path = workdir / f"ingest-{n}.json"
            path.write_text(config.to_json())
            process = ManagedProcess(
                name=f"ingest-{n}", argv=[sys.executable, "-m", "adnomaly.ingest", "--config", str(path)],
                log_path=workdir / f"ingest-{n}.log", env={**os.environ, SecretEnv.INGEST_TOKENS: token},
            )  # fmt: skip
            processes.append(process)
            process.start()
            url = f"http://127.0.0.1:{config.ingest.port}"  # type: ignore[union-attr]
            process.wait_ready(lambda url=url: _ready(url), timeout=60)
            process.url = url  # type: ignore[attr-defined]
        yield processes
    finally:
        for process in processes:
            process.stop(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def topic_size(bootstrap: str, topic: str) -> int:
    consumer = Consumer(consumer_config(bootstrap, f"bench-size-{secrets.token_hex(4)}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


# -- the load client --------------------------------------------------------------------------------------------


async def drive(
    urls: Sequence[str], token: str, bodies: Sequence[bytes], content_type: str, phase: Phase,
    seconds: float, concurrency: int, pids: dict[str, int],
) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) for url in urls]
    body_cycle = itertools.cycle(bodies)
    try:
        # Warm up: connections open, first Kafka metadata fetched, code paths hot.
        await asyncio.gather(*(c.post("/v1/events", content=bodies[0]) for c in clients for _ in range(2)))
        cpu_before = {who: process_cpu_seconds(pid, reaped_children=True) for who, pid in pids.items()}
        started = time.perf_counter()
        deadline = started + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                response = await client.post("/v1/events", content=next(body_cycle))
                phase.latencies.append(time.perf_counter() - sent)
                phase.requests += 1
                if response.status_code == 202:
                    phase.events += response.json()["accepted"]
                else:
                    phase.failures[response.status_code] = phase.failures.get(response.status_code, 0) + 1

        await asyncio.gather(*(worker(clients[n % len(clients)]) for n in range(concurrency)))
        phase.elapsed = time.perf_counter() - started
        phase.cpu = {who: process_cpu_seconds(pid, reaped_children=True) - cpu_before[who] for who, pid in pids.items()}
    finally:
        for client in clients:
            await client.aclose()


def produce_straight(bootstrap: str, topic: str, events: Sequence[bytes], seconds: float) -> float:
    """Events/s of producing `events` (cycled) straight to `topic` for `seconds`, every one acknowledged."""
    failures: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer(producer_config(bootstrap))
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds
    lines = itertools.cycle(events)
    while time.perf_counter() < deadline:
        for _ in range(1000):
            try:
                producer.produce(topic, next(lines), on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.01)
                continue
            sent += 1
        producer.poll(0)
    if producer.flush(60) or failures:
        raise RuntimeError(f"producing straight to {topic}: {len(failures)} failed deliveries")
    return sent / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = machine_load()
    token = secrets.token_urlsafe(24)
    events = list(sample_events(DISTINCT_BODIES * args.batch_size, prefix="ingest-bench"))
    batches = [b"\n".join(events[i : i + args.batch_size]) + b"\n" for i in range(0, len(events), args.batch_size)]
    max_body = max(1024 * 1024, 2 * max(len(b) for b in batches))
    workdir = Path(tempfile.mkdtemp(prefix="adnomaly-bench-ingest-"))
    try:
        broker = KafkaBroker(workdir / "kafka")
        with broker:
            raw, dlq = f"{PIPELINE}-raw", f"{PIPELINE}-dlq"
            ceiling_topic = f"{PIPELINE}-ceiling"
            ensure_topics(broker.bootstrap_servers, {raw: TopicSettings(RAW_PARTITIONS), dlq: TopicSettings(1),
                                                     ceiling_topic: TopicSettings(RAW_PARTITIONS)})  # fmt: skip
            with ingest_servers(workdir, broker.bootstrap_servers, args.servers, token, max_body) as servers:
                urls = [s.url for s in servers]  # type: ignore[attr-defined]
                pids = {"client": os.getpid(), "kafka_broker": broker.pid or 0}
                pids.update({f"ingest_{n}": s.pid or 0 for n, s in enumerate(servers)})
                batched = Phase("batched", args.batch_size)
                asyncio.run(drive(urls, token, batches, "application/x-ndjson", batched, args.seconds,
                                  args.concurrency, pids))  # fmt: skip
                single = Phase("single", 1)
                asyncio.run(drive(urls, token, events[:2000], "application/json", single, args.seconds,
                                  args.concurrency, pids))  # fmt: skip
                warmup_events = len(urls) * 2 * (args.batch_size + 1)
                in_kafka = topic_size(broker.bootstrap_servers, raw)
            ceiling = produce_straight(broker.bootstrap_servers, ceiling_topic, events, args.seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    expected = batched.events + single.events + warmup_events
    b, s = batched.summary(), single.summary()
    return {
        "batched_events_per_second": b["events_per_second"],
        **with_ceiling("events_per_second", b["events_per_second"], round(ceiling)),
        "single_events_per_second": s["events_per_second"],
        "batch_size": args.batch_size,
        "seconds": args.seconds,
        "p50_ms": b["p50_ms"],
        "p99_ms": b["p99_ms"],
        "single_p50_ms": s["p50_ms"],
        "single_p99_ms": s["p99_ms"],
        "concurrency": args.concurrency,
        "servers": args.servers,
        "cpu_cores": os.cpu_count(),
        "load_average_1m_before": load_before["load_average_1m"],
        **load_before,
        "load_average_1m_after": machine_load()["load_average_1m"],
        "batched": b,
        "single": s,
        "kafka_messages": in_kafka,
        "kafka_matches_accepted": in_kafka == expected,
    }
