"""What to tell Alertmanager now, given the anomalies seen and what it has accepted so far. Pure.

One `Notice` per anomaly, from its first sight until Alertmanager has accepted its resolution:

- open: sent at once, then re-sent every `resend_s` (Alertmanager resolves an alert by itself when re-sends
  stop for `resolve_timeout`), without `endsAt`;
- resolved: sent with `endsAt` until accepted, then forgotten; but never before its firing alert has been
  accepted and `hold_s` has passed since, so that Alertmanager has notified the receiver of the firing
  before it learns of the resolution (else the receiver would hear of neither).

The notices are part of the detector's checkpoint. The detector hands anomalies to Alertmanager only after
the batch that produced them is committed, and that batch's checkpoint already holds their notices, so a
restart (even after kill -9) resumes with every anomaly it may have told Alertmanager about: an open one
is re-sent (Alertmanager deduplicates its identical label set: no second notification), a resolved one is
never sent as firing again (which would reopen it in Alertmanager and notify the receiver twice). The
acceptance times in a checkpoint may lag (they are saved with the next batch): a restart then only re-sends
early, which Alertmanager absorbs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal, NamedTuple

import msgspec

from adnomaly.detection.anomaly import Anomaly
from adnomaly.notify.alerts import annotations, labels


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # the anomaly's
    labels: dict[str, str]  # as first seen (an escalation does not change the alert's identity)
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None  # the resolution; None while open
    fired_at: float | None = None  # when Alertmanager first accepted the firing alert (epoch seconds)
    sent_at: float | None = None  # when it last accepted the notice in its current status

    @property
    def resolved(self) -> bool:
        return self.ends_at is not None


Notices = dict[str, Notice]
Status = Literal["firing", "resolved"]


class Send(NamedTuple):
    notice: Notice
    status: Status


def notice(anomaly: Anomaly, alertname: str) -> Notice:
    return Notice(id=anomaly.id, labels=labels(anomaly, alertname), annotations=annotations(anomaly),
                  starts_at=anomaly.detected_at,
                  ends_at=anomaly.resolved_at if anomaly.status == "resolved" else None)  # fmt: skip


def observe(notices: Notices, anomalies: Iterable[Anomaly], alertname: str) -> Notices:
    """`notices` after the detector emitted `anomalies` (in order: an anomaly's open copy before its
    resolved one). A replayed open copy changes nothing; a resolution ends the notice (once)."""
    out = dict(notices)
    for anomaly in anomalies:
        current = out.get(anomaly.id)
        if current is None:
            out[anomaly.id] = notice(anomaly, alertname)
        elif anomaly.status == "resolved" and not current.resolved:
            out[anomaly.id] = msgspec.structs.replace(current, ends_at=anomaly.resolved_at, sent_at=None)
    return out


def due(notices: Notices, now: float, resend_s: float, hold_s: float) -> list[Send]:
    """What to post now, oldest first."""
    out = []
    for n in sorted(notices.values(), key=lambda n: (n.starts_at, n.id)):
        if n.resolved and n.fired_at is not None:
            if now - n.fired_at >= hold_s:
                out.append(Send(n, "resolved"))
        elif n.sent_at is None or now - n.sent_at >= resend_s:
            out.append(Send(n, "firing"))  # also a resolved notice whose firing was never accepted
    return out


def acknowledge(notices: Notices, accepted: Sequence[Send], now: float) -> Notices:
    """`notices` after Alertmanager accepted `accepted` at `now` (the notices may have moved on meanwhile:
    a firing alert accepted after its anomaly resolved only records that it fired)."""
    out = dict(notices)
    for sent, status in accepted:
        current = out.get(sent.id)
        if current is None:
            continue
        if status == "resolved":
            if current.resolved:
                del out[sent.id]
            continue
        out[sent.id] = msgspec.structs.replace(
            current, fired_at=current.fired_at if current.fired_at is not None else now,
            sent_at=current.sent_at if current.resolved else now,
        )  # fmt: skip
    return out


def trim(notices: Notices, cap: int) -> tuple[Notices, int]:
    """At most `cap` notices: the oldest resolved ones go first (Alertmanager resolves their alerts itself
    after `resolve_timeout`), then the oldest open ones. Returns the kept notices and how many were dropped."""
    excess = len(notices) - cap
    if excess <= 0:
        return notices, 0
    order = sorted(notices.values(), key=lambda n: (not n.resolved, n.ends_at or n.starts_at, n.id))
    dropped = {n.id for n in order[:excess]}
    return {i: n for i, n in notices.items() if i not in dropped}, excess


def keep_open(notices: Notices, open_ids: Iterable[str]) -> Notices:
    """Drop open notices whose anomaly the detector no longer tracks (its detector left the spec): nothing
    will ever resolve them, so they are left to Alertmanager's `resolve_timeout`."""
    still = set(open_ids)
    return {i: n for i, n in notices.items() if n.resolved or i in still}
