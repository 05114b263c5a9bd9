"""With the platform Adnomaly is built for: Strimzi's Kafka, the Flink Kubernetes Operator running the
features job, the Prometheus stack's Grafana — on a provider that installs them (kind; tests/e2e/providers.py).

    ADNOMALY_E2E_PROVIDER=kind make e2e      (needs Docker and kind)

The chart is the session's release (conftest `operator_release`), upgraded to turn on its ServiceMonitor,
PrometheusRule and dashboards; manifests/pipeline.yaml and the ad-fraud example are applied as a user would
(managed Kafka through Strimzi, features through a FlinkDeployment); then rows in PostgreSQL, anomalies,
Parquet objects in MinIO, features in Redis and Grafana serving our dashboards through a port-forward.

Where the provider lacks these operators (the real node here: their images cannot be pulled) the module
skips, naming what is missing; the rest of the e2e suite (test_pods.py) runs on every provider.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from adnomaly.plan import db_schema_name
from adnomaly.services.helm import CHART, ensure_helm, run_helm

from tests.e2e.checks import SYSTEM_NAMESPACE, describe_pods, get_json, wait_for
from tests.e2e.providers import PLATFORM, E2ECluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "adnomaly-platform"
PIPELINES = {"clickstream": ROOT / "manifests/pipeline.yaml",
             "ad-fraud": ROOT / "manifests/examples/clickstream-ad-fraud.yaml"}
READY_TIMEOUT_S = 1800


@pytest.fixture(scope="module")
def platform(cluster: E2ECluster) -> E2ECluster:
    if missing := PLATFORM - cluster.platform:
        pytest.skip(f"the {cluster.name} provider's cluster has no {', '.join(sorted(missing))} operator "
                    "(ADNOMALY_E2E_PROVIDER=kind installs them)")
    return cluster


@pytest.fixture(scope="module")
def pipelines(platform: E2ECluster, operator_release: str) -> Iterator[E2ECluster]:
    run_helm(ensure_helm(), "upgrade", operator_release, str(CHART), *platform.helm_args(), "-n", SYSTEM_NAMESPACE,
             "--reuse-values", "--set", "monitoring.serviceMonitor.enabled=true",
             "--set", "monitoring.prometheusRule.enabled=true", "--set", "dashboards.enabled=true",
             "--wait", "--timeout=5m", timeout=360)
    platform.kubectl("create", "namespace", NAMESPACE)
    for path in PIPELINES.values():
        platform.kubectl("apply", "-n", NAMESPACE, "-f", str(path))
    for name in PIPELINES:
        done = platform.kubectl("wait", "-n", NAMESPACE, f"pipeline/{name}", "--for=condition=Ready",
                                f"--timeout={READY_TIMEOUT_S}s", timeout=READY_TIMEOUT_S + 60, check=False)
        if done.returncode != 0:
            raise AssertionError(f"Pipeline {name} not Ready: {done.stderr}\n{describe_pods(platform, NAMESPACE)}")
    yield platform
    platform.kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)


def in_store(cluster: E2ECluster, pipeline: str, store: str, script: str) -> str:
    """Run `script` in a managed store's pod (credentials are expanded there, from its own environment);
    the operator names each store's StatefulSet <pipeline>-<store> (adnomaly_operator.names)."""
    return cluster.kubectl("exec", "-n", NAMESPACE, f"statefulset/{pipeline}-{store}", "--", "sh", "-c", script,
                           timeout=120).stdout


def count_rows(cluster: E2ECluster, pipeline: str, table: str) -> int:
    options = f"-c search_path={db_schema_name(pipeline)}"  # each Pipeline's tables live in a schema of its own
    query = f"SELECT count(*) FROM {table}"
    out = in_store(cluster, pipeline, "postgres",
                   f'PGOPTIONS="{options}" psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "{query}"')
    return int(out.strip() or 0)


def test_pipelines_are_ready_with_every_component(pipelines: E2ECluster) -> None:
    for name in PIPELINES:
        body = get_json(pipelines, "-n", NAMESPACE, f"pipeline/{name}")
        status = body["status"]
        assert status["phase"] == "Ready" and status["observedGeneration"] == body["metadata"]["generation"]
        assert status["components"], status


def test_events_are_stored_in_postgresql(pipelines: E2ECluster) -> None:
    for name in PIPELINES:
        wait_for(lambda name=name: count_rows(pipelines, name, "events") > 0, 600,
                 f"events rows in {name}'s PostgreSQL", interval=10)


def test_anomalies_are_detected(pipelines: E2ECluster) -> None:
    wait_for(lambda: count_rows(pipelines, "ad-fraud", "anomalies") > 0, 1200,
             "anomalies of the ad-fraud pipeline (click-fraud bursts)", interval=10)


def test_parquet_files_land_in_minio(pipelines: E2ECluster) -> None:
    script = ('mc --config-dir /tmp/mc alias set local http://127.0.0.1:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"'
              ' >/dev/null && mc --config-dir /tmp/mc ls --recursive local/ | grep -c "\\.parquet$" || true')
    wait_for(lambda: int(in_store(pipelines, "ad-fraud", "minio", script).strip() or 0) > 0, 1200,
             "Parquet objects in MinIO", interval=10)


def test_features_from_the_flink_operators_job_are_in_redis(pipelines: E2ECluster) -> None:
    wait_for(lambda: int(in_store(pipelines, "ad-fraud", "redis", "redis-cli DBSIZE").split()[-1]) > 0, 900,
             "feature keys in Redis", interval=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_grafana_serves_our_dashboards(pipelines: E2ECluster) -> None:
    secret = get_json(pipelines, "secret", "-n", "monitoring", "monitoring-grafana")
    user, password = (base64.b64decode(secret["data"][k]).decode() for k in ("admin-user", "admin-password"))
    port = _free_port()
    forward = subprocess.Popen([*pipelines.kubectl_argv(), "port-forward", "-n", "monitoring",
                                "svc/monitoring-grafana", f"{port}:80"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        expected = {json.loads(p.read_text())["title"] for p in (ROOT / "dashboards").glob("*.json")}

        def titles() -> set[str]:
            try:
                found = httpx.get(f"http://127.0.0.1:{port}/api/search", params={"type": "dash-db"},
                                  auth=(user, password), timeout=10)
            except httpx.HTTPError:
                return set()
            return {d["title"] for d in found.json()} if found.status_code == 200 else set()

        wait_for(lambda: expected <= titles(), 300, f"Grafana dashboards {sorted(expected)}", interval=5)
    finally:
        forward.terminate()
        forward.wait(10)
