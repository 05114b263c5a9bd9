"""The pipeline's Feast repository as a ConfigMap (`<pipeline>-feast`: feature_store.yaml and features.py), the
same files `adnomaly feast` writes (`adnomaly.feast.repo`), for a notebook or a training job to mount.

A ConfigMap holds no secrets, so passwords stay `${VAR}` placeholders that Feast expands from the reader's
environment: with the managed stores the hosts are the pipeline's Services and only
ADNOMALY_FEAST_REDIS_PASSWORD (Secret `<pipeline>-redis`, key `password`) and ADNOMALY_FEAST_PG_PASSWORD
(Secret `<pipeline>-postgres`, key `password`) are needed; with external stores every connection is a
placeholder (`adnomaly.feast.repo.ENV_CONNECTIONS`).
"""

from __future__ import annotations

from adnomaly.feast.repo import ENV_CONNECTIONS, FeastConnections, feast_repo

from adnomaly_operator.desired import KubePlan
from adnomaly_operator.render.common import STAGE_BASE, Desired, RenderContext, metadata, obj


def feast_connections(kp: KubePlan) -> FeastConnections:
    stores = kp.stores
    connections = ENV_CONNECTIONS
    if stores.redis is not None:
        host = f"{kp.names.redis}.{kp.namespace}.svc"
        connections = FeastConnections(**{
            **connections.__dict__, "redis": f"{host}:6379,password=${{ADNOMALY_FEAST_REDIS_PASSWORD}}"})  # fmt: skip
    if stores.postgres is not None:
        connections = FeastConnections(**{
            **connections.__dict__, "pg_host": f"{kp.names.postgres}.{kp.namespace}.svc", "pg_port": "5432",
            "pg_database": "adnomaly", "pg_user": "adnomaly", "pg_password": "${ADNOMALY_FEAST_PG_PASSWORD}",
            "pg_sslmode": "disable",
        })  # fmt: skip
    return connections


def render_feast(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    files = feast_repo(kp.pipeline, kp.plan.db_schema, feast_connections(kp))
    if not files:
        return []
    cm = obj("v1", "ConfigMap", metadata(kp, ctx, kp.names.feast_config_map, "feast"), data=files)
    return [Desired(cm, STAGE_BASE)]
