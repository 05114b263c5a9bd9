"""Cluster providers for the e2e suite: the same checks (tests/e2e/test_pods.py) on a real node here, or on kind.

What differs between providers is only how a cluster comes to exist and how the images get into it:

- `node` (the default when running as root): `adnomaly.services.node.RealCluster`, a control plane and one
  real node on this machine; images built by buildah from Debian's packages (`adnomaly.services.images`)
  and imported into the node's containerd. No Docker, no registry.
- `kind` (`ADNOMALY_E2E_PROVIDER=kind`, where Docker and kind exist): a kind cluster; the project's images
  and the test broker built by `docker build` from the same Dockerfiles with their upstream bases and
  `kind load`ed; PostgreSQL, Redis and MinIO are the operator's default upstream images, pulled by the node.

Each provider returns the image references the checks use, by the names of `adnomaly.services.images`.
The kind provider cannot run on the development machine (no Docker engine); it is kept small so that what
it does is plain to read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from adnomaly.services.images import DOCKERFILE, ensure_images, kafka_context
from adnomaly.services.kube import ensure_binaries
from adnomaly.services.node import RealCluster
from adnomaly_operator.render.common import Images

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_ENV = "ADNOMALY_E2E_PROVIDER"
KIND_CLUSTER = "adnomaly-e2e"
KIND_NODE_IMAGE = "kindest/node:v1.34.0"


class E2ECluster(Protocol):
    """What the checks need from a cluster."""

    name: str

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]: ...

    def kubectl_argv(self) -> list[str]:
        """kubectl and its cluster flags, for long-running commands (port-forward, logs -f)."""
        ...

    def helm_args(self) -> list[str]:
        """helm's flags that select this cluster."""
        ...

    def load_images(self) -> dict[str, str]:
        """Make every image the suite runs available to the cluster: name -> reference."""
        ...


def chosen_provider() -> str:
    return os.environ.get(PROVIDER_ENV, "node")


def kind_missing() -> list[str]:
    missing = [tool for tool in ("docker", "kind") if shutil.which(tool) is None]
    if not missing and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        missing.append("a running Docker daemon")
    return missing


class NodeCluster:
    name = "node"

    def __init__(self, cluster: RealCluster) -> None:
        self.cluster = cluster

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, stdin=stdin, check=check, timeout=timeout)

    def kubectl_argv(self) -> list[str]:
        assert self.cluster.plane is not None
        return [str(self.cluster.plane.bin_dir / "kubectl"), f"--kubeconfig={self.cluster.kubeconfig}"]

    def helm_args(self) -> list[str]:
        return ["--kubeconfig", str(self.cluster.kubeconfig)]

    def load_images(self) -> dict[str, str]:
        built = ensure_images()
        assert self.cluster.node is not None
        self.cluster.node.import_images(built.values())
        return {name: image.ref for name, image in built.items()}


class KindCluster:
    name = "kind"

    def __init__(self) -> None:
        self.context = f"kind-{KIND_CLUSTER}"
        self.kubectl_bin = str(ensure_binaries() / "kubectl")

    def start(self) -> None:
        subprocess.run(["kind", "delete", "cluster", "--name", KIND_CLUSTER], capture_output=True, check=False)
        subprocess.run(["kind", "create", "cluster", "--name", KIND_CLUSTER, "--image", KIND_NODE_IMAGE,
                        "--wait", "5m"], check=True)

    def stop(self) -> None:
        if os.environ.get("ADNOMALY_E2E_KEEP") != "1":
            subprocess.run(["kind", "delete", "cluster", "--name", KIND_CLUSTER], capture_output=True, check=False)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.kubectl_argv(), *args], input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr[-3000:]}")
        return done

    def kubectl_argv(self) -> list[str]:
        return [self.kubectl_bin, f"--context={self.context}"]

    def helm_args(self) -> list[str]:
        return ["--kube-context", self.context]

    def _build(self, tag: str, context: Path, dockerfile: Path, target: str | None = None) -> str:
        argv = ["docker", "build", "-q", "-f", str(dockerfile), "-t", tag, *(["--target", target] if target else [])]
        subprocess.run([*argv, str(context)], check=True, capture_output=True)
        subprocess.run(["kind", "load", "docker-image", tag, "--name", KIND_CLUSTER], check=True, capture_output=True)
        return tag

    def load_images(self) -> dict[str, str]:
        upstream = Images()
        kafka = kafka_context()
        return {
            "adnomaly": self._build("ghcr.io/adnomaly/adnomaly:e2e", ROOT, DOCKERFILE, "components"),
            "adnomaly-operator": self._build("ghcr.io/adnomaly/adnomaly-operator:e2e", ROOT, DOCKERFILE, "operator"),
            "test-kafka": self._build("localhost/adnomaly/test-kafka:e2e", kafka, kafka / "Dockerfile"),
            "test-postgres": upstream.postgres,
            "test-redis": upstream.redis,
            "test-minio": upstream.minio,
            "test-mc": upstream.minio_client,
        }
