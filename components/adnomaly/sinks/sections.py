"""Pipeline → the config sections of the lake sink, feature sink and online API. Pure, for plan().

The lake's table root is `<lake root>/<pipeline>/events`: `spec.lake.uri` when given, otherwise the
pipeline's S3 bucket (a managed MinIO whose endpoint the backend knows, or an external S3 endpoint).
"""

from __future__ import annotations

from adnomaly.durations import parse_duration
from adnomaly.feast.layout import INT64_METRICS
from adnomaly.sinks.config import FeatureSinkConfig, FeatureView, LakeConfig, ServingConfig
from adnomaly.spec import Pipeline

TABLE = "events"


def feast_project(pipeline: str) -> str:
    """The Feast project of a pipeline's features: its name with `_` for `-` (Feast 0.67 refuses hyphens in a
    project name; pipeline names have no `_`, so two pipelines never share a project)."""
    return pipeline.replace("-", "_")


def feature_views(pipeline: Pipeline) -> list[FeatureView]:
    return [
        FeatureView(
            name=feature.name,
            dimensions=list(feature.dimensions),
            metrics=[metric.name for metric in feature.metrics],
            ttl_s=parse_duration(feature.ttl),
            int64_metrics=[metric.name for metric in feature.metrics if metric.agg in INT64_METRICS],
        )
        for feature in pipeline.spec.features
    ]


def lake_section(pipeline: Pipeline, *, managed_s3_endpoint: str | None) -> LakeConfig | None:
    """The lake sink's section; None when the lake is disabled.

    `managed_s3_endpoint` is where the backend's MinIO answers (needed unless the spec names a `uri` or
    an external S3).
    """
    lake = pipeline.spec.lake
    if not lake.enabled:
        return None
    endpoint: str | None = None
    region = "us-east-1"
    if lake.uri is not None:
        root = lake.uri.rstrip("/")
    else:
        s3 = lake.s3
        bucket = s3.bucket if s3 is not None else "adnomaly-data"
        root = f"s3://{bucket}"
        if s3 is not None and s3.external is not None:
            endpoint, region = s3.external.endpoint, s3.external.region
        else:
            if managed_s3_endpoint is None:
                raise ValueError("the lake uses a managed MinIO but the backend gave no S3 endpoint")
            endpoint = managed_s3_endpoint
    return LakeConfig(
        group_id=f"{pipeline.name}-lake-sink",
        uri=f"{root}/{pipeline.name}/{TABLE}",
        s3_endpoint=endpoint,
        s3_region=region,
        partitioning=lake.partitioning,
    )


def feature_sink_section(pipeline: Pipeline, *, db_schema: str) -> FeatureSinkConfig | None:
    """The feature sink's section; None when the pipeline declares no features."""
    views = feature_views(pipeline)
    if not views:
        return None
    return FeatureSinkConfig(
        group_id=f"{pipeline.name}-feature-sink", db_schema=db_schema, features=views,
        feast_project=feast_project(pipeline.name),
    )  # fmt: skip


def serving_section(
    pipeline: Pipeline, *, host: str = "0.0.0.0", port: int = 8090, db_schema: str | None = None
) -> ServingConfig | None:
    """The serving component's section; None when the pipeline declares no features."""
    views = feature_views(pipeline)
    if not views:
        return None
    return ServingConfig(
        host=host, port=port, feast_project=feast_project(pipeline.name), features=views, db_schema=db_schema,
        cache_keys=pipeline.spec.feature_store.serving_cache_keys,
    )  # fmt: skip
