"""Many Pipelines in one namespace converge (all Ready), and then the operator writes nothing."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from adnomaly.bench.operator import fleet_manifest
from adnomaly.services.kube import KubeControlPlane
from adnomaly_operator.simulate import SimulatorThread
from adnomaly_operator.testing import OperatorProcess, wait_for

from tests.operator.operator_harness import delete_pipelines, install_crds

pytestmark = [pytest.mark.operator, pytest.mark.slow]

PIPELINES = 50


@pytest.fixture(scope="module")
def cluster(kube: KubeControlPlane) -> Iterator[KubeControlPlane]:
    install_crds(kube)
    yield kube


def phases(kube: KubeControlPlane, ns: str) -> Counter[str]:
    found = json.loads(kube.kubectl("get", "pipelines", f"--namespace={ns}", "-o", "json").stdout)["items"]
    return Counter((item.get("status") or {}).get("phase") or "New" for item in found)


def test_fifty_pipelines_in_one_namespace_all_become_ready(
    cluster: KubeControlPlane, namespace: str, tmp_path: Path
) -> None:
    operator = OperatorProcess(cluster, tmp_path, namespace=namespace, drift_interval=5).start()
    try:
        with SimulatorThread(cluster.kubeconfig, namespace=namespace):
            started = time.monotonic()
            cluster.kubectl("apply", f"--namespace={namespace}", "-f", "-", stdin=fleet_manifest(PIPELINES),
                            timeout=300)
            wait_for(lambda: phases(cluster, namespace)["Ready"] == PIPELINES, 600,
                     f"{PIPELINES} Pipelines to be Ready", interval=2)
            print(f"{PIPELINES} Pipelines Ready after {time.monotonic() - started:.0f}s")
            writes = operator.quiet_writes()
            noops = operator.total("adnomaly_operator_reconciles_total", result="noop")
            time.sleep(12)  # more than two drift checks of every Pipeline
            assert operator.total("adnomaly_operator_reconciles_total", result="noop") >= noops + PIPELINES
            assert operator.writes() == writes
            delete_pipelines(cluster, namespace, timeout=180)
    finally:
        operator.stop()
        print(f"--- operator log (tail) ---\n{operator.log}")
