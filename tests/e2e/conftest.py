"""Fixtures for the e2e suites: a control plane with one real node (kubelet + containerd + runc).

`cluster` is the provider's cluster (tests/e2e/providers.py), `images` the images it runs and
`operator_release` the chart installed on it, once per session for every e2e suite.

`real_cluster` (the node provider's) starts `adnomaly.services.node.RealCluster` once per session (a few
minutes the very first time, while the node's binaries compile; about half a minute after that) and stops
it afterwards, checking that nothing of it is left running or mounted. Without root the fixture skips, saying so.

OCI archives to load into the node come from `real_cluster_images`; a suite that needs the project's
images overrides that fixture, e.g. with `list(adnomaly.services.images.ensure_images().values())`
(objects with `.ref` and `.archive`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from adnomaly.services.helm import CHART, ensure_helm, run_helm
from adnomaly.services.mounts import mounts_under
from adnomaly.services.node import ImageArchiveLike, RealCluster

from tests.e2e.checks import RELEASE, SYSTEM_NAMESPACE, describe_pods, split_ref
from tests.e2e.providers import PROVIDER_ENV, E2ECluster, KindCluster, NodeCluster, chosen_provider, kind_missing


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


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[E2ECluster]:
    """The provider's cluster (tests/e2e/providers.py): a real node here, kind where Docker is."""
    if chosen_provider() == "kind":
        if missing := kind_missing():
            pytest.skip(f"{PROVIDER_ENV}=kind but missing {', '.join(missing)}")
        kind = KindCluster()
        kind.start()
        try:
            yield kind
        finally:
            kind.stop()
    else:
        yield NodeCluster(request.getfixturevalue("real_cluster"))


@pytest.fixture(scope="session")
def images(cluster: E2ECluster) -> dict[str, str]:
    """Every image the suite runs, made available to the cluster: name -> reference."""
    return cluster.load_images()


@pytest.fixture(scope="session")
def operator_release(cluster: E2ECluster, images: dict[str, str]) -> Iterator[str]:
    """`helm install charts/adnomaly` with the provider's images: what a user runs, image names aside."""
    helm = ensure_helm()
    repository, tag = split_ref(images["adnomaly-operator"])
    sets = {
        "operator.image.repository": repository,
        "operator.image.tag": tag,
        "images.component": images["adnomaly"],
        "images.postgres": images["test-postgres"],
        "images.redis": images["test-redis"],
        "images.minio": images["test-minio"],
        "images.minioClient": images["test-mc"],
        "images.flink": images["adnomaly-flink"],
    }
    kube = cluster.helm_args()
    try:
        run_helm(helm, "install", RELEASE, str(CHART), *kube, "--namespace", SYSTEM_NAMESPACE, "--create-namespace",
                 *[f"--set={key}={value}" for key, value in sets.items()], "--wait", "--timeout=5m", timeout=360)
    except Exception as error:
        raise AssertionError(f"helm install failed: {error}\n{describe_pods(cluster, SYSTEM_NAMESPACE)}") from None
    yield RELEASE
    run_helm(helm, "uninstall", RELEASE, *kube, "--namespace", SYSTEM_NAMESPACE, "--wait", "--timeout=2m", timeout=180)
