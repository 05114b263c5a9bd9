"""A local Alertmanager for `adnomaly up`, when a pipeline asks for notifications without naming one.

Its config is the user's: `alertmanager.yml` in the state directory is written once, with a webhook receiver,
and never overwritten, so edits (e-mail, chat, paging receivers, routes) survive restarts.

The generated route makes each anomaly one notification when it fires and one when it resolves:

- `group_by: ['...']` groups by every label, so each alert (one anomaly: see `adnomaly.notify.alerts`) is
  a group of its own; a shared group would repeat its firing members in every later notification;
- `group_wait` delays a new group's first notification (the detector holds a resolution back for longer,
  `NotifyConfig.firing_hold_s`, so the firing one always goes out first);
- `group_interval` is how soon after a change (the resolution) the group is notified again;
- `repeat_interval` re-sends an unchanged group: set beyond any anomaly's life, with `--data.retention`
  (how long the notification log remembers what was sent) as long, so an open anomaly is not repeated.

The detector's re-sends of open anomalies (every minute) change nothing in a group and notify no one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adnomaly.local.prometheus import LoopbackServer
from adnomaly.services.prometheus import find_alertmanager

CONFIG_NAME = "alertmanager.yml"
DEFAULT_WEBHOOK = "http://127.0.0.1:5001/"  # the receiver port of Alertmanager's own examples
RETENTION = "720h"


def alertmanager_config(webhook_url: str = DEFAULT_WEBHOOK, *, group_wait: str = "10s",
                        group_interval: str = "30s", repeat_interval: str = RETENTION,
                        resolve_timeout: str = "5m") -> str:  # fmt: skip
    """alertmanager.yml (pure), with comments for the person who edits it."""
    return f"""\
# Alertmanager for `adnomaly up`: written once, never overwritten. Edit the receiver (e-mail, Slack,
# PagerDuty, ...: https://prometheus.io/docs/alerting/latest/configuration/#receiver) and restart
# `adnomaly up`. Check an edit with: amtool check-config {CONFIG_NAME}
global:
  # An open anomaly is re-sent every minute; one not re-sent for this long is resolved by Alertmanager.
  resolve_timeout: {resolve_timeout}
route:
  receiver: webhook
  # One group per alert (every label): one notification per anomaly when it fires, one when it resolves.
  group_by: ['...']
  group_wait: {group_wait}
  group_interval: {group_interval}
  # No reminders while an anomaly stays open (keep it <= --data.retention, {RETENTION} here).
  repeat_interval: {repeat_interval}
receivers:
  - name: webhook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""


def ensure_config(state_dir: Path) -> Path:
    """The state directory's alertmanager.yml, written with the defaults if it does not exist yet."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / CONFIG_NAME
    if not path.exists():
        path.write_text(alertmanager_config())
    return path


@dataclass
class AlertmanagerServer(LoopbackServer):
    name = "alertmanager"

    def argv(self) -> list[str]:
        return [
            str(self.binary),
            f"--config.file={self.config_path}",
            f"--storage.path={self.state_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # one instance: no gossip port
            f"--data.retention={RETENTION}",
        ]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def alertmanager_server(state_dir: Path, *, binary: Path | None = None,
                        config_path: Path | None = None) -> AlertmanagerServer | None:  # fmt: skip
    """A configured (not yet started) server on the state directory's config, or None when Alertmanager
    is not installed."""
    binary = binary or find_alertmanager()
    if binary is None:
        return None
    return AlertmanagerServer(binary, config_path or ensure_config(state_dir), state_dir)
