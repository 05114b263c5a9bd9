"""End to end on kind: operators, our images through skaffold, a Pipeline, and its data everywhere it should be.

    make e2e        (needs Docker, kind and skaffold; helm and kubectl come from tools/*/build.sh)

Steps: create a kind cluster; install cert-manager, Strimzi, the Flink Kubernetes Operator and
kube-prometheus-stack with their Helm charts; `skaffold run -p kind` (builds the three images, loads them
into kind, installs charts/adnomaly); upgrade the release to turn on its ServiceMonitor and PrometheusRule;
apply manifests/pipeline.yaml and the ad-fraud example; wait for both Pipelines to be Ready; then check rows
in PostgreSQL, anomalies, Parquet objects in MinIO, features in Redis, and Grafana serving our dashboards
through a port-forward. The cluster is deleted afterwards (ADNOMALY_E2E_KEEP=1 keeps it).

Where Docker, kind or skaffold is missing the module is skipped, naming what is missing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from adnomaly.plan import db_schema_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "adnomaly"
CONTEXT = f"kind-{CLUSTER}"
SYSTEM_NAMESPACE = "adnomaly-system"
PIPELINE_NAMESPACE = "adnomaly-e2e"
PIPELINES = {"clickstream": ROOT / "manifests/pipeline.yaml",
             "ad-fraud": ROOT / "manifests/examples/clickstream-ad-fraud.yaml"}
# Pinned versions of what the suite installs around Adnomaly.
KIND_NODE_IMAGE = "kindest/node:v1.34.0"
CERT_MANAGER = "https://github.com/cert-manager/cert-manager/releases/download/v1.18.2/cert-manager.yaml"
STRIMZI_CHART = ("oci://quay.io/strimzi-helm/strimzi-kafka-operator", "0.48.0")
FLINK_REPO = "https://downloads.apache.org/flink/flink-kubernetes-operator-1.13.0/"
FLINK_CHART = ("flink-operator/flink-kubernetes-operator", "1.13.0")
PROMETHEUS_REPO = "https://prometheus-community.github.io/helm-charts"
PROMETHEUS_CHART = ("prometheus-community/kube-prometheus-stack", "79.0.0")
READY_TIMEOUT_S = 1800

T = TypeVar("T")


def _missing_tools() -> list[str]:
    missing = [tool for tool in ("docker", "kind", "skaffold") if shutil.which(tool) is None]
    if "docker" not in missing:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            missing.append(f"a running Docker daemon (`docker info`: {done.stderr.strip()[:200]})")
    return missing


_MISSING = _missing_tools()
if _MISSING:
    _REASON = f"kind e2e suite skipped: missing {', '.join(_MISSING)}"
    print(_REASON, file=sys.stderr)
    pytest.skip(_REASON, allow_module_level=True)


def run(*argv: str, stdin: str | None = None, timeout: float = 900, check: bool = True) -> str:
    print("+", " ".join(argv), flush=True)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{output}")
    return done.stdout


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 10) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


class Cluster:
    def __init__(self, kubectl: Path, helm: Path) -> None:
        self.kubectl_bin, self.helm_bin = str(kubectl), str(helm)

    def kubectl(self, *args: str, **kw: Any) -> str:
        return run(self.kubectl_bin, f"--context={CONTEXT}", *args, **kw)

    def helm(self, *args: str, **kw: Any) -> str:
        return run(self.helm_bin, f"--kube-context={CONTEXT}", *args, **kw)

    def exec(self, pipeline: str, component: str, script: str) -> str:
        """Run `script` in the store's pod (credentials are expanded there, from its own environment)."""
        # the operator names each managed store's StatefulSet <pipeline>-<store> (adnomaly_operator.names)
        return self.kubectl("exec", "-n", PIPELINE_NAMESPACE, f"statefulset/{pipeline}-{component}", "--",
                            "sh", "-c", script)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    from adnomaly.services.helm import ensure_helm
    from adnomaly.services.kube import ensure_binaries

    c = Cluster(ensure_binaries() / "kubectl", ensure_helm())
    run("kind", "delete", "cluster", "--name", CLUSTER, check=False)
    run("kind", "create", "cluster", "--name", CLUSTER, "--image", KIND_NODE_IMAGE, "--wait", "5m")
    try:
        yield c
    finally:
        if os.environ.get("ADNOMALY_E2E_KEEP") != "1":
            run("kind", "delete", "cluster", "--name", CLUSTER, check=False)


@pytest.fixture(scope="module")
def operators(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "--server-side", "-f", CERT_MANAGER)
    cluster.kubectl("wait", "-n", "cert-manager", "--for=condition=Available", "deployment", "--all", "--timeout=300s")
    chart, version = STRIMZI_CHART
    cluster.helm("upgrade", "--install", "strimzi", chart, "--version", version, "-n", "strimzi",
                 "--create-namespace", "--set", "watchAnyNamespace=true", "--wait", "--timeout", "10m")
    cluster.helm("repo", "add", "flink-operator", FLINK_REPO, "--force-update")
    cluster.helm("repo", "add", "prometheus-community", PROMETHEUS_REPO, "--force-update")
    chart, version = FLINK_CHART
    cluster.helm("upgrade", "--install", "flink-operator", chart, "--version", version, "-n", "flink",
                 "--create-namespace", "--wait", "--timeout", "10m")
    stack_values = yaml.safe_load((ROOT / "charts/adnomaly-stack/values.yaml").read_text())["kubePrometheusStack"]
    stack_values.pop("enabled")
    chart, version = PROMETHEUS_CHART
    cluster.helm("upgrade", "--install", "monitoring", chart, "--version", version, "-n", "monitoring",
                 "--create-namespace", "-f", "-", "--wait", "--timeout", "15m", stdin=yaml.safe_dump(stack_values))
    return cluster


@pytest.fixture(scope="module")
def installed(operators: Cluster) -> Cluster:
    run("skaffold", "run", "-p", "kind", f"--kube-context={CONTEXT}", timeout=3600)
    operators.kubectl("rollout", "status", "-n", SYSTEM_NAMESPACE, "deployment/adnomaly", "--timeout=300s")
    # an upgrade that turns on the Prometheus Operator objects, keeping skaffold's image values
    operators.helm("upgrade", "adnomaly", str(ROOT / "charts/adnomaly"), "-n", SYSTEM_NAMESPACE, "--reuse-values",
                   "--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.prometheusRule.enabled=true",
                   "--wait")
    return operators


@pytest.fixture(scope="module")
def pipelines(installed: Cluster) -> Cluster:
    installed.kubectl("create", "namespace", PIPELINE_NAMESPACE)
    for path in PIPELINES.values():
        installed.kubectl("apply", "-n", PIPELINE_NAMESPACE, "-f", str(path))
    for name in PIPELINES:
        installed.kubectl("wait", "-n", PIPELINE_NAMESPACE, f"pipeline/{name}", "--for=condition=Ready",
                          f"--timeout={READY_TIMEOUT_S}s", timeout=READY_TIMEOUT_S + 60)
    return installed


def _psql(cluster: Cluster, pipeline: str, sql: str) -> int:
    # each Pipeline's tables live in a schema of its own (adnomaly.plan.db_schema_name)
    options = f"-c search_path={db_schema_name(pipeline)}"
    out = cluster.exec(pipeline, "postgres",
                       f'PGOPTIONS="{options}" psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "{sql}"')
    return int(out.strip() or 0)


def test_pipelines_are_ready_with_every_component(pipelines: Cluster) -> None:
    for name in PIPELINES:
        body = json.loads(pipelines.kubectl("get", "-n", PIPELINE_NAMESPACE, f"pipeline/{name}", "-o", "json"))
        status = body["status"]
        assert status["phase"] == "Ready" and status["observedGeneration"] == body["metadata"]["generation"]
        assert status["components"], status


def test_events_are_stored_in_postgresql(pipelines: Cluster) -> None:
    for name in PIPELINES:
        wait_for(lambda name=name: _psql(pipelines, name, "SELECT count(*) FROM events") > 0, 600,
                 f"events rows in {name}'s PostgreSQL")


def test_anomalies_are_detected(pipelines: Cluster) -> None:
    wait_for(lambda: _psql(pipelines, "ad-fraud", "SELECT count(*) FROM anomalies") > 0, 1200,
             "anomalies of the ad-fraud pipeline (click-fraud bursts)")


def test_parquet_files_land_in_minio(pipelines: Cluster) -> None:
    script = ('mc --config-dir /tmp/mc alias set local http://127.0.0.1:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"'
              ' >/dev/null && mc --config-dir /tmp/mc ls --recursive local/ | grep -c "\\.parquet$" || true')
    wait_for(lambda: int(pipelines.exec("ad-fraud", "minio", script).strip() or 0) > 0, 1200,
             "Parquet objects in MinIO")


def test_features_are_in_redis(pipelines: Cluster) -> None:
    wait_for(lambda: int(pipelines.exec("ad-fraud", "redis", "redis-cli DBSIZE").split()[-1]) > 0, 900,
             "feature keys in Redis")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_grafana_serves_our_dashboards(pipelines: Cluster) -> None:
    secret = json.loads(pipelines.kubectl("get", "secret", "-n", "monitoring", "monitoring-grafana", "-o", "json"))
    user, password = (base64.b64decode(secret["data"][k]).decode() for k in ("admin-user", "admin-password"))
    port = _free_port()
    forward = subprocess.Popen(
        [pipelines.kubectl_bin, f"--context={CONTEXT}", "port-forward", "-n", "monitoring", "svc/monitoring-grafana",
         f"{port}:80"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
