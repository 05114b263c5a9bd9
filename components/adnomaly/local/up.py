"""`adnomaly up`: run one Pipeline on this machine.

Starts the real services the pipeline needs (Kafka in KRaft mode, PostgreSQL, and MinIO/Redis when
the lake/features ask for them), creates its topics, runs its components as processes fed by rendered
config files, shows live progress, and on Ctrl-C/SIGTERM (or after `--for`) drains: sources stop
first, the consumers finish the backlog and commit, then everything stops. Nothing is lost.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from confluent_kafka import KafkaException

from adnomaly.anomalies.models import AnomalyOut
from adnomaly.anomalies.store import AnomalyStore
from adnomaly.config import SecretEnv
from adnomaly.kafka_client import KafkaAdminError, TopicSettings, consumer_lag, ensure_topics, group_offsets
from adnomaly.local.alertmanager import AlertmanagerServer, alertmanager_server
from adnomaly.local.anomalies import AnomalyCounts, read_anomalies
from adnomaly.local.autoscale import LocalScaler, ScaleEvent
from adnomaly.local.live import LiveView
from adnomaly.local.ports import endpoint_ports
from adnomaly.local.progress import Progress, ProgressProbe
from adnomaly.local.prometheus import prometheus_server
from adnomaly.local.state import StateDir, open_state_dir
from adnomaly.plan import COMPONENT_MODULES, Endpoints, Plan, managed_stores, plan, wants_local_alertmanager
from adnomaly.processor.store import count_duplicates, count_stored
from adnomaly.scaling import LagScaling
from adnomaly.services.base import LocalServer, ManagedProcess, ServiceError, free_port, wait_until
from adnomaly.services.flink import FeaturesJob, start_features_job
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.minio import MinioServer
from adnomaly.services.postgres import PostgresServer
from adnomaly.services.redis import RedisServer
from adnomaly.spec import Pipeline, load_pipeline, parse_pipeline

# Start order: consumers before sources. Stop order is the reverse, with a drain after the sources.
COMPONENT_ORDER = ("processor", "lake-sink", "feature-sink", "detector", "serving", "ingest", "generator")
SOURCES = ("generator", "ingest")
DRAIN_TIMEOUT_S = 300.0


@dataclass
class UpOptions:
    pipeline_file: Path
    state_dir: Path = Path(".adnomaly")
    run_for: float | None = None
    invalid_rate: float | None = None
    summary_json: Path | None = None
    live: bool | None = None  # None: live view when stdout is a terminal
    ports: dict[str, int] = field(default_factory=dict)  # --port NAME=PORT: endpoints set explicitly


def with_overrides(pipeline: Pipeline, invalid_rate: float | None) -> Pipeline:
    """The pipeline with command-line overrides applied, validated like the file itself."""
    if invalid_rate is None:
        return pipeline
    document = pipeline.model_dump(by_alias=True, exclude_none=True)
    document["spec"]["source"]["generator"]["invalidRate"] = invalid_rate
    return parse_pipeline(document)


@dataclass
class Services:
    """The local stores one pipeline uses; absent ones are None."""

    kafka: KafkaBroker
    postgres: PostgresServer
    minio: MinioServer | None = None
    redis: RedisServer | None = None
    down_since: dict[str, float] = field(default_factory=dict)  # services found dead and not yet back

    def named(self) -> dict[str, LocalServer]:
        servers: dict[str, LocalServer | None] = {
            "kafka": self.kafka, "postgresql": self.postgres, "minio": self.minio, "redis": self.redis}  # fmt: skip
        return {name: server for name, server in servers.items() if server is not None}

    def supervise(self) -> list[str]:
        """Restart a service that died, on its data and its port (both are kept in its state directory), as
        components are restarted: the pipeline's components ride out the outage on their own retries and
        Kafka's offsets, so nothing acknowledged is lost. A restart that fails is tried again on the next
        call; the notes say what happened, for the live view."""
        notes = []
        for name, server in self.named().items():
            if server.running:
                continue
            first = name not in self.down_since
            self.down_since.setdefault(name, time.monotonic())
            if first:
                notes.append(f"{name} is down (log: {server.state_dir / 'logs'}); restarting it on its data")
            try:
                server.restart()
            except (ServiceError, OSError) as exc:
                notes.append(f"{name} did not come back yet: {exc}")
                continue
            outage = time.monotonic() - self.down_since.pop(name)
            notes.append(f"{name} restarted on {server.address} after {outage:.0f}s down")
        return notes


@contextmanager
def local_services(state: StateDir, needed: frozenset[str]) -> Iterator[Services]:
    with ExitStack() as stack:
        def started(server: Any) -> Any:
            stack.callback(server.stop)
            server.start()
            return server

        postgres = started(PostgresServer(state.service_dir("postgres")))
        kafka = started(KafkaBroker(state.service_dir("kafka")))
        minio = started(MinioServer(state.service_dir("minio"))) if "minio" in needed else None
        redis = started(RedisServer(state.service_dir("redis"))) if "redis" in needed else None
        yield Services(kafka, postgres, minio, redis)


@dataclass
class LocalPipeline:
    """The processes of one pipeline, with what they need to start, stop and be observed."""

    pipeline: Pipeline
    state: StateDir
    services: Services
    plan: Plan = field(init=False)
    alertmanager_url: str | None = None  # the local Alertmanager, when the spec asks for one without a url
    components: dict[str, ManagedProcess] = field(default_factory=dict)
    ingest_port: int = field(default=0)
    features_job: FeaturesJob | None = None  # the Flink job, once started
    anomaly_store: AnomalyStore | None = None  # the anomalies the live view shows, once first read
    endpoint_ports: Mapping[str, int] = field(default_factory=dict)  # stable ones (local.ports); else fresh
    # Replicas 2..N of an autoscaled component (`components[name]` is replica 1), newest last.
    extra_replicas: dict[str, list[ManagedProcess]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ingest_port = self.endpoint_ports.get("ingest") or free_port()
        self.plan = plan(
            self.pipeline,
            Endpoints(
                kafka_bootstrap=self.services.kafka.bootstrap_servers,
                ingest_host="127.0.0.1",
                ingest_port=self.ingest_port,
                s3_endpoint=self.services.minio.endpoint if self.services.minio else None,
                serving_host="127.0.0.1",
                serving_port=self.endpoint_ports.get("serving") or free_port(),
                metrics_ports={name: free_port() for name in COMPONENT_ORDER},
                alertmanager_url=self.alertmanager_url,
            ),
        )

    @property
    def name(self) -> str:
        return self.pipeline.name

    def secrets_env(self) -> dict[str, str]:
        """Secrets reach components through their environment only: never argv or config files."""
        env = {
            SecretEnv.POSTGRES_DSN: self.services.postgres.dsn,
            SecretEnv.INGEST_TOKENS: self.state.secret(self.name, "ingest-token"),
        }
        if self.services.minio is not None:
            env[SecretEnv.S3_ACCESS_KEY] = self.services.minio.access_key
            env[SecretEnv.S3_SECRET_KEY] = self.services.minio.secret_key
        if self.services.redis is not None:
            env[SecretEnv.REDIS_URL] = self.services.redis.url
        return env

    def notify_env(self) -> dict[str, str]:
        """The detector's Alertmanager login: locally, the spec's `credentialsSecretRef` names a directory of
        the state dir (`pipelines/<pipeline>/secrets/<name>/`) holding `username` and `password`, or `token`."""
        am = self.pipeline.spec.detection.notify.alertmanager
        if am is None or am.credentials_secret_ref is None:
            return {}
        directory = self.state.root / "pipelines" / self.name / "secrets" / am.credentials_secret_ref.name
        keys = {"username": SecretEnv.ALERTMANAGER_USERNAME, "password": SecretEnv.ALERTMANAGER_PASSWORD,
                "token": SecretEnv.ALERTMANAGER_TOKEN}  # fmt: skip
        return {var: (directory / key).read_text().strip() for key, var in keys.items() if (directory / key).exists()}

    def create_topics(self) -> None:
        # One local broker: every topic has one replica whatever the spec asks for Kubernetes.
        ensure_topics(
            self.services.kafka.bootstrap_servers,
            {
                t.name: TopicSettings(
                    partitions=t.partitions, replication_factor=1, config={"retention.ms": str(t.retention_ms)}
                )
                for t in self.plan.topics.values()
            },
        )

    def start_component(self, name: str, replica: int = 1) -> ManagedProcess:
        """Start replica `replica` of a component; replicas after the first get their own config file, log and
        metrics port (they share the consumer group, which spreads the partitions over them)."""
        component = self.plan.components[name]
        directory = self.state.component_dir(self.name, name)
        config = component.config
        label = name if replica == 1 else f"{name}-{replica}"
        if replica > 1 and config.metrics_port:
            config = config.model_copy(update={"metrics_port": free_port()})
        config_path = directory / ("config.json" if replica == 1 else f"config-{replica}.json")
        config_path.write_text(config.to_json())
        argv = [sys.executable, "-m", COMPONENT_MODULES[name], "--config", str(config_path)]
        if name == "generator":
            argv += ["--stats-file", str(directory / "stats.json"), "--labels", str(directory / "labels.jsonl")]
        env = {**os.environ, **component.env, **self.secrets_env()}
        if name == "detector":
            env.update(self.notify_env())
        process = ManagedProcess(label, argv, directory / f"{label}.log", env=env)
        process.start()
        if replica == 1:
            self.components[name] = process
        else:
            self.extra_replicas.setdefault(name, []).append(process)
        return process

    def replicas(self, name: str) -> int:
        return (name in self.components) + len(self.extra_replicas.get(name, []))

    def scale(self, name: str, replicas: int) -> None:
        """Start or stop replicas of `name` until `replicas` run; the newest stop first, gracefully (they
        commit what they wrote and leave the consumer group)."""
        while self.replicas(name) < replicas:
            self.start_component(name, self.replicas(name) + 1)
        extra = self.extra_replicas.get(name, [])
        while self.replicas(name) > max(replicas, 1) and extra:
            extra.pop().stop(timeout=60)

    def scaler(self) -> LocalScaler:
        """The executor of the lag-based scaling of the planned components that have it."""
        return LocalScaler({name: c.autoscaling for name, c in self.plan.components.items()
                            if isinstance(c.autoscaling, LagScaling)})  # fmt: skip

    def autoscale(self, scaler: LocalScaler, now: float) -> list[ScaleEvent]:
        """One round of `scaler` on the real consumer lag, executed; a lag that cannot be read now (the broker
        busy or restarting) leaves that component as it is until the next round."""
        lags: dict[str, list[int]] = {}
        positions: dict[str, int] = {}
        for name, policy in scaler.policies.items():
            try:
                offsets = group_offsets(self.services.kafka.bootstrap_servers, policy.consumer_group, policy.topic)
            except PROBE_ERRORS:
                continue
            lags[name] = [max(0, end - at) for at, end in (offsets.get(p, (0, 0)) for p in range(policy.partitions))]
            positions[name] = sum(at for at, _ in offsets.values())
        events = scaler.round(now, lags, {name: self.replicas(name) for name in scaler.policies}, positions)
        for event in events:
            self.scale(event.component, event.after)
        return events

    def wait_http_ready(self, name: str, port: int, timeout: float = 60.0) -> None:
        process = self.components.get(name)
        if process is None:
            return
        url = f"http://127.0.0.1:{port}/readyz"

        def ready() -> bool:
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        process.wait_ready(ready, timeout)

    def supervise(self) -> list[str]:
        """Restart components that died; say what happened, for the live view."""
        notes = []
        every = [*self.components.values(), *(p for extra in self.extra_replicas.values() for p in extra)]
        for process in every:
            if process.process is not None and not process.running:
                code = process.process.returncode
                process.stop()
                process.start()
                notes.append(f"{process.name} exited with code {code}; restarted (log: {process.log_path})")
        return notes

    def stop_component(self, name: str, timeout: float = 60.0) -> None:
        """Stop every replica of `name`."""
        for extra in reversed(self.extra_replicas.pop(name, [])):
            extra.stop(timeout=timeout)
        process = self.components.get(name)
        if process is not None:
            process.stop(timeout=timeout)

    def backlog(self) -> int:
        """Events in the raw topic the processor has not committed yet."""
        raw = self.plan.topics["raw"].name
        group = self.processor_section().group_id
        return sum(consumer_lag(self.services.kafka.bootstrap_servers, group, raw).values())

    def probe(self) -> ProgressProbe:
        topics = self.plan.topics
        processor = self.processor_section()
        generator_dir = self.state.component_dir(self.name, "generator")
        return ProgressProbe(
            bootstrap=self.services.kafka.bootstrap_servers,
            raw_topic=topics["raw"].name,
            dlq_topic=topics["dlq"].name,
            group_id=processor.group_id,
            count_stored=lambda: count_stored(self.services.postgres.dsn, processor.db_schema),
            count_duplicates=lambda: count_duplicates(self.services.postgres.dsn, processor.db_schema),
            generator_stats=generator_dir / "stats.json" if "generator" in self.plan.components else None,
            ingest_metrics_url=(
                f"http://127.0.0.1:{self.ingest_port}/metrics" if "ingest" in self.plan.components else None
            ),
            lake_metrics_url=self.metrics_url("lake-sink"),
            features_topic=topics["features"].name if self.pipeline.spec.features else None,
            anomalies=self.read_anomalies if "detector" in self.plan.components else None,
        )

    def read_anomalies(self) -> tuple[AnomalyCounts, list[AnomalyOut]]:
        if self.anomaly_store is None:  # one connection for the whole run, reopened if it breaks
            self.anomaly_store = AnomalyStore(
                self.services.postgres.dsn, self.plan.db_schema, self.name, application_name="adnomaly-up"
            )
        return read_anomalies(self.anomaly_store)

    def metrics_url(self, component: str) -> str | None:
        planned = self.plan.components.get(component)
        port = planned.config.metrics_port if planned is not None else None
        return f"http://127.0.0.1:{port}/metrics" if port else None

    def processor_section(self) -> Any:
        section = self.plan.components["processor"].config.processor
        assert section is not None
        return section

    def schema_ready(self) -> bool:
        """True once the processor's migrations have created the events table."""
        self.components["processor"].check_alive()
        table = f'"{self.processor_section().db_schema}".events'
        try:
            with psycopg.connect(self.services.postgres.dsn) as conn:
                row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0])


def start_pipeline(local: LocalPipeline, say: Callable[[str], None] = lambda _: None) -> FeaturesJob | None:
    """Start the features job (if any, kept in `local.features_job`) and every planned component, consumers
    first; return once the processor's schema exists and the ingest API is ready. The caller stops what was
    started, also when this raises."""
    if local.pipeline.spec.features:
        local.features_job = start_features_job(
            local.pipeline, local.services.kafka.bootstrap_servers, local.state.component_dir(local.name, "flink")
        )
        say(f"flink features job starting (web UI {local.features_job.rest_url})")
    for name in COMPONENT_ORDER:
        if name in local.plan.components:
            local.start_component(name)
            if isinstance(local.plan.components[name].autoscaling, LagScaling):  # from minReplicas
                local.scale(name, local.plan.components[name].replicas)
            if name == "processor":
                wait_until(local.schema_ready, 60, "the processor's database migrations")
    local.wait_http_ready("ingest", local.ingest_port)
    return local.features_job


class StopRequested:
    """Set by SIGINT/SIGTERM; the main loop then drains."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.event.set())


# What a sample can run into on a loaded machine: a broker or database slow to answer, a topic just created.
PROBE_ERRORS: tuple[type[Exception], ...] = (KafkaException, KafkaAdminError, psycopg.Error, OSError)
FINAL_READ_ATTEMPTS = 5
T = TypeVar("T")


def refresh(view: LiveView, probe: ProgressProbe) -> None:
    """One refresh of the live view; a sample that fails is skipped (the next one tries again)."""
    try:
        view.update(probe.live())
    except PROBE_ERRORS as exc:
        view.stale(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")


def retried(read: Callable[[], T]) -> T:
    """A reading that must succeed (the run's baseline, its final numbers): a failure is retried a few times
    before it fails the run."""
    for _ in range(FINAL_READ_ATTEMPTS - 1):
        try:
            return read()
        except PROBE_ERRORS:
            time.sleep(2.0)
    return read()


def scaling_summary(scaler: LocalScaler) -> dict[str, Any]:
    """Per autoscaled component: the most replicas it ran and how many times it was scaled."""
    out: dict[str, Any] = {}
    for name, policy in scaler.policies.items():
        events = [e for e in scaler.events if e.component == name]
        out[name] = {"max_replicas": max([policy.min_replicas, *(e.after for e in events)]),
                     "scale_events": len(events)}  # fmt: skip
    return out


def tend(local: LocalPipeline, scaler: LocalScaler, view: LiveView) -> None:
    """What every turn of the run (and of its drain) does besides counting: restart what died, services first,
    then follow the lag with the autoscaled components."""
    for note in local.services.supervise() + local.supervise():
        view.message(note)
    follow_lag(local, scaler, view)


def follow_lag(local: LocalPipeline, scaler: LocalScaler, view: LiveView) -> None:
    """A round of the autoscaled components' scaling when one is due; the live view shows the replicas."""
    now = time.monotonic()
    if scaler.due(now):
        for event in local.autoscale(scaler, now):
            view.message(event.text())
    view.replicas = {name: local.replicas(name) for name in scaler.policies}


def drain(local: LocalPipeline, probe: ProgressProbe, view: LiveView, scaler: LocalScaler) -> Progress:
    """Stop the sources, let the processor catch up with what they produced, then stop the consumers
    (the sinks flush and commit what they buffered when they get SIGTERM)."""
    view.message("draining: stopping sources")
    for name in SOURCES:
        if name == "ingest":
            # The ingest API's count is read from its metrics, which go with its process: sample it once more
            # just before it stops, or requests answered since the last refresh would be missing from
            # `ingested` (the generator keeps its count in a file, which outlives it).
            refresh(view, probe)
        local.stop_component(name)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        refresh(view, probe)
        tend(local, scaler, view)  # the backlog drains faster with the replicas the lag calls for
        try:
            if local.backlog() == 0:  # sources are stopped and flushed: the processor has committed all
                break
        except PROBE_ERRORS as exc:  # the broker slow to answer: ask again
            view.message(f"backlog not known yet: {exc}")
        time.sleep(0.5)
    else:
        view.message(f"drain timed out after {DRAIN_TIMEOUT_S:.0f}s with {retried(local.backlog)} events pending")
    for name in reversed(COMPONENT_ORDER):
        local.stop_component(name)
    return retried(probe.read)


def start_alertmanager(pipeline: Pipeline, state: StateDir, say: Callable[[str], None]) -> AlertmanagerServer | None:
    """The local Alertmanager, started when the pipeline asks for notifications without naming one."""
    if not wants_local_alertmanager(pipeline):
        return None
    server = alertmanager_server(state.service_dir("alertmanager"))
    if server is None:
        say("prometheus-alertmanager is not installed (make services): anomalies are not notified")
        return None
    server.start()
    say(f"alertmanager: {server.url} (receivers: {server.config_path})")
    return server


def run_up(options: UpOptions) -> dict[str, Any]:
    pipeline = with_overrides(load_pipeline(options.pipeline_file), options.invalid_rate)
    state = open_state_dir(options.state_dir)
    stop = StopRequested()
    stop.install()
    live = options.live if options.live is not None else sys.stdout.isatty()
    view = LiveView(pipeline.name, live=live)
    with local_services(state, managed_stores(pipeline)) as services, view:
        view.message(
            f"kafka on {services.kafka.bootstrap_servers}, postgresql on 127.0.0.1:{services.postgres.port}"
            + (f", minio on {services.minio.endpoint}" if services.minio else "")
            + (f", redis on 127.0.0.1:{services.redis.port}" if services.redis else "")
        )
        alertmanager = start_alertmanager(pipeline, state, view.message)
        ports = endpoint_ports(state.root / "pipelines" / pipeline.name, options.ports)
        for note in ports.notes:
            view.message(note)
        local = LocalPipeline(pipeline, state, services, alertmanager.url if alertmanager else None,
                              endpoint_ports=ports.ports)  # fmt: skip
        local.create_topics()
        prometheus = prometheus_server(
            {name: c.config.metrics_port or 0 for name, c in local.plan.components.items()},
            state.service_dir("prometheus"), alertmanager=alertmanager.address if alertmanager else None,
            port=ports.ports["prometheus"],
        )
        if prometheus is not None:
            prometheus.start()
            view.message(f"prometheus: {prometheus.url} (alerts: {prometheus.url}/alerts)")
        probe = local.probe()
        retried(probe.start)  # counts before any component runs: the state directory outlives runs
        try:
            start_pipeline(local, view.message)
            if "ingest" in local.components:
                view.message(
                    f"ingest API: http://127.0.0.1:{local.ingest_port}/v1/events "
                    f"(bearer token in {state.secret_path(pipeline.name, 'ingest-token')})"
                )
            serving = local.plan.components.get("serving")
            if serving is not None and serving.config.serving is not None:
                base = f"http://127.0.0.1:{serving.config.serving.port}"
                view.message(f"online features: {base}/v1/features/<view>; anomalies: {base}/v1/anomalies")
                view.message(f"console: {base}/console")
            started = time.monotonic()
            scaler = local.scaler()
            while not stop.event.is_set():
                if options.run_for is not None and time.monotonic() - started >= options.run_for:
                    break
                tend(local, scaler, view)
                refresh(view, probe)
                stop.event.wait(1.0)
            final = drain(local, probe, view, scaler)
        finally:
            for name in reversed(COMPONENT_ORDER):
                local.stop_component(name, timeout=30)
            if local.features_job is not None:
                local.features_job.stop()
            if local.anomaly_store is not None:
                local.anomaly_store.close()
            probe.close()
            if prometheus is not None:
                prometheus.stop()
            if alertmanager is not None:
                alertmanager.stop()
    summary = final.summary()
    if scaler.policies:
        summary["scaling"] = scaling_summary(scaler)
    view.final(summary)
    if options.summary_json is not None:
        options.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
