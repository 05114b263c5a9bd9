"""Posting alerts to Alertmanager from a background thread, so the detector's loop never waits on it.

The detector calls `Notifier.observe` after each committed batch (a few dictionary operations under a lock);
the sender thread wakes up, posts what `adnomaly.notify.state.due` says in batches, and records what was
accepted. Failures (Alertmanager down, a timeout, a 5xx) are retried with exponential back-off and counted
in `adnomaly_notifications_total{result="failed"}`; a 4xx other than 408/429 would fail again, so it is
counted as `rejected`, logged and not retried. The notices are bounded (`max_pending`); what is dropped is
counted as `dropped` (Alertmanager resolves such alerts after its `resolve_timeout`).

Credentials come from the environment only (`SecretEnv.ALERTMANAGER_*`) and are never logged: log lines
name the URL (which the spec forbids to carry credentials) and the HTTP status, never headers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from adnomaly.config import SecretEnv
from adnomaly.detection.anomaly import Anomaly
from adnomaly.detector.metrics import DetectorMetrics
from adnomaly.notify import state
from adnomaly.notify.alerts import postable
from adnomaly.notify.config import NotifyConfig
from adnomaly.processor.retry import backoff_delay

_log = logging.getLogger("adnomaly.notify")
IDLE_WAIT_S = 1.0
MAX_BACKOFF_S = 60.0


class NotifyError(RuntimeError):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class AlertPoster(Protocol):
    def post(self, alerts: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "_Bearer(<redacted>)"


def auth_from_env(env: Mapping[str, str] | None = None) -> httpx.Auth | None:
    """Basic auth when a username is set, else a bearer token when one is set, else none."""
    env = os.environ if env is None else env
    username, token = env.get(SecretEnv.ALERTMANAGER_USERNAME), env.get(SecretEnv.ALERTMANAGER_TOKEN)
    if username:
        return httpx.BasicAuth(username, env.get(SecretEnv.ALERTMANAGER_PASSWORD, ""))
    if token:
        return _Bearer(token)
    return None


class AlertmanagerClient:
    """`POST <url>/api/v2/alerts`."""

    def __init__(self, url: str, auth: httpx.Auth | None = None, timeout_s: float = 10.0) -> None:
        self.endpoint = f"{url.rstrip('/')}/api/v2/alerts"
        self._http = httpx.Client(auth=auth, timeout=timeout_s)

    def post(self, alerts: list[dict[str, Any]]) -> None:
        try:
            response = self._http.post(self.endpoint, json=alerts)
        except httpx.HTTPError as exc:
            raise NotifyError(f"POST {self.endpoint}: {type(exc).__name__}: {exc}") from None
        if response.status_code // 100 == 2:
            return
        permanent = response.status_code // 100 == 4 and response.status_code not in (408, 429)
        raise NotifyError(f"POST {self.endpoint}: HTTP {response.status_code}: {response.text[:300]}",
                          permanent=permanent)  # fmt: skip

    def close(self) -> None:
        self._http.close()


class Notifier:
    """The live notices and the thread that sends them. Thread-safe; `start` once, `close` once."""

    def __init__(self, config: NotifyConfig, poster: AlertPoster, metrics: DetectorMetrics,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.config = config
        self.poster = poster
        self.metrics = metrics
        self.clock = clock
        self._notices: state.Notices = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the detector's side (its main loop) ------------------------------------------------------------

    def load(self, notices: state.Notices) -> None:
        with self._lock:
            self._notices = dict(notices)
            self.metrics.notifications_pending.set(len(self._notices))

    def snapshot(self) -> state.Notices:
        with self._lock:
            return dict(self._notices)

    def preview(self, anomalies: Iterable[Anomaly]) -> state.Notices:
        """The notices as they will be once `anomalies` are observed (for the batch's checkpoint)."""
        return state.trim(state.observe(self.snapshot(), anomalies, self.config.alertname),
                          self.config.max_pending)[0]  # fmt: skip

    def observe(self, anomalies: list[Anomaly]) -> None:
        """Take a committed batch's anomalies; the sender thread is woken for them."""
        if not anomalies:
            return
        with self._lock:
            notices, dropped = state.trim(
                state.observe(self._notices, anomalies, self.config.alertname), self.config.max_pending
            )
            self._notices = notices
            self.metrics.notifications_pending.set(len(notices))
        if dropped:
            self.metrics.notifications.labels("any", "dropped").inc(dropped)
            _log.warning("dropped %d notifications: more than %d pending (is Alertmanager reachable?)",
                         dropped, self.config.max_pending)  # fmt: skip
        self._wake.set()

    # --- the sender thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alertmanager-sender", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the sender (after a post in flight, which its timeout bounds); what is unsent stays in the
        checkpoint for the next run."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.config.timeout_s + 1.0)
        self.poster.close()

    def send_due(self) -> bool:
        """Post one batch of what is due; False when nothing was due or the post failed (then back off)."""
        cfg = self.config
        with self._lock:
            batch = state.due(self._notices, self.clock(), cfg.resend_interval_s, cfg.firing_hold_s)[: cfg.batch_size]
        if not batch:
            return False
        now = datetime.fromtimestamp(self.clock(), UTC)
        alerts = [postable(s.notice.labels, s.notice.annotations, s.notice.starts_at,
                           s.notice.ends_at if s.status == "resolved" else None, now) for s in batch]  # fmt: skip
        result = "sent"
        try:
            self.poster.post(alerts)
        except NotifyError as exc:
            if not exc.permanent:
                self._count(batch, "failed")
                raise
            result = "rejected"
            _log.error("Alertmanager rejected %d alerts (not retried): %s", len(batch), exc)
        with self._lock:
            self._notices = state.acknowledge(self._notices, batch, self.clock())
            self.metrics.notifications_pending.set(len(self._notices))
        self._count(batch, result)
        return True

    def _count(self, batch: list[state.Send], result: str) -> None:
        for status in ("firing", "resolved"):
            n = sum(1 for s in batch if s.status == status)
            if n:
                self.metrics.notifications.labels(status, result).inc(n)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                more = self.send_due()
            except NotifyError as exc:
                failures += 1
                delay = backoff_delay(failures - 1, base=1.0, cap=MAX_BACKOFF_S)
                if failures == 1 or failures % 10 == 0:
                    _log.warning("cannot notify Alertmanager (attempt %d, retrying in %.0fs): %s",
                                 failures, delay, exc)  # fmt: skip
                self._stopping.wait(delay)
                continue
            except Exception:  # a bug here must not take the detector down with it
                _log.exception("notification sender failed; retrying")
                self._stopping.wait(MAX_BACKOFF_S)
                continue
            if failures:
                _log.info("Alertmanager reachable again after %d failed attempts", failures)
                failures = 0
            if not more:
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
