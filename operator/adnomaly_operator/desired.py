"""Pipeline → what runs on Kubernetes (the plan, extended with what only this backend decides). Pure.

`adnomaly.plan.plan()` gives topics, which stores are managed (`managed_stores`) and every component's
config (generator, ingest, processor, lake sink, feature sink, online API, detector); here we add the
cluster endpoints (Strimzi's bootstrap Service, the managed MinIO's Service), the Flink features job's
config and state location, and where each secret comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adnomaly.config import ComponentConfig, SecretEnv
from adnomaly.plan import COMPONENT_MODULES, ComponentPlan, Endpoints, Plan, managed_stores, plan
from adnomaly.spec import ManagedStore, Pipeline

from adnomaly_operator.names import Names

METRICS_PORT = 9000
INGEST_PORT = 8080
SERVING_PORT = 8090
KAFKA_PORT = 9092
MINIO_PORT = 9000

__all__ = ["COMPONENT_MODULES", "KubePlan", "kube_plan"]  # COMPONENT_MODULES: the plan's, re-exported
HTTP_PORTS = {"ingest": INGEST_PORT, "serving": SERVING_PORT}  # components serving an HTTP API (+ probes)


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


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
class KubePlan:
    pipeline: Pipeline
    namespace: str
    names: Names
    plan: Plan
    components: dict[str, ComponentPlan]
    features: ComponentConfig | None  # the Flink job's config; None when the spec has no features
    stores: StoresPlan
    ingest_tokens: SecretKeyRef | None
    kafka_bootstrap: str
    kafka_managed: bool
    secret_env: dict[str, dict[str, SecretKeyRef]] = field(default_factory=dict)  # component → env → ref
    notes: tuple[tuple[str, str], ...] = ()  # the plan's conditions and this backend's own

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def deletion_policy(self) -> str:
        return self.pipeline.spec.deletion_policy

    @property
    def checkpoint_uri(self) -> str:
        """Base URI of the Flink job's checkpoints and savepoints."""
        if self.stores.s3 is not None:
            return f"s3://{self.stores.s3.bucket}/flink/{self.name}"
        uri = self.pipeline.spec.lake.uri
        return f"{uri.rstrip('/')}/flink/{self.name}" if uri else f"file:///tmp/flink/{self.name}"


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


def _derived(base: ComponentConfig, component: str) -> ComponentConfig:
    """A config with the shared sections (kafka, events, metrics) of `base`, for another component."""
    return base.model_copy(update={"component": component, "processor": None})


def _secret_env(component: str, stores: StoresPlan, ingest_tokens: SecretKeyRef | None) -> dict[str, SecretKeyRef]:
    """Each component gets only the secrets it uses."""
    env: dict[str, SecretKeyRef] = {}
    if stores.kafka_credentials is not None:
        env[SecretEnv.KAFKA_USERNAME], env[SecretEnv.KAFKA_PASSWORD] = stores.kafka_credentials
    if component == "ingest" and ingest_tokens is not None:
        env[SecretEnv.INGEST_TOKENS] = ingest_tokens
    if component in ("processor", "feature-sink", "detector"):
        env[SecretEnv.POSTGRES_DSN] = stores.postgres_dsn
    if component in ("feature-sink", "serving") and stores.redis_url is not None:
        env[SecretEnv.REDIS_URL] = stores.redis_url
    if component == "lake-sink" and stores.s3 is not None and stores.s3.access_key and stores.s3.secret_key:
        env[SecretEnv.S3_ACCESS_KEY], env[SecretEnv.S3_SECRET_KEY] = stores.s3.access_key, stores.s3.secret_key
    return env


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
    shared = base.components["processor"].config
    stores = _stores(pipeline, names, namespace, managed)
    notes = list(base.conditions)
    if spec.features and stores.s3 is None and spec.lake.uri is None:
        notes.append(("FlinkStateEphemeral", "no S3 and no lake uri: the features job keeps checkpoints in the pod"))

    ingest_tokens: SecretKeyRef | None = None
    if "ingest" in components:
        ref = spec.source.ingest.auth_secret_ref
        ingest_tokens = (
            SecretKeyRef(ref.name, ref.key or "tokens") if ref else SecretKeyRef(names.ingest_tokens, "tokens")
        )

    return KubePlan(
        pipeline=pipeline,
        namespace=namespace,
        names=names,
        plan=base,
        components=components,
        features=_derived(shared, "features") if spec.features else None,
        stores=stores,
        ingest_tokens=ingest_tokens,
        kafka_bootstrap=bootstrap,
        kafka_managed=kafka_managed,
        secret_env={c: _secret_env(c, stores, ingest_tokens) for c in components},
        notes=tuple(notes),
    )
