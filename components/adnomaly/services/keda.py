"""KEDA for real beside the real node: its operator and metrics adapter as processes, for the e2e test that
watches KEDA scale a processor Deployment on real Kafka lag (tests/e2e/test_keda.py).

No KEDA image can be pulled here, so the binaries come from KEDA's Go module (tools/keda/build.sh) and run
the way KEDA's own developers run them out of cluster: with a kubeconfig. What the Helm chart would
otherwise set up is done here, each piece for a reason:

- **Network.** Both run in the node's network namespace (`NodeNetwork.wrap`), where Service IPs route
  through kube-proxy: the operator's Kafka scaler reaches the broker at the address the broker advertises.
  The test's Kafka advertises its Service IP, since a process here does not use the cluster's DNS.
- **Operator ↔ adapter.** The adapter asks the operator for metric values over gRPC with mutual TLS
  (`ca.crt`, `tls.crt`, `tls.key` in each one's `--cert-dir`); one certificate from the cluster CA serves
  both ends, and the adapter dials the operator on the node's loopback.
- **Aggregation.** The HorizontalPodAutoscaler reads KEDA's metric through `external.metrics.k8s.io`,
  which the API server proxies to the adapter: an `APIService` names a selector-less Service whose
  EndpointSlice points at the adapter's address on the node (the control plane runs with the aggregation
  flags and `--enable-aggregator-routing`: `KubeControlPlane._aggregation_flags`), and the adapter trusts
  the API server's front-proxy certificate through the `extension-apiserver-authentication` ConfigMap.
- **Identity.** Both use the cluster's admin kubeconfig: the chart's ClusterRoles are not part of what is
  tested, and the scaling path is the same.
- **CRDs.** All six of the built version (the operator watches every kind), from the build's cache.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adnomaly.services.base import ManagedProcess, ServiceError, free_port, run_tool, tail, wait_until

if TYPE_CHECKING:
    from adnomaly.services.node import RealCluster

BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "tools" / "keda" / "build.sh"
NAMESPACE = "keda"
ADAPTER_SERVICE = "keda-metrics-apiserver"
OPERATOR_SERVICE = "keda-operator"
APISERVICE = "v1beta1.external.metrics.k8s.io"
GRPC_PORT = 9666


def ensure_keda(timeout: float = 3600.0) -> Path:
    """Build KEDA if it is not cached yet (the first time takes long: see tools/keda/build.sh) and return
    the cache directory holding bin/ and crds/."""
    run_tool([str(BUILD_SCRIPT)], "building KEDA (tools/keda/build.sh)", timeout=timeout)
    bin_dir = Path(run_tool([str(BUILD_SCRIPT), "--print-bin"], "locating KEDA", timeout=30).strip())
    return bin_dir.parent


class KedaOnNode:
    """KEDA's operator and metrics adapter running against `cluster`, registered as its external metrics API."""

    def __init__(self, cluster: RealCluster, state_dir: Path) -> None:
        self.cluster = cluster
        self.state_dir = state_dir
        self.processes: dict[str, ManagedProcess] = {}

    def start(self, timeout: float = 180.0) -> None:
        home = ensure_keda()
        plane, node = self.cluster.plane, self.cluster.node
        if plane is None or node is None:
            raise ServiceError("the cluster is not running")
        plane.install_crds(sorted((home / "crds").glob("*.yaml")))
        plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        certs = self._certificates()
        node_ip = node.network.node_ip
        adapter_port = free_port()
        env = {"KUBECONFIG": str(plane.kubeconfig), "WATCH_NAMESPACE": "", "POD_NAMESPACE": NAMESPACE,
               "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE, "PATH": "/usr/bin:/bin"}
        kube = f"--kubeconfig={plane.kubeconfig}"
        self._spawn("keda-operator", [
            str(home / "bin" / "keda-operator"),
            "--leader-elect=false",
            "--metrics-bind-address=0",  # off: nothing scrapes it here
            f"--health-probe-bind-address={node_ip}:0",
            f"--metrics-service-bind-address=127.0.0.1:{GRPC_PORT}",
            f"--cert-dir={certs}",
            f"--ca-dir={certs}",
            "--enable-webhook-patching=false",
            "--enable-apiservice-patching=false",
            "--zap-log-level=info",
        ], env)
        self._spawn("keda-adapter", [
            str(home / "bin" / "keda-adapter"),
            kube,
            f"--lister-kubeconfig={plane.kubeconfig}",
            f"--authentication-kubeconfig={plane.kubeconfig}",
            f"--authorization-kubeconfig={plane.kubeconfig}",
            f"--bind-address={node_ip}",
            f"--secure-port={adapter_port}",
            f"--cert-dir={certs}",
            f"--tls-cert-file={certs / 'tls.crt'}",
            f"--tls-private-key-file={certs / 'tls.key'}",
            f"--metrics-service-address=127.0.0.1:{GRPC_PORT}",
            "--port=0",  # its own /metrics: off
        ], env)
        for obj in self._aggregation_objects(node_ip, adapter_port):
            plane.apply(obj)
        self._wait_available(timeout)

    def stop(self) -> None:
        plane = self.cluster.plane
        if plane is not None:  # the API server must not keep proxying to an adapter that is gone
            plane.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", "--wait=false", check=False)
        for process in reversed(list(self.processes.values())):
            process.stop(timeout=15)
        self.processes.clear()

    def __enter__(self) -> KedaOnNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {name}\n{tail(p.log_path, lines)}" for name, p in self.processes.items())

    # -- pieces --

    def _certificates(self) -> Path:
        """ca.crt, tls.crt, tls.key: the gRPC mutual TLS of both and the adapter's serving certificate."""
        plane, node = self.cluster.plane, self.cluster.node
        assert plane is not None and node is not None
        certs = self.state_dir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        names = [f"{svc}.{NAMESPACE}.svc" for svc in (ADAPTER_SERVICE, OPERATOR_SERVICE)]
        plane.pki.issue_client(certs / "tls.crt", certs / "tls.key", "keda", None,
                               server_ips=["127.0.0.1", node.network.node_ip], server_names=names)  # fmt: skip
        (certs / "ca.crt").write_bytes(plane.pki.ca_cert.read_bytes())
        return certs

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        node = self.cluster.node
        assert node is not None
        process = ManagedProcess(name=name, argv=node.network.wrap(argv), log_path=self.state_dir / f"{name}.log",
                                 env=env)  # fmt: skip
        process.start()
        self.processes[name] = process

    def _aggregation_objects(self, address: str, port: int) -> list[dict[str, Any]]:
        plane = self.cluster.plane
        assert plane is not None
        meta = {"name": ADAPTER_SERVICE, "namespace": NAMESPACE}
        ca_bundle = base64.b64encode(plane.pki.ca_cert.read_bytes()).decode()
        return [
            {"apiVersion": "v1", "kind": "Service", "metadata": meta,
             "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {**meta, "labels": {"kubernetes.io/service-name": ADAPTER_SERVICE}},
             "addressType": "IPv4", "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
             "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
             "spec": {"group": "external.metrics.k8s.io", "version": "v1beta1", "caBundle": ca_bundle,
                      "service": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE, "port": 443},
                      "groupPriorityMinimum": 100, "versionPriority": 100}},
        ]  # fmt: skip

    def _wait_available(self, timeout: float) -> None:
        plane = self.cluster.plane
        assert plane is not None

        def available() -> bool:
            for process in self.processes.values():
                process.check_alive()
            done = plane.kubectl("get", "apiservice", APISERVICE, "-o", "json", check=False)
            if done.returncode != 0:
                return False
            conditions = json.loads(done.stdout).get("status", {}).get("conditions", [])
            return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

        try:
            wait_until(available, timeout, f"the {APISERVICE} APIService (KEDA's adapter) to become Available", 1.0)
        except ServiceError as error:
            state = plane.kubectl("get", "apiservice", APISERVICE, "-o", "yaml", check=False).stdout
            raise ServiceError(f"{error}\n{state[-1500:]}\n{self.logs()}") from None
