"""Human durations (`30s`, `5m`, `7d`) and Kubernetes quantities used throughout the spec."""

from __future__ import annotations

import re

DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d)$"
POSITIVE_DURATION_PATTERN = r"^0*[1-9][0-9]*(ms|s|m|h|d)$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"  # Kubernetes quantities, incl. millicores
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `500ms`, `30s`, `5m`, `2h`, `7d`."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use a whole number and one of ms, s, m, h, d (e.g. 30s, 7d)")
    unit = match.group(1)
    return int(text[: -len(unit)]) * _UNIT_SECONDS[unit]


def duration_ms(text: str) -> int:
    return round(parse_duration(text) * 1000)
