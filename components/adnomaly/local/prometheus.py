"""A Prometheus server for one local pipeline: scrapes every component's /metrics, loads the alert rules.

`prometheus_server({component: metrics_port}, state_dir)` writes `prometheus.yml` under `state_dir` and
returns a stopped `PrometheusServer`; `.start()` runs it on a free loopback port (storage under
`state_dir/data`), `.url` is its web UI and HTTP API. Jobs are named `adnomaly-<component>`, the name the
dashboards and alert rules select on. With a local Alertmanager, the rules' alerts go there too.

`LoopbackServer` is what Prometheus and Alertmanager (`adnomaly.local.alertmanager`) share: a binary on a
free loopback port, its state under one directory, ready once `/-/ready` answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from adnomaly.monitoring.rules import rule_files
from adnomaly.services.base import ManagedProcess, free_port
from adnomaly.services.prometheus import find_prometheus


def job_name(component: str) -> str:
    return f"adnomaly-{component}"


def scrape_config(
    targets: Mapping[str, int], rules: Sequence[Path] = (), interval_s: float = 5.0, host: str = "127.0.0.1",
    alertmanager: str | None = None,
) -> dict[str, Any]:
    """The prometheus.yml document (pure); `alertmanager` (host:port) receives the rules' alerts."""
    interval = f"{interval_s:g}s"
    document: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": [
            {"job_name": job_name(component), "static_configs": [{"targets": [f"{host}:{port}"]}]}
            for component, port in sorted(targets.items())
            if port
        ],
    }
    if alertmanager:
        document["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return document


@dataclass
class LoopbackServer:
    binary: Path
    config_path: Path
    state_dir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = field(default=None, init=False)
    name = "server"

    def argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.process = ManagedProcess(self.name, self.argv(), self.state_dir / f"{self.name}.log")
        self.process.start()
        self.process.wait_ready(self._ready, timeout)
        (self.state_dir / "url").write_text(self.url + "\n")  # for `adnomaly status`

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            self.process.stop(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()


@dataclass
class PrometheusServer(LoopbackServer):
    name = "prometheus"

    def argv(self) -> list[str]:
        return [
            str(self.binary),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.state_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=2d",
        ]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; raises ValueError on a PromQL error."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10.0).json()
        if answer.get("status") != "success":
            raise ValueError(f"{expr!r}: {answer.get('errorType')}: {answer.get('error')}")
        return list(answer["data"]["result"])


def prometheus_server(
    targets: Mapping[str, int], state_dir: Path, *, interval_s: float = 5.0, binary: Path | None = None,
    alertmanager: str | None = None, port: int | None = None,
) -> PrometheusServer | None:
    """A configured (not yet started) server, or None when Prometheus is not installed."""
    binary = binary or find_prometheus()
    if binary is None:
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    config_path = state_dir / "prometheus.yml"
    document = scrape_config(targets, rule_files(), interval_s, alertmanager=alertmanager)
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    return PrometheusServer(binary, config_path, state_dir, port or free_port())
