"""A metric's series around an anomaly as an inline SVG (pure; no JavaScript, no chart library).

The expected band is the robust baseline of the windows before the anomaly opened: median ± 3 robust
standard deviations (1.4826 · MAD), the same yardstick the robust z-score detector uses. It is drawn from
the series itself, so it reads the same whatever method raised the alarm; the detector's own `expected`
value is drawn as a dashed line next to it. The alarm (the opening window) is a red rule and dot, the
resolution (if any) a green rule.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

BAND_SIGMAS = 3.0
MAD_TO_SIGMA = 1.4826
MIN_BASELINE_POINTS = 5
WIDTH, HEIGHT = 760, 260
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 16, 16, 36


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    center: float


def expected_band(values: Sequence[float]) -> Band | None:
    """median ± 3·1.4826·MAD of `values` (the windows before the alarm); None with too few of them."""
    if len(values) < MIN_BASELINE_POINTS:
        return None
    center = statistics.median(values)
    spread = BAND_SIGMAS * MAD_TO_SIGMA * statistics.median(abs(v - center) for v in values)
    return Band(center - spread, center + spread, center)


@dataclass(frozen=True)
class ChartInput:
    points: Sequence[tuple[datetime, float]]  # (window end, metric value), oldest first
    alarm_at: datetime
    observed: float
    expected: float | None
    resolved_at: datetime | None
    metric: str


def baseline_band(chart: ChartInput, opened_window_start: datetime) -> Band | None:
    return expected_band([value for at, value in chart.points if at <= opened_window_start])


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def render_svg(chart: ChartInput, band: Band | None) -> str:
    """The chart as an `<svg>` element (role=img, with a title); an explanatory note without points."""
    if not chart.points:
        return '<p class="empty">No feature history for this key around the anomaly (feature_aggregates).</p>'
    times = [at.timestamp() for at, _ in chart.points] + [chart.alarm_at.timestamp()]
    if chart.resolved_at is not None:
        times.append(chart.resolved_at.timestamp())
    values = [v for _, v in chart.points] + [chart.observed]
    if chart.expected is not None:
        values.append(chart.expected)
    if band is not None:
        values += [band.low, band.high]
    t0, t1 = min(times), max(times)
    v0, v1 = min(values), max(values)
    if v1 == v0:
        v0, v1 = v0 - 1.0, v1 + 1.0
    margin = (v1 - v0) * 0.08
    v0, v1 = v0 - margin, v1 + margin
    span_t = (t1 - t0) or 1.0
    inner_w, inner_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(t: float) -> float:
        return PAD_LEFT + (t - t0) / span_t * inner_w

    def y(v: float) -> float:
        return PAD_TOP + (v1 - v) / (v1 - v0) * inner_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" aria-label="{escape(chart.metric)} around the anomaly">',
        f"<title>{escape(chart.metric)} around the anomaly</title>",
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{inner_w}" height="{inner_h}" fill="#fafafa" stroke="#ddd"/>',
    ]
    if band is not None:
        top, bottom = y(band.high), y(band.low)
        parts.append(f'<rect class="band" x="{PAD_LEFT}" y="{top:.1f}" width="{inner_w}" '
                     f'height="{max(bottom - top, 1.0):.1f}" fill="#cfe3ff" opacity="0.7"><title>expected band '
                     f'{_fmt(band.low)} … {_fmt(band.high)}</title></rect>')  # fmt: skip
    if chart.expected is not None:
        ye = y(chart.expected)
        parts.append(f'<line class="expected" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{ye:.1f}" y2="{ye:.1f}" '
                     f'stroke="#3b6fb6" stroke-dasharray="6 4"/>')  # fmt: skip
    line = " ".join(f"{x(at.timestamp()):.1f},{y(v):.1f}" for at, v in chart.points)
    parts.append(f'<polyline class="series" points="{line}" fill="none" stroke="#222" stroke-width="1.6"/>')
    xa = x(chart.alarm_at.timestamp())
    parts.append(f'<line class="alarm" x1="{xa:.1f}" x2="{xa:.1f}" y1="{PAD_TOP}" y2="{HEIGHT - PAD_BOTTOM}" '
                 f'stroke="#d62728" stroke-width="2"/>')  # fmt: skip
    parts.append(f'<circle class="alarm-point" cx="{xa:.1f}" cy="{y(chart.observed):.1f}" r="5" fill="#d62728">'
                 f"<title>alarm: observed {_fmt(chart.observed)}</title></circle>")  # fmt: skip
    if chart.resolved_at is not None:
        xr = x(chart.resolved_at.timestamp())
        parts.append(f'<line class="resolved" x1="{xr:.1f}" x2="{xr:.1f}" y1="{PAD_TOP}" y2="{HEIGHT - PAD_BOTTOM}" '
                     f'stroke="#2ca02c" stroke-width="2" stroke-dasharray="4 3"/>')  # fmt: skip
    for v in (v0 + margin, (v0 + v1) / 2, v1 - margin):
        parts.append(f'<text x="{PAD_LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{_fmt(v)}</text>')
    for t in (t0, t1):
        label = datetime.fromtimestamp(t, tz=chart.alarm_at.tzinfo).strftime("%H:%M")
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - 12}" text-anchor="middle" font-size="11">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)
