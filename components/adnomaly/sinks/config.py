"""Rendered config sections of the lake sink, the feature sink and the online feature API.

These are sections of a component's `ComponentConfig` (like `processor`), named `lake`, `feature_sink`
and `serving`. They import nothing from `adnomaly.config`, so that `adnomaly.config` can import them.
`load_section` reads a component config file holding one of these sections whether or not
`ComponentConfig` declares it yet. `adnomaly.sinks.sections` derives them from a Pipeline (pure).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

LAKE_SECTION = "lake"
FEATURE_SINK_SECTION = "feature_sink"
SERVING_SECTION = "serving"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureView(_Section):
    """What the feature sink and the online API know of one feature (a "view")."""

    name: str
    dimensions: list[str] = Field(min_length=1)
    metrics: list[str] = Field(min_length=1)
    ttl_s: float = Field(gt=0)
    int64_metrics: list[str] = Field(
        default_factory=list, description="Metrics typed Int64 in Feast (counts); the others are Float64"
    )


class LakeConfig(_Section):
    """The lake sink: raw topic → Parquet files partitioned by event time, in S3 or a directory."""

    group_id: str
    uri: str = Field(description="Table root: s3://bucket/prefix or file:///absolute/path")
    s3_endpoint: str | None = Field(default=None, description="e.g. http://minio:9000; None: AWS's own")
    s3_region: str = "us-east-1"
    partitioning: Literal["hourly", "daily"] = "hourly"
    compression: Literal["zstd", "snappy", "none"] = "zstd"
    flush_events: int = Field(default=50_000, ge=1, description="Most messages in one file set per partition")
    flush_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="Raw bytes buffered per partition")
    flush_interval_s: float = Field(default=60.0, gt=0, description="Oldest buffered message waits this long")
    max_buffer_bytes: int = Field(default=128 * 1024 * 1024, ge=1024, description="All partitions together")
    consume_batch: int = Field(default=5000, ge=1)

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if value.startswith("file://"):
            if not value.removeprefix("file://").startswith("/"):
                raise ValueError("a file:// lake URI needs an absolute path (file:///data/lake)")
        elif value.startswith("s3://"):
            if not value.removeprefix("s3://").split("/", 1)[0]:
                raise ValueError("an s3:// lake URI needs a bucket (s3://bucket/prefix)")
        else:
            raise ValueError("the lake URI must start with s3:// or file://")
        return value.rstrip("/")


class FeatureSinkConfig(_Section):
    """The feature sink: features topic → Redis (latest window per entity) and PostgreSQL (history)."""

    group_id: str
    db_schema: str
    features: list[FeatureView]
    feast_project: str = Field(description="Redis holds the latest windows in Feast's layout for this Feast project")
    batch_size: int = Field(default=1000, ge=1)
    batch_timeout_s: float = Field(default=0.5, gt=0)


class ServingConfig(_Section):
    """The online feature API (latest feature values from Redis) and the anomalies API and console (from
    PostgreSQL, the tables of schema `db_schema`) over HTTP."""

    host: str = "0.0.0.0"
    port: int = Field(default=8090, ge=1, le=65535)
    feast_project: str = Field(description="Redis holds the latest windows in Feast's layout for this Feast project")
    features: list[FeatureView]
    db_schema: str | None = Field(default=None, description="None: features only, no anomalies API or console")
    cache_keys: int = Field(
        default=10_000, ge=0,
        description="Redis keys whose lookup answers the API keeps while Redis tracks them (client-side caching, "
        "adnomaly.serving.tracked_replies); 0: every lookup asks Redis",
    )  # fmt: skip


SectionT = TypeVar("SectionT", bound=_Section)


def load_section(path: str | Path | None, section: str, model: type[SectionT]) -> tuple[Any, SectionT]:
    """(ComponentConfig, the section) from a component config file (`path` or $ADNOMALY_CONFIG).

    Works whether `ComponentConfig` declares the section or not: an undeclared one is taken out before
    the rest is validated.
    """
    from adnomaly.config import CONFIG_ENV, ComponentConfig

    target = path or os.environ.get(CONFIG_ENV)
    if not target:
        raise SystemExit(f"no component config: pass --config PATH or set {CONFIG_ENV}")
    try:
        document = json.loads(Path(target).read_text())
    except OSError as exc:
        raise SystemExit(f"cannot read the component config {target}: {exc.strerror}") from None
    except ValueError as exc:
        raise SystemExit(f"{target}: not valid JSON: {exc}") from None
    if not isinstance(document, dict) or section not in document:
        raise SystemExit(f"{target}: the component config has no `{section}` section")
    data = document[section]
    if section not in ComponentConfig.model_fields:
        document = {key: value for key, value in document.items() if key != section}
    try:
        return ComponentConfig.model_validate(document), model.model_validate(data)
    except ValidationError as exc:
        raise SystemExit(f"{target}: invalid component config:\n{exc}") from None


def render_config(base: Any, section: str, value: _Section) -> str:
    """The JSON of a ComponentConfig with `section` set (for tests and backends, declared or not)."""
    document = json.loads(base.to_json())
    document[section] = value.model_dump(mode="json")
    return json.dumps(document, indent=2)
