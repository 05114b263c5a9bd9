"""A real node joined to the test control plane runs what it is given (issue 13, part 2).

    .venv/bin/pytest tests/e2e/test_real_node.py -m e2e

Each test applies pods with the harness's own busybox image (`localhost/adnomaly/busybox:<digest>`,
imported without a registry) and checks one property of a working node: registration and readiness, the
security context enforced by runc, logs through the kubelet, DNS through CoreDNS, the API server through
the `kubernetes` Service IP, ClusterIP routing by kube-proxy, PVCs bound by local-path-provisioner,
SIGTERM on deletion. The last test stops a second, private cluster and checks that it left nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adnomaly.services.images import build_scratch_image
from adnomaly.services.mounts import mounts_under
from adnomaly.services.node import RealCluster, busybox_files

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

POD_TIMEOUT = 120


@pytest.fixture
def ns(real_cluster: RealCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    real_cluster.kubectl("create", "namespace", name)
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def busybox(cluster: RealCluster) -> str:
    assert cluster.node is not None
    return cluster.node.images["busybox"].ref


def restricted_container(image: str, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", command],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **extra,
    }


def pod(name: str, ns: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 30, "containers": [container], **spec},
    }


def apply(cluster: RealCluster, obj: dict[str, Any]) -> None:
    assert cluster.plane is not None
    cluster.plane.apply(obj)


def wait_phase(cluster: RealCluster, ns: str, name: str, phases: tuple[str, ...]) -> str:
    deadline = time.monotonic() + POD_TIMEOUT
    phase = ""
    while time.monotonic() < deadline:
        phase = cluster.kubectl("get", "pod", name, "-n", ns, "-o", "jsonpath={.status.phase}").stdout
        if phase in phases:
            return phase
        if phase == "Failed" and "Failed" not in phases:
            break
        time.sleep(0.5)
    described = cluster.kubectl("describe", "pod", name, "-n", ns, check=False).stdout
    logs = cluster.kubectl("logs", name, "-n", ns, check=False)
    raise AssertionError(f"pod {ns}/{name} is {phase!r}, not {phases}:\n{described}\n{logs.stdout}{logs.stderr}")


def logs(cluster: RealCluster, ns: str, name: str) -> str:
    return cluster.kubectl("logs", name, "-n", ns).stdout


def run_to_completion(cluster: RealCluster, ns: str, name: str, command: str, **spec: Any) -> str:
    apply(cluster, pod(name, ns, restricted_container(busybox(cluster), command), **spec))
    phase = wait_phase(cluster, ns, name, ("Succeeded", "Failed"))
    output = logs(cluster, ns, name)
    assert phase == "Succeeded", f"{name} failed:\n{output}"
    return output


def test_node_registers_and_is_ready(real_cluster: RealCluster) -> None:
    assert real_cluster.node is not None
    node = json.loads(real_cluster.kubectl("get", "node", real_cluster.node.name, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_cluster.node.network.node_ip
    nodes = real_cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
    assert nodes == [f"node/{real_cluster.node.name}"]


def test_restricted_pod_runs_and_logs(real_cluster: RealCluster, ns: str) -> None:
    script = (
        "id; "
        "if touch /probe 2>/dev/null; then echo ROOTFS=writable; else echo ROOTFS=readonly; fi; "
        "grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status; "
        "grep NoNewPrivs /proc/self/status; "
        "echo hello-from-the-real-node"
    )
    output = run_to_completion(real_cluster, ns, "restricted", script)
    assert "uid=65534(nobody) gid=65534(nogroup)" in output, output
    assert "ROOTFS=readonly" in output, output
    assert "CapEff:\t0000000000000000" in output, output
    assert "CapBnd:\t0000000000000000" in output, output
    assert "NoNewPrivs:\t1" in output, output
    assert "hello-from-the-real-node" in output


@pytest.fixture(scope="module")
def kubectl_image(real_cluster: RealCluster) -> str:
    """busybox plus the (static) kubectl binary: an HTTPS client that verifies the API server's certificate
    (busybox's own TLS cannot negotiate with the API server's ECDSA certificate: handshake failure)."""
    assert real_cluster.node is not None and real_cluster.plane is not None
    files = {**busybox_files(), "/bin/kubectl": real_cluster.plane.bin_dir / "kubectl"}
    image = build_scratch_image("kubectl-test", files, ["/bin/sh"])
    real_cluster.node.import_images([image])
    return image.ref


def test_dns_and_api_server_through_service_ip(real_cluster: RealCluster, ns: str, kubectl_image: str) -> None:
    real_cluster.kubectl("create", "rolebinding", "sa-view", "--clusterrole=view", f"--serviceaccount={ns}:default",
                         "-n", ns)
    script = (
        "cat /etc/resolv.conf; "
        "nslookup kubernetes.default.svc.cluster.local; "
        # in-cluster config: KUBERNETES_SERVICE_HOST=10.96.0.1, the ServiceAccount token and CA
        "echo SERVICE=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; "
        "kubectl get --raw /version && echo VIA-SERVICE-IP=ok; "
        "kubectl --server=https://kubernetes.default.svc.cluster.local "
        "--certificate-authority=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt "
        "--token=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token) "
        "get serviceaccount default -o name && echo VIA-DNS-NAME=ok"
    )
    container = restricted_container(kubectl_image, script)
    apply(real_cluster, pod("dns", ns, container))
    phase = wait_phase(real_cluster, ns, "dns", ("Succeeded", "Failed"))
    output = logs(real_cluster, ns, "dns")
    assert phase == "Succeeded", output
    assert "nameserver 10.96.0.10" in output, output
    assert "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1" in output, output
    assert "SERVICE=10.96.0.1:443" in output, output
    assert '"gitVersion": "v1.36.3"' in output and "VIA-SERVICE-IP=ok" in output, output
    assert "serviceaccount/default" in output and "VIA-DNS-NAME=ok" in output, output


def test_cluster_ip_routes_to_pod(real_cluster: RealCluster, ns: str) -> None:
    image = busybox(real_cluster)
    server = restricted_container(
        image,
        "mkdir -p /tmp/www && echo served-by-$(hostname) > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        ports=[{"containerPort": 8080}],
        readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    apply(real_cluster, pod("web", ns, server, volumes=[{"name": "tmp", "emptyDir": {}}]))
    apply(real_cluster, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })
    real_cluster.kubectl("wait", "--for=condition=Ready", "pod/web", "-n", ns, f"--timeout={POD_TIMEOUT}s",
                         timeout=POD_TIMEOUT + 30)
    cluster_ip = real_cluster.kubectl("get", "service", "web", "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout
    output = run_to_completion(
        real_cluster, ns, "client",
        # (Debian's busybox-static wget segfaults with -T: the time limit comes from `timeout` instead)
        f"for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -q -O - http://{cluster_ip}/ && "
        f"timeout 3 wget -q -O - http://web.{ns}.svc.cluster.local/ && exit 0; sleep 1; done; exit 1",
    )
    assert output.count("served-by-web") == 2, output


def test_pvc_bound_and_written(real_cluster: RealCluster, ns: str) -> None:
    apply(real_cluster, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
    })
    container = restricted_container(
        busybox(real_cluster), "echo persisted > /data/file && cat /data/file && ls -ln /data",
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
    )
    apply(real_cluster, pod("writer", ns, container,
                            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]))
    phase = wait_phase(real_cluster, ns, "writer", ("Succeeded", "Failed"))
    written = logs(real_cluster, ns, "writer")
    assert phase == "Succeeded", written
    assert "persisted" in written
    claim = json.loads(real_cluster.kubectl("get", "pvc", "data", "-n", ns, "-o", "json").stdout)
    assert claim["status"]["phase"] == "Bound"
    volume = json.loads(real_cluster.kubectl("get", "pv", claim["spec"]["volumeName"], "-o", "json").stdout)
    path = Path((volume["spec"].get("hostPath") or volume["spec"]["local"])["path"])
    assert (path / "file").read_text() == "persisted\n"
    assert real_cluster.node is not None and path.is_relative_to(real_cluster.node.state_dir)


def test_delete_sends_sigterm_within_grace(real_cluster: RealCluster, ns: str) -> None:
    script = "trap 'echo got-SIGTERM; exit 0' TERM; echo started; while true; do sleep 0.2; done"
    apply(real_cluster, pod("graceful", ns, restricted_container(busybox(real_cluster), script)))
    wait_phase(real_cluster, ns, "graceful", ("Running",))
    follower = subprocess.Popen(
        [str(real_cluster.plane.bin_dir / "kubectl"), f"--kubeconfig={real_cluster.kubeconfig}",  # type: ignore[union-attr]
         "logs", "-f", "graceful", "-n", ns],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(1)
        started = time.monotonic()
        real_cluster.kubectl("delete", "pod", "graceful", "-n", ns, "--wait=true", "--timeout=60s", timeout=90)
        elapsed = time.monotonic() - started
        output, _ = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert "got-SIGTERM" in output, output
    assert elapsed < 15, f"deletion took {elapsed:.1f}s: the pod did not exit on SIGTERM (grace 30s)"


def test_stop_leaves_nothing(tmp_path_factory: pytest.TempPathFactory, real_cluster: RealCluster) -> None:
    """A second cluster of its own, started and stopped: nothing of it stays running, mounted or routed."""
    cluster = RealCluster(tmp_path_factory.mktemp("stopcheck"))
    with cluster:
        assert cluster.node is not None
        run_to_completion(cluster, "default", "once", "echo ok")
        netns, host_if = cluster.node.network.netns, cluster.node.network.host_interface
        pids = [p.pid for p in [*cluster.node.processes.values(), *cluster.plane.processes.values()]  # type: ignore[union-attr]
                if p.pid is not None]
        cgroup = cluster.node.cgroup_root
        assert mounts_under(cluster.state_dir)
    assert not mounts_under(cluster.state_dir), "\n".join(mounts_under(cluster.state_dir))
    mount = subprocess.run(["mount"], capture_output=True, text=True, check=True).stdout
    assert str(cluster.state_dir) not in mount
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not left, f"still running: {left}"
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    leftovers = [line for line in processes.splitlines() if str(cluster.state_dir) in line]
    assert not leftovers, leftovers
    assert not Path(f"/run/netns/{netns}").exists()
    assert not Path(f"/sys/class/net/{host_if}").exists()
    assert not any(Path("/sys/fs/cgroup").glob(f"*/{cgroup}"))
