"""Prometheus for local pipelines: the Debian `prometheus` package's binaries (prometheus, promtool).

The package also installs a system service; we never use it (our server runs on a free loopback port with
its own storage), and we stop and disable it right after installing so it does not hold port 9090.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from adnomaly.services.base import ServiceError, apt_install, find_executable, run_tool


def find_prometheus() -> Path | None:
    return find_executable("prometheus")


def ensure_prometheus() -> Path:
    """The prometheus binary, installed with apt when missing (root only)."""
    found = find_prometheus()
    if found is not None:
        return found
    apt_install("prometheus")
    if shutil.which("systemctl") and Path("/run/systemd/system").exists():
        # no such unit on this system: nothing holds the port
        with contextlib.suppress(ServiceError):
            run_tool(["systemctl", "disable", "--now", "prometheus"], "systemctl disable prometheus")
    found = find_prometheus()
    if found is None:
        raise ServiceError("apt-get install prometheus did not provide a prometheus binary")
    return found
