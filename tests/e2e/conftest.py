"""Fixtures for the e2e suites: a control plane with one real node (kubelet + containerd + runc).

`real_cluster` starts `adnomaly.services.node.RealCluster` once per session (a few minutes the very first
time, while the node's binaries compile; about half a minute after that) and stops it afterwards, checking
that nothing of it is left running or mounted. Without root the fixture skips, saying so.

OCI archives to load into the node come from `real_cluster_images`; a suite that needs the project's
images overrides that fixture, e.g. with `list(adnomaly.services.images.ensure_images().values())`
(objects with `.ref` and `.archive`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from adnomaly.services.mounts import mounts_under
from adnomaly.services.node import ImageArchiveLike, RealCluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def real_cluster_images() -> list[ImageArchiveLike]:
    """Image archives imported into the real node at start (none: the node's own images suffice here)."""
    return []


@pytest.fixture(scope="session")
def real_cluster(
    tmp_path_factory: pytest.TempPathFactory, real_cluster_images: list[ImageArchiveLike]
) -> Iterator[RealCluster]:
    if os.geteuid() != 0:
        pytest.skip("a real node needs root (network namespaces, mounts, cgroups, iptables)")
    cluster = RealCluster(tmp_path_factory.mktemp("realnode"), images=real_cluster_images)
    with cluster:
        assert cluster.node is not None and cluster.plane is not None
        pids = [p.pid for p in [*cluster.node.processes.values(), *cluster.plane.processes.values()] if p.pid]
        yield cluster
    left = [pid for pid in pids if _alive(pid)]
    assert not left, f"cluster processes still running after stop(): {left}"
    assert not mounts_under(cluster.state_dir), f"mounts left under {cluster.state_dir}"
