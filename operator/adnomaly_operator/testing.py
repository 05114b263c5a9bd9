"""Running the operator against a test control plane, for the operator tests and `adnomaly bench operator`.

`OperatorProcess` starts `adnomaly-operator` exactly as a user would (the installed entry point, with
KUBECONFIG) and reads its Prometheus metrics; `install_crds` installs the Pipeline CRD (generated) and the
upstream Strimzi / Flink CRDs so the API server validates everything the operator writes.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from adnomaly.services.base import ManagedProcess, free_port, tail
from adnomaly.services.kube import KubeControlPlane
from prometheus_client.parser import text_string_to_metric_families

from adnomaly_operator import crd

OPERATOR_BIN = Path(sys.executable).with_name("adnomaly-operator")
# The upstream CRDs are test data kept outside the repository, next to it: ../shared/third_party/crds
THIRD_PARTY_CRDS = Path(
    os.environ.get("ADNOMALY_THIRD_PARTY_CRDS", Path(__file__).resolve().parents[3] / "shared" / "third_party" / "crds")
)

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` (and the last value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def install_crds(kube: KubeControlPlane, ours: Path | None = None, third_party: Path = THIRD_PARTY_CRDS) -> None:
    """The Pipeline CRD (`ours`, or freshly generated) and every upstream CRD in `third_party`."""
    upstream = sorted(p for p in third_party.iterdir() if p.suffix in (".yaml", ".yml"))
    if ours is not None:
        kube.install_crds([ours, *upstream])
        return
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as generated:
        generated.write(crd.render_yaml())
    try:
        kube.install_crds([generated.name, *upstream])
    finally:
        os.unlink(generated.name)


class OperatorProcess:
    """`adnomaly-operator` against a cluster, with its metrics and liveness ports."""

    def __init__(self, kube: KubeControlPlane, log_dir: Path, *, namespace: str | None = None,
                 drift_interval: float = 3.0, workers: int = 8, extra_args: Sequence[str] = ()) -> None:
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        argv = [str(OPERATOR_BIN), "--metrics-port", str(self.metrics_port), "--liveness-port",
                str(self.liveness_port), "--drift-interval", str(drift_interval), "--workers", str(workers)]
        if namespace is not None:
            argv += ["--namespace", namespace]
        argv += list(extra_args)
        env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig)}
        self.process = ManagedProcess("adnomaly-operator", argv, log_dir / "operator.log", env=env)

    @property
    def log(self) -> str:
        return tail(self.process.log_path, 60)

    def start(self) -> OperatorProcess:
        self.process.start()
        self.process.wait_ready(self._live, timeout=60)
        return self

    def _live(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as r:
                return int(r.status) == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.stop(timeout=20)

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.process.stop(timeout=20)
        self.start()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def total(self, name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in self.metrics().items()
                   if n == name and all(dict(ls).get(k) == val for k, val in labels.items()))

    def writes(self) -> float:
        return self.total("adnomaly_operator_api_writes_total")

    def quiet_writes(self, settle: float = 2.0, timeout: float = 120.0) -> float:
        """Wait until nothing has been written for `settle` seconds; return the write count."""
        def settled() -> float | None:
            before = self.writes()
            time.sleep(settle)
            after = self.writes()
            return after if after == before else None

        return wait_for(settled, timeout, "the operator to stop writing", interval=0)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None, "the operator is not running"
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the operator process has used."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """The operator's resident memory now."""
        return self._status_mb("VmRSS:")

    def peak_rss_mb(self) -> float:
        """The most resident memory the operator has had (the kernel's high-water mark)."""
        return self._status_mb("VmHWM:")

    def _status_mb(self, field: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} line")
