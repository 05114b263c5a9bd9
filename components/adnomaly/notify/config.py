"""The detector's `notify` section: where its anomalies go and how often open ones are re-sent.

Rendered by the plan from `spec.detection.notify` (and, without a URL in the spec, from the backend's own
Alertmanager); credentials never appear here, they reach the detector as environment variables
(`adnomaly.config.SecretEnv.ALERTMANAGER_*`). Imports nothing from `adnomaly.config`, like the detector's
own section, so that module can declare it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

ALERTNAME = "AdnomalyAnomaly"
# Alertmanager marks an alert resolved once `resolve_timeout` (default 5m) passes without a re-send, so
# open anomalies are re-sent every minute: Prometheus's own `--rules.alert.resend-delay` default, which
# leaves four lost sends (or a detector restart of up to ~4 minutes) before an alert would time out.
RESEND_INTERVAL_S = 60.0
# A resolution is held back until its firing alert has been in Alertmanager this long: an anomaly opened
# and resolved within seconds (a backlog being caught up) would otherwise reach Alertmanager resolved before
# its group_wait fired the group, and the receiver would never hear of it. Alertmanager's default
# group_wait is 30s; ours (see `adnomaly.local.alertmanager`) is 10s.
FIRING_HOLD_S = 60.0


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Alertmanager's base URL; alerts are posted to <url>/api/v2/alerts")
    alertname: str = ALERTNAME
    resend_interval_s: float = Field(default=RESEND_INTERVAL_S, gt=0)
    firing_hold_s: float = Field(default=FIRING_HOLD_S, ge=0)
    timeout_s: float = Field(default=10.0, gt=0, description="Per request")
    batch_size: int = Field(default=500, ge=1, description="Alerts per POST")
    max_pending: int = Field(default=10_000, ge=1, description="Notices kept; the oldest resolved go first")
