"""The features job as a Flink Kubernetes Operator `FlinkDeployment` (`flink.apache.org/v1beta1`). Pure.

A PyFlink application (the image built from flink/Dockerfile): the Flink operator starts
`org.apache.flink.client.python.PythonDriver` from the flink-python jar, which runs
`/opt/adnomaly/job/adnomaly_flink_job.py --config <mounted ConfigMap>/config.json` with the job's own venv.
That config is the `FlinkJob` compiled by `adnomaly.features.sql.compile_job` — the same pure function the
local backend uses — so both backends run the very same SQL. It holds no secret: Kafka and S3 credentials
reach the pods as `secretKeyRef` environment variables (S3: the default AWS credential chain).

Upgrades go through a savepoint; checkpoints and savepoints live in S3 (MinIO by default). Pods run
non-root (the image's `flink` user) with a read-only root filesystem: what Flink writes (logs, the S3
plugin link, temporary files) goes to emptyDirs.
"""

from __future__ import annotations

from adnomaly_operator.desired import FLINK_COMPONENT, KubePlan
from adnomaly_operator.names import ANNOTATION_CONFIG_HASH, LABEL_TIER
from adnomaly_operator.render.common import (
    CONTAINER_SECURITY,
    STAGE_APPS,
    STAGE_BASE,
    Desired,
    Obj,
    RenderContext,
    content_hash,
    metadata,
    obj,
    pod_security,
    scratch_volume,
    secret_env,
)
from adnomaly_operator.render.components import CONFIG_DIR, component_env, config_key

FLINK_API = "flink.apache.org/v1beta1"
FLINK_VERSION = "v2_2"  # the FlinkDeployment CRD's enum value for Flink 2.2.x
FLINK_RELEASE = "2.2.1"  # flink/Dockerfile's base image
FLINK_UID = 9999  # the Flink image's `flink` user
PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
PYTHON_JAR = f"local:///opt/flink/opt/flink-python-{FLINK_RELEASE}.jar"
JOB_PYTHON = "/opt/adnomaly/venv/bin/python"  # PyFlink's own venv (flink/requirements.lock)
JOB_FILE = "/opt/adnomaly/job/adnomaly_flink_job.py"
JOB_CONFIG = f"{CONFIG_DIR}/config.json"
S3_PLUGIN = f"flink-s3-fs-presto-{FLINK_RELEASE}.jar"
MAIN_CONTAINER = "flink-main-container"  # the Flink operator's name for the container it fills in
# Flink's ports, fixed (native mode picks random TaskManager ports otherwise) so NetworkPolicies can name them.
FLINK_PORTS = {
    "jobmanager.rpc.port": 6123, "blob.server.port": 6124, "taskmanager.rpc.port": 6122,
    "taskmanager.data.port": 6121, "rest.port": 8081,
}
JOB_MANAGER = {"cpu": 0.5, "memory": "1024m"}
TASK_MANAGER = {"cpu": 1.0, "memory": "2048m"}

# What the JobManager does through the Kubernetes API in native mode: create and delete its TaskManager
# pods, keep leader election and job metadata in ConfigMaps (high availability), and own everything by
# its Deployment (read; finalizers to set blockOwnerDeletion); in application mode it deletes that
# Deployment once the job ends. Explicit verbs, no wildcard.
FLINK_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["configmaps"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments/finalizers"], "verbs": ["update"]},
]


def job_args(config_path: str = JOB_CONFIG) -> list[str]:
    return ["-pyclientexec", JOB_PYTHON, "-pyexec", JOB_PYTHON, "-py", JOB_FILE, "--config", config_path]


def _flink_configuration(kp: KubePlan) -> dict[str, str]:
    assert kp.features is not None
    job = kp.features.configuration  # checkpointing, state backend, parallelism: compiled with the SQL
    conf = {
        **job,
        # the Flink operator takes savepoints (upgradeMode: savepoint) into the savepoint directory; keep
        # the older key names too for operators built against Flink 1.x
        "state.checkpoints.dir": job["execution.checkpointing.dir"],
        "state.savepoints.dir": job["execution.checkpointing.savepoint-dir"],
        "taskmanager.numberOfTaskSlots": "2",
        "high-availability.type": "kubernetes",
        "high-availability.storageDir": f"{kp.checkpoint_uri}/ha",
        "kubernetes.operator.savepoint.history.max.count": "5",
        "kubernetes.operator.job.upgrade.last-state-fallback.enabled": "true",
        "io.tmp.dirs": "/tmp",
        **{key: str(port) for key, port in FLINK_PORTS.items()},
    }
    conf.update(_autoscaler(kp))
    s3 = kp.stores.s3
    if s3 is not None:
        conf["s3.path.style.access"] = "true"
        if s3.endpoint:
            conf["s3.endpoint"] = s3.endpoint
        conf["s3.endpoint.region"] = s3.region
    return conf


def _autoscaler(kp: KubePlan) -> dict[str, str]:
    """The Flink Kubernetes Operator's job autoscaler: it sets each vertex's parallelism from busy time and
    backlog, within 1 .. the raw topic's partitions. Its overrides live outside this spec, so re-applying
    the FlinkDeployment does not undo them. `pipeline.max-parallelism` (the key groups) is left alone:
    changing it would make the job's savepoints unusable."""
    auto = kp.flink_autoscaler
    if auto is None:
        return {}
    return {
        "job.autoscaler.enabled": "true",
        "job.autoscaler.vertex.min-parallelism": "1",
        "job.autoscaler.vertex.max-parallelism": str(auto.max_parallelism),
        "job.autoscaler.target.utilization": repr(auto.target_utilization),
        "job.autoscaler.stabilization.interval": auto.stabilization,
        "job.autoscaler.metrics.window": auto.metrics_window,
    }


def _rbac(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    """Native mode: the JobManager creates TaskManager pods, so its account needs these rights."""
    name = kp.names.flink_service_account
    sa = obj("v1", "ServiceAccount", metadata(kp, ctx, name, "flink"))
    role = obj("rbac.authorization.k8s.io/v1", "Role", metadata(kp, ctx, name, "flink"), rules=FLINK_RULES)
    binding = obj("rbac.authorization.k8s.io/v1", "RoleBinding", metadata(kp, ctx, name, "flink"),
                  roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                  subjects=[{"kind": "ServiceAccount", "name": name, "namespace": kp.namespace}])
    return [Desired(sa, STAGE_BASE), Desired(role, STAGE_BASE), Desired(binding, STAGE_BASE)]


def _env(kp: KubePlan) -> list[Obj]:
    env: list[Obj] = component_env(kp, FLINK_COMPONENT)  # Kafka user (password by secretKeyRef)
    s3 = kp.stores.s3
    if s3 is not None and s3.access_key is not None and s3.secret_key is not None:
        env += [secret_env("AWS_ACCESS_KEY_ID", s3.access_key), secret_env("AWS_SECRET_ACCESS_KEY", s3.secret_key)]
    env.append({"name": "ENABLE_BUILT_IN_PLUGINS", "value": S3_PLUGIN})
    env.append({"name": "PYTHONDONTWRITEBYTECODE", "value": "1"})
    return env


def render_flink(kp: KubePlan, ctx: RenderContext) -> list[Desired]:
    if kp.features is None:
        return []
    meta = metadata(kp, ctx, kp.names.flink, "features")
    job_json = kp.features.to_json().decode()
    pod_template = {
        "metadata": {
            "labels": {**meta["labels"], LABEL_TIER: "flink"},
            "annotations": {ANNOTATION_CONFIG_HASH: content_hash(job_json)},
        },
        "spec": {
            "securityContext": pod_security(FLINK_UID),
            "containers": [{
                "name": MAIN_CONTAINER,
                "env": _env(kp),
                "securityContext": {**CONTAINER_SECURITY, "runAsUser": FLINK_UID},
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "log", "mountPath": "/opt/flink/log"},
                    {"name": "plugins", "mountPath": "/opt/flink/plugins"},  # ENABLE_BUILT_IN_PLUGINS links here
                ],
            }],
            "volumes": [
                {"name": "config", "configMap": {
                    "name": kp.names.config_map,
                    "items": [{"key": config_key(FLINK_COMPONENT), "path": "config.json"}],
                }},
                scratch_volume("tmp", "1Gi"),
                scratch_volume("log", "256Mi"),
                scratch_volume("plugins", "16Mi"),
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
        "jobManager": {"replicas": 1, "resource": dict(JOB_MANAGER)},
        "taskManager": {"resource": dict(TASK_MANAGER)},
        "job": {
            "jarURI": PYTHON_JAR,
            "entryClass": PYTHON_DRIVER,
            "args": job_args(),
            "parallelism": int(kp.features.configuration["parallelism.default"]),
            "upgradeMode": "savepoint",
            "state": "running",
            "allowNonRestoredState": False,
        },
    })
    return [*_rbac(kp, ctx), Desired(deployment, STAGE_APPS, status_key="flink")]
