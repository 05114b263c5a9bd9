"""Cluster providers for the e2e suite: the same checks (tests/e2e/test_pods.py) on a real node here, or on kind.

What differs between providers is only how a cluster comes to exist and how the images get into it:

- `node` (the default when running as root): `adnomaly.services.node.RealCluster`, a control plane and one
  real node on this machine; images built by buildah from Debian's packages (`adnomaly.services.images`)
  and imported into the node's containerd. No Docker, no registry.
- `kind` (`ADNOMALY_E2E_PROVIDER=kind`, where Docker and kind exist): a kind cluster; the project's images
  and the test broker built by `docker build` from the same Dockerfiles with their upstream bases and
  `kind load`ed; PostgreSQL, Redis and MinIO are the operator's default upstream images, pulled by the node.
  It also installs the platform the product is built for (cert-manager, Strimzi, the Flink Kubernetes
  Operator, kube-prometheus-stack, from their pinned charts), which the checks of test_platform.py need.

A provider's `platform` says which of those operators its cluster has; a check that needs one it lacks
skips, naming it (the node provider has none: their images are not reachable from this machine).

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

import yaml
from adnomaly.services.helm import ensure_helm, run_helm
from adnomaly.services.images import DOCKERFILE, FLINK_DOCKERFILE, ensure_images, kafka_context
from adnomaly.services.kube import ensure_binaries
from adnomaly.services.node import RealCluster
from adnomaly_operator.render.common import Images

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_ENV = "ADNOMALY_E2E_PROVIDER"
KIND_CLUSTER = "adnomaly-e2e"
KIND_NODE_IMAGE = "kindest/node:v1.34.0"
# Pinned versions of the platform the kind provider installs around Adnomaly.
CERT_MANAGER = "https://github.com/cert-manager/cert-manager/releases/download/v1.18.2/cert-manager.yaml"
STRIMZI_CHART = ("oci://quay.io/strimzi-helm/strimzi-kafka-operator", "0.48.0")
FLINK_REPO = "https://downloads.apache.org/flink/flink-kubernetes-operator-1.13.0/"
FLINK_CHART = ("flink-operator/flink-kubernetes-operator", "1.13.0")
PROMETHEUS_REPO = "https://prometheus-community.github.io/helm-charts"
PROMETHEUS_CHART = ("prometheus-community/kube-prometheus-stack", "79.0.0")
PLATFORM = frozenset({"strimzi", "flink", "prometheus"})


class E2ECluster(Protocol):
    """What the checks need from a cluster."""

    name: str
    platform: frozenset[str]  # which of PLATFORM's operators the cluster runs

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
    platform: frozenset[str] = frozenset()

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
    platform = PLATFORM

    def __init__(self) -> None:
        self.context = f"kind-{KIND_CLUSTER}"
        self.kubectl_bin = str(ensure_binaries() / "kubectl")

    def start(self) -> None:
        subprocess.run(["kind", "delete", "cluster", "--name", KIND_CLUSTER], capture_output=True, check=False)
        subprocess.run(["kind", "create", "cluster", "--name", KIND_CLUSTER, "--image", KIND_NODE_IMAGE,
                        "--wait", "5m"], check=True)
        self.install_platform()

    def install_platform(self) -> None:
        """cert-manager, Strimzi (watching every namespace), the Flink Kubernetes Operator and the Prometheus
        stack with the values charts/adnomaly-stack uses."""
        helm, kube = ensure_helm(), self.helm_args()
        self.kubectl("apply", "--server-side", "-f", CERT_MANAGER, timeout=300)
        self.kubectl("wait", "-n", "cert-manager", "--for=condition=Available", "deployment", "--all",
                     "--timeout=300s", timeout=330)
        for name, repo in (("flink-operator", FLINK_REPO), ("prometheus-community", PROMETHEUS_REPO)):
            run_helm(helm, "repo", "add", name, repo, "--force-update", timeout=120)
        stack = yaml.safe_load((ROOT / "charts/adnomaly-stack/values.yaml").read_text())["kubePrometheusStack"]
        stack.pop("enabled")
        releases = [
            ("strimzi", STRIMZI_CHART, "strimzi", ["--set", "watchAnyNamespace=true"], None),
            ("flink-operator", FLINK_CHART, "flink", [], None),
            ("monitoring", PROMETHEUS_CHART, "monitoring", ["-f", "-"], yaml.safe_dump(stack)),
        ]
        for release, (chart, version), namespace, extra, values in releases:
            run_helm(helm, "upgrade", "--install", release, chart, "--version", version, *kube, "-n", namespace,
                     "--create-namespace", *extra, "--wait", "--timeout", "15m", stdin=values, timeout=960)

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
            "adnomaly-flink": self._build("ghcr.io/adnomaly/adnomaly-flink:e2e", ROOT, FLINK_DOCKERFILE),
            "test-kafka": self._build("localhost/adnomaly/test-kafka:e2e", kafka, kafka / "Dockerfile"),
            "test-postgres": upstream.postgres,
            "test-redis": upstream.redis,
            "test-minio": upstream.minio,
            "test-mc": upstream.minio_client,
        }
