"""Prometheus and Alertmanager for local pipelines: the binaries of Debian's `prometheus` (prometheus,
promtool) and `prometheus-alertmanager` (prometheus-alertmanager, amtool) packages.

Both packages also install a system service; we never use it (our servers run on free loopback ports with
their own storage and config), and we stop and disable it right after installing so it does not hold the
default port (9090, 9093/9094).
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from adnomaly.services.base import ServiceError, apt_install, find_executable, run_tool


@dataclass(frozen=True)
class DebianServer:
    package: str
    binary: str
    unit: str  # the system service the package installs (and we disable)
    version: str | None = None  # the Debian version we test against, installed exactly where apt has it

    def find(self) -> Path | None:
        return find_executable(self.binary)

    def ensure(self) -> Path:
        """The binary, installed with apt when missing (root only)."""
        found = self.find()
        if found is not None:
            return found
        apt_install(f"{self.package}={self.version}" if self.version else self.package)
        if shutil.which("systemctl") and Path("/run/systemd/system").exists():
            # no such unit on this system: nothing holds the port
            with contextlib.suppress(ServiceError):
                run_tool(["systemctl", "disable", "--now", self.unit], f"systemctl disable {self.unit}")
        found = self.find()
        if found is None:
            raise ServiceError(f"apt-get install {self.package} did not provide a {self.binary} binary")
        return found


PROMETHEUS = DebianServer("prometheus", "prometheus", "prometheus")
# `apt-cache policy prometheus-alertmanager` on Debian 12 (bookworm): 0.25.0-1+b4, the version the
# notification tests run against (API v2, webhook receivers).
ALERTMANAGER = DebianServer(
    "prometheus-alertmanager", "prometheus-alertmanager", "prometheus-alertmanager", version="0.25.0-1+b4"
)


def find_prometheus() -> Path | None:
    return PROMETHEUS.find()


def ensure_prometheus() -> Path:
    return PROMETHEUS.ensure()


def find_alertmanager() -> Path | None:
    return ALERTMANAGER.find()


def ensure_alertmanager() -> Path:
    return ALERTMANAGER.ensure()
