"""A real Kubernetes node joined to the test control plane: containerd + runc + CNI + kubelet + kube-proxy.

`adnomaly.services.kube.KubeControlPlane` with kwok answers "does the API accept this and do the
controllers act on it"; this module answers "does it actually run": images are unpacked, containers
start under runc with the security context asked for, Service IPs route through kube-proxy's iptables
rules, names resolve through CoreDNS, PVCs bind through a provisioner and pods get SIGTERM on deletion.

Design decisions (and why):

- **The whole node lives in a network namespace the harness creates** (`adnomaly-n<N>`), joined to the
  host by one veth pair on a /30 of 10.250.<N>.0 (host side `.1`, node side `.2`, MTU 1400). containerd,
  the kubelet and kube-proxy are started with `nsenter --net=...` (not `ip netns exec`, which would also
  give each of them a private mount namespace and break the kubelet -> containerd volume hand-over), so
  their iptables rules, the `cni0` bridge, the pod CIDR, the Service CIDR and the forwarding sysctl exist
  only in that namespace; deleting it on stop deletes all of them. The host gains one veth with one
  address and nothing else: no route to the pod or Service CIDR, no iptables rule, no forwarding (the
  host's `ip_forward` stays as it was, so nothing can be routed past the host). Pods reach the API server
  on the host side of the veth (the control plane binds that address, see `api_address` in kube.py),
  source-NATed to the node's address by the CNI bridge's `ipMasq`. The node netns has no default route:
  traffic to anything but the host's veth address, the pods and the Service CIDR fails at once.
- **Several nodes at once**: `<N>` is the first index whose netns and host veth do not exist, so a test
  session and a `make cluster-up` cluster can run side by side; in its own netns every node has its own
  ports (10250, 10249, ...), iptables and bridge.
- **CoreDNS runs as a Deployment on the node** (image: the CoreDNS binary in a scratch image), the way
  clusters run it: DNS tests then exercise the real path (pod -> Service IP -> kube-proxy -> CoreDNS pod,
  CoreDNS -> `kubernetes` Service -> API server with a ServiceAccount token). Its Corefile has no
  `forward`: names outside cluster.local are never sent anywhere (no traffic leaves the machine). It
  listens on 1053 as a non-root user (the Service maps 53 -> 1053), so it needs no capability.
- **PVCs: rancher/local-path-provisioner** (built from its Go module) runs as a host process with the
  admin kubeconfig; it is a controller only, and its helper pods (which create/delete the volume
  directories under the node's state dir) run on the node with the harness's busybox image. Its
  StorageClass `local-path` is the default class and binds WaitForFirstConsumer.
- **Images without a registry**: the pause container is a few lines of C (`tools/node/pause.c`, gcc
  -static), busybox is Debian's busybox-static, CoreDNS is its binary; each goes into a `buildah from
  scratch` image (adnomaly.services.images: buildah with a private store under the cache), exported
  as an OCI archive cached by the digest of its inputs and tagged
  `localhost/adnomaly/<name>:<digest>` (fully qualified, so the kubelet never expands it to docker.io);
  `ctr -n k8s.io images import` loads it; the pause image is containerd's `sandbox_image`. Any other OCI
  archives (the project's images) are imported at start through `images=`.
- **cgroup v1, cgroupfs driver, a cgroup root of its own** (`/adnomaly-n<N>` in every hierarchy) so that
  two nodes never share `kubepods` and stop can kill every pod process by its cgroup and remove the tree.
- **Kernel tunables**: the kubelet sets vm.overcommit_memory=1, kernel.panic=10 and kernel.panic_on_oops=1
  (with protectKernelDefaults it would refuse to start instead); the harness records the host's values
  first and restores them on stop.
- **Stop leaves nothing**: pods on the node are deleted through the API (the kubelet tears sandboxes
  down: CNI DEL, netns removal), then kubelet and kube-proxy stop, remaining containers are killed with
  `ctr`, containerd and its shims stop, every process left in the node's cgroups is SIGKILLed, every
  mount under the state dir and every pod netns the node created is unmounted, the cgroup tree, the
  netns (with its bridge, veths and iptables chains) and the host veth are deleted. `cleanup(state_dir)`
  does the same from the state file alone (for `make cluster-down` after a crash). One host-wide change
  stays: `/` is made rshared (the kubelet needs mount propagation; systemd hosts have it by default).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from adnomaly.services.base import (
    CACHE_DIR,
    ManagedProcess,
    ServiceError,
    apt_install,
    file_lock,
    run_tool,
    wait_until,
    write_private_file,
)
from adnomaly.services.images import ImageArchive, build_scratch_image, images_dir
from adnomaly.services.kube import SERVICE_CIDR, KubeControlPlane
from adnomaly.services.mounts import mounts, mounts_under, unmount

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
NODE_BUILD_SCRIPT = ROOT / "tools" / "k8s" / "node-build.sh"
PAUSE_SOURCE = ROOT / "tools" / "node" / "pause.c"
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns", "local-path-provisioner")
# Debian packages the node needs and one executable each proves installed.
HOST_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "buildah": "buildah",
    "busybox-static": "/bin/busybox",
    "gcc": "gcc",
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",
}
CNI_BIN_DIR = Path("/usr/lib/cni")
NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Pod IPs of real nodes: inside the cluster's pod CIDR (10.244.0.0/16, kube-proxy's --cluster-cidr), far
# from the low addresses kwok hands out to fake pods.
CLUSTER_CIDR = "10.244.0.0/16"
POD_SUBNET = "10.244.128.0/24"
DNS_SERVICE_IP = str(ipaddress.ip_network(SERVICE_CIDR)[10])  # 10.96.0.10
CLUSTER_DOMAIN = "cluster.local"
MTU = 1400
KERNEL_TUNABLES = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops")
STATE_FILE = "node-state.json"
NODE_NAMESPACES = ("kube-system", "local-path-storage")


# --- binaries and host packages -------------------------------------------------------------------


def ensure_node_binaries() -> Path:
    """The directory holding kubelet, kube-proxy, coredns and local-path-provisioner, built if missing.

    `ADNOMALY_NODE_BIN` overrides the location (no build is attempted then).
    """
    override = os.environ.get("ADNOMALY_NODE_BIN")
    if override:
        bin_dir = Path(override)
    else:
        bin_dir = Path(run_tool([str(NODE_BUILD_SCRIPT), "--print-bin"], "locating node binaries", timeout=30).strip())
        if any(not (bin_dir / name).is_file() for name in NODE_BINARIES):
            log.info("building the node's binaries into %s (the first build takes a long time)", bin_dir)
            run_tool([str(NODE_BUILD_SCRIPT)], "tools/k8s/node-build.sh", timeout=3 * 3600)
    if missing := [name for name in NODE_BINARIES if not (bin_dir / name).is_file()]:
        raise ServiceError(f"{bin_dir} lacks {', '.join(missing)}")
    return bin_dir


def ensure_host_packages() -> None:
    """apt-get install whatever of containerd, runc, the CNI plugins, iptables, ... is missing."""
    missing = [
        package
        for package, probe in HOST_PACKAGES.items()
        if not (Path(probe).exists() if probe.startswith("/") else shutil.which(probe))
    ]
    if missing:
        with file_lock(CACHE_DIR / "apt.lock"):
            apt_install(*missing)


def _need_root() -> None:
    if os.geteuid() != 0:
        raise ServiceError("a real node needs root (network namespaces, mounts, cgroups, iptables)")


# --- images ----------------------------------------------------------------------------------------


class ImageArchiveLike(Protocol):
    """An OCI archive and the fully qualified reference it is run as (services.images.ImageArchive)."""

    @property
    def ref(self) -> str: ...

    @property
    def archive(self) -> Path: ...


def pause_image(cache: Path | None = None) -> ImageArchive:
    """The sandbox image: tools/node/pause.c compiled static."""
    cache = cache or CACHE_DIR
    source_digest = hashlib.sha256(PAUSE_SOURCE.read_bytes()).hexdigest()[:16]
    binary = images_dir(cache) / f"pause-{source_digest}.bin"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".tmp")
        run_tool(["gcc", "-static", "-O2", "-Wall", "-o", str(partial), str(PAUSE_SOURCE)], "gcc -static pause.c")
        run_tool(["strip", str(partial)], "strip pause")
        os.replace(partial, binary)
    return build_scratch_image("pause", {"/pause": binary}, ["/pause"], cache=cache)


def busybox_files(cache: Path | None = None) -> dict[str, Path | str]:
    """Debian's busybox-static with a symlink per applet and a minimal /etc/passwd and /etc/group."""
    cache = cache or CACHE_DIR
    busybox = Path("/bin/busybox")
    applets = run_tool([str(busybox), "--list"], "busybox --list").split()
    files: dict[str, Path | str] = {"/bin/busybox": busybox}
    for applet in applets:
        if applet != "busybox":
            files[f"/bin/{applet}"] = "@busybox"
    etc = images_dir(cache) / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        ("group", "root:x:0:\nnogroup:x:65534:\n"),
    ):
        if not (etc / name).exists() or (etc / name).read_text() != text:
            (etc / name).write_text(text)
        files[f"/etc/{name}"] = etc / name
    return files


def busybox_image(cache: Path | None = None) -> ImageArchive:
    """busybox in a scratch image: the tests' image and the PV helper pods'."""
    return build_scratch_image("busybox", busybox_files(cache), ["/bin/sh"], cache=cache)


def coredns_image(bin_dir: Path, cache: Path | None = None) -> ImageArchive:
    return build_scratch_image("coredns", {"/coredns": bin_dir / "coredns"}, ["/coredns"], cache=cache)


# --- network ---------------------------------------------------------------------------------------


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise ServiceError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class NodeNetwork:
    """The node's network namespace and its veth to the host, numbered `index` (0..255)."""

    index: int

    @property
    def netns(self) -> str:
        return f"adnomaly-n{self.index}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def host_interface(self) -> str:
        return f"adn{self.index}h"

    @property
    def host_ip(self) -> str:
        """Where the API server binds: reachable from the node netns and its pods."""
        return f"10.250.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.index}.2"

    @classmethod
    def allocate(cls) -> NodeNetwork:
        """Create the first free one (under a lock, so concurrent harnesses never pick the same)."""
        _need_root()
        with file_lock(CACHE_DIR / "node-network.lock"):
            for index in range(256):
                network = cls(index)
                if network.netns_path.exists() or Path(f"/sys/class/net/{network.host_interface}").exists():
                    continue
                network.create()
                return network
        raise ServiceError("no free node network index (256 node netns exist?)")

    def create(self) -> None:
        ns = self.netns
        _ip("netns", "add", ns)
        try:
            _ip("link", "add", self.host_interface, "mtu", str(MTU), "type", "veth", "peer", "name", "eth0",
                "mtu", str(MTU), "netns", ns)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_interface)
            _ip("link", "set", self.host_interface, "up")
            _ip("link", "set", "lo", "up", netns=ns)
            _ip("addr", "add", f"{self.node_ip}/30", "dev", "eth0", netns=ns)
            _ip("link", "set", "eth0", "up", netns=ns)
            # Locally generated packets to Service IPs need a route before kube-proxy's DNAT rewrites them.
            _ip("route", "add", SERVICE_CIDR, "via", self.host_ip, "dev", "eth0", netns=ns)
            for key, value in (
                ("net.ipv4.ip_forward", "1"),  # this namespace's own copy: pods <-> bridge <-> eth0
                ("net.bridge.bridge-nf-call-iptables", "1"),  # pod -> Service -> pod on the same bridge
                ("net.ipv4.conf.all.rp_filter", "0"),
            ):
                self.sysctl(key, value)
        except BaseException:
            self.delete()
            raise

    def sysctl(self, key: str, value: str) -> None:
        run_tool(["nsenter", f"--net={self.netns_path}", "sysctl", "-q", "-w", f"{key}={value}"], f"sysctl {key}")

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the node's network namespace (and only that: mounts stay the host's)."""
        return ["nsenter", f"--net={self.netns_path}", "--", *argv]

    def delete(self) -> None:
        """Delete the netns (its bridge, veths, routes and iptables rules go with it) and the host veth.

        The first `ip netns add` on a host bind-mounts /run/netns onto itself; once no netns is left in it
        that mount is undone too (the next `ip netns add` makes it again)."""
        with file_lock(CACHE_DIR / "node-network.lock"):
            if self.netns_path.exists():
                _ip("netns", "delete", self.netns, check=False)
            if Path(f"/sys/class/net/{self.host_interface}").exists():
                _ip("link", "delete", self.host_interface, check=False)
            if NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()) and str(NETNS_DIR) in mounts():
                subprocess.run(["umount", str(NETNS_DIR)], capture_output=True, check=False)


# --- host-level helpers ----------------------------------------------------------------------------


def _make_root_shared() -> None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            if not any(tag.startswith("shared:") for tag in fields[6 : fields.index("-")]):
                run_tool(["mount", "--make-rshared", "/"], "mount --make-rshared /")
            return


def _read_tunables() -> dict[str, str]:
    return {key: (Path("/proc/sys") / key).read_text().strip() for key in KERNEL_TUNABLES}


def _restore_tunables(values: Mapping[str, str]) -> None:
    for key, value in values.items():
        path = Path("/proc/sys") / key
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value)


def _cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies (and the cgroup2 one in hybrid mode)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2") and fields[4].startswith(str(CGROUP_ROOT)):
            found.append(Path(fields[4]))
    return found


def _create_cgroup_root(name: str) -> None:
    for hierarchy in _cgroup_hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        if (hierarchy / "cpuset.cpus").exists():  # a new v1 cpuset group starts empty: inherit the parent's
            for key in ("cpuset.cpus", "cpuset.mems"):
                if not (path / key).read_text().strip():
                    (path / key).write_text((hierarchy / key).read_text())


def _cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / name
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids |= {int(pid) for pid in procs.read_text().split()}
    return pids


def _remove_cgroup_root(name: str) -> None:
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / name
        if not root.is_dir():
            continue
        for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def _pids_with_arg(needle: str) -> list[int]:
    """Processes whose command line contains `needle` (our containerd socket path: its shims)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes().decode(errors="replace").split("\0"):
                found.append(int(entry.name))
    return found


def _kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# --- the node --------------------------------------------------------------------------------------


@dataclass
class NodeState:
    """What `cleanup` needs to undo a node, written before anything is created."""

    state_dir: str
    network_index: int
    cgroup_root: str
    containerd_socket: str
    tunables: dict[str, str]
    pod_netns: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        write_private_file(path, json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> NodeState:
        return cls(**json.loads(path.read_text()))


class RealNode:
    """containerd + kubelet + kube-proxy (+ CoreDNS, local-path-provisioner) against `plane`.

    `plane` must have been created with `api_address=network.host_ip` (see `RealCluster`, which does the
    ordering). `images` are OCI archives imported at start, in addition to the harness's own pause,
    busybox and CoreDNS images (`self.images`).
    """

    def __init__(
        self,
        plane: KubeControlPlane,
        network: NodeNetwork,
        state_dir: Path,
        *,
        name: str | None = None,
        images: Sequence[ImageArchiveLike] = (),
        bin_dir: Path | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        self.plane = plane
        self.network = network
        self.state_dir = Path(state_dir).resolve()
        self.name = name or f"adnomaly-node-{network.index}"
        self.extra_images = list(images)
        self._bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.images: dict[str, ImageArchive] = {}
        self._processes: list[ManagedProcess] = []
        self.started_at: float | None = None
        self.ready_seconds: float | None = None

    # -- paths --

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = ensure_node_binaries()
        return self._bin_dir

    @property
    def cgroup_root(self) -> str:
        return f"adnomaly-n{self.network.index}"

    @property
    def containerd_socket(self) -> Path:
        return self.state_dir / "containerd" / "containerd.sock"

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        return {process.name: process for process in self._processes}

    def ctr(self, *args: str, check: bool = True, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise ServiceError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        return done

    # -- lifecycle --

    def start(self) -> None:
        if self._processes:
            return
        _need_root()
        ensure_host_packages()
        bin_dir = self.bin_dir
        t0 = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        NodeState(
            state_dir=str(self.state_dir),
            network_index=self.network.index,
            cgroup_root=self.cgroup_root,
            containerd_socket=str(self.containerd_socket),
            tunables=_read_tunables(),
        ).save(self.state_dir / STATE_FILE)
        atexit.register(self.stop)
        try:
            self.images = {
                "pause": pause_image(),
                "busybox": busybox_image(),
                "coredns": coredns_image(bin_dir),
            }
            _make_root_shared()
            _create_cgroup_root(self.cgroup_root)
            self._start_containerd()
            self.import_images([*self.images.values(), *self.extra_images])
            self._write_cni_config()
            self._start_kubelet(bin_dir)
            self._start_kube_proxy(bin_dir)
            self._wait_node_ready()
            self.ready_seconds = time.monotonic() - t0
            self._deploy_coredns()
            self._start_provisioner(bin_dir)
            self._wait_coredns()
        except BaseException:
            self.stop()
            raise
        log.info("node %s Ready after %.1fs (all add-ons after %.1fs)", self.name, self.ready_seconds,
                 time.monotonic() - t0)

    def stop(self, *, keep_network: bool = False) -> None:
        """Drain, stop every process, unmount, delete cgroups, netns and veth. Safe to call twice.

        `keep_network` leaves the netns and veth for the caller to delete: the API server listens on the
        veth and, stopping after the node, still talks to itself through it (10 s lost otherwise)."""
        atexit.unregister(self.stop)
        t0 = time.monotonic()
        if self._processes:
            self._drain()
            log.info("node %s drained in %.1fs", self.name, time.monotonic() - t0)
            by_name = self.processes
            for name in ("local-path-provisioner", "kube-proxy", "kubelet"):
                if name in by_name:
                    by_name[name].stop(timeout=20)
        state = self.state_dir / STATE_FILE
        if state.exists():
            cleanup(self.state_dir, containerd=self.processes.get("containerd"), keep_network=keep_network)
        for process in self._processes:
            process.stop(timeout=5)
        self._processes.clear()
        log.info("node %s stopped in %.1fs", self.name, time.monotonic() - t0)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def import_images(self, images: Iterable[ImageArchiveLike]) -> None:
        """Load OCI archives into containerd's k8s.io namespace under their `ref`."""
        for image in images:
            done = self.ctr("images", "import", str(image.archive))  # unpacks into the overlayfs snapshotter
            imported = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("unpacking")]
            listed = self.ctr("images", "ls", "-q").stdout.split()
            if image.ref not in listed:
                source = next((name for name in imported if name in listed), None)
                if source is None:
                    raise ServiceError(f"importing {image.archive} did not yield {image.ref}: {done.stdout}")
                self.ctr("images", "tag", "--force", source, image.ref)
            log.debug("imported %s", image.ref)

    # -- containerd --

    def _spawn(self, name: str, argv: Sequence[str], *, netns: bool = True) -> ManagedProcess:
        process = ManagedProcess(
            name=name,
            argv=self.network.wrap(argv) if netns else list(argv),
            log_path=self.state_dir / "logs" / f"{name}.log",
        )
        self._processes.append(process)
        process.start()
        return process

    def _start_containerd(self) -> None:
        base = self.state_dir / "containerd"
        for sub in ("root", "state", "opt", "runc"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        cni_conf = self.state_dir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = "{base / 'root'}"
state = "{base / 'state'}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{self.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / 'opt'}"

[{cri}]
  sandbox_image = "{self.images['pause'].ref}"
  enable_selinux = false
  disable_cgroup = false
  disable_apparmor = true
  restrict_oom_score_adj = true  # no CAP_SYS_RESOURCE here: never below containerd's own
  tolerate_missing_hugetlb_controller = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{base / 'runc'}"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf}"
  max_conf_num = 1
"""
        config_path = base / "config.toml"
        config_path.write_text(config)
        process = self._spawn("containerd", ["containerd", f"--config={config_path}", "--log-level=info"])

        def up() -> bool:
            return self.containerd_socket.exists() and self.ctr("version", check=False, timeout=10).returncode == 0

        process.wait_ready(up, timeout=60)

    def _write_cni_config(self) -> None:
        conflist = {
            "cniVersion": "0.4.0",
            "name": f"adnomaly-n{self.network.index}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": True,  # pods -> API server (on the host veth) leave as the node's address
                    "hairpinMode": True,
                    "mtu": MTU,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.state_dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        path = self.state_dir / "cni" / "net.d" / "10-adnomaly.conflist"
        path.write_text(json.dumps(conflist, indent=2) + "\n")

    # -- kubelet and kube-proxy --

    def _client_kubeconfig(self, name: str, common_name: str, organization: str | None, **kwargs: object) -> Path:
        pki = self.state_dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        cert, key = pki / f"{name}.crt", pki / f"{name}.key"
        self.plane.pki.issue_client(cert, key, common_name, organization, **kwargs)  # type: ignore[arg-type]
        return self.plane.write_kubeconfig(pki / f"{name}.kubeconfig", cert, key, common_name)

    def _start_kubelet(self, bin_dir: Path) -> None:
        kubeconfig = self._client_kubeconfig(
            "kubelet", f"system:node:{self.name}", "system:nodes", server_ips=[self.network.node_ip]
        )
        pki = self.state_dir / "pki"
        root = self.state_dir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        resolv = self.state_dir / "resolv.conf"
        resolv.write_text("# no upstream resolvers: nothing leaves this machine\noptions ndots:5\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_root}",
            "cgroupsPerQOS": True,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": self.network.node_ip,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "tlsCertFile": str(pki / "kubelet.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True, "cacheTTL": "10s"},
                "x509": {"clientCAFile": str(self.plane.pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "10s"}},
            "clusterDNS": [DNS_SERVICE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(resolv),
            "podLogsDir": str(self.state_dir / "pod-logs"),
            # images are loaded by hand: never garbage-collect them, never evict for disk or memory
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "0%",
                "nodefs.available": "0%",
                "nodefs.inodesFree": "0%",
                "imagefs.available": "0%",
            },
            "protectKernelDefaults": False,
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "registerNode": True,
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "20s",
            "maxPods": 110,
            "shutdownGracePeriod": "0s",
            "localStorageCapacityIsolation": True,
        }
        config_path = self.state_dir / "kubelet-config.json"
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        self._spawn(
            "kubelet",
            [
                str(bin_dir / "kubelet"),
                f"--config={config_path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={root}",
                f"--cert-dir={pki}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.network.node_ip}",
                "--node-labels=adnomaly.io/node=real",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self, bin_dir: Path) -> None:
        kubeconfig = self._client_kubeconfig("kube-proxy", "system:kube-proxy", None)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.name,
            "clusterCIDR": CLUSTER_CIDR,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # conntrack sysctls are global or already fine: leave them alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
            "nodePortAddresses": [f"{self.network.node_ip}/32"],
        }
        config_path = self.state_dir / "kube-proxy-config.json"
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        self._spawn("kube-proxy", [str(bin_dir / "kube-proxy"), f"--config={config_path}", "--v=1"])

    def _check_alive(self) -> None:
        for process in self._processes:
            process.check_alive()

    def _wait_node_ready(self) -> None:
        def ready() -> bool:
            self._check_alive()
            done = self.plane.kubectl(
                "get", "node", self.name, "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False,
            )
            return done.returncode == 0 and done.stdout.strip() == "True"

        wait_until(ready, self.start_timeout, f"node {self.name} to be Ready", interval=0.5)
        # a control plane restarted on old state still has the Node that the last stop() cordoned
        self.plane.kubectl("uncordon", self.name)

    # -- add-ons --

    def _deploy_coredns(self) -> None:
        corefile = f"""\
.:1053 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""
        labels = {"k8s-app": "kube-dns"}
        objects: list[dict[str, object]] = [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "system:coredns"},
                "rules": [
                    {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                     "verbs": ["list", "watch"]},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "system:coredns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
                "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "coredns", "namespace": "kube-system"},
                "data": {"Corefile": corefile},
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": "coredns",
                            "priorityClassName": "system-cluster-critical",
                            "dnsPolicy": "Default",
                            "nodeSelector": {"kubernetes.io/hostname": self.name},
                            "tolerations": [{"operator": "Exists"}],
                            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                                "seccompProfile": {"type": "RuntimeDefault"}},
                            "containers": [
                                {
                                    "name": "coredns",
                                    "image": self.images["coredns"].ref,
                                    "imagePullPolicy": "Never",
                                    "args": ["-conf", "/etc/coredns/Corefile"],
                                    "ports": [
                                        {"name": "dns", "containerPort": 1053, "protocol": "UDP"},
                                        {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"},
                                    ],
                                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                                       "periodSeconds": 2},
                                    "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                                      "periodSeconds": 10, "failureThreshold": 5},
                                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                                  "limits": {"memory": "170Mi"}},
                                    "securityContext": {"allowPrivilegeEscalation": False,
                                                        "readOnlyRootFilesystem": True,
                                                        "capabilities": {"drop": ["ALL"]}},
                                    "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns",
                                                      "readOnly": True}],
                                }
                            ],
                            "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
                "spec": {
                    "clusterIP": DNS_SERVICE_IP,
                    "selector": labels,
                    "ports": [
                        {"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"},
                    ],
                },
            },
        ]
        self.plane.apply({"apiVersion": "v1", "kind": "List", "items": objects})

    def _wait_coredns(self) -> None:
        timeout = self.start_timeout
        self.plane.kubectl("rollout", "status", "deployment/coredns", "--namespace=kube-system",
                           f"--timeout={timeout:.0f}s", timeout=timeout + 30)

    def _start_provisioner(self, bin_dir: Path) -> None:
        namespace = "local-path-storage"
        volumes = self.state_dir / "local-path"
        volumes.mkdir(parents=True, exist_ok=True)
        helper_pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "helper-pod"},
            "spec": {
                "priorityClassName": "system-node-critical",
                "containers": [{"name": "helper-pod", "image": self.images["busybox"].ref,
                                "imagePullPolicy": "Never", "securityContext": {"runAsUser": 0}}],
            },
        }
        config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(volumes)]}]}
        objects: list[dict[str, object]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "local-path-provisioner-service-account", "namespace": namespace}},
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "local-path-config", "namespace": namespace},
                "data": {
                    "config.json": json.dumps(config),
                    "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                    "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                    "helperPod.yaml": json.dumps(helper_pod),
                },
            },
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": "local-path",
                             "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "rancher.io/local-path",
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Delete",
            },
        ]
        self.plane.apply({"apiVersion": "v1", "kind": "List", "items": objects})
        config_path = self.state_dir / "local-path-config.json"
        config_path.write_text(json.dumps(config) + "\n")
        helper_path = self.state_dir / "local-path-helper-pod.json"
        helper_path.write_text(json.dumps(helper_pod) + "\n")
        self._spawn(
            "local-path-provisioner",
            [
                str(bin_dir / "local-path-provisioner"),
                "start",
                f"--kubeconfig={self.plane.kubeconfig}",
                f"--config={config_path}",
                f"--helper-pod-file={helper_path}",
                f"--namespace={namespace}",
                f"--helper-image={self.images['busybox'].ref}",
            ],
            netns=False,
        )

    # -- stop --

    def _drain(self) -> None:
        """Delete every pod on this node through the API, so the kubelet tears sandboxes down (CNI DEL)."""
        if not self.processes.get("kubelet") or not self.processes["kubelet"].running:
            return
        try:
            self.plane.kubectl("cordon", self.name, check=False, timeout=20)
            self.plane.kubectl("delete", "deployment", "coredns", "--namespace=kube-system", "--wait=false",
                               "--ignore-not-found", check=False, timeout=20)
            selector = f"--field-selector=spec.nodeName={self.name}"
            self.plane.kubectl("delete", "pods", "--all-namespaces", selector, "--grace-period=2",
                               "--wait=false", check=False, timeout=30)

            def drained() -> bool:
                done = self.plane.kubectl("get", "pods", "--all-namespaces", selector, "-o", "name",
                                          check=False, timeout=20)
                tasks = self.ctr("tasks", "ls", "-q", check=False, timeout=20).stdout.split()
                return done.returncode != 0 or (not done.stdout.strip() and not tasks)

            wait_until(drained, 45, f"pods on {self.name} to terminate", interval=0.5)
        except (ServiceError, subprocess.TimeoutExpired) as exc:
            log.warning("drain of %s incomplete (%s); killing what is left", self.name, exc)


def _pod_netns_paths(socket: Path) -> list[str]:
    """The network namespaces (bind mounts under /run/netns) of the sandboxes this containerd knows."""
    base = ["ctr", f"--address={socket}", "--namespace=k8s.io"]
    done = subprocess.run([*base, "containers", "ls", "-q"], capture_output=True, text=True, check=False, timeout=30)
    paths = []
    for container in done.stdout.split():
        info = subprocess.run([*base, "containers", "info", container], capture_output=True, text=True,
                              check=False, timeout=30)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            for namespace in json.loads(info.stdout)["Spec"]["linux"]["namespaces"]:
                path = namespace.get("path", "").replace("/var/run/", "/run/", 1)  # CRI writes /var/run/netns
                if namespace["type"] == "network" and path.startswith(str(NETNS_DIR) + "/"):
                    paths.append(path)
    return sorted(set(paths))


def cleanup(state_dir: Path, containerd: ManagedProcess | None = None, *, keep_network: bool = False) -> None:
    """Undo everything a node with this state dir made, from its state file; idempotent.

    Kills remaining containers (through containerd while it runs, then by cgroup), containerd's shims,
    unmounts everything under the state dir and the pod netns, removes the cgroup tree, the node netns and
    its veth, container log symlinks and CNI cache entries, and restores the kernel tunables.
    """
    state_dir = Path(state_dir).resolve()
    path = state_dir / STATE_FILE
    if not path.exists():
        return
    state = NodeState.load(path)
    socket = Path(state.containerd_socket)
    network = NodeNetwork(state.network_index)
    base = ["ctr", f"--address={socket}", "--namespace=k8s.io"]
    config = state_dir / "containerd" / "config.toml"
    alive = subprocess.run([*base, "version"], capture_output=True, check=False, timeout=30).returncode == 0
    if not alive and config.exists() and containerd is None:
        # A crashed harness took containerd with it, but its containers (and their netns bind mounts under
        # /run/netns) outlive it: start containerd once more on the same state to list and remove them.
        _kill_pids(_pids_with_arg(f"--config={config}"))
        containerd = ManagedProcess("containerd-cleanup", ["containerd", f"--config={config}"],
                                    state_dir / "logs" / "containerd-cleanup.log")
        containerd.start()
        with contextlib.suppress(ServiceError):
            wait_until(lambda: subprocess.run([*base, "version"], capture_output=True, check=False,
                                              timeout=10).returncode == 0, 30, "containerd (cleanup)", 0.2)
    containers: list[str] = []
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        state.pod_netns = sorted(set(state.pod_netns) | set(_pod_netns_paths(socket)))
        state.save(path)
        containers = subprocess.run([*base, "containers", "ls", "-q"], capture_output=True, text=True,
                                    check=False, timeout=30).stdout.split()
        tasks = subprocess.run([*base, "tasks", "ls", "-q"], capture_output=True, text=True, check=False,
                               timeout=30).stdout.split()
        for task in tasks:
            subprocess.run([*base, "tasks", "kill", "--signal=SIGKILL", task], capture_output=True,
                           check=False, timeout=30)
        for task in tasks:
            subprocess.run([*base, "tasks", "delete", "--force", task], capture_output=True, check=False,
                           timeout=30)
    if containerd is not None:
        containerd.stop(timeout=15)
    _kill_pids(_pids_with_arg(f"--config={config}"))
    # shim sockets: containerd 1.6 names them /run/containerd/s/sha256(<address>/<namespace>/<id>)
    for container in containers:
        name = hashlib.sha256(f"{socket}/k8s.io/{container}".encode()).hexdigest()
        with contextlib.suppress(OSError):
            (Path("/run/containerd/s") / name).unlink()
    # kubelet/kube-proxy/containerd of a crashed harness run under `nsenter --net=<our netns>`
    for process in ("kubelet", "kube-proxy"):
        _kill_pids(pid for pid in _pids_with_arg(f"--config={state_dir / f'{process}-config.json'}"))
    _kill_pids(_pids_with_arg(f"--kubeconfig={state_dir.parent / 'kube' / 'kubeconfig'}"))  # provisioner
    _kill_pids(_pids_with_arg(str(socket)))  # shims: `containerd-shim-runc-v2 ... -address <socket>`
    for _ in range(50):
        pids = _cgroup_pids(state.cgroup_root)
        if not pids:
            break
        _kill_pids(pids)
        time.sleep(0.1)
    unmount(mounts_under(state_dir))
    netns_mounts = set(mounts())
    for netns in state.pod_netns:
        if netns in netns_mounts:
            unmount([netns])
        with contextlib.suppress(FileNotFoundError):
            Path(netns).unlink()
    _remove_cgroup_root(state.cgroup_root)
    if not keep_network:
        network.delete()
    for link in Path("/var/log/containers").glob("*.log") if Path("/var/log/containers").is_dir() else ():
        with contextlib.suppress(OSError):
            if os.readlink(link).startswith(str(state_dir) + "/"):
                link.unlink()
    cni_cache = Path("/var/lib/cni/results")
    if cni_cache.is_dir():
        for entry in cni_cache.glob(f"adnomaly-n{state.network_index}-*"):
            with contextlib.suppress(OSError):
                entry.unlink()
    for directory in (Path("/run/containerd/s"), Path("/run/containerd"), Path("/var/log/containers"),
                      cni_cache, cni_cache.parent):
        with contextlib.suppress(OSError):  # only when empty: created for this node, nobody else uses them
            directory.rmdir()
    _restore_tunables(state.tunables)
    path.unlink()


# --- control plane + node --------------------------------------------------------------------------

NETWORK_FILE = "network.json"


def cleanup_cluster(state_dir: Path) -> None:
    """Undo what a `RealCluster` on `state_dir` left behind (its node, then its network); idempotent.

    Its control-plane processes die with the process that started them (PR_SET_PDEATHSIG)."""
    cleanup(Path(state_dir) / "node")
    path = Path(state_dir) / NETWORK_FILE
    if path.exists():
        NodeNetwork(int(json.loads(path.read_text())["index"])).delete()
        path.unlink()



class RealCluster:
    """A control plane whose API server listens on a node netns's veth, and one real node in that netns.

    Usage: `with RealCluster(state_dir) as cluster: cluster.kubectl("get", "nodes")`. No kwok nodes are
    created: every pod lands on the real node.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        images: Sequence[ImageArchiveLike] = (),
        start_timeout: float = 300.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.images = list(images)
        self.start_timeout = start_timeout
        self.network: NodeNetwork | None = None
        self.plane: KubeControlPlane | None = None
        self.node: RealNode | None = None
        self.start_seconds: float | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kube" / "kubeconfig"

    def kubectl(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        if self.plane is None:
            raise ServiceError("the cluster is not started")
        return self.plane.kubectl(*args, **kwargs)  # type: ignore[arg-type]

    def start(self) -> None:
        t0 = time.monotonic()
        _need_root()
        ensure_host_packages()
        bin_dir = ensure_node_binaries()  # before the network exists: a cold build takes long
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cleanup_cluster(self.state_dir)  # a previous run on this state dir that was never stopped
        try:
            self.network = NodeNetwork.allocate()
            write_private_file(self.state_dir / NETWORK_FILE, json.dumps({"index": self.network.index}) + "\n")
            self.plane = KubeControlPlane(self.state_dir / "kube", nodes=0, api_address=self.network.host_ip,
                                          start_timeout=self.start_timeout)
            self.plane.start()
            self.node = RealNode(self.plane, self.network, self.state_dir / "node", images=self.images,
                                 bin_dir=bin_dir, start_timeout=self.start_timeout)
            self.node.start()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop(keep_network=True)
            self.node = None
        if self.plane is not None:
            self.plane.stop()
            self.plane = None
        if self.network is not None:
            self.network.delete()
            self.network = None
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / NETWORK_FILE).unlink()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- CLI: make cluster-up / cluster-down -----------------------------------------------------------

DEFAULT_CLUSTER_DIR = Path(os.environ.get("ADNOMALY_CLUSTER_DIR", "/var/tmp/adnomaly-cluster"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _serve(state_dir: Path, images: Sequence[Path]) -> int:
    """Run the cluster in this process until SIGTERM/SIGINT (the background half of `up`)."""
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    archives = [_archive_image(path) for path in images]
    cluster = RealCluster(state_dir, images=archives)
    ready = state_dir / "cluster.json"
    try:
        cluster.start()
        info = {
            "pid": os.getpid(),
            "kubeconfig": str(cluster.kubeconfig),
            "node": cluster.node.name if cluster.node else None,
            "start_seconds": round(cluster.start_seconds or 0.0, 1),
            "node_ready_seconds": round(cluster.node.ready_seconds or 0.0, 1) if cluster.node else None,
            "images": {name: image.ref for name, image in (cluster.node.images.items() if cluster.node else [])},
        }
        write_private_file(ready, json.dumps(info, indent=2) + "\n")
        while not stop:
            time.sleep(0.5)
            if cluster.plane is not None:
                for process in [*cluster.plane.processes.values(), *(cluster.node.processes.values()
                                                                    if cluster.node else [])]:
                    process.check_alive()
    finally:
        cluster.stop()
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
    return 0


@dataclass(frozen=True)
class _Archive:
    ref: str
    archive: Path


def _archive_image(path: Path) -> _Archive:
    """An OCI archive given on the command line; its ref is the name in its index.json annotation."""
    import tarfile

    with tarfile.open(path) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise ServiceError(f"{path}: no index.json (not an OCI archive)")
        index = json.load(member)
    ref = index["manifests"][0].get("annotations", {}).get("org.opencontainers.image.ref.name", "")
    if "/" not in ref:
        raise ServiceError(f"{path}: its ref.name annotation {ref!r} is not a fully qualified image name")
    return _Archive(ref, path)


def _up(state_dir: Path, images: Sequence[Path], timeout: float) -> int:
    pid_file = state_dir / "cluster.pid"
    ready = state_dir / "cluster.json"
    if pid_file.exists() and _pid_alive(int(pid_file.read_text())):
        if ready.exists():
            print(json.loads(ready.read_text())["kubeconfig"])
            return 0
        raise SystemExit(f"a cluster is starting in {state_dir} (pid {pid_file.read_text().strip()})")
    if state_dir.exists():  # a fresh cluster every time: undo whatever a crashed one left, then wipe it
        cleanup_cluster(state_dir)
        if left := mounts_under(state_dir):
            raise SystemExit(f"{state_dir} still has mounts: {left}")
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    log_path = state_dir / "cluster.log"
    argv = [sys.executable, "-m", "adnomaly.services.node", "serve", f"--state-dir={state_dir}",
            *(f"--image={path}" for path in images)]
    with log_path.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            info = json.loads(ready.read_text())
            print(f"cluster up in {info['start_seconds']}s (node Ready after {info['node_ready_seconds']}s); "
                  f"pid {process.pid}, log {log_path}", file=sys.stderr)
            print(info["kubeconfig"])
            return 0
        if process.poll() is not None:
            print((log_path.read_text(errors="replace"))[-4000:], file=sys.stderr)
            raise SystemExit(f"the cluster failed to start (exit {process.returncode}); log: {log_path}")
        time.sleep(1)
    raise SystemExit(f"the cluster did not come up within {timeout:.0f}s; log: {log_path}")


def _down(state_dir: Path, timeout: float) -> int:
    pid_file = state_dir / "cluster.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            if _pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        pid_file.unlink()
    cleanup_cluster(state_dir)  # whatever a killed supervisor left behind
    print(f"cluster in {state_dir} is down", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _logging(level: int) -> Iterator[None]:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    yield


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.services.node", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "serve"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_CLUSTER_DIR)
    parser.add_argument("--image", type=Path, action="append", default=[], help="an OCI archive to import")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    with _logging(logging.INFO):
        if args.command == "up":
            return _up(state_dir, args.image, args.timeout)
        if args.command == "down":
            return _down(state_dir, args.timeout)
        return _serve(state_dir, args.image)


if __name__ == "__main__":
    raise SystemExit(main())
