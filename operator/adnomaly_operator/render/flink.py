"""The features job as a Flink Kubernetes Operator `FlinkDeployment` (`flink.apache.org/v1beta1`). Pure.

A PyFlink application: the operator starts `org.apache.flink.client.python.PythonDriver` from the
flink-python jar, which runs `python -m adnomaly.features.job` with the job's rendered config. Upgrades
go through a savepoint; checkpoints and savepoints live in S3 (MinIO by default). S3 credentials come
from Secrets as environment variables (the S3 filesystem's default AWS credential chain), never from
flinkConfiguration.
"""

from __future__ import annotations

from adnomaly_operator.desired import KubePlan
from adnomaly_operator.names import ANNOTATION_CONFIG_HASH, LABEL_TIER
from adnomaly_operator.render.common import (
    CONTAINER_SECURITY,
    POD_SECURITY,
    STAGE_APPS,
    STAGE_BASE,
    Desired,
    Obj,
    RenderContext,
    content_hash,
    metadata,
    obj,
    scratch_volume,
    secret_env,
)
from adnomaly_operator.render.components import CONFIG_DIR, config_key

FLINK_API = "flink.apache.org/v1beta1"
FLINK_VERSION = "v1_20"
FLINK_RELEASE = "1.20.3"
PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
PYTHON_JAR = f"local:///opt/flink/opt/flink-python-{FLINK_RELEASE}.jar"
JOB_MODULE = "adnomaly.features.job"
MAIN_CONTAINER = "flink-main-container"  # the Flink operator's name for the container it fills in


def _flink_configuration(kp: KubePlan) -> dict[str, str]:
    base = kp.checkpoint_uri
    conf = {
        "taskmanager.numberOfTaskSlots": "2",
        "state.backend.type": "rocksdb",
        "state.backend.incremental": "true",
        "execution.checkpointing.interval": "60s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": f"{base}/checkpoints",
        "execution.checkpointing.savepoint-dir": f"{base}/savepoints",
        "state.checkpoints.dir": f"{base}/checkpoints",
        "state.savepoints.dir": f"{base}/savepoints",
        "high-availability.type": "kubernetes",
        "high-availability.storageDir": f"{base}/ha",
        "kubernetes.operator.savepoint.history.max.count": "5",
        "kubernetes.operator.job.upgrade.last-state-fallback.enabled": "true",
    }
    s3 = kp.stores.s3
    if s3 is not None:
        conf["s3.path.style.access"] = "true"
        if s3.endpoint:
            conf["s3.endpoint"] = s3.endpoint
        conf["s3.endpoint.region"] = s3.region
    return conf


def _rbac(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    """Native mode: the JobManager creates TaskManager pods, so its account needs these rights."""
    name = kp.names.flink_service_account
    sa = obj("v1", "ServiceAccount", metadata(kp, ctx, name, "flink"))
    role = obj("rbac.authorization.k8s.io/v1", "Role", metadata(kp, ctx, name, "flink"), rules=[
        {"apiGroups": [""], "resources": ["pods", "configmaps", "services"], "verbs": ["*"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/finalizers"], "verbs": ["*"]},
    ])
    binding = obj("rbac.authorization.k8s.io/v1", "RoleBinding", metadata(kp, ctx, name, "flink"),
                  roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                  subjects=[{"kind": "ServiceAccount", "name": name, "namespace": kp.namespace}])
    return [Desired(sa, STAGE_BASE), Desired(role, STAGE_BASE), Desired(binding, STAGE_BASE)]


def render_flink(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    if kp.features is None:
        return []
    meta = metadata(kp, ctx, kp.names.flink, "features")
    env: list[Obj] = [{"name": "ADNOMALY_CONFIG", "value": f"{CONFIG_DIR}/config.json"}]
    s3 = kp.stores.s3
    if s3 is not None and s3.access_key is not None and s3.secret_key is not None:
        env += [secret_env("AWS_ACCESS_KEY_ID", s3.access_key), secret_env("AWS_SECRET_ACCESS_KEY", s3.secret_key)]
    env.append({"name": "ENABLE_BUILT_IN_PLUGINS", "value": f"flink-s3-fs-presto-{FLINK_RELEASE}.jar"})
    topics = kp.plan.topics
    pod_template = {
        "metadata": {
            "labels": {**meta["labels"], LABEL_TIER: "flink"},
            "annotations": {ANNOTATION_CONFIG_HASH: content_hash(kp.features.to_json())},
        },
        "spec": {
            "securityContext": POD_SECURITY,
            "containers": [{
                "name": MAIN_CONTAINER,
                "env": env,
                "securityContext": {**CONTAINER_SECURITY, "readOnlyRootFilesystem": False},  # Flink writes conf/
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }],
            "volumes": [
                {"name": "config", "configMap": {
                    "name": kp.names.config_map,
                    "items": [{"key": config_key("features"), "path": "config.json"}],
                }},
                scratch_volume("tmp", "1Gi"),
            ],
        },
    }
    deployment = obj(FLINK_API, "FlinkDeployment", meta, spec={
        "image": ctx.images.flink,
        "imagePullPolicy": "IfNotPresent",
        "flinkVersion": FLINK_VERSION,
        "mode": "native",
        "serviceAccount": kp.names.flink_service_account,
        "flinkConfiguration": _flink_configuration(kp),
        "podTemplate": pod_template,
        "jobManager": {"replicas": 1, "resource": {"cpu": 0.5, "memory": "1024m"}},
        "taskManager": {"resource": {"cpu": 1.0, "memory": "2048m"}},
        "job": {
            "jarURI": PYTHON_JAR,
            "entryClass": PYTHON_DRIVER,
            "args": ["-pym", JOB_MODULE, "--config", f"{CONFIG_DIR}/config.json"],
            "parallelism": max(1, topics["raw"].partitions if "raw" in topics else 1),
            "upgradeMode": "savepoint",
            "state": "running",
            "allowNonRestoredState": False,
        },
    })
    return [*_rbac(kp, ctx), Desired(deployment, STAGE_APPS, status_key="flink")]
