"""Rendered component configuration: what each data-plane process reads at start.

Components never read the Pipeline resource. The backend (operator or `adnomaly up`) renders one
`ComponentConfig` per component from the plan and hands it over as a JSON file (`--config PATH` or
`ADNOMALY_CONFIG`); on Kubernetes that file comes from a ConfigMap. Secrets are never part of it:
they arrive as environment variables (from Secrets on Kubernetes, from the state directory locally),
named in `SecretEnv`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adnomaly.detector.config import DetectorConfig
from adnomaly.sinks.config import FeatureSinkConfig, LakeConfig, ServingConfig


class SecretEnv:
    """Environment variables that carry secrets into components."""

    POSTGRES_DSN = "ADNOMALY_POSTGRES_DSN"
    REDIS_URL = "ADNOMALY_REDIS_URL"
    INGEST_TOKENS = "ADNOMALY_INGEST_TOKENS"  # one or more bearer tokens, comma or newline separated
    KAFKA_USERNAME = "ADNOMALY_KAFKA_USERNAME"  # SASL user; setting it turns SASL on (see kafka_client)
    KAFKA_PASSWORD = "ADNOMALY_KAFKA_PASSWORD"
    # Not secrets, but they travel with the Kafka credentials (same Secret/env on Kubernetes):
    KAFKA_SASL_MECHANISM = "ADNOMALY_KAFKA_SASL_MECHANISM"  # default SCRAM-SHA-512
    KAFKA_SECURITY_PROTOCOL = "ADNOMALY_KAFKA_SECURITY_PROTOCOL"  # default: SASL_PLAINTEXT with a username
    KAFKA_CA_FILE = "ADNOMALY_KAFKA_CA_FILE"  # PEM CA bundle that signs the brokers' TLS certificates
    INGEST_TOKENS_FILE = "ADNOMALY_INGEST_TOKENS_FILE"  # tokens in a file, re-read on change (rotation)
    S3_ACCESS_KEY = "ADNOMALY_S3_ACCESS_KEY"
    S3_SECRET_KEY = "ADNOMALY_S3_SECRET_KEY"
    # Alertmanager login (adnomaly.notify.sender): basic auth with a username, else a bearer token
    ALERTMANAGER_USERNAME = "ADNOMALY_ALERTMANAGER_USERNAME"
    ALERTMANAGER_PASSWORD = "ADNOMALY_ALERTMANAGER_PASSWORD"
    ALERTMANAGER_TOKEN = "ADNOMALY_ALERTMANAGER_TOKEN"


CONFIG_ENV = "ADNOMALY_CONFIG"


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicNames(ConfigModel):
    raw: str
    dlq: str
    features: str
    anomalies: str


class KafkaConfig(ConfigModel):
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    topics: TopicNames


class EventsConfig(ConfigModel):
    schema_name: str  # clickstream | signal | probe | download | custom
    json_schema: dict[str, Any] | None = None
    time_field: str
    id_field: str | None = None
    dimensions: list[str] = Field(default_factory=list)
    max_event_bytes: int
    max_future_skew_s: float
    dedup_window_s: float = 600.0  # see plan.dedup_window_ms: copies of an id within it are removed


class ScenarioScheduleConfig(ConfigModel):
    first_after_s: float
    every_s: float
    duration_s: float


class GeneratorConfig(ConfigModel):
    events_per_second: float
    seed: int
    invalid_rate: float
    scenarios: list[str] = Field(default_factory=list)
    scenario_schedule: ScenarioScheduleConfig | None = None  # None: the generator's defaults


class IngestConfig(ConfigModel):
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int


class ProcessorConfig(ConfigModel):
    group_id: str
    batch_size: int
    batch_timeout_s: float
    db_schema: str  # PostgreSQL schema that holds this pipeline's tables


class ComponentConfig(ConfigModel):
    """Everything one component needs; sections a component does not use are left out."""

    pipeline: str
    component: str
    kafka: KafkaConfig
    events: EventsConfig
    metrics_port: int | None = None  # None or 0: no metrics endpoint
    generator: GeneratorConfig | None = None
    ingest: IngestConfig | None = None
    processor: ProcessorConfig | None = None
    lake: LakeConfig | None = None
    feature_sink: FeatureSinkConfig | None = None
    serving: ServingConfig | None = None
    detector: DetectorConfig | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True, indent=2)


def load_config(path: str | Path | None = None) -> ComponentConfig:
    """Read a component's config from `path`, or from the file named by $ADNOMALY_CONFIG."""
    target = path or os.environ.get(CONFIG_ENV)
    if not target:
        raise SystemExit(f"no component config: pass --config PATH or set {CONFIG_ENV}")
    return ComponentConfig.model_validate_json(Path(target).read_text())


def secret_from_env(name: str, *, required: bool = True) -> str | None:
    value = os.environ.get(name)
    if required and not value:
        raise SystemExit(f"missing secret: environment variable {name} is not set")
    return value
