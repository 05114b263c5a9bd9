"""`adnomaly up`: run one Pipeline on this machine.

Starts the real services the pipeline needs (Kafka in KRaft mode, PostgreSQL), creates its topics,
runs its components (generator, ingest API, processor) as processes fed by rendered config files,
shows live progress, and on Ctrl-C/SIGTERM (or after `--for`) drains: sources stop first, the
processor finishes the backlog, offsets are committed, then everything stops. Nothing is lost.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from adnomaly.config import SecretEnv
from adnomaly.kafka_client import TopicSettings, ensure_topics
from adnomaly.local.live import LiveView
from adnomaly.local.progress import Progress, ProgressProbe
from adnomaly.local.state import StateDir, open_state_dir
from adnomaly.plan import ComponentPlan, Endpoints, Plan, plan
from adnomaly.processor.store import count_stored
from adnomaly.services.base import ManagedProcess, ServiceError, free_port, wait_until
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.spec import Pipeline, parse_pipeline

COMPONENT_ORDER = ("processor", "ingest", "generator")  # start order; stop order is the reverse
DRAIN_TIMEOUT_S = 300.0


@dataclass
class UpOptions:
    pipeline_file: Path
    state_dir: Path = Path(".adnomaly")
    run_for: float | None = None
    invalid_rate: float | None = None
    summary_json: Path | None = None
    live: bool | None = None  # None: live view when stdout is a terminal


def with_overrides(pipeline: Pipeline, invalid_rate: float | None) -> Pipeline:
    """The pipeline with command-line overrides applied, validated like the file itself."""
    if invalid_rate is None:
        return pipeline
    document = pipeline.model_dump(by_alias=True, exclude_none=True)
    document["spec"]["source"]["generator"]["invalidRate"] = invalid_rate
    return parse_pipeline(document)


@dataclass
class RunningComponent:
    plan: ComponentPlan
    process: ManagedProcess
    config_path: Path
    restarts: int = 0


@dataclass
class LocalPipeline:
    """The processes of one pipeline, with what they need to start, stop and be observed."""

    pipeline: Pipeline
    state: StateDir
    kafka: KafkaBroker
    postgres: PostgresServer
    plan: Plan = field(init=False)
    components: dict[str, RunningComponent] = field(default_factory=dict)
    ingest_port: int = field(default=0)

    def __post_init__(self) -> None:
        self.ingest_port = free_port()
        ports = {name: free_port() for name in COMPONENT_ORDER}
        self.plan = plan(
            self.pipeline,
            Endpoints(
                kafka_bootstrap=self.kafka.bootstrap_servers,
                ingest_host="127.0.0.1",
                ingest_port=self.ingest_port,
                metrics_ports=ports,
            ),
        )

    @property
    def name(self) -> str:
        return self.pipeline.name

    def secrets_env(self) -> dict[str, str]:
        return {
            SecretEnv.POSTGRES_DSN: self.postgres.dsn,
            SecretEnv.INGEST_TOKENS: self.state.secret(self.name, "ingest-token"),
        }

    def create_topics(self) -> None:
        # One local broker: every topic has one replica whatever the spec asks for Kubernetes.
        ensure_topics(
            self.kafka.bootstrap_servers,
            {
                t.name: TopicSettings(partitions=t.partitions, replication_factor=1, config={
                    "retention.ms": str(t.retention_ms)
                })
                for t in self.plan.topics.values()
            },
        )

    def start_component(self, name: str) -> RunningComponent:
        component = self.plan.components[name]
        directory = self.state.component_dir(self.name, name)
        config_path = directory / "config.json"
        config_path.write_text(component.config.to_json())
        argv = [sys.executable, "-m", f"adnomaly.{name}", "--config", str(config_path)]
        if name == "generator":
            argv += ["--stats-file", str(directory / "stats.json"), "--labels", str(directory / "labels.jsonl")]
        env = {**os.environ, **self.secrets_env()}
        process = ManagedProcess(name, argv, directory / f"{name}.log", env=env)
        process.start()
        running = RunningComponent(component, process, config_path)
        self.components[name] = running
        return running

    def wait_ingest_ready(self, timeout: float = 60.0) -> None:
        running = self.components.get("ingest")
        if running is None:
            return
        url = f"http://127.0.0.1:{self.ingest_port}/readyz"

        def ready() -> bool:
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        running.process.wait_ready(ready, timeout)

    def supervise(self) -> list[str]:
        """Restart components that died; return what happened, for the live view."""
        notes = []
        for name, running in self.components.items():
            if running.process.process is not None and not running.process.running:
                code = running.process.process.returncode
                running.process.stop()
                running.process.start()
                running.restarts += 1
                notes.append(f"{name} exited with code {code}; restarted (log: {running.process.log_path})")
        return notes

    def stop_component(self, name: str, timeout: float = 60.0) -> None:
        running = self.components.get(name)
        if running is not None:
            running.process.stop(timeout=timeout)

    def probe(self) -> ProgressProbe:
        topics = self.plan.topics
        processor = self.plan.components["processor"].config.processor
        assert processor is not None
        generator_dir = self.state.component_dir(self.name, "generator")
        return ProgressProbe(
            bootstrap=self.kafka.bootstrap_servers,
            raw_topic=topics["raw"].name,
            dlq_topic=topics["dlq"].name,
            group_id=processor.group_id,
            count_stored=lambda: count_stored(self.postgres.dsn, processor.db_schema),
            generator_stats=generator_dir / "stats.json" if "generator" in self.plan.components else None,
            ingest_metrics_url=(
                f"http://127.0.0.1:{self.ingest_port}/metrics" if "ingest" in self.plan.components else None
            ),
        )


class StopRequested:
    """Set by SIGINT/SIGTERM; the main loop then drains."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.event.set())


@contextmanager
def local_services(state: StateDir) -> Iterator[tuple[KafkaBroker, PostgresServer]]:
    with ExitStack() as stack:
        kafka = KafkaBroker(state.service_dir("kafka"))
        postgres = PostgresServer(state.service_dir("postgres"))
        stack.callback(kafka.stop)
        stack.callback(postgres.stop)
        postgres.start()
        kafka.start()
        yield kafka, postgres


def drain(local: LocalPipeline, probe: ProgressProbe, view: LiveView) -> Progress:
    """Stop the sources, let the processor catch up with everything they produced, then stop it."""
    view.message("draining: stopping sources")
    for name in reversed(COMPONENT_ORDER):
        if name != "processor":
            local.stop_component(name)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    progress = probe.read()
    while time.monotonic() < deadline:
        progress = probe.read()
        view.update(progress)
        local.supervise()
        if progress.lag == 0:  # sources are stopped and flushed: the processor has committed everything
            break
        time.sleep(0.5)
    else:
        view.message(f"drain timed out after {DRAIN_TIMEOUT_S:.0f}s with lag {progress.lag}")
    local.stop_component("processor")
    return probe.read()


def run_up(options: UpOptions) -> dict[str, Any]:
    from adnomaly.spec import load_pipeline

    pipeline = with_overrides(load_pipeline(options.pipeline_file), options.invalid_rate)
    state = open_state_dir(options.state_dir)
    stop = StopRequested()
    stop.install()
    live = options.live if options.live is not None else sys.stdout.isatty()
    view = LiveView(pipeline.name, live=live)
    with local_services(state) as (kafka, postgres), view:
        view.message(f"kafka on {kafka.bootstrap_servers}, postgresql on 127.0.0.1:{postgres.port}")
        local = LocalPipeline(pipeline, state, kafka, postgres)
        local.create_topics()
        probe = local.probe()
        probe.start()  # counts before any component runs: the state directory outlives runs
        try:
            for name in COMPONENT_ORDER:
                if name in local.plan.components:
                    local.start_component(name)
                    if name == "processor":
                        wait_until(lambda: _schema_ready(local), 60, "the processor's database migrations")
            local.wait_ingest_ready()
            if "ingest" in local.components:
                view.message(
                    f"ingest API: http://127.0.0.1:{local.ingest_port}/v1/events "
                    f"(bearer token in {state.secret_path(pipeline.name, 'ingest-token')})"
                )
            started = time.monotonic()
            while not stop.event.is_set():
                if options.run_for is not None and time.monotonic() - started >= options.run_for:
                    break
                for note in local.supervise():
                    view.message(note)
                view.update(probe.read())
                stop.event.wait(1.0)
            final = drain(local, probe, view)
        finally:
            for name in reversed(COMPONENT_ORDER):
                local.stop_component(name, timeout=30)
    summary = final.summary()
    view.final(summary)
    if options.summary_json is not None:
        options.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _schema_ready(local: LocalPipeline) -> bool:
    running = local.components["processor"]
    running.process.check_alive()
    processor = local.plan.components["processor"].config.processor
    assert processor is not None
    try:
        count_stored(local.postgres.dsn, processor.db_schema)
    except ServiceError:
        return False
    except Exception:  # the table does not exist until the processor's migrations ran
        return False
    return True
