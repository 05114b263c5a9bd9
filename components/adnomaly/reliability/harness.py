"""A pipeline running locally (the `adnomaly up` backend) with handles to kill and restart each part.

Everything here must be called from one long-lived thread (the one that entered the harness): the local
backend starts processes that die with the thread that started them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from adnomaly.kafka_client import committed_offsets, consumer_lag, readable_ends
from adnomaly.local.state import open_state_dir
from adnomaly.local.up import LocalPipeline, Services, local_services, start_pipeline
from adnomaly.plan import managed_stores
from adnomaly.reliability.schedule import COMPONENT_TARGETS
from adnomaly.services.base import port_open
from adnomaly.spec import Pipeline

# Which consumer group (and topic role) shows that a target is processing again.
PROGRESS_GROUPS = {
    "processor": ("processor", "raw"),
    "lake-sink": ("lake-sink", "raw"),
    "feature-sink": ("feature-sink", "features"),
    "detector": ("detector", "features"),
    "kafka": ("processor", "raw"),
    "postgres": ("processor", "raw"),
    "redis": ("feature-sink", "features"),
    "s3": ("lake-sink", "raw"),
}
SERVICES = {"kafka": "kafka", "postgres": "postgres", "redis": "redis", "s3": "minio"}


class Harness:
    def __init__(
        self,
        pipeline: Pipeline,
        state_root: Path,
        say: Callable[[str], None] = lambda _: None,
        *,
        lake_flush_interval_s: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.lake_flush_interval_s = lake_flush_interval_s
        self.state = open_state_dir(state_root)
        self.say = say
        self._stack = ExitStack()
        self.services: Services | None = None
        self.local: LocalPipeline | None = None
        self.crashes: list[str] = []  # components that died by themselves (and were restarted)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def __enter__(self) -> Harness:
        try:
            self.services = self._stack.enter_context(local_services(self.state, managed_stores(self.pipeline)))
            self.local = LocalPipeline(self.pipeline, self.state, self.services)
            self._apply_overrides()
            self.local.create_topics()
            self._stack.callback(self._stop_components)
            start_pipeline(self.local, self.say)
            if self.local.features_job is not None:
                self.local.features_job.wait_running(timeout=300)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _apply_overrides(self) -> None:
        """Flush the lake more often than its default (60 s), so that the time a sink takes to catch up after
        a fault measures the sink rather than its flush timer."""
        components = self.pipe.plan.components
        planned = components.get("lake-sink")
        if self.lake_flush_interval_s is None or planned is None or planned.config.lake is None:
            return
        lake = planned.config.lake.model_copy(update={"flush_interval_s": self.lake_flush_interval_s})
        components["lake-sink"] = replace(planned, config=planned.config.model_copy(update={"lake": lake}))

    def _stop_components(self) -> None:
        local = self.local
        assert local is not None
        for name in reversed(list(local.components)):
            local.stop_component(name, timeout=20)
        if local.features_job is not None:
            local.features_job.stop()

    # -- handles ------------------------------------------------------------------------------------------

    @property
    def pipe(self) -> LocalPipeline:
        assert self.local is not None, "the harness is not running"
        return self.local

    @property
    def bootstrap(self) -> str:
        return self.pipe.services.kafka.bootstrap_servers

    def service(self, target: str) -> Any:
        server = getattr(self.pipe.services, SERVICES[target])
        assert server is not None, f"{target} is not part of this pipeline"
        return server

    def kill(self, target: str) -> None:
        """SIGKILL a component's process group, or a service (for `s3`: MinIO, the lake's endpoint)."""
        if target in COMPONENT_TARGETS:
            process = self.pipe.components[target]
            process.kill()
        else:
            self.service(target).kill()

    def restart(self, target: str) -> None:
        """Start a killed target again and wait until it accepts work (not until it has caught up)."""
        if target in COMPONENT_TARGETS:
            process = self.pipe.start_component(target)
            if target == "ingest":
                self.pipe.wait_http_ready("ingest", self.pipe.ingest_port, timeout=120)
            port = self.pipe.plan.components[target].config.metrics_port
            if port:  # the process is up (imports done, serving its metrics), not merely spawned
                process.wait_ready(lambda: port_open(port), timeout=120)
        else:
            self.service(target).start()

    def supervise(self) -> None:
        """Restart whatever died by itself, as Kubernetes would; remember it."""
        for note in self.pipe.supervise():
            self.crashes.append(note)
            self.say(note)
        job = self.pipe.features_job
        if job is not None and not job.running:
            self.crashes.append("flink features job exited; restarted from its newest checkpoint")
            self.say(self.crashes[-1])
            job.start()

    # -- observation --------------------------------------------------------------------------------------

    def group_and_topic(self, component: str, role: str) -> tuple[str, str]:
        config = self.pipe.plan.components[component].config
        section = config.processor or config.lake or config.feature_sink or config.detector
        assert section is not None
        return section.group_id, self.pipe.plan.topics[role].name

    def lag(self, component: str, role: str) -> int:
        group, topic = self.group_and_topic(component, role)
        return sum(consumer_lag(self.bootstrap, group, topic).values())

    def committed(self, component: str, role: str) -> dict[int, int]:
        group, topic = self.group_and_topic(component, role)
        partitions = [TopicPartition(topic, p) for p in range(self.pipe.plan.topics[role].partitions)]
        return committed_offsets(self.bootstrap, group, partitions)

    def metrics_text(self, component: str) -> str:
        port = self.pipe.plan.components[component].config.metrics_port
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text

    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.pipe.ingest_port}/v1/events"

    def ingest_token(self) -> str:
        return self.state.secret(self.pipeline.name, "ingest-token")

    def wait_for(self, check: Callable[[], bool], timeout: float, interval: float = 1.0) -> bool:
        """Poll `check` (supervising meanwhile) until it holds or `timeout` passes; never raises on Kafka or
        database hiccups, which are expected while things restart."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervise()
            try:
                if check():
                    return True
            except Exception:  # a service restarting: try again
                pass
            time.sleep(interval)
        return False

    def readable_ends(self, role: str) -> dict[int, int]:
        """Per partition, just past the last record a consumer can read (what a drained group has committed)."""
        topic = self.pipe.plan.topics[role]
        return readable_ends(self.bootstrap, topic.name, topic.partitions)

    def high_watermarks(self, role: str) -> dict[int, int]:
        """The end offset of each partition of a topic (raises while the broker is down)."""
        topic = self.pipe.plan.topics[role]
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "reliability-probe", "log_level": 0})
        try:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=5)[1]
                for p in range(topic.partitions)
            }
        finally:
            consumer.close()
