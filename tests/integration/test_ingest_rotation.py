"""Rotating ingest tokens on the real process (`python -m adnomaly.ingest`) without a restart or a failed
request: tokens in a file (ADNOMALY_INGEST_TOKENS_FILE), the new one added (SIGHUP), clients moved over,
the old one removed (noticed from the file's change alone), while requests flow all the time."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
from adnomaly.config import SecretEnv
from adnomaly.kafka_client import consumer_config
from adnomaly.plan import Endpoints, plan
from adnomaly.services.base import ManagedProcess, free_port, tail, wait_until
from adnomaly.services.kafka import KafkaBroker
from adnomaly.spec import parse_pipeline
from confluent_kafka import Consumer, TopicPartition

OLD = "rotate-old-" + uuid.uuid4().hex
NEW = "rotate-new-" + uuid.uuid4().hex
CLICK = {
    "timestamp": datetime.now(UTC).replace(microsecond=0).isoformat(), "user_id_hash": "u1", "ad_id": "ad-1",
    "campaign_id": "c-1", "geo": "US", "platform": "web", "user_agent": "Mozilla/5.0", "CPC": 0.5, "CTR": 0.02,
    "conversion": 0, "bounce_rate": 0.4,
}  # fmt: skip


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


class Client(threading.Thread):
    """Posts one event after another with its current token; records every status it gets."""

    def __init__(self, base_url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.token = base_url, token
        self.results: list[tuple[str, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self.stopping.is_set():
                token = self.token
                try:
                    status = http.post("/v1/events", content=msgspec.json.encode(CLICK), headers={
                        "Authorization": f"Bearer {token}", "Content-Type": "application/json"}).status_code
                except httpx.HTTPError:
                    status = -1  # a refused or broken connection is a failed request too
                self.results.append((token, status))
                time.sleep(0.005)

    def count(self) -> int:
        return len(self.results)


def _raw_count(bootstrap: str, topic: str) -> int:
    consumer = Consumer(consumer_config(bootstrap, f"count-{uuid.uuid4().hex}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def test_tokens_rotate_on_the_live_process_without_a_failed_request(
    kafka: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    raw, dlq = topic_factory(partitions=2), topic_factory(partitions=1)
    pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "rot"}, "spec": {}})
    port = free_port()
    config = plan(pipeline, Endpoints(kafka.bootstrap_servers, ingest_host="127.0.0.1", ingest_port=port))
    config = config.components["ingest"].config
    config = config.model_copy(update={
        "metrics_port": 0,
        "kafka": config.kafka.model_copy(update={"topics": config.kafka.topics.model_copy(update={
            "raw": raw, "dlq": dlq})}),
    })  # fmt: skip
    (tmp_path / "ingest.json").write_text(config.to_json())
    token_file = tmp_path / "tokens"
    _write_atomically(token_file, OLD + "\n")
    env = {k: v for k, v in os.environ.items() if k != SecretEnv.INGEST_TOKENS}
    env[SecretEnv.INGEST_TOKENS_FILE] = str(token_file)
    process = ManagedProcess(
        name="ingest-rotation",
        argv=[sys.executable, "-m", "adnomaly.ingest", "--config", str(tmp_path / "ingest.json")],
        log_path=tmp_path / "ingest.log", env=env,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log() -> str:
        return process.log_path.read_text(errors="replace")

    def reloads() -> list[str]:
        return re.findall(r"ingest tokens reloaded from .*: (\d+) valid tokens", log())

    process.start()
    clients: list[Client] = []
    try:
        process.wait_ready(healthy, timeout=30)
        pid = process.pid
        old_client = Client(base_url, OLD)
        clients.append(old_client)
        old_client.start()
        wait_until(lambda: old_client.count() >= 20, 20, "requests with the old token")

        # 1. Add the new token; SIGHUP makes the process re-read the file at once.
        _write_atomically(token_file, f"{OLD}\n{NEW}\n")
        os.kill(pid, signal.SIGHUP)  # type: ignore[arg-type]
        wait_until(lambda: reloads() == ["2"], 10, "the token file reloaded with two tokens")
        new_client = Client(base_url, NEW)
        clients.append(new_client)
        new_client.start()
        both_from = (old_client.count(), new_client.count())
        wait_until(lambda: new_client.count() >= both_from[1] + 30 and old_client.count() >= both_from[0] + 30,
                   20, "requests with both tokens at once")  # fmt: skip

        # 2. Move the old client over, then remove the old token: no signal, the file's change is enough.
        old_client.token = NEW
        time.sleep(0.3)  # the old client's request in flight (if any) has finished
        _write_atomically(token_file, NEW + "\n")
        wait_until(lambda: reloads() == ["2", "1"], 10, "the token file reloaded with one token")
        after = new_client.count()
        wait_until(lambda: new_client.count() >= after + 20, 20, "requests after the rotation")
    finally:
        for client in clients:
            client.stopping.set()
        for client in clients:
            client.join(timeout=15)
    try:
        results = [r for client in clients for r in client.results]
        statuses = Counter(status for _, status in results)
        assert statuses == Counter({202: len(results)}), (statuses, tail(process.log_path, 40))
        by_token = Counter(token for token, _ in results)
        assert by_token[OLD] >= 50 and by_token[NEW] >= 50
        # Both tokens were accepted while the other was in use (the rotation window).
        assert old_client.results[both_from[0]][1] == 202 and new_client.results[0] == (NEW, 202)
        with httpx.Client(base_url=base_url, timeout=10) as http:
            answer = http.post("/v1/events", content=msgspec.json.encode(CLICK),
                               headers={"Authorization": f"Bearer {OLD}", "Content-Type": "application/json"})
        assert answer.status_code == 403  # the old token is gone
        assert process.running and process.pid == pid  # never restarted
        wait_until(lambda: _raw_count(kafka.bootstrap_servers, raw) >= len(results), 20, "every event in Kafka")
        assert _raw_count(kafka.bootstrap_servers, raw) == len(results)
        assert OLD not in log() and NEW not in log()
    finally:
        process.stop(timeout=40)
