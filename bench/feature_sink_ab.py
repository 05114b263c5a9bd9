"""A/B of the feature sink's Redis path across two trees (bench/README.md, issue 17): run it with either tree's
`components/` on PYTHONPATH, e.g. `git archive <base> components | tar -x -C /tmp/before` and then
`PYTHONPATH=/tmp/before/components .venv/bin/python bench/feature_sink_ab.py`, alternating with this tree.
It works with trees from before Feast's layout (no `feast_targets`: our hash only), with Feast's layout beside
our own hash (`batch.feast_targets`, `prepare(..., key_prefix, feast)`: two hashes) and with Feast's layout only
(`online.feast_targets`, `prepare(..., targets)`). Prints one JSON line; `layout` says which it ran."""

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adnomaly.features.record import ENCODER, FeatureRecord
from adnomaly.services.redis import RedisServer
from adnomaly.sinks.config import FeatureView
from adnomaly.sinks.features import batch as sink_batch
from adnomaly.sinks.features import online as sink_online
from adnomaly.sinks.features.stores import OnlineStore

KW = {"int64_metrics": ["event_count"]} if "int64_metrics" in FeatureView.model_fields else {}
VIEW = FeatureView(name="traffic_5m_by_geo_platform", dimensions=["geo", "platform"],
                   metrics=["ctr_avg", "bounce_rate_avg", "event_count"], ttl_s=3 * 86400, **KW)  # type: ignore[arg-type]


class Message:
    def __init__(self, raw: bytes, position: int) -> None:
        self.raw, self.position = raw, position

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self.raw

    def topic(self) -> str:
        return "f"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.position


def main() -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    messages = []
    for n in range(60000):
        end = start + timedelta(minutes=n // 600)
        record = FeatureRecord(
            feature=VIEW.name, dimensions={"geo": f"G{n % 200}", "platform": ("web", "ios", "android")[n % 3]},
            window_start=end - timedelta(minutes=5), window_end=end,
            metrics={"ctr_avg": 0.03, "bounce_rate_avg": 0.4, "event_count": 100.0}, event_count=100,
        )
        messages.append(Message(ENCODER.encode(record), n))
    redis = RedisServer(Path(tempfile.mkdtemp()) / "redis")
    redis.start()
    try:
        views = {VIEW.name: VIEW}
        if hasattr(sink_online, "feast_targets"):
            layout, tail = "feast_only", (sink_online.feast_targets(views, "bench"),)
        elif hasattr(sink_batch, "feast_targets"):
            layout, tail = "own_and_feast", ("adnomaly:bench", sink_batch.feast_targets(views, "bench"))
        else:
            layout, tail = "own_only", ("adnomaly:bench",)
        store = OnlineStore(redis.client())
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(messages), 1000):
            store.write(sink_batch.prepare(messages[i:i + 1000], views, *tail).online)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(json.dumps({"layout": layout, "records": len(messages),
                          "records_per_second": round(len(messages) / wall), "client_cpu_s": round(cpu, 2),
                          "redis_used_memory": redis.client().info("memory")["used_memory_human"]}))
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
