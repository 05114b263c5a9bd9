"""Managed stores: PostgreSQL, MinIO (+ a Job that creates the bucket) and Redis, one StatefulSet
each with a headless Service and a generated Secret — or nothing when the spec points at external ones.
Pure: generated secrets are rendered as metadata plus a recipe; the operator fills them in once.
"""

from __future__ import annotations

from adnomaly_operator.desired import KubePlan, ManagedStorePlan, SecretKeyRef
from adnomaly_operator.names import LABEL_TIER, selector_labels
from adnomaly_operator.render.common import (
    CONTAINER_SECURITY,
    STAGE_BASE,
    STAGE_STORES,
    Desired,
    Obj,
    RenderContext,
    SecretRecipe,
    metadata,
    obj,
    pod_security,
    scratch_volume,
    secret_env,
)

STORE_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def generated_secret(kp: KubePlan, ctx: RenderContext, name: str, component: str, recipe: SecretRecipe) -> Desired:
    """A Secret the operator creates once (random contents), then only keeps its metadata in shape."""
    secret = obj("v1", "Secret", metadata(kp, ctx, name, component), type="Opaque")
    return Desired(secret, STAGE_BASE, retain=True, recipe=recipe)


def _service(kp: KubePlan, ctx: RenderContext, name: str, component: str, ports: list[Obj]) -> Desired:
    svc = obj("v1", "Service", metadata(kp, ctx, name, component, tier="store"), spec={
        "clusterIP": "None",
        "selector": selector_labels(kp.name, component),
        "ports": ports,
    })
    return Desired(svc, STAGE_BASE)


def _statefulset(
    kp: KubePlan, ctx: RenderContext, name: str, component: str, store: ManagedStorePlan, *, uid: int,
    container: Obj, data_path: str, extra_volumes: list[Obj] | None = None, extra_mounts: list[Obj] | None = None,
) -> Desired:
    selector = selector_labels(kp.name, component)
    meta = metadata(kp, ctx, name, component, tier="store")
    claim_spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": store.size}}}
    if store.storage_class:
        claim_spec["storageClassName"] = store.storage_class
    mounts = [{"name": "data", "mountPath": data_path}, {"name": "tmp", "mountPath": "/tmp"}, *(extra_mounts or [])]
    sts = obj("apps/v1", "StatefulSet", meta, spec={
        "serviceName": name,
        "replicas": 1,
        "selector": {"matchLabels": selector},
        "persistentVolumeClaimRetentionPolicy": {
            "whenDeleted": "Delete" if kp.deletion_policy == "Delete" else "Retain",
            "whenScaled": "Retain",
        },
        "template": {
            "metadata": {"labels": {**meta["labels"], LABEL_TIER: "store"}},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": pod_security(uid),
                "terminationGracePeriodSeconds": 30,
                "containers": [{
                    "imagePullPolicy": "IfNotPresent",
                    "resources": STORE_RESOURCES,
                    "securityContext": {**CONTAINER_SECURITY, "runAsUser": uid},
                    **container,
                    "volumeMounts": mounts,
                }],
                "volumes": [scratch_volume(), *(extra_volumes or [])],
            },
        },
        "volumeClaimTemplates": [{
            "metadata": {"name": "data", "labels": meta["labels"]},
            "spec": claim_spec,
        }],
    })
    return Desired(sts, STAGE_STORES, status_key=component)


def _postgres(kp: KubePlan, ctx: RenderContext, store: ManagedStorePlan) -> list[Desired]:
    name = kp.names.postgres
    host = f"{name}.{kp.namespace}.svc"
    recipe = SecretRecipe(
        random={"password": 32},
        templates={"dsn": f"postgresql://adnomaly:{{password}}@{host}:5432/adnomaly", "username": "adnomaly"},
    )
    ready = {"exec": {"command": ["pg_isready", "-U", "adnomaly", "-d", "adnomaly", "-h", "127.0.0.1"]},
             "periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": "postgres",
        "image": ctx.images.postgres,
        # Options for postgres itself (the official image passes arguments that start with "-" to postgres).
        # New WAL segments are not zero-filled: until checkpoints recycle old ones, filling and fsyncing each
        # new 16 MB file held every commit behind it (40-50 ms every few seconds at 10,000 events/s, see
        # adnomaly.services.postgres); each commit's fdatasync still makes its WAL durable.
        "args": ["-c", "wal_init_zero=off"],
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "env": [
            {"name": "POSTGRES_USER", "value": "adnomaly"},
            {"name": "POSTGRES_DB", "value": "adnomaly"},
            secret_env("POSTGRES_PASSWORD", SecretKeyRef(name, "password")),
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "readinessProbe": ready,
        "livenessProbe": {**ready, "failureThreshold": 6, "initialDelaySeconds": 30},
    }
    return [
        generated_secret(kp, ctx, name, "postgres", recipe),
        _service(kp, ctx, name, "postgres", [{"name": "postgres", "port": 5432, "targetPort": "postgres"}]),
        _statefulset(
            kp, ctx, name, "postgres", store, uid=999, container=container, data_path="/var/lib/postgresql/data",
            extra_volumes=[scratch_volume("run", "16Mi")],
            extra_mounts=[{"name": "run", "mountPath": "/var/run/postgresql"}],
        ),
    ]


def _minio(kp: KubePlan, ctx: RenderContext, store: ManagedStorePlan, bucket: str) -> list[Desired]:
    name = kp.names.minio
    host = f"{name}.{kp.namespace}.svc"
    recipe = SecretRecipe(
        random={"accessKey": 20, "secretKey": 40},
        # `mc` reads its alias from MC_HOST_<alias>: credentials never appear on a command line
        templates={"mcHost": f"http://{{accessKey}}:{{secretKey}}@{host}:9000"},
        alphanumeric=True,
    )
    container = {
        "name": "minio",
        "image": ctx.images.minio,
        "args": ["server", "/data", "--address", ":9000", "--console-address", ":9001", "--certs-dir", "/tmp/certs"],
        "ports": [{"name": "s3", "containerPort": 9000}, {"name": "console", "containerPort": 9001}],
        "env": [
            secret_env("MINIO_ROOT_USER", SecretKeyRef(name, "accessKey")),
            secret_env("MINIO_ROOT_PASSWORD", SecretKeyRef(name, "secretKey")),
            {"name": "HOME", "value": "/tmp"},
        ],
        "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": "s3"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/minio/health/live", "port": "s3"}, "periodSeconds": 10,
                          "failureThreshold": 6},
    }
    job_meta = metadata(kp, ctx, kp.names.bucket_job, "minio", tier="job")
    job = obj("batch/v1", "Job", job_meta, spec={
        "backoffLimit": 20,
        "template": {
            "metadata": {"labels": job_meta["labels"]},
            "spec": {
                "restartPolicy": "OnFailure",
                "automountServiceAccountToken": False,
                "securityContext": pod_security(),
                "containers": [{
                    "name": "create-bucket",
                    "image": ctx.images.minio_client,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["mc", "--config-dir", "/tmp/mc", "mb", "--ignore-existing", f"minio/{bucket}"],
                    # mc resolves its home before it reads --config-dir, and falls back to running
                    # `getent` when HOME is unset (found on a real node: a minimal image has no getent)
                    "env": [secret_env("MC_HOST_minio", SecretKeyRef(name, "mcHost")),
                            {"name": "HOME", "value": "/tmp"}],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                    "securityContext": CONTAINER_SECURITY,
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [scratch_volume()],
            },
        },
    })
    return [
        generated_secret(kp, ctx, name, "minio", recipe),
        _service(kp, ctx, name, "minio", [
            {"name": "s3", "port": 9000, "targetPort": "s3"},
            {"name": "console", "port": 9001, "targetPort": "console"},
        ]),
        _statefulset(kp, ctx, name, "minio", store, uid=1000, container=container, data_path="/data"),
        Desired(job, STAGE_STORES, status_key="bucket"),
    ]


def _redis(kp: KubePlan, ctx: RenderContext, store: ManagedStorePlan) -> list[Desired]:
    name = kp.names.redis
    host = f"{name}.{kp.namespace}.svc"
    recipe = SecretRecipe(
        random={"password": 32},
        templates={
            "url": f"redis://:{{password}}@{host}:6379/0",
            # the password reaches redis-server through its config file, never its command line
            "redis.conf": "requirepass {password}\ndir /data\nappendonly yes\nport 6379\n",
        },
    )
    ping = {"exec": {"command": ["redis-cli", "-h", "127.0.0.1", "ping"]}, "periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": "redis",
        "image": ctx.images.redis,
        "command": ["redis-server", "/etc/redis/redis.conf"],
        "ports": [{"name": "redis", "containerPort": 6379}],
        "env": [secret_env("REDISCLI_AUTH", SecretKeyRef(name, "password"))],
        "readinessProbe": ping,
        "livenessProbe": {**ping, "failureThreshold": 6},
    }
    conf_items = [{"key": "redis.conf", "path": "redis.conf"}]
    conf_volume = {"name": "conf", "secret": {"secretName": name, "items": conf_items}}
    return [
        generated_secret(kp, ctx, name, "redis", recipe),
        _service(kp, ctx, name, "redis", [{"name": "redis", "port": 6379, "targetPort": "redis"}]),
        _statefulset(
            kp, ctx, name, "redis", store, uid=999, container=container, data_path="/data",
            extra_volumes=[conf_volume], extra_mounts=[{"name": "conf", "mountPath": "/etc/redis", "readOnly": True}],
        ),
    ]


def render_stores(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    stores = kp.stores
    out: list[Desired] = []
    if stores.postgres is not None:
        out += _postgres(kp, ctx, stores.postgres)
    if stores.minio is not None and stores.s3 is not None:
        out += _minio(kp, ctx, stores.minio, stores.s3.bucket)
    if stores.redis is not None:
        out += _redis(kp, ctx, stores.redis)
    return out
