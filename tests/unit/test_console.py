"""The console's pure renderers: the expected band, the SVG chart, and escaping in the HTML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from adnomaly.anomalies.models import AnomalyOut
from adnomaly.serving.chart import ChartInput, baseline_band, expected_band, render_svg
from adnomaly.serving.console import Overview, render_detail, render_overview

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def anomaly(**changes: object) -> AnomalyOut:
    values: dict[str, object] = {
        "id": "00000000-0000-0000-0000-000000000001", "detector": "ctr-spike", "method": "auto",
        "severity": "critical", "status": "open", "feature": "traffic", "metric": "ctr_avg",
        "key": {"geo": "US", "platform": "ios"}, "window_start": NOW - timedelta(minutes=5), "window_end": NOW,
        "observed": 0.4, "expected": 0.1, "score": 0.97, "statistic": 9.1, "reason": "far above", "context": {},
        "detected_at": NOW, "resolved_at": None,
    }  # fmt: skip
    return AnomalyOut.model_validate(values | changes)


def test_the_band_is_median_plus_minus_three_robust_sigmas() -> None:
    band = expected_band([1.0, 2.0, 3.0, 4.0, 100.0])  # the outlier barely moves it
    assert band is not None
    assert band.center == 3.0
    assert band.high == pytest.approx(3.0 + 3 * 1.4826 * 1.0)
    assert band.low == pytest.approx(3.0 - 3 * 1.4826 * 1.0)
    assert expected_band([1.0, 2.0]) is None


def test_the_band_uses_only_windows_before_the_alarm() -> None:
    points = [(NOW - timedelta(minutes=m), 0.1) for m in range(30, 4, -1)] + [(NOW, 5.0)]
    chart = ChartInput(points=points, alarm_at=NOW, observed=5.0, expected=0.1, resolved_at=None, metric="ctr_avg")
    band = baseline_band(chart, NOW - timedelta(minutes=5))
    assert band is not None and band.high == pytest.approx(0.1)


def test_the_chart_marks_the_alarm_the_band_and_the_resolution() -> None:
    points = [(NOW + timedelta(minutes=m), 0.1 + 0.01 * (m % 3)) for m in range(-30, 10)]
    chart = ChartInput(points=points, alarm_at=NOW, observed=0.4, expected=0.1,
                       resolved_at=NOW + timedelta(minutes=8), metric="ctr_avg")  # fmt: skip
    svg = render_svg(chart, baseline_band(chart, NOW - timedelta(minutes=5)))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    for part in ('class="band"', 'class="series"', 'class="alarm"', 'class="alarm-point"', 'class="resolved"',
                 'class="expected"'):  # fmt: skip
        assert part in svg
    assert svg.count(",") >= len(points)  # one coordinate pair per window
    empty = render_svg(ChartInput([], NOW, 0.4, None, None, "ctr_avg"), None)
    assert "<svg" not in empty and "No feature history" in empty


def test_values_are_escaped() -> None:
    hostile = anomaly(key={"geo": "<script>alert(1)</script>"}, detector='x" onmouseover="y')
    page = render_overview(Overview("demo", 120.0, 1, 1, 24, [hostile], [hostile]))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'x" onmouseover' not in page
    detail = render_detail("demo", hostile, "<svg></svg>")
    assert "<script>" not in detail


def test_the_overview_links_each_anomaly_to_its_page() -> None:
    page = render_overview(Overview("demo", 1234.0, 1, 3, 24, [anomaly()], [anomaly()]))
    assert page.count('href="/console/anomalies/00000000-0000-0000-0000-000000000001"') == 2
    assert "geo=US, platform=ios" in page and "1,234" in page
    assert "No anomalies yet." in render_overview(Overview("demo", None, 0, 0, 24, [], []))
