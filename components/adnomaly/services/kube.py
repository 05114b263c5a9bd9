"""A real Kubernetes control plane for tests, without Docker.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as local processes on free
loopback ports, with certificates, kubeconfig, data and logs under one state directory. kwok plays the
kubelet for fake Nodes, so Deployments -> ReplicaSets -> Pods reach Running and Ready without containers.
With fake Nodes, PersistentVolumeClaims are provisioned by the controller-manager's own host-path
provisioner (`--enable-hostpath-provisioner`, Kubernetes' provisioner for single-node testing) through a
default StorageClass `standard`: the real PersistentVolume controller binds them, no stand-in does. Its
volumes are directories under /tmp/hostpath_pv that the controller removes with their claims
(reclaimPolicy Delete); kwok's pods never write to them.

With `api_address` the API server binds and advertises that (non-loopback) address instead, so that a real
node in a network namespace of its own (`adnomaly.services.node`) and its pods can reach it: the address
goes into the serving certificate, the `kubernetes` Service's endpoints are maintained (they cannot hold a
loopback address, so loopback mode turns that off) and the API server gets a client certificate to call
kubelets with (`kubectl logs`/`exec`).

The binaries are compiled from Go modules by `tools/k8s/build.sh` and cached under
`~/.cache/adnomaly/k8s/<version>/bin/`; `ADNOMALY_K8S_BIN` points at another directory holding them.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import ipaddress
import json
import logging
import os
import ssl
import subprocess
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from adnomaly.services.base import ManagedProcess, ServiceError, free_port, run_tool, wait_until, write_private_file
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
KWOK_STAGES = "kwok-stages.yaml"  # written next to the binaries by build.sh, from the same kwok module
BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "tools" / "k8s" / "build.sh"

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
LOOPBACK = "127.0.0.1"
FRONT_PROXY_CLIENT = "front-proxy-client"  # the CN aggregated API servers accept user headers from


class KubectlError(ServiceError):
    """kubectl exited with a non-zero code; `stderr` holds what it said (e.g. the API server's rejection)."""

    def __init__(self, args: Sequence[str], done: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed with exit code {done.returncode}: {done.stderr.strip()}")
        self.returncode = done.returncode
        self.stdout = done.stdout
        self.stderr = done.stderr


def _missing_binaries(bin_dir: Path) -> list[str]:
    names = [*BINARIES, KWOK_STAGES]
    return [name for name in names if not (bin_dir / name).is_file()]


def ensure_binaries() -> Path:
    """The directory holding the control-plane binaries, building them first if they are missing.

    `ADNOMALY_K8S_BIN` overrides the location (no build is attempted then). Otherwise the repository's
    `tools/k8s/build.sh` is asked where its cache is and run when something is missing; a cold build
    compiles Kubernetes from source and takes tens of minutes on two cores.
    """
    override = os.environ.get("ADNOMALY_K8S_BIN")
    if override:
        bin_dir = Path(override)
        if missing := _missing_binaries(bin_dir):
            raise ServiceError(f"ADNOMALY_K8S_BIN={bin_dir} lacks {', '.join(missing)}")
        return bin_dir
    if not BUILD_SCRIPT.is_file():
        raise ServiceError(f"{BUILD_SCRIPT} not found; set ADNOMALY_K8S_BIN to a directory with {', '.join(BINARIES)}")
    bin_dir = Path(run_tool([str(BUILD_SCRIPT), "--print-bin"], "locating Kubernetes binaries", timeout=30).strip())
    if _missing_binaries(bin_dir):
        log.info("building Kubernetes control-plane binaries into %s (first build takes a long time)", bin_dir)
        run_tool([str(BUILD_SCRIPT)], "tools/k8s/build.sh", timeout=3 * 3600)
        if missing := _missing_binaries(bin_dir):
            raise ServiceError(f"tools/k8s/build.sh ran but {bin_dir} still lacks {', '.join(missing)}")
    return bin_dir


# --- certificates ---------------------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _issue(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    organization: str | None = None,
    usages: Sequence[x509.ObjectIdentifier] = (),
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> x509.Certificate:
    """A certificate for `key`, self-signed as a CA when `issuer` is None, else signed by `issuer`."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(attributes)
    now = dt.datetime.now(dt.UTC)
    is_ca = issuer is None
    signer_cert, signer_key = issuer if issuer is not None else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650 if is_ca else 365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not is_ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if signer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if dns_names or ips:
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def _cert_ips(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


@dataclass(frozen=True)
class Pki:
    """Paths of the cluster's key material (all PEM).

    `api_ips` are extra addresses the API server's certificate must name (besides loopback and the first
    Service IP); an existing certificate lacking one is reissued by the same CA.
    """

    directory: Path
    api_ips: tuple[str, ...] = ()

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def kubelet_client_cert(self) -> Path:
        """The API server's client certificate towards kubelets (logs, exec, port-forward)."""
        return self.directory / "apiserver-kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.directory / "apiserver-kubelet-client.key"

    @property
    def front_proxy_cert(self) -> Path:
        """The API server's client certificate towards aggregated API servers (e.g. KEDA's metrics adapter)."""
        return self.directory / "front-proxy-client.crt"

    @property
    def front_proxy_key(self) -> Path:
        return self.directory / "front-proxy-client.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def ensure(self) -> None:
        """Generate everything once; a restarted control plane on the same state keeps its identity."""
        if all(path.exists() for path in (self.ca_cert, self.apiserver_cert, self.admin_cert, self.sa_pub)):
            if not set(self.api_ips) <= _cert_ips(self.apiserver_cert):
                self._issue_apiserver(self._load_ca())
            if not self.kubelet_client_cert.exists():
                self._issue_kubelet_client(self._load_ca())
            if not self.front_proxy_cert.exists():
                self._issue_front_proxy(self._load_ca())
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _issue("adnomaly-test-ca", ca_key)
        write_private_file(self.ca_key, _pem_key(ca_key))
        self._issue_apiserver((ca, ca_key))
        self._issue_kubelet_client((ca, ca_key))
        self._issue_front_proxy((ca, ca_key))
        admin_key = ec.generate_private_key(ec.SECP256R1())
        admin = _issue(
            "adnomaly-admin",
            admin_key,
            issuer=(ca, ca_key),
            organization="system:masters",
            usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        sa_key = ec.generate_private_key(ec.SECP256R1())
        write_private_file(self.admin_key, _pem_key(admin_key))
        write_private_file(self.sa_key, _pem_key(sa_key))
        self.sa_pub.write_text(
            sa_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.admin_cert.write_text(_pem_cert(admin))
        self.ca_cert.write_text(_pem_cert(ca))  # last: its presence with the others marks a complete set

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ServiceError(f"{self.ca_key} is not an EC key")
        return cert, key

    def _issue_apiserver(self, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
        service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _issue(
            "kube-apiserver",
            server_key,
            issuer=ca,
            usages=[ExtendedKeyUsageOID.SERVER_AUTH],
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=[LOOPBACK, service_ip, *(ip for ip in self.api_ips if ip not in (LOOPBACK, service_ip))],
        )
        write_private_file(self.apiserver_key, _pem_key(server_key))
        self.apiserver_cert.write_text(_pem_cert(server))

    def _issue_kubelet_client(self, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
        self.issue_client(
            self.kubelet_client_cert, self.kubelet_client_key, "kube-apiserver-kubelet-client", "system:masters", ca
        )

    def _issue_front_proxy(self, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
        self.issue_client(self.front_proxy_cert, self.front_proxy_key, FRONT_PROXY_CLIENT, None, ca)

    def issue_client(
        self,
        cert_path: Path,
        key_path: Path,
        common_name: str,
        organization: str | None = None,
        ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
        *,
        server_ips: Sequence[str] = (),
        server_names: Sequence[str] = (),
    ) -> None:
        """Write a certificate (CN=`common_name`, O=`organization`) signed by the cluster CA and its key.

        It is a client certificate; with `server_ips`/`server_names` it also serves on those addresses and
        names (a kubelet, KEDA's metrics adapter).
        """
        serves = bool(server_ips or server_names)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if serves else [])
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(
            common_name,
            key,
            issuer=ca or self._load_ca(),
            organization=organization,
            usages=usages,
            ips=server_ips,
            dns_names=server_names,
        )
        write_private_file(key_path, _pem_key(key))
        cert_path.write_text(_pem_cert(cert))


class Kubectl(Protocol):
    def __call__(self, *args: str, check: bool = ...) -> subprocess.CompletedProcess[str]: ...


def wait_established(kubectl: Kubectl, names: Sequence[str], timeout: float) -> None:
    """Wait until every CRD (`customresourcedefinition.apiextensions.k8s.io/NAME` or `crd/NAME`) is
    Established. Polled here rather than with `kubectl wait --for=condition=Established`: right after the
    create, before the API server's CRD controller writes the first condition, kubectl's wait fails at once
    on the missing `.status.conditions` instead of waiting."""

    def established() -> bool:
        done = kubectl("get", *names, "-o", "json", check=False)
        if done.returncode != 0:
            return False
        found = json.loads(done.stdout)
        crds = found.get("items", [found])
        return len(crds) == len(names) and all(
            any(c.get("type") == "Established" and c.get("status") == "True"
                for c in (crd.get("status") or {}).get("conditions") or ())
            for crd in crds
        )

    wait_until(established, timeout, f"CRDs {', '.join(names)} to be Established", interval=0.5)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return int(response.status) == 200
    except OSError:  # connection refused, TLS not up yet, HTTP 5xx (HTTPError is an OSError)
        return False


def _insecure_context() -> ssl.SSLContext:
    """For the components' /healthz, served with certificates they generate for themselves."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


HOSTPATH_STORAGE_CLASS: dict[str, object] = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "kubernetes.io/host-path",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}


# --- the control plane ----------------------------------------------------------------------------


class KubeControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok, on loopback.

    Usage: `with KubeControlPlane(state_dir) as kube: kube.kubectl("get", "nodes")`.

    The API server authorizes with Node,RBAC; the generated kubeconfig (`kubeconfig`) authenticates
    with a client certificate in `system:masters`. `nodes` fake Nodes (annotated
    `kwok.x-k8s.io/node=fake`, untainted) are created and kept Ready by kwok, which also moves every Pod
    bound to them to Running/Ready.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        bin_dir: Path | None = None,
        nodes: int = 1,
        start_timeout: float = 180.0,
        api_address: str | None = None,
    ) -> None:
        """`api_address` (opt-in): bind and advertise the API server there instead of loopback, for a
        real node and its pods (the address must exist on this machine, e.g. a harness-made veth)."""
        self.state_dir = Path(state_dir).resolve()
        self._bin_dir = bin_dir
        self.nodes = [f"kwok-node-{index}" for index in range(nodes)]
        self.start_timeout = start_timeout
        self.api_address = api_address or LOOPBACK
        self.pki = Pki(self.state_dir / "pki", api_ips=(self.api_address,) if api_address else ())
        self.etcd_port: int | None = None
        self.api_port: int | None = None
        self._processes: list[ManagedProcess] = []

    # -- public API --

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = ensure_binaries()
        return self._bin_dir

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        if self.api_port is None:
            raise ServiceError("the control plane is not started")
        return f"https://{self.api_address}:{self.api_port}"

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        return {process.name: process for process in self._processes}

    def start(self) -> None:
        if self._processes:
            return
        bin_dir = self.bin_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.pki.ensure()
        atexit.register(self.stop)
        try:
            self._start_etcd(bin_dir)
            self._start_apiserver(bin_dir)
            self._write_kubeconfig()
            self._start_controllers(bin_dir)
            self._create_nodes()
            self._wait_for_default_service_account()
        except BaseException:
            self.stop()
            raise
        log.info("Kubernetes control plane up at %s (state in %s)", self.server, self.state_dir)

    def stop(self) -> None:
        """Stop every process, newest first; nothing is left running. Safe to call more than once."""
        while self._processes:
            self._processes.pop().stop(timeout=15)
        atexit.unregister(self.stop)

    def __enter__(self) -> KubeControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise KubectlError on failure unless `check` is False."""
        argv = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.state_dir / 'kubectl-cache'}",  # never a stale discovery cache from ~/.kube
            *args,
        ]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise KubectlError(args, done)
        return done

    def apply(self, manifest: str | dict[str, object], *extra: str) -> str:
        """Server-side apply one manifest (YAML/JSON text or an object); returns kubectl's output."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", *extra, stdin=text).stdout

    def install_crds(self, paths: Iterable[Path | str], timeout: float = 60.0) -> list[str]:
        """Apply CRD files (server-side: upstream CRDs are too big for client-side apply's annotation)
        and wait until every CRD is Established. Returns the CRD object names."""
        files = [f"--filename={path}" for path in paths]
        if not files:
            return []
        output = self.kubectl("apply", "--server-side", "--force-conflicts", "-o", "name", *files).stdout
        names = output.split()
        wait_established(self.kubectl, names, timeout)
        return names

    # -- processes --

    def _spawn(self, name: str, argv: Sequence[str], ready_url: str, context: ssl.SSLContext | None) -> None:
        process = ManagedProcess(name=name, argv=argv, log_path=self.state_dir / "logs" / f"{name}.log")
        self._processes.append(process)
        process.start()
        process.wait_ready(lambda: _http_ok(ready_url, context), timeout=self.start_timeout)
        log.debug("%s ready (pid %s)", name, process.pid)

    def _start_etcd(self, bin_dir: Path) -> None:
        data_dir = self.state_dir / "etcd"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        self.etcd_port = client = free_port()
        peer = free_port()
        self._spawn(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=adnomaly",
                f"--data-dir={data_dir}",
                f"--listen-client-urls=http://{LOOPBACK}:{client}",
                f"--advertise-client-urls=http://{LOOPBACK}:{client}",
                f"--listen-peer-urls=http://{LOOPBACK}:{peer}",
                f"--initial-advertise-peer-urls=http://{LOOPBACK}:{peer}",
                f"--initial-cluster=adnomaly=http://{LOOPBACK}:{peer}",
                "--unsafe-no-fsync",  # test data: durability is not worth the fsync latency
                "--log-level=warn",
            ],
            f"http://{LOOPBACK}:{client}/health",
            None,
        )

    def _start_apiserver(self, bin_dir: Path) -> None:
        self.api_port = free_port()
        pki = self.pki
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(pki.admin_cert, pki.admin_key)
        self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://{LOOPBACK}:{self.etcd_port}",
                f"--bind-address={self.api_address}",
                f"--advertise-address={self.api_address}",
                f"--secure-port={self.api_port}",
                *self._real_node_flags(),
                f"--tls-cert-file={pki.apiserver_cert}",
                f"--tls-private-key-file={pki.apiserver_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--cert-dir={self.state_dir / 'kube-apiserver'}",
                "--allow-privileged=true",
                "--profiling=false",
                *self._aggregation_flags(),
            ],
            f"{self.server}/readyz",
            context,
        )

    def _aggregation_flags(self) -> list[str]:
        """The aggregation layer, as kubeadm sets it up: the API server proxies an APIService's group (e.g.
        KEDA's external.metrics.k8s.io) to its server with a front-proxy client certificate whose user headers
        that server trusts, and dials the Service's endpoints (the host has no route to Service IPs)."""
        pki = self.pki
        return [
            f"--requestheader-client-ca-file={pki.ca_cert}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.front_proxy_cert}",
            f"--proxy-client-key-file={pki.front_proxy_key}",
            "--enable-aggregator-routing=true",
        ]

    def _real_node_flags(self) -> list[str]:
        if self.api_address == LOOPBACK:
            # the `kubernetes` Service endpoints cannot hold a loopback address: do not maintain them
            return ["--endpoint-reconciler-type=none"]
        return [
            "--endpoint-reconciler-type=lease",  # `kubernetes` -> api_address:api_port, for pods
            f"--kubelet-client-certificate={self.pki.kubelet_client_cert}",
            f"--kubelet-client-key={self.pki.kubelet_client_key}",
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-admission-plugins=NodeRestriction",
        ]

    def write_kubeconfig(self, path: Path, cert: Path, key: Path, user: str) -> Path:
        """A kubeconfig for this cluster authenticating with the client certificate `cert`/`key`."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "adnomaly",
                    "cluster": {"server": self.server, "certificate-authority-data": _b64(self.pki.ca_cert)},
                }
            ],
            "users": [{"name": user, "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}}],
            "contexts": [{"name": "adnomaly", "context": {"cluster": "adnomaly", "user": user}}],
            "current-context": "adnomaly",
        }
        write_private_file(path, json.dumps(config, indent=2) + "\n")  # JSON is valid YAML
        return path

    def _write_kubeconfig(self) -> None:
        self.write_kubeconfig(self.kubeconfig, self.pki.admin_cert, self.pki.admin_key, "adnomaly-admin")

    def _component_flags(self, name: str, port: int) -> list[str]:
        # No --authentication/authorization-kubeconfig: only /healthz (always allowed) is needed here, and
        # without an aggregation-layer CA on the API server they would just log errors.
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--cert-dir={self.state_dir / name}",
            "--leader-elect=false",
        ]

    def _start_controllers(self, bin_dir: Path) -> None:
        pki = self.pki
        insecure = _insecure_context()
        port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                *self._component_flags("kube-controller-manager", port),
                "--controllers=*",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--use-service-account-credentials=false",
                # The default client rate limit (20 qps) makes garbage collection and Deployment rollouts
                # the bottleneck once a test or benchmark runs dozens of Pipelines.
                "--kube-api-qps=300",
                "--kube-api-burst=600",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                # Fake Nodes cannot run a provisioner's helper pods; a real node runs local-path-provisioner.
                *(["--enable-hostpath-provisioner"] if self.nodes else []),
            ],
            f"https://{LOOPBACK}:{port}/healthz",
            insecure,
        )
        port = free_port()
        self._spawn(
            "kube-scheduler",
            [str(bin_dir / "kube-scheduler"), *self._component_flags("kube-scheduler", port)],
            f"https://{LOOPBACK}:{port}/healthz",
            insecure,
        )
        port = free_port()
        self._spawn(
            "kwok",
            [
                str(bin_dir / "kwok"),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={bin_dir / KWOK_STAGES}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                f"--cidr={POD_CIDR}",
                f"--server-address={LOOPBACK}:{port}",
                "--node-lease-duration-seconds=40",  # kwok renews the fake nodes' leases: they stay Ready
            ],
            f"http://{LOOPBACK}:{port}/healthz",
            None,
        )

    def _create_nodes(self) -> None:
        for name in self.nodes:
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                        },
                    },
                }
            )
        if self.nodes:
            self.apply(HOSTPATH_STORAGE_CLASS)
            wait = ["wait", "--for=condition=Ready", f"--timeout={self.start_timeout:.0f}s"]
            self.kubectl(*wait, *(f"node/{name}" for name in self.nodes), timeout=self.start_timeout + 30)

    def _wait_for_default_service_account(self) -> None:
        """Pods cannot be admitted before their namespace's `default` ServiceAccount exists."""

        def exists() -> bool:
            for process in self._processes:
                process.check_alive()
            return self.kubectl("get", "serviceaccount", "default", "--namespace=default", check=False).returncode == 0

        wait_until(exists, self.start_timeout, "the default ServiceAccount", interval=0.5)
