"""Fixtures for the e2e suites: a control plane with one real node (kubelet + containerd + runc).

`real_cluster` starts `adnomaly.services.node.RealCluster` once per session (a few minutes the very first
time, while the node's binaries compile; about half a minute after that) and stops it afterwards, checking
that nothing of it is left running or mounted. Without root the fixture skips, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from adnomaly.services.node import RealCluster, mounts_under


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    if os.geteuid() != 0:
        pytest.skip("a real node needs root (network namespaces, mounts, cgroups, iptables)")
    cluster = RealCluster(tmp_path_factory.mktemp("realnode"))
    with cluster:
        yield cluster
    assert not mounts_under(cluster.state_dir), f"mounts left under {cluster.state_dir}"
