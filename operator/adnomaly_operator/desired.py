"""Pipeline → what runs on Kubernetes (the plan, extended with what only this backend decides). Pure.

`adnomaly.plan.plan()` gives topics, which stores are managed (`managed_stores`) and every component's
config (generator, ingest, processor, lake sink, feature sink, online API, detector); here we add the
cluster endpoints (Strimzi's bootstrap Service, the managed MinIO's Service), the Flink features job
(compiled by `adnomaly.features.sql.compile_job`, as the local backend does, with S3 state), one Kafka
user per Kafka client of the managed Kafka (SCRAM-SHA-512, ACLs from `adnomaly.kafka_acls`), and where
each secret comes from (always a Secret reference, never a value): the detector's Alertmanager login too
(optional keys of the spec's `credentialsSecretRef`: `username` and `password`, or `token`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from adnomaly.config import ComponentConfig, SecretEnv
from adnomaly.features.sql import FlinkJob, JobOptions, compile_job
from adnomaly.kafka_acls import AclRule, NoKafkaAccess, component_acls, features_job_acls
from adnomaly.plan import (
    COMPONENT_MODULES,
    ComponentPlan,
    Endpoints,
    Plan,
    TopicPlan,
    events_config,
    managed_stores,
    plan,
)
from adnomaly.spec import ManagedStore, Pipeline

from adnomaly_operator.names import Names

METRICS_PORT = 9000
INGEST_PORT = 8080
SERVING_PORT = 8090
KAFKA_PORT = 9092  # the managed Kafka's SCRAM-SHA-512 listener (SASL_PLAINTEXT), what components use
KAFKA_TLS_PORT = 9093  # its TLS listener (SASL_SSL, the cluster CA), for clients that must encrypt
MINIO_PORT = 9000
FLINK_COMPONENT = "features"  # the Flink job's name among the pipeline's Kafka users and config keys
FLINK_PARALLELISM_CAP = 4

# Ingest tokens reach the ingest pods as a mounted Secret: a rotated Secret reaches the running pods
# (the kubelet refreshes the file; the ingest API re-reads it), so two tokens can be valid during a rotation.
INGEST_TOKENS_DIR = "/var/run/secrets/adnomaly/ingest"
INGEST_TOKENS_FILE = f"{INGEST_TOKENS_DIR}/tokens"
SCRAM = "SCRAM-SHA-512"
MANAGED_KAFKA_PROTOCOL = "SASL_PLAINTEXT"

__all__ = ["COMPONENT_MODULES", "KubePlan", "kube_plan"]  # COMPONENT_MODULES: the plan's, re-exported
HTTP_PORTS = {"ingest": INGEST_PORT, "serving": SERVING_PORT}  # components serving an HTTP API (+ probes)


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str
    optional: bool = False  # the pod starts without the variable when the Secret lacks the key


@dataclass(frozen=True)
class ManagedStorePlan:
    size: str
    storage_class: str | None


@dataclass(frozen=True)
class S3Plan:
    endpoint: str | None  # None: AWS (region endpoint)
    region: str
    bucket: str
    access_key: SecretKeyRef | None
    secret_key: SecretKeyRef | None


@dataclass(frozen=True)
class StoresPlan:
    postgres: ManagedStorePlan | None
    postgres_dsn: SecretKeyRef
    minio: ManagedStorePlan | None
    s3: S3Plan | None  # the lake's (and the Flink job's) S3, managed or external; None without S3
    redis: ManagedStorePlan | None
    redis_url: SecretKeyRef | None
    kafka_credentials: tuple[SecretKeyRef, SecretKeyRef] | None


@dataclass(frozen=True)
class KafkaUserPlan:
    """A component's SCRAM user on the managed Kafka; Strimzi puts its password into a Secret of the same name."""

    component: str
    name: str
    acls: tuple[AclRule, ...]  # adnomaly.kafka_acls: the same rules the local security tests apply

    @property
    def password(self) -> SecretKeyRef:
        return SecretKeyRef(self.name, "password")


@dataclass(frozen=True)
class KafkaAdminPlan:
    """How the operator itself reaches an external Kafka whose topics it manages (`manageTopics`): the
    bootstrap servers, the configured security protocol and the same credentials Secret the components
    get (`StoresPlan.kafka_credentials`); the Secret is read at sync time, never stored in the plan."""

    bootstrap: str
    security_protocol: str
    credentials: tuple[SecretKeyRef, SecretKeyRef] | None  # (username, password)
    topics: tuple[TopicPlan, ...]


@dataclass(frozen=True)
class FlinkAutoscalerPlan:
    """The Flink Kubernetes Operator's job autoscaler for the features job (`components.features.autoscaler`)."""

    max_parallelism: int  # of any vertex; at most the raw topic's partitions
    target_utilization: float
    stabilization: str  # a spec duration (`5m`): Flink reads the same units
    metrics_window: str


@dataclass(frozen=True)
class KubePlan:
    pipeline: Pipeline
    namespace: str
    names: Names
    plan: Plan
    components: dict[str, ComponentPlan]
    features: FlinkJob | None  # the Flink job's config (SQL + options); None when the spec has no features
    stores: StoresPlan
    ingest_tokens: SecretKeyRef | None
    kafka_bootstrap: str
    kafka_managed: bool
    secret_env: dict[str, dict[str, SecretKeyRef]] = field(default_factory=dict)  # component → env → ref
    plain_env: dict[str, dict[str, str]] = field(default_factory=dict)  # component → env → non-secret value
    kafka_users: dict[str, KafkaUserPlan] = field(default_factory=dict)  # component (or "features") → user
    notes: tuple[tuple[str, str], ...] = ()  # the plan's conditions and this backend's own
    kafka_admin: KafkaAdminPlan | None = None  # external Kafka with `manageTopics`: topics via the Admin API
    flink_autoscaler: FlinkAutoscalerPlan | None = None

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def topics(self) -> tuple[TopicPlan, ...]:
        """The pipeline's topics as the operator keeps them (names, partitions, replicas, config), from
        `adnomaly.plan.plan_topics`: KafkaTopic CRs on the managed Kafka, the Admin API on an external one
        with `manageTopics`. Both paths read this one set."""
        return tuple(self.plan.topics.values())

    @property
    def deletion_policy(self) -> str:
        return self.pipeline.spec.deletion_policy

    @property
    def checkpoint_uri(self) -> str:
        """Base URI of the Flink job's checkpoints and savepoints."""
        return checkpoint_uri(self.pipeline, self.stores)


def _store(store: ManagedStore | None) -> ManagedStorePlan:
    storage = (store or ManagedStore()).storage
    return ManagedStorePlan(storage.size, storage.storage_class_name)


def _stores(pipeline: Pipeline, names: Names, namespace: str, managed: frozenset[str]) -> StoresPlan:
    spec = pipeline.spec
    pg = spec.storage.postgres
    if pg.external is not None:
        postgres, dsn = None, SecretKeyRef(pg.external.dsn_secret_ref.name, pg.external.dsn_secret_ref.key or "dsn")
    else:
        postgres, dsn = _store(pg.managed), SecretKeyRef(names.postgres, "dsn")

    s3spec = spec.lake.s3
    minio: ManagedStorePlan | None = None
    s3: S3Plan | None = None
    bucket = s3spec.bucket if s3spec is not None else "adnomaly-data"
    if "minio" in managed:
        minio = _store(s3spec.managed if s3spec is not None else None)
        s3 = S3Plan(
            minio_endpoint(names, namespace), "us-east-1", bucket,
            SecretKeyRef(names.minio, "accessKey"), SecretKeyRef(names.minio, "secretKey"),
        )
    elif s3spec is not None and s3spec.external is not None:
        ref = s3spec.external.credentials_secret_ref
        s3 = S3Plan(
            s3spec.external.endpoint, s3spec.external.region, bucket,
            SecretKeyRef(ref.name, "accessKey") if ref else None,
            SecretKeyRef(ref.name, "secretKey") if ref else None,
        )

    rd = spec.feature_store.redis
    redis: ManagedStorePlan | None = None
    redis_url: SecretKeyRef | None = None
    if rd.external is not None:
        redis_url = SecretKeyRef(rd.external.url_secret_ref.name, rd.external.url_secret_ref.key or "url")
    elif "redis" in managed:
        redis, redis_url = _store(rd.managed), SecretKeyRef(names.redis, "url")

    kafka_credentials = None
    external_kafka = spec.kafka.external
    if external_kafka is not None and external_kafka.credentials_secret_ref is not None:
        ref = external_kafka.credentials_secret_ref
        kafka_credentials = (SecretKeyRef(ref.name, "username"), SecretKeyRef(ref.name, "password"))
    return StoresPlan(postgres, dsn, minio, s3, redis, redis_url, kafka_credentials)


def minio_endpoint(names: Names, namespace: str) -> str:
    return f"http://{names.minio}.{namespace}.svc:{MINIO_PORT}"


def uses_kafka(config: ComponentConfig) -> bool:
    try:
        component_acls(config)
    except NoKafkaAccess:
        return False
    return True


def _with_protocol(cp: ComponentPlan, protocol: str) -> ComponentPlan:
    kafka = cp.config.kafka.model_copy(update={"security_protocol": protocol})
    return replace(cp, config=cp.config.model_copy(update={"kafka": kafka}))


def _kafka_env(user: KafkaUserPlan | None, stores: StoresPlan) -> tuple[dict[str, SecretKeyRef], dict[str, str]]:
    """Kafka credentials: the component's own SCRAM user on the managed Kafka, or the external Kafka's
    credentials Secret."""
    if user is not None:
        return {SecretEnv.KAFKA_PASSWORD: user.password}, {
            SecretEnv.KAFKA_USERNAME: user.name, SecretEnv.KAFKA_SASL_MECHANISM: SCRAM,
            SecretEnv.KAFKA_SECURITY_PROTOCOL: MANAGED_KAFKA_PROTOCOL,
        }
    if stores.kafka_credentials is not None:
        username, password = stores.kafka_credentials
        return {SecretEnv.KAFKA_USERNAME: username, SecretEnv.KAFKA_PASSWORD: password}, {}
    return {}, {}


def _secret_env(component: str, stores: StoresPlan) -> dict[str, SecretKeyRef]:
    """Each component gets only the (non-Kafka) secrets it uses (ingest tokens: a mounted file, see below)."""
    env: dict[str, SecretKeyRef] = {}
    if component in ("processor", "feature-sink", "detector", "serving"):  # serving: the anomalies API
        env[SecretEnv.POSTGRES_DSN] = stores.postgres_dsn
    if component in ("feature-sink", "serving") and stores.redis_url is not None:
        env[SecretEnv.REDIS_URL] = stores.redis_url
    if component == "lake-sink" and stores.s3 is not None and stores.s3.access_key and stores.s3.secret_key:
        env[SecretEnv.S3_ACCESS_KEY], env[SecretEnv.S3_SECRET_KEY] = stores.s3.access_key, stores.s3.secret_key
    return env


def alertmanager_env(pipeline: Pipeline) -> dict[str, SecretKeyRef]:
    """The detector's Alertmanager login, from the spec's `credentialsSecretRef`: basic auth (`username`,
    `password`) or a bearer `token`, whichever keys the Secret has."""
    am = pipeline.spec.detection.notify.alertmanager
    if am is None or am.credentials_secret_ref is None:
        return {}
    name = am.credentials_secret_ref.name
    return {
        SecretEnv.ALERTMANAGER_USERNAME: SecretKeyRef(name, "username", optional=True),
        SecretEnv.ALERTMANAGER_PASSWORD: SecretKeyRef(name, "password", optional=True),
        SecretEnv.ALERTMANAGER_TOKEN: SecretKeyRef(name, "token", optional=True),
    }


def checkpoint_uri(pipeline: Pipeline, stores: StoresPlan) -> str:
    """Base URI of the Flink job's checkpoints and savepoints."""
    if stores.s3 is not None:
        return f"s3://{stores.s3.bucket}/flink/{pipeline.name}"
    uri = pipeline.spec.lake.uri
    return f"{uri.rstrip('/')}/flink/{pipeline.name}" if uri else f"file:///tmp/flink/{pipeline.name}"


def flink_job_options(pipeline: Pipeline, stores: StoresPlan) -> JobOptions:
    """How the features job runs on Kubernetes: RocksDB state, checkpoints and savepoints in S3. Under the
    Flink autoscaler this parallelism is where the job starts."""
    base = checkpoint_uri(pipeline, stores)
    raw_partitions = pipeline.spec.kafka.topics.raw.partitions
    autoscaler, _ = flink_autoscaler(pipeline)
    cap = min(FLINK_PARALLELISM_CAP, raw_partitions, autoscaler.max_parallelism if autoscaler else raw_partitions)
    return JobOptions(
        checkpoint_dir=f"{base}/checkpoints", savepoint_dir=f"{base}/savepoints",
        parallelism=max(1, cap), state_backend="rocksdb",
    )


def flink_autoscaler(pipeline: Pipeline) -> tuple[FlinkAutoscalerPlan | None, tuple[tuple[str, str], ...]]:
    """The features job's autoscaler (None: fixed parallelism) and a note when the spec's maxParallelism
    was capped: a Kafka source reads each partition in one subtask, more would idle."""
    spec = pipeline.spec
    auto = spec.components.features.autoscaler
    if auto is None or not spec.features:
        return None, ()
    partitions = spec.kafka.topics.raw.partitions
    requested = auto.max_parallelism if auto.max_parallelism is not None else partitions
    notes: tuple[tuple[str, str], ...] = ()
    if requested > partitions:
        notes = (("ReplicasCapped", f"features autoscaler maxParallelism capped at {partitions} (the raw topic's "
                                    f"partition count); {requested} requested"),)
    plan_ = FlinkAutoscalerPlan(min(requested, partitions), auto.target_utilization, auto.stabilization,
                                auto.metrics_window)
    return plan_, notes


def _kafka_users(
    names: Names, components: dict[str, ComponentPlan], features: FlinkJob | None
) -> dict[str, KafkaUserPlan]:
    """One SCRAM user per Kafka client of the managed Kafka, with the ACLs `adnomaly.kafka_acls` derives."""
    users = {
        name: KafkaUserPlan(name, names.kafka_user(name), component_acls(cp.config))
        for name, cp in components.items() if uses_kafka(cp.config)
    }
    if features is not None:
        topics = components["processor"].config.kafka.topics
        acls = features_job_acls(topics.raw, topics.features, features.consumer_groups,
                                 features.transactional_id_prefixes)
        users[FLINK_COMPONENT] = KafkaUserPlan(FLINK_COMPONENT, names.kafka_user(FLINK_COMPONENT), acls)
    return users


def _environment(
    components: dict[str, ComponentPlan], features: FlinkJob | None, kafka_users: dict[str, KafkaUserPlan],
    stores: StoresPlan, ingest_tokens: SecretKeyRef | None, notify: dict[str, SecretKeyRef],
) -> tuple[dict[str, dict[str, SecretKeyRef]], dict[str, dict[str, str]]]:
    """Per component (and the Flink job): secret env vars (as refs) and non-secret ones (as values)."""
    secret_env: dict[str, dict[str, SecretKeyRef]] = {}
    plain_env: dict[str, dict[str, str]] = {}
    for component in [*components, *([FLINK_COMPONENT] if features is not None else [])]:
        client = component == FLINK_COMPONENT or uses_kafka(components[component].config)
        kafka_secret, kafka_plain = _kafka_env(kafka_users.get(component), stores) if client else ({}, {})
        secret_env[component] = {**kafka_secret, **(_secret_env(component, stores) if component in components else {})}
        detector = components[component].config.detector if component in components else None
        if detector is not None and detector.notify is not None:
            secret_env[component].update(notify)
        planned = components[component].env if component in components else {}  # e.g. OTEL_* from the spec
        plain_env[component] = {**planned, **kafka_plain}
        if component == "ingest" and ingest_tokens is not None:  # the file of the mounted tokens Secret
            plain_env[component][SecretEnv.INGEST_TOKENS_FILE] = INGEST_TOKENS_FILE
    return secret_env, plain_env


def kube_plan(pipeline: Pipeline, namespace: str) -> KubePlan:
    spec = pipeline.spec
    names = Names(pipeline.name)
    managed = managed_stores(pipeline)
    kafka_managed = "kafka" in managed
    bootstrap = (
        f"{names.kafka_bootstrap_service}.{namespace}.svc:{KAFKA_PORT}" if kafka_managed
        else spec.kafka.external.bootstrap_servers  # type: ignore[union-attr]
    )
    base = plan(pipeline, Endpoints(
        kafka_bootstrap=bootstrap, ingest_port=INGEST_PORT, serving_port=SERVING_PORT,
        s3_endpoint=minio_endpoint(names, namespace) if "minio" in managed else None,
    ))
    components = dict(base.components)
    if kafka_managed:  # the managed Kafka authenticates every client (SCRAM-SHA-512)
        components = {name: _with_protocol(cp, MANAGED_KAFKA_PROTOCOL) for name, cp in components.items()}
    shared = components["processor"].config
    stores = _stores(pipeline, names, namespace, managed)
    notes = list(base.conditions)
    if spec.features and stores.s3 is None and spec.lake.uri is None:
        notes.append(("FlinkStateEphemeral", "no S3 and no lake uri: the features job keeps checkpoints in the pod"))
    autoscaler, autoscaler_notes = flink_autoscaler(pipeline)
    notes += autoscaler_notes

    ingest_tokens: SecretKeyRef | None = None
    if "ingest" in components:
        ref = spec.source.ingest.auth_secret_ref
        ingest_tokens = (
            SecretKeyRef(ref.name, ref.key or "tokens") if ref else SecretKeyRef(names.ingest_tokens, "tokens")
        )

    features: FlinkJob | None = None
    if spec.features:
        features = compile_job(pipeline, shared.kafka, events_config(pipeline), flink_job_options(pipeline, stores))
    kafka_users = _kafka_users(names, components, features) if kafka_managed else {}
    secret_env, plain_env = _environment(components, features, kafka_users, stores, ingest_tokens,
                                         alertmanager_env(pipeline))

    return KubePlan(
        pipeline=pipeline,
        namespace=namespace,
        names=names,
        plan=base,
        components=components,
        features=features,
        stores=stores,
        ingest_tokens=ingest_tokens,
        kafka_bootstrap=bootstrap,
        kafka_managed=kafka_managed,
        secret_env=secret_env,
        plain_env=plain_env,
        kafka_users=kafka_users,
        notes=tuple(notes),
        kafka_admin=_kafka_admin(pipeline, stores, base),
        flink_autoscaler=autoscaler,
    )


def _kafka_admin(pipeline: Pipeline, stores: StoresPlan, base: Plan) -> KafkaAdminPlan | None:
    external = pipeline.spec.kafka.external
    if external is None or not external.manage_topics:
        return None
    return KafkaAdminPlan(
        external.bootstrap_servers, external.security_protocol, stores.kafka_credentials,
        tuple(base.topics.values()),
    )
