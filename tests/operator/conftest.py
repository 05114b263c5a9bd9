"""A real Kubernetes control plane (etcd, kube-apiserver, controllers, scheduler, kwok) for the session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from adnomaly.services.kube import KubeControlPlane
from adnomaly_operator.testing import OperatorProcess

from tests.operator.operator_harness import delete_pipelines


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeControlPlane]:
    plane = KubeControlPlane(tmp_path_factory.mktemp("kube"), nodes=2)
    with plane:
        pids = [process.pid for process in plane.processes.values() if process.pid is not None]
        yield plane
    left = [pid for pid in pids if _alive(pid)]
    assert not left, f"control-plane processes still running after stop(): {left}"


@pytest.fixture
def namespace(kube: KubeControlPlane) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def operator(cluster: KubeControlPlane, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator as a process against the module's `cluster` (each module says which one), watching
    `namespace`; on the way out it deletes the Pipelines it still manages and prints its log's tail."""
    op = OperatorProcess(cluster, tmp_path, namespace=namespace).start()
    try:
        yield op
    finally:
        if op.process.running:
            delete_pipelines(cluster, namespace)
        op.stop()
        print(f"--- operator log (tail) ---\n{op.log}")
