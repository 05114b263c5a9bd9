"""What a reader may ask of the `anomalies` table, validated once for the API and the CLI (pure).

`AnomalyFilters` is the raw request (query parameters or CLI flags, all text); `resolve` turns it into an
`AnomalyQuery` (absolute times, a dimension mapping, a decoded cursor) against an explicit `now`, or raises
`BadFilter` naming the field, which the API answers with 400. Paging is by keyset: the cursor is the
(detected_at, id) of the last row of the previous page, so pages stay stable while new anomalies arrive.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from adnomaly.durations import DURATION_PATTERN, parse_duration

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_TEXT = 256  # longest detector, feature, dimension value or time we accept


class BadFilter(ValueError):
    """A filter that cannot be applied; `field` is the query parameter (or CLI flag) at fault."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class AnomalyFilters(BaseModel):
    """The query parameters of `GET /v1/anomalies` (unknown parameters are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["open", "resolved"] | None = Field(default=None, description="open or resolved")
    detector: str | None = Field(default=None, max_length=MAX_TEXT, description="the detector's name in the spec")
    feature: str | None = Field(default=None, max_length=MAX_TEXT, description="the feature (view) judged")
    key: list[str] = Field(
        default_factory=list, max_length=32,
        description="dimension:value, repeatable (all must match), e.g. key=geo:US&key=platform:ios",
    )  # fmt: skip
    since: str | None = Field(
        default=None, max_length=64, description="detected at or after: ISO 8601, or a duration ago (30m, 1h, 7d)"
    )
    until: str | None = Field(
        default=None, max_length=64, description="detected before: ISO 8601, or a duration ago (30m, 1h, 7d)"
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="rows per page")
    cursor: str | None = Field(default=None, max_length=128, description="`next_cursor` of the previous page")


@dataclass(frozen=True)
class AnomalyQuery:
    """Validated filters with absolute times; what `adnomaly.anomalies.query.build_query` takes."""

    status: str | None = None
    detector: str | None = None
    feature: str | None = None
    key: dict[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[datetime, str] | None = None  # (detected_at, id) of the previous page's last row


def parse_instant(text: str, now: datetime, name: str) -> datetime:
    """`2026-01-31T12:00:00Z` (naive means UTC) or a duration before `now` (`90s`, `1h`, `7d`)."""
    text = text.strip()
    try:
        seconds = parse_duration(text)
    except ValueError:
        pass
    else:
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise BadFilter(name, f"{text!r} reaches back before year 1") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(name, f"{text!r} is neither ISO 8601 (2026-01-31T12:00:00Z) nor a duration "
                              f"(30m, 1h, 7d; pattern {DURATION_PATTERN})") from None  # fmt: skip
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_key(items: list[str]) -> dict[str, str]:
    key: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or not value or "\x00" in item:
            raise BadFilter("key", f"{item!r} is not dimension:value (e.g. geo:US)")
        if len(item) > MAX_TEXT:
            raise BadFilter("key", f"longer than {MAX_TEXT} characters")
        name = name.strip()
        if name in key and key[name] != value:
            raise BadFilter("key", f"dimension {name!r} given twice with different values")
        key[name] = value
    return key


def encode_cursor(detected_at: datetime, anomaly_id: str) -> str:
    raw = f"{detected_at.astimezone(UTC).isoformat()}|{anomaly_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, anomaly_id = raw.split("|")
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None:
            raise ValueError("naive time")
        return at, str(uuid.UUID(anomaly_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadFilter("cursor", "not a cursor this API returned (use `next_cursor` as given)") from None


def _text(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not value or "\x00" in value:
        raise BadFilter(name, "must be non-empty text")
    return value


def resolve(filters: AnomalyFilters, now: datetime) -> AnomalyQuery:
    """Absolute, checked filters (`now` anchors durations such as `since=1h`); BadFilter names the field."""
    since = parse_instant(filters.since, now, "since") if filters.since is not None else None
    until = parse_instant(filters.until, now, "until") if filters.until is not None else None
    if since is not None and until is not None and since >= until:
        raise BadFilter("until", f"must be later than since ({since.isoformat()})")
    return AnomalyQuery(
        status=filters.status,
        detector=_text(filters.detector, "detector"),
        feature=_text(filters.feature, "feature"),
        key=parse_key(filters.key),
        since=since,
        until=until,
        limit=filters.limit,
        after=decode_cursor(filters.cursor) if filters.cursor is not None else None,
    )
