"""Namespaced mode on the real control plane: the operator runs with exactly the chart's namespaced RBAC
(its ServiceAccount's token, no admin rights), brings a Pipeline in its namespace to Ready — so the rules
are enough — and leaves a Pipeline in another namespace alone."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from adnomaly.services.helm import ensure_helm, template
from adnomaly.services.kube import KubeControlPlane
from adnomaly_operator.names import LABEL_PIPELINE
from adnomaly_operator.simulate import SimulatorThread
from adnomaly_operator.testing import OperatorProcess

from tests.operator.operator_harness import REPO, apply, delete_pipelines, get, install_crds, items, wait_phase

pytestmark = [pytest.mark.operator, pytest.mark.slow]

EXAMPLE = REPO / "manifests" / "pipeline.yaml"


def service_account_kubeconfig(kube: KubeControlPlane, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as `account` (a bound token), nothing else."""
    admin = yaml.safe_load(Path(kube.kubeconfig).read_text())
    token = kube.kubectl("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip()
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account,
                                                   "namespace": namespace}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def other_namespace(kube: KubeControlPlane) -> Iterator[str]:
    name = f"other-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def test_a_namespaced_operator_reconciles_its_namespace_with_the_charts_rbac_only(
    kube: KubeControlPlane, namespace: str, other_namespace: str, tmp_path: Path
) -> None:
    install_crds(kube)
    release = f"ns-{uuid.uuid4().hex[:6]}"
    manifest = template(ensure_helm(), f"--set=operator.watchNamespaces={{{namespace}}}", "--set=operator.replicas=0",
                        release=release, namespace=namespace)
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)
    account = f"{release}-adnomaly"
    config = service_account_kubeconfig(kube, namespace, account, tmp_path / "operator.kubeconfig")
    assert "yes" not in kube.kubectl("auth", "can-i", "create", "secrets", "-n", other_namespace,
                                     f"--as=system:serviceaccount:{namespace}:{account}", check=False).stdout
    operator = OperatorProcess(SimpleNamespace(kubeconfig=config), tmp_path, namespace=namespace)  # type: ignore[arg-type]
    try:
        with SimulatorThread(kube.kubeconfig, namespace=namespace):
            operator.start()
            apply(kube, namespace, EXAMPLE)
            apply(kube, other_namespace, EXAMPLE)
            st = wait_phase(kube, namespace, "clickstream", "Ready", 240.0)
            ready, total = st["readyComponents"].split("/")
            assert ready == total
            users = items(kube, namespace, "kafkausers.kafka.strimzi.io", f"{LABEL_PIPELINE}=clickstream")
            assert users, "no KafkaUsers"
            time.sleep(3)  # the other namespace's Pipeline stays untouched: no status, no finalizer, no objects
            other = get(kube, other_namespace, "pipeline", "clickstream")
            assert "status" not in other and not other["metadata"].get("finalizers"), json.dumps(other)[:400]
            owned = items(kube, other_namespace, "deployments,statefulsets,configmaps,kafkas.kafka.strimzi.io",
                          LABEL_PIPELINE)
            assert not owned, [f"{o['kind']}/{o['metadata']['name']}" for o in owned]
            log = operator.process.log_path.read_text()
            assert "403" not in log and "forbidden" not in log.lower(), operator.log
            delete_pipelines(kube, namespace, timeout=90)
    finally:
        operator.stop()
        print(f"--- operator log (tail) ---\n{operator.log}")
        kube.kubectl("delete", "pipeline", "--all", "-n", other_namespace, "--wait=false", check=False)
        kube.kubectl("delete", "--ignore-not-found", "--wait=false", "clusterrole,clusterrolebinding",
                     f"{release}-adnomaly-cluster", check=False)
