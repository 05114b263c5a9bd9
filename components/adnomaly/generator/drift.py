"""The daily cycle of normal traffic: CTR, latency, speed and volume follow the (simulated) local hour.

Because of it a fixed threshold is not enough to tell an anomaly from an ordinary evening peak.
"""

from __future__ import annotations

import math

SECONDS_PER_DAY = 86_400.0
REFRESH_S = 60.0  # sources recompute their drifting weights once per simulated minute


def local_hour(t_s: float, utc_offset_h: float) -> float:
    """Hour of day (0 <= h < 24) at unix time `t_s` in a zone `utc_offset_h` hours from UTC."""
    return (t_s / 3600.0 + utc_offset_h) % 24.0


def daily_factor(t_s: float, utc_offset_h: float, amplitude: float, peak_hour: float) -> float:
    """1 + amplitude * cos(...): largest (1 + amplitude) at `peak_hour` local time, smallest 12 h later.

    A negative amplitude makes `peak_hour` the low point instead (e.g. download speeds in the evening).
    """
    phase = 2.0 * math.pi * (local_hour(t_s, utc_offset_h) - peak_hour) / 24.0
    return 1.0 + amplitude * math.cos(phase)
