"""The `Pipeline` resource: the product's one public API.

The same model validates `adnomaly up -f pipeline.yaml` locally and generates the Kubernetes CRD
(`crds/`). Field names are camelCase on the wire (Kubernetes style) and snake_case in Python. Every
field has a default where one makes sense, so a ten-line manifest is a complete pipeline. Unknown
fields and bad values are rejected, and every error names the field it is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from adnomaly.durations import DURATION_PATTERN, POSITIVE_DURATION_PATTERN, QUANTITY_PATTERN, parse_duration
from adnomaly.events.schemas import BUILTIN_SCHEMAS, struct_fields

API_GROUP = "adnomaly.io"
API_VERSION = "v1alpha1"
KIND = "Pipeline"

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=12, examples=["30s", "5m", "7d"])]
PositiveDuration = Annotated[str, Field(pattern=POSITIVE_DURATION_PATTERN, max_length=12, examples=["30s", "10m"])]
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, examples=["20Gi"])]
Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=63)]
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", min_length=1, max_length=64)]
SchemaName = Literal["clickstream", "signal", "probe", "download"]
ScenarioName = Literal[
    "clickFraudBurst", "brokenCampaign", "regionalOutage", "probeLatencySpike", "malformedStorm"
]
# Which event schemas each generator scenario applies to (None: every schema).
SCENARIO_SCHEMAS: dict[str, frozenset[str] | None] = {
    "clickFraudBurst": frozenset({"clickstream"}),
    "brokenCampaign": frozenset({"clickstream"}),
    "regionalOutage": frozenset({"download"}),
    "probeLatencySpike": frozenset({"probe"}),
    "malformedStorm": None,
}
GENERATOR_MIN_EVENT_BYTES = 1024  # the largest valid generated event is under 500 bytes


class SpecModel(BaseModel):
    """Base of every spec object: camelCase aliases, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True,
        validate_default=True,
    )


class SecretRef(SpecModel):
    """A Kubernetes Secret (or, locally, a file under the state directory) holding credentials."""

    name: Name
    key: str | None = Field(default=None, description="Key inside the Secret; each consumer has a default")


class Storage(SpecModel):
    size: Quantity = "10Gi"
    storage_class_name: str | None = None


class ManagedStore(SpecModel):
    """A store Adnomaly runs itself (one StatefulSet on Kubernetes, a local process with `adnomaly up`)."""

    storage: Storage = Storage()


# --- events -----------------------------------------------------------------------------------------


class EventsSpec(SpecModel):
    schema_name: SchemaName | None = Field(
        default=None, alias="schema", description="Built-in schema; default clickstream unless jsonSchema"
    )
    json_schema: dict[str, Any] | None = Field(default=None, description="A custom JSON Schema for events")
    time_field: FieldName | None = Field(default=None, description="Event-time field; built-ins know theirs")
    id_field: FieldName | None = Field(
        default=None, description="Field holding the idempotency key; derived from content when absent"
    )
    dimensions: list[FieldName] | None = Field(default=None, max_length=16, description="Fields events are grouped by")
    max_event_bytes: int = Field(
        default=64 * 1024, ge=256, le=900_000,
        description="Larger events are rejected (`oversize`); at most 900000 so that an event, its headers and its "
        "dead letter stay under Kafka's default 1 MB message limit",
    )
    max_future_skew: Duration = Field(default="1d", description="Events further in the future are rejected")
    dedup_window: Duration = Field(
        default="10m",
        description="Copies of an event id (a client re-sending a batch) within this window are removed before the "
        "lake and the features; the features use at least their window size plus allowedLateness",
    )

    @model_validator(mode="after")
    def _one_schema(self) -> EventsSpec:
        if self.schema_name is not None and self.json_schema is not None:
            raise ValueError("set either `schema` or `jsonSchema`, not both")
        if self.json_schema is None:
            schema = self.schema_name or "clickstream"
            builtin = BUILTIN_SCHEMAS[schema]
            known = struct_fields(schema)
            for label, value in (("timeField", self.time_field), ("idField", self.id_field)):
                if value is not None and value not in known:
                    raise ValueError(f"{label} `{value}` is not a field of schema {schema}")
            for dim in self.dimensions or ():
                if dim not in known:
                    raise ValueError(f"dimension `{dim}` is not a field of schema {schema}")
            if self.time_field not in (None, builtin.time_field):
                raise ValueError(f"schema {schema} keeps its event time in `{builtin.time_field}`")
        elif self.time_field is None:
            raise ValueError("a custom jsonSchema needs `timeField`")
        return self

    @property
    def resolved_schema(self) -> str:
        if self.json_schema is not None:
            return "custom"
        return self.schema_name or "clickstream"

    @property
    def effective_time_field(self) -> str:
        if self.time_field is not None:
            return self.time_field
        return BUILTIN_SCHEMAS[self.resolved_schema].time_field

    @property
    def effective_dimensions(self) -> list[str]:
        if self.dimensions is not None:
            return list(self.dimensions)
        return list(BUILTIN_SCHEMAS[self.resolved_schema].dimensions) if self.json_schema is None else []


# --- sources ------------------------------------------------------------------------------------------


class ScenarioSchedule(SpecModel):
    """When the generator's labelled scenarios run, counted from the generator's start: after `firstAfter` of
    normal traffic (the detectors' baseline), one scenario per slot of `every`, round robin, each running for
    `duration` from an offset the seed draws within the slot's first quarter."""

    first_after: Duration = Field(default="5m", description="Normal traffic before the first scenario's slot")
    every: PositiveDuration = Field(default="10m", description="One scenario per slot of this length")
    duration: PositiveDuration = Field(default="3m", description="How long each scenario runs (at most `every`)")

    @model_validator(mode="after")
    def _fits(self) -> ScenarioSchedule:
        if parse_duration(self.duration) > parse_duration(self.every):
            raise ValueError("a scenario's `duration` must fit its slot (`every`)")
        return self


class GeneratorSpec(SpecModel):
    enabled: bool = True
    events_per_second: float = Field(default=100.0, gt=0, le=1_000_000)
    seed: int = Field(default=42, ge=0)
    invalid_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Fraction of malformed events")
    scenarios: list[ScenarioName] = Field(default_factory=list, max_length=16, description="Labelled anomaly scenarios")
    scenario_schedule: ScenarioSchedule = Field(
        default_factory=ScenarioSchedule, description="When the scenarios run"
    )


class CpuAutoscaling(SpecModel):
    """Replicas by CPU (a HorizontalPodAutoscaler): for the ingest API, whose load is requests, not lag."""

    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(ge=1, le=100)
    target_cpu_utilization: int = Field(
        default=70, ge=1, le=100, description="Average CPU use, in percent of the pods' CPU request, to hold"
    )
    scale_down_stabilization: Duration = Field(
        default="5m", description="Replicas go down only to the highest count recommended over this window"
    )

    @model_validator(mode="after")
    def _bounds(self) -> CpuAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling: minReplicas must be at most maxReplicas")
        return self


class IngestSpec(SpecModel):
    enabled: bool = True
    replicas: int = Field(default=1, ge=0, le=100, description="Ignored while `autoscaling` is set")
    autoscaling: CpuAutoscaling | None = Field(
        default=None, description="Replicas follow CPU use between minReplicas and maxReplicas"
    )
    auth_secret_ref: SecretRef | None = Field(
        default=None, description="Secret with bearer tokens (key `tokens`, one per line); generated if absent"
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)


class SourceSpec(SpecModel):
    generator: GeneratorSpec = GeneratorSpec()
    ingest: IngestSpec = IngestSpec()


# --- kafka --------------------------------------------------------------------------------------------


class ManagedKafka(SpecModel):
    version: str = Field(default="4.1.0", pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    replicas: int = Field(default=1, ge=1, le=9)
    storage: Storage = Storage(size="20Gi")


class ExternalKafka(SpecModel):
    bootstrap_servers: str = Field(min_length=1, pattern=r"^[^,\s]+(,[^,\s]+)*$")
    credentials_secret_ref: SecretRef | None = Field(
        default=None, description="Secret with the SASL login (keys `username` and `password`)"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    manage_topics: bool = Field(
        default=False,
        description="The operator creates the pipeline's topics through the Kafka Admin API and keeps their "
        "partitions (increase only) and retention as the spec says; under deletionPolicy Delete it deletes "
        "them with the Pipeline. Default: the topics are the Kafka owner's business",
    )

    @model_validator(mode="after")
    def _topics_login(self) -> ExternalKafka:
        if self.manage_topics and self.security_protocol.startswith("SASL_") and self.credentials_secret_ref is None:
            raise ValueError(
                f"manageTopics with securityProtocol {self.security_protocol} needs credentialsSecretRef "
                "(the operator logs in to create the topics)"
            )
        return self


class TopicSpec(SpecModel):
    partitions: int = Field(ge=1, le=10_000)
    retention: Duration
    replicas: int | None = Field(default=None, ge=1, le=9, description="Default: min(3, Kafka replicas)")


class TopicsSpec(SpecModel):
    raw: TopicSpec = TopicSpec(partitions=6, retention="7d")
    dlq: TopicSpec = TopicSpec(partitions=1, retention="30d")
    features: TopicSpec = TopicSpec(partitions=3, retention="3d")
    anomalies: TopicSpec = TopicSpec(partitions=3, retention="30d")


class KafkaSpec(SpecModel):
    managed: ManagedKafka | None = Field(default=None, description="Default when `external` is absent")
    external: ExternalKafka | None = None
    topics: TopicsSpec = TopicsSpec()

    @model_validator(mode="after")
    def _one_kind(self) -> KafkaSpec:
        if self.managed is not None and self.external is not None:
            raise ValueError("set either `managed` or `external`, not both")
        return self

    @property
    def effective_managed(self) -> ManagedKafka | None:
        return None if self.external is not None else (self.managed or ManagedKafka())


# --- stores -------------------------------------------------------------------------------------------


class ExternalPostgres(SpecModel):
    dsn_secret_ref: SecretRef = Field(description="Secret whose key `dsn` holds a libpq connection string")


class PostgresSpec(SpecModel):
    managed: ManagedStore | None = None
    external: ExternalPostgres | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PostgresSpec:
        if self.managed is not None and self.external is not None:
            raise ValueError("set either `managed` or `external`, not both")
        return self


class StorageSpec(SpecModel):
    postgres: PostgresSpec = PostgresSpec()


class ExternalS3(SpecModel):
    endpoint: str = Field(min_length=1)
    region: str = "us-east-1"
    credentials_secret_ref: SecretRef | None = None


class S3Spec(SpecModel):
    managed: ManagedStore | None = None
    external: ExternalS3 | None = None
    bucket: str = Field(default="adnomaly-data", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

    @model_validator(mode="after")
    def _one_kind(self) -> S3Spec:
        if self.managed is not None and self.external is not None:
            raise ValueError("set either `managed` or `external`, not both")
        return self


class LakeSpec(SpecModel):
    enabled: bool = True
    s3: S3Spec | None = Field(default=None, description="Default (managed MinIO) when `uri` is absent")
    uri: str | None = Field(default=None, pattern=r"^(file|s3)://.+$", description="e.g. file:///data/lake")
    format: Literal["parquet"] = "parquet"
    partitioning: Literal["hourly", "daily"] = "hourly"

    @model_validator(mode="after")
    def _one_target(self) -> LakeSpec:
        if self.s3 is not None and self.uri is not None:
            raise ValueError("set either `s3` or `uri`, not both")
        return self


class ExternalRedis(SpecModel):
    url_secret_ref: SecretRef = Field(description="Secret whose key `url` holds a redis:// URL")


class RedisSpec(SpecModel):
    managed: ManagedStore | None = None
    external: ExternalRedis | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> RedisSpec:
        if self.managed is not None and self.external is not None:
            raise ValueError("set either `managed` or `external`, not both")
        return self


class FeatureStoreSpec(SpecModel):
    redis: RedisSpec = RedisSpec()
    serving_cache_keys: int = Field(
        default=10_000, ge=0,
        description="Redis hashes whose answers the serving API keeps while Redis tracks them (client-side "
        "caching: Redis announces every change on the API's connection); 0: every lookup asks Redis",
    )  # fmt: skip


# --- features and detection (filled in by the features and detection work) ---------------------------


class WindowSpec(SpecModel):
    type: Literal["tumbling", "hopping"] = "tumbling"
    size: Duration = "1m"
    slide: Duration | None = Field(default=None, description="Hopping windows only")

    @model_validator(mode="after")
    def _slide(self) -> WindowSpec:
        if self.type == "tumbling" and self.slide is not None:
            raise ValueError("a tumbling window has no `slide`")
        if self.type == "hopping":
            if self.slide is None:
                raise ValueError("a hopping window needs `slide`")
            size, slide = parse_duration(self.size), parse_duration(self.slide)
            if slide <= 0:
                raise ValueError("`slide` must be positive")
            if slide > size or size % slide:
                raise ValueError("`size` must be a whole multiple of `slide`")
        return self


class MetricSpec(SpecModel):
    name: FieldName
    agg: Literal["count", "sum", "avg", "min", "max", "ratio", "p50", "p90", "p95", "p99"]
    field: FieldName | None = None
    numerator: FieldName | None = Field(default=None, description="For `ratio`: sum(numerator)/sum(denominator)")
    denominator: FieldName | None = None

    @model_validator(mode="after")
    def _operands(self) -> MetricSpec:
        if self.agg == "count":
            if self.field or self.numerator or self.denominator:
                raise ValueError("`count` takes no field")
        elif self.agg == "ratio":
            if not (self.numerator and self.denominator) or self.field:
                raise ValueError("`ratio` takes `numerator` and `denominator`")
        elif not self.field or self.numerator or self.denominator:
            raise ValueError(f"`{self.agg}` takes `field`")
        return self


class FeatureSpec(SpecModel):
    name: FieldName
    dimensions: list[FieldName] = Field(min_length=1, max_length=8)
    window: WindowSpec = WindowSpec()
    allowed_lateness: Duration = "30s"
    ttl: Duration = "3d"
    metrics: list[MetricSpec] = Field(min_length=1, max_length=32)


DLQ_FEATURE = "_dlq"  # reserved feature: the raw stream's share of dead-lettered events per window
DLQ_METRICS = ("invalid_share", "invalid_count", "event_count")
Direction = Literal["above", "below", "both"]


class ThresholdRule(SpecModel):
    warning_above: float | None = None
    critical_above: float | None = None
    warning_below: float | None = None
    critical_below: float | None = None
    min_count: int | None = Field(
        default=None, ge=1, description="Events a window needs before it is judged (default: the detector's, 20)"
    )

    @model_validator(mode="after")
    def _some_bound(self) -> ThresholdRule:
        if all(v is None for v in (self.warning_above, self.critical_above, self.warning_below, self.critical_below)):
            raise ValueError("a threshold needs at least one bound")
        return self


class RobustZScore(SpecModel):
    threshold: float = Field(default=4.0, gt=0)
    min_count: int = Field(default=30, ge=1, description="Events a window needs before it is judged")
    history: int = Field(default=60, ge=5, le=10_000, description="Past windows per key in the baseline")
    direction: Direction = Field(default="both", description="Alert on values above, below or both sides")


class Ewma(SpecModel):
    alpha: float = Field(default=0.3, gt=0, le=1)
    threshold: float = Field(default=4.0, gt=0, description="Control limit in standard deviations")
    min_count: int = Field(default=30, ge=1)
    warmup: int = Field(default=10, ge=1, description="Windows per key before alerting")
    direction: Direction = Field(default="both", description="Alert on values above, below or both sides")


class Auto(SpecModel):
    """The untuned ensemble (level, daily and weekly profiles, moving mean; see adnomaly.detection.auto)."""

    threshold: float = Field(
        default=0.95, gt=0, lt=1, description="Anomaly score (0-1) at which a window alarms as a warning"
    )
    critical_threshold: float = Field(default=0.99, gt=0, lt=1, description="Anomaly score of a critical alarm")
    min_count: int = Field(default=1, ge=1, description="Events a window needs before it is judged")
    direction: Direction = Field(default="both", description="Alert on values above, below or both sides")

    @model_validator(mode="after")
    def _ordered(self) -> Auto:
        if self.critical_threshold < self.threshold:
            raise ValueError("auto: criticalThreshold must be at least threshold")
        return self


METHODS = ("threshold", "robustZScore", "ewma", "auto")
# Consecutive normal windows that resolve an open anomaly, per method, when the detector sets none. `auto`
# judges every window of a key and its evidence flickers around the threshold while a series is turbulent;
# a longer hold-down keeps one turbulent episode one anomaly (20 windows: 20 minutes at a 1-minute slide).
DEFAULT_RESOLVE_AFTER = {"threshold": 2, "robustZScore": 2, "ewma": 2, "auto": 20}


class DetectorSpec(SpecModel):
    name: Name
    feature: FieldName
    metric: FieldName
    threshold: ThresholdRule | None = None
    robust_z_score: RobustZScore | None = None
    ewma: Ewma | None = None
    auto: Auto | None = None
    resolve_after: int | None = Field(
        default=None, ge=1, le=10_000,
        description="Consecutive normal windows that resolve an open anomaly (default 2; 20 for auto)",
    )  # fmt: skip

    @property
    def method(self) -> str:
        return next(
            name for name, m in zip(METHODS, (self.threshold, self.robust_z_score, self.ewma, self.auto), strict=True)
            if m is not None
        )  # fmt: skip

    @property
    def hold_down(self) -> int:
        """The resolveAfter in force: the detector's own, else its method's default."""
        return self.resolve_after if self.resolve_after is not None else DEFAULT_RESOLVE_AFTER[self.method]

    @model_validator(mode="after")
    def _one_method(self) -> DetectorSpec:
        methods = [m for m in (self.threshold, self.robust_z_score, self.ewma, self.auto) if m is not None]
        if len(methods) != 1:
            raise ValueError("a detector takes exactly one of `threshold`, `robustZScore`, `ewma`, `auto`")
        if self.feature == DLQ_FEATURE and self.metric not in DLQ_METRICS:
            raise ValueError(
                f"detector `{self.name}`: the reserved feature `{DLQ_FEATURE}` has the metrics "
                f"{', '.join(DLQ_METRICS)}, not `{self.metric}`"
            )
        return self


class DlqWindowSpec(SpecModel):
    """Windows of the reserved feature `_dlq` (raw and dead-letter topics' record timestamps)."""

    window: str = Field(
        default="1m", pattern=POSITIVE_DURATION_PATTERN, max_length=12,
        description="Tumbling window size of `_dlq` (a positive duration)",
    )  # fmt: skip
    allowed_lateness: Duration = Field(default="10s", description="How long a window waits for late dead letters")


class AlertmanagerSpec(SpecModel):
    """Send every anomaly to a Prometheus Alertmanager (API v2): firing while open, resolved with `endsAt`."""

    url: str | None = Field(
        default=None, pattern=r"^https?://[^\s/@?#]+(/[^\s?#]*)?$", max_length=2048,
        description="Alertmanager's base URL (alerts go to <url>/api/v2/alerts), without credentials. Absent: "
        "`adnomaly up` runs a local Alertmanager; on Kubernetes nothing is sent (condition AlertmanagerNotPlanned)",
    )  # fmt: skip
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret with keys `username` and `password` (basic auth) or `token` (bearer token)",
    )

    @model_validator(mode="after")
    def _credentials_need_url(self) -> AlertmanagerSpec:
        if self.credentials_secret_ref is not None:
            if self.url is None:
                raise ValueError("credentialsSecretRef needs `url` (the local Alertmanager takes no credentials)")
            if self.credentials_secret_ref.key is not None:
                raise ValueError(
                    "credentialsSecretRef takes no `key`: the Secret's keys are username/password or token"
                )
        return self


class NotifySpec(SpecModel):
    """Where anomalies go for people, besides the anomalies topic and table."""

    alertmanager: AlertmanagerSpec | None = None


class DetectionSpec(SpecModel):
    detectors: list[DetectorSpec] = Field(default_factory=list, max_length=64)
    dlq: DlqWindowSpec = Field(default_factory=DlqWindowSpec, description="The reserved feature `_dlq`")
    notify: NotifySpec = Field(default_factory=NotifySpec, description="Notifications (Alertmanager)")


# --- components and observability ---------------------------------------------------------------------


class Resources(SpecModel):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class ComponentSpec(SpecModel):
    replicas: int = Field(default=1, ge=0, le=1000)
    resources: Resources | None = None


DEFAULT_LAG_THRESHOLD = 1000  # records per replica, when neither lagThreshold nor targetLagSeconds is set


class LagAutoscaling(SpecModel):
    """Replicas by consumer lag on the topic a component consumes (`adnomaly.scaling`; KEDA on Kubernetes)."""

    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int | None = Field(
        default=None, ge=1, le=1000,
        description="Default and upper bound: the consumed topic's partition count (more consumers would idle)",
    )
    lag_threshold: int | None = Field(
        default=None, ge=1, le=1_000_000_000,
        description=(
            "Target lag (records) per replica: replicas = ceil(total lag / lagThreshold). "
            f"Default {DEFAULT_LAG_THRESHOLD} unless `targetLagSeconds` is set instead"
        ),
    )
    target_lag_seconds: int | None = Field(
        default=None, ge=1, le=86_400,
        description=(
            "Target lag in seconds of consumption per replica, instead of `lagThreshold`: replicas = "
            "ceil(lag / (replica rate * targetLagSeconds)); needs `replicaRecordsPerSecond`"
        ),
    )
    replica_records_per_second: int | None = Field(
        default=None, ge=1, le=100_000_000,
        description=(
            "Records per second one replica consumes, with `targetLagSeconds`: KEDA's lagThreshold is "
            "targetLagSeconds * this; `adnomaly up` measures the rate and uses this until it has"
        ),
    )
    scale_down_stabilization: Duration = Field(
        default="5m", description="Replicas go down only to the highest count recommended over this window"
    )

    @model_validator(mode="after")
    def _bounds(self) -> LagAutoscaling:
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling: minReplicas must be at most maxReplicas")
        if self.lag_threshold is not None and self.target_lag_seconds is not None:
            raise ValueError("autoscaling: set either `lagThreshold` or `targetLagSeconds`, not both")
        if (self.target_lag_seconds is None) != (self.replica_records_per_second is None):
            raise ValueError("autoscaling: `targetLagSeconds` and `replicaRecordsPerSecond` go together")
        return self


class ConsumerSpec(ComponentSpec):
    """A component in a Kafka consumer group: it scales out up to the consumed topic's partitions."""

    replicas: int = Field(default=1, ge=0, le=1000, description="Ignored while `autoscaling` is set")
    autoscaling: LagAutoscaling | None = Field(
        default=None, description="Replicas follow the consumer group's lag between minReplicas and maxReplicas"
    )


class FlinkAutoscaler(SpecModel):
    """The Flink Kubernetes Operator's job autoscaler (per-vertex parallelism from busy time and backlog)."""

    max_parallelism: int | None = Field(
        default=None, ge=1, le=10_000,
        description="Highest parallelism of any vertex; default and upper bound: the raw topic's partition count",
    )
    target_utilization: float = Field(default=0.7, gt=0, le=1, description="Busy-time share each vertex aims at")
    stabilization: Duration = Field(default="5m", description="No new scaling this long after one")
    metrics_window: Duration = Field(default="10m", description="Metrics averaged over this window")


class FeaturesJobSpec(SpecModel):
    """The Flink features job (runs when `features` are defined)."""

    autoscaler: FlinkAutoscaler | None = Field(
        default=None, description="Let the Flink Kubernetes Operator's autoscaler set the job's parallelism"
    )


class ProcessorSpec(ConsumerSpec):
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    batch_timeout: Duration = Field(
        default="50ms",
        description="Longest an event waits for its batch, counted from its Kafka timestamp (latency bound)",
    )


class ComponentsSpec(SpecModel):
    processor: ProcessorSpec = ProcessorSpec()
    detector: ComponentSpec = ComponentSpec()  # one replica at most (see adnomaly.plan)
    lake_sink: ConsumerSpec = ConsumerSpec()
    feature_sink: ConsumerSpec = ConsumerSpec()
    features: FeaturesJobSpec = FeaturesJobSpec()


class TracingSpec(SpecModel):
    otlp_endpoint: str | None = Field(default=None, description="Tracing is off unless an endpoint is set")
    sample_ratio: float = Field(default=0.1, ge=0, le=1)


class ObservabilitySpec(SpecModel):
    metrics: bool = True
    tracing: TracingSpec = TracingSpec()


# --- the pipeline -------------------------------------------------------------------------------------


class PipelineSpec(SpecModel):
    events: EventsSpec = EventsSpec()
    source: SourceSpec = SourceSpec()
    kafka: KafkaSpec = KafkaSpec()
    storage: StorageSpec = StorageSpec()
    lake: LakeSpec = LakeSpec()
    feature_store: FeatureStoreSpec = FeatureStoreSpec()
    features: list[FeatureSpec] = Field(default_factory=list, max_length=16)
    detection: DetectionSpec = DetectionSpec()
    components: ComponentsSpec = ComponentsSpec()
    observability: ObservabilitySpec = ObservabilitySpec()
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain", description="What happens to topics, volumes and buckets when the Pipeline goes"
    )

    @model_validator(mode="after")
    def _generator_fits_events(self) -> PipelineSpec:
        generator = self.source.generator
        if not generator.enabled:
            return self
        schema = self.events.resolved_schema
        if schema == "custom":
            raise ValueError("the generator makes built-in schemas only: disable it for a custom jsonSchema")
        for scenario in generator.scenarios:
            allowed = SCENARIO_SCHEMAS[scenario]
            if allowed is not None and schema not in allowed:
                raise ValueError(
                    f"generator scenario `{scenario}` needs events of schema {', '.join(sorted(allowed))}, "
                    f"not {schema}"
                )
        if self.events.max_event_bytes < GENERATOR_MIN_EVENT_BYTES:
            raise ValueError(f"events.maxEventBytes must be at least {GENERATOR_MIN_EVENT_BYTES} with the generator on")
        return self

    @model_validator(mode="after")
    def _references(self) -> PipelineSpec:
        known_fields = (
            set(struct_fields(self.events.resolved_schema)) if self.events.json_schema is None
            else set((self.events.json_schema.get("properties") or {}).keys())
        )
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if DLQ_FEATURE in names:
            raise ValueError(f"the feature name `{DLQ_FEATURE}` is reserved (the dead-letter share)")
        metrics_by_feature = {f.name: {m.name for m in f.metrics} for f in self.features}
        for feature in self.features:
            for dim in feature.dimensions:
                if known_fields and dim not in known_fields:
                    raise ValueError(f"feature `{feature.name}`: dimension `{dim}` is not an event field")
            for metric in feature.metrics:
                for operand in (metric.field, metric.numerator, metric.denominator):
                    if operand is not None and known_fields and operand not in known_fields:
                        raise ValueError(
                            f"feature `{feature.name}` metric `{metric.name}`: `{operand}` is not an event field"
                        )
        detector_names = [d.name for d in self.detection.detectors]
        if len(set(detector_names)) != len(detector_names):
            raise ValueError("detector names must be unique")
        for det in self.detection.detectors:
            if det.feature == DLQ_FEATURE:
                continue  # its metrics are checked by DetectorSpec
            if det.feature not in metrics_by_feature:
                raise ValueError(f"detector `{det.name}`: no feature named `{det.feature}`")
            if det.metric not in metrics_by_feature[det.feature]:
                raise ValueError(f"detector `{det.name}`: feature `{det.feature}` has no metric `{det.metric}`")
        return self


class ObjectMeta(SpecModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=40)]
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Pipeline(SpecModel):
    api_version: Literal["adnomaly.io/v1alpha1"] = f"{API_GROUP}/{API_VERSION}"
    kind: Literal["Pipeline"] = KIND
    metadata: ObjectMeta
    spec: PipelineSpec = PipelineSpec()
    status: dict[str, Any] | None = Field(default=None, exclude=True)

    @property
    def name(self) -> str:
        return self.metadata.name


class SpecError(ValueError):
    """A Pipeline document that is not valid; the message names every bad field."""


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with a Pipeline document: where (keys and list indexes from the root) and why."""

    loc: tuple[str | int, ...]
    message: str

    @property
    def path(self) -> str:
        """The field in Kubernetes' notation, as the API server names it: `spec.features[0].window.slide`."""
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "(document)"


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Every error of a failed validation, with its location in the document (validator names dropped)."""
    return [
        FieldError(
            tuple(part for part in err["loc"] if not str(part).startswith("function-after")),
            err["msg"].removeprefix("Value error, "),
        )
        for err in exc.errors()
    ]


def format_errors(exc: ValidationError) -> str:
    return "\n".join(
        f"{'.'.join(str(part) for part in error.loc) or '(document)'}: {error.message}" for error in field_errors(exc)
    )


def pipeline_errors(document: Any) -> list[FieldError]:
    """What the model refuses in one Pipeline document (empty when it is valid)."""
    if not isinstance(document, dict):
        return [FieldError((), "a Pipeline document must be a YAML/JSON mapping")]
    try:
        Pipeline.model_validate(document)
    except ValidationError as exc:
        return field_errors(exc)
    return []


def parse_pipeline(document: Any) -> Pipeline:
    if not isinstance(document, dict):
        raise SpecError("a Pipeline document must be a YAML/JSON mapping")
    try:
        return Pipeline.model_validate(document)
    except ValidationError as exc:
        raise SpecError(format_errors(exc)) from None


def read_pipeline_document(path: str | Path) -> dict[str, Any]:
    """The one `kind: Pipeline` document of a YAML file, not validated yet."""
    text = Path(path).read_text()
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    pipelines = [d for d in documents if isinstance(d, dict) and d.get("kind") == KIND]
    if len(pipelines) != 1:
        raise SpecError(f"{path}: expected exactly one `kind: Pipeline` document, found {len(pipelines)}")
    return pipelines[0]


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate one Pipeline from a YAML file."""
    document = read_pipeline_document(path)
    try:
        return parse_pipeline(document)
    except SpecError as exc:
        raise SpecError(f"{path}:\n{exc}") from None
