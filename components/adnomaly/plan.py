"""spec → desired state. Pure: the same Pipeline and endpoints always give the same plan.

Both backends start from here: the operator renders the plan into Kubernetes objects, `adnomaly up`
turns it into local processes. Neither re-derives topic names, partition counts or component configs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from adnomaly.config import (
    ComponentConfig,
    EventsConfig,
    GeneratorConfig,
    IngestConfig,
    KafkaConfig,
    ProcessorConfig,
    ScenarioScheduleConfig,
    TopicNames,
)
from adnomaly.detector.config import DetectorConfig
from adnomaly.durations import duration_ms, parse_duration
from adnomaly.notify.config import NotifyConfig
from adnomaly.scaling import CpuScaling, LagScaling
from adnomaly.sinks.sections import feature_sink_section, lake_section, serving_section
from adnomaly.spec import (
    DEFAULT_LAG_THRESHOLD,
    ConsumerSpec,
    CpuAutoscaling,
    FeatureSpec,
    LagAutoscaling,
    Pipeline,
    TopicSpec,
    TracingSpec,
)

TOPIC_ROLES = ("raw", "dlq", "features", "anomalies")

# The Python module each component runs as (`python -m MODULE --config PATH`), on both backends.
COMPONENT_MODULES = {
    "generator": "adnomaly.generator",
    "ingest": "adnomaly.ingest",
    "processor": "adnomaly.processor",
    "lake-sink": "adnomaly.sinks.lake",
    "feature-sink": "adnomaly.sinks.features",
    "serving": "adnomaly.serving",
    "detector": "adnomaly.detector",
}


@dataclass(frozen=True)
class Endpoints:
    """Where the backend's services answer (cluster DNS names on Kubernetes, loopback ports locally)."""

    kafka_bootstrap: str
    ingest_host: str = "0.0.0.0"
    ingest_port: int = 8080
    s3_endpoint: str | None = None  # the managed MinIO, when the backend runs one
    serving_host: str = "0.0.0.0"
    serving_port: int = 8090
    metrics_ports: dict[str, int] = field(default_factory=dict)
    alertmanager_url: str | None = None  # the backend's own Alertmanager, for specs that name none


@dataclass(frozen=True)
class TopicPlan:
    role: str
    name: str
    partitions: int
    replicas: int
    retention_ms: int

    @property
    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(min(2, self.replicas) if self.replicas > 1 else 1),
        }


@dataclass(frozen=True)
class ComponentPlan:
    name: str
    replicas: int
    config: ComponentConfig
    notes: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # non-secret environment (e.g. OTEL_*), never secrets
    # Set: a scaler owns the replica count (`replicas` is then where it starts: minReplicas).
    autoscaling: LagScaling | CpuScaling | None = None

    @property
    def config_hash(self) -> str:
        """Changes exactly when this component's rendered config or environment changes (drives rollouts)."""
        env = "".join(f"\n{key}={value}" for key, value in sorted(self.env.items()))
        return hashlib.sha256((self.config.to_json() + env).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    pipeline: str
    topics: dict[str, TopicPlan]
    components: dict[str, ComponentPlan]
    db_schema: str
    conditions: tuple[tuple[str, str], ...] = ()  # (reason, message) worth a status condition


def topic_name(pipeline: str, role: str) -> str:
    return f"{pipeline}-{role}"


def db_schema_name(pipeline: str) -> str:
    return "p_" + pipeline.replace("-", "_")


def _topic(pipeline: str, role: str, spec: TopicSpec, kafka_replicas: int) -> TopicPlan:
    replicas = spec.replicas if spec.replicas is not None else min(3, kafka_replicas)
    return TopicPlan(role, topic_name(pipeline, role), spec.partitions, replicas, duration_ms(spec.retention))


def plan_topics(pipeline: Pipeline) -> dict[str, TopicPlan]:
    spec = pipeline.spec
    managed = spec.kafka.effective_managed
    kafka_replicas = managed.replicas if managed is not None else 3
    return {
        role: _topic(pipeline.name, role, getattr(spec.kafka.topics, role), kafka_replicas) for role in TOPIC_ROLES
    }


def events_config(pipeline: Pipeline) -> EventsConfig:
    events = pipeline.spec.events
    return EventsConfig(
        schema_name=events.resolved_schema,
        json_schema=events.json_schema,
        time_field=events.effective_time_field,
        id_field=events.id_field,
        dimensions=events.effective_dimensions,
        max_event_bytes=events.max_event_bytes,
        max_future_skew_s=parse_duration(events.max_future_skew),
        dedup_window_s=dedup_window_ms(duration_ms(events.dedup_window), pipeline.spec.features) / 1000,
    )


def dedup_window_ms(configured_ms: int, features: Sequence[FeatureSpec]) -> int:
    """W, the one window within which copies of an event id are removed by the lake and the features.

    `events.dedupWindow`, raised to the longest `window size + allowedLateness` of the features: a copy that
    arrives later than that finds every window of its event time fired (it is late and dropped), so a W at
    least that long leaves no gap in which a copy could be counted twice.
    """
    floor = [duration_ms(f.window.size) + duration_ms(f.allowed_lateness) for f in features]
    return max([configured_ms, *floor])


def managed_stores(pipeline: Pipeline) -> frozenset[str]:
    """The stateful services the backend must run itself for this pipeline (the rest are external)."""
    spec = pipeline.spec
    stores = set()
    if spec.kafka.external is None:
        stores.add("kafka")
    if spec.storage.postgres.external is None:
        stores.add("postgres")
    lake = spec.lake
    if lake.enabled and lake.uri is None and (lake.s3 is None or lake.s3.external is None):
        stores.add("minio")
    if spec.features and spec.feature_store.redis.external is None:
        stores.add("redis")
    return frozenset(stores)


def wants_local_alertmanager(pipeline: Pipeline) -> bool:
    """The pipeline asks for Alertmanager notifications without naming one: the backend runs its own."""
    am = pipeline.spec.detection.notify.alertmanager
    return bool(pipeline.spec.detection.detectors) and am is not None and am.url is None


def notify_section(pipeline: Pipeline, endpoints: Endpoints) -> NotifyConfig | None:
    """Where the detector sends anomalies: the spec's Alertmanager, else the backend's; None: nowhere."""
    am = pipeline.spec.detection.notify.alertmanager
    url = (am.url or endpoints.alertmanager_url) if am is not None else None
    return NotifyConfig(url=url) if url else None


def plan(pipeline: Pipeline, endpoints: Endpoints) -> Plan:
    spec = pipeline.spec
    name = pipeline.name
    topics = plan_topics(pipeline)
    kafka = KafkaConfig(
        bootstrap_servers=endpoints.kafka_bootstrap,
        security_protocol=spec.kafka.external.security_protocol if spec.kafka.external else "PLAINTEXT",
        topics=TopicNames(**{role: t.name for role, t in topics.items()}),
    )
    events = events_config(pipeline)

    def config(component: str, **sections: object) -> ComponentConfig:
        return ComponentConfig(
            pipeline=name,
            component=component,
            kafka=kafka,
            events=events,
            metrics_port=endpoints.metrics_ports.get(component, 9000) if spec.observability.metrics else None,
            **sections,  # type: ignore[arg-type]
        )

    components: dict[str, ComponentPlan] = {}
    conditions: list[tuple[str, str]] = []
    gen = spec.source.generator
    if gen.enabled:
        components["generator"] = ComponentPlan(
            "generator", 1,
            config("generator", generator=GeneratorConfig(
                events_per_second=gen.events_per_second, seed=gen.seed,
                invalid_rate=gen.invalid_rate, scenarios=list(gen.scenarios),
                scenario_schedule=ScenarioScheduleConfig(
                    first_after_s=parse_duration(gen.scenario_schedule.first_after),
                    every_s=parse_duration(gen.scenario_schedule.every),
                    duration_s=parse_duration(gen.scenario_schedule.duration),
                ),
            )),
        )
    ingest = spec.source.ingest
    if ingest.enabled and (ingest.replicas > 0 or ingest.autoscaling is not None):
        cpu = cpu_scaling(ingest.autoscaling)
        components["ingest"] = ComponentPlan(
            "ingest", cpu.min_replicas if cpu is not None else ingest.replicas,
            config("ingest", ingest=IngestConfig(
                host=endpoints.ingest_host, port=endpoints.ingest_port, max_body_bytes=ingest.max_body_bytes,
            )),
            autoscaling=cpu,
        )

    def consumer(component: str, section: ConsumerSpec, role: str, group: str, cfg: ComponentConfig) -> ComponentPlan:
        replicas, scaling, notes = consumer_replicas(component, section, topics[role], group)
        conditions.extend(("ReplicasCapped", note) for note in notes)
        return ComponentPlan(component, replicas, cfg, notes, autoscaling=scaling)

    proc = spec.components.processor
    components["processor"] = consumer(
        "processor", proc, "raw", f"{name}-processor",
        config("processor", processor=ProcessorConfig(
            group_id=f"{name}-processor", batch_size=proc.batch_size,
            batch_timeout_s=parse_duration(proc.batch_timeout), db_schema=db_schema_name(name),
        )),
    )
    lake = None
    if "minio" not in managed_stores(pipeline) or endpoints.s3_endpoint is not None:
        lake = lake_section(pipeline, managed_s3_endpoint=endpoints.s3_endpoint)
    elif spec.lake.enabled:
        # A backend that runs a managed MinIO says where (Endpoints.s3_endpoint); tools that plan only
        # some components (benchmarks, tests) give none and get no lake sink.
        conditions.append(("LakeNotPlanned", "no S3 endpoint was given for the managed lake"))
    if lake is not None:
        components["lake-sink"] = consumer(
            "lake-sink", spec.components.lake_sink, "raw", lake.group_id, config("lake-sink", lake=lake)
        )
    feature_sink = feature_sink_section(pipeline, db_schema=db_schema_name(name))
    if feature_sink is not None:
        components["feature-sink"] = consumer(
            "feature-sink", spec.components.feature_sink, "features", feature_sink.group_id,
            config("feature-sink", feature_sink=feature_sink),
        )
    serving = serving_section(
        pipeline, host=endpoints.serving_host, port=endpoints.serving_port, db_schema=db_schema_name(name)
    )
    if serving is not None:
        components["serving"] = ComponentPlan("serving", 1, config("serving", serving=serving))
    if spec.detection.detectors:
        # One replica: a key's windows are spread over partitions (the features key holds the window end),
        # so several replicas would split one key's baseline.
        notify = notify_section(pipeline, endpoints)
        if notify is None and wants_local_alertmanager(pipeline):
            conditions.append(("AlertmanagerNotPlanned", "detection.notify.alertmanager has no url and this "
                               "backend runs no Alertmanager: anomalies are not notified"))  # fmt: skip
        components["detector"] = ComponentPlan(
            "detector", min(spec.components.detector.replicas, 1),
            config("detector", detector=DetectorConfig(
                group_id=f"{name}-detector", db_schema=db_schema_name(name), transactional_id=f"{name}-detector",
                detection=spec.detection.model_dump(mode="json", by_alias=True, exclude_none=True,
                                                    exclude={"notify"}),
                notify=notify,
            )),
        )  # fmt: skip
    components = {
        key: replace(component, env=tracing_env(spec.observability.tracing, name, key))
        for key, component in components.items()
    }
    return Plan(name, topics, components, db_schema_name(name), tuple(conditions))


def consumer_replicas(
    component: str, section: ConsumerSpec, topic: TopicPlan, group: str
) -> tuple[int, LagScaling | None, tuple[str, ...]]:
    """(replicas to start with, lag scaling, notes) of a component in consumer group `group` on `topic`.

    A consumer group gives each partition to one member, so replicas — fixed, or the autoscaler's bounds —
    are capped at the topic's partition count; a cap the spec ran into is reported (`ReplicasCapped`)."""
    partitions = topic.partitions

    def capped(what: str, requested: int) -> str:
        return (
            f"{component} {what} capped at {partitions} (the {topic.role} topic's partition count); "
            f"{requested} requested"
        )

    auto = section.autoscaling
    if auto is None:
        notes = (capped("replicas", section.replicas),) if section.replicas > partitions else ()
        return min(section.replicas, partitions), None, notes
    requested_max = auto.max_replicas if auto.max_replicas is not None else partitions
    notes = (capped("autoscaling maxReplicas", requested_max),) if requested_max > partitions else ()
    if auto.min_replicas > partitions:
        notes += (capped("autoscaling minReplicas", auto.min_replicas),)
    maximum = min(requested_max, partitions)
    scaling = LagScaling(
        topic=topic.name, consumer_group=group, partitions=partitions,
        min_replicas=min(auto.min_replicas, maximum), max_replicas=maximum, lag_threshold=lag_threshold(auto),
        scale_down_stabilization_s=parse_duration(auto.scale_down_stabilization),
        target_lag_s=auto.target_lag_seconds, replica_rate=auto.replica_records_per_second,
    )
    return scaling.min_replicas, scaling, notes


def lag_threshold(auto: LagAutoscaling) -> int:
    """The records threshold per replica: `lagThreshold`, or `targetLagSeconds` at the stated per-replica
    rate (what KEDA, which counts records, is given; the local executor refines it with a measured rate)."""
    if auto.target_lag_seconds is not None and auto.replica_records_per_second is not None:
        return max(1, auto.target_lag_seconds * auto.replica_records_per_second)
    return auto.lag_threshold if auto.lag_threshold is not None else DEFAULT_LAG_THRESHOLD


def cpu_scaling(auto: CpuAutoscaling | None) -> CpuScaling | None:
    if auto is None:
        return None
    return CpuScaling(
        min_replicas=auto.min_replicas, max_replicas=auto.max_replicas,
        target_cpu_utilization=auto.target_cpu_utilization,
        scale_down_stabilization_s=parse_duration(auto.scale_down_stabilization),
    )


def tracing_env(tracing: TracingSpec, pipeline: str, component: str) -> dict[str, str]:
    """The standard OTEL_* variables that turn a component's tracing on (see adnomaly.tracing); none when
    the spec sets no OTLP endpoint. Parent-based sampling keeps a trace whole from ingest to anomaly."""
    if not tracing.otlp_endpoint:
        return {}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": tracing.otlp_endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": repr(float(tracing.sample_ratio)),
        "OTEL_SERVICE_NAME": f"adnomaly-{component}",
        "OTEL_RESOURCE_ATTRIBUTES": f"adnomaly.pipeline={pipeline}",
    }
