"""The console: server-rendered HTML pages over the anomalies and feature history (pure renderers).

    /console                   throughput, open and recent anomalies (refreshes itself every 15 s)
    /console/anomalies/{id}    one anomaly: its facts and the metric's series around it (`chart.py`)

Plain f-strings with every value passed through `html.escape`: no template engine, no JavaScript, nothing
fetched from elsewhere, so the page works the same through `kubectl port-forward` and on a laptop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from adnomaly.anomalies.models import AnomalyOut

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:24px 0 8px}
.tiles{display:flex;gap:12px}.tile{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:150px}
.tile b{display:block;font-size:22px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eee}tr.anomaly:hover{background:#f4f8ff}
.critical{color:#b00020;font-weight:600}.warning{color:#a15c00;font-weight:600}
.open{color:#b00020}.resolved{color:#2c7a2c}.empty{color:#777}dl{display:grid;grid-template-columns:160px 1fr}
dt{color:#555}dd{margin:0 0 4px}a{color:#1a56b0}
"""


@dataclass(frozen=True)
class Overview:
    pipeline: str
    events_per_minute: float | None  # None: the events table is not there (yet)
    open_count: int
    recent_count: int
    recent_hours: int
    open: Sequence[AnomalyOut]
    recent: Sequence[AnomalyOut]


def key_text(key: dict[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in key.items()) or "(all)"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "—"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _page(title: str, body: str, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}<title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _table(anomalies: Sequence[AnomalyOut], empty: str) -> str:
    if not anomalies:
        return f'<p class="empty">{escape(empty)}</p>'
    rows = []
    for a in anomalies:
        link = f"/console/anomalies/{escape(a.id)}"
        rows.append(
            f'<tr class="anomaly" data-id="{escape(a.id)}">'
            f'<td><a href="{link}">{escape(key_text(a.key))}</a></td>'
            f"<td>{escape(a.detector)}</td><td>{escape(a.feature)}.{escape(a.metric)}</td>"
            f'<td class="{escape(a.severity)}">{escape(a.severity)}</td><td class="{escape(a.status)}">'
            f"{escape(a.status)}</td><td>{_num(a.observed)}</td><td>{_num(a.expected)}</td>"
            f"<td>{_num(a.score)}</td><td>{_when(a.detected_at)}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("key", "detector", "metric", "severity", "status", "observed",
                                             "expected", "score", "detected"))  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_overview(o: Overview) -> str:
    rate = "—" if o.events_per_minute is None else f"{o.events_per_minute:,.0f}"
    body = (
        f"<h1>Adnomaly · pipeline {escape(o.pipeline)}</h1>"
        '<div class="tiles">'
        f'<div class="tile" id="throughput"><b>{rate}</b>events stored / min (last 5 min)</div>'
        f'<div class="tile" id="open-count"><b>{o.open_count}</b>open anomalies</div>'
        f'<div class="tile" id="recent-count"><b>{o.recent_count}</b>anomalies in the last {o.recent_hours} h</div>'
        "</div>"
        f'<h2>Open anomalies</h2><div id="open">{_table(o.open, "No open anomalies.")}</div>'
        f'<h2>Recent anomalies</h2><div id="recent">{_table(o.recent, "No anomalies yet.")}</div>'
        '<p class="empty">JSON: <a href="/v1/anomalies">/v1/anomalies</a> · '
        '<a href="/openapi.json">OpenAPI</a> · <a href="/metrics">metrics</a></p>'
    )
    return _page(f"Adnomaly · {o.pipeline}", body, refresh=15)


def render_detail(pipeline: str, a: AnomalyOut, chart_svg: str) -> str:
    facts = (
        ("detector", f"{a.detector} ({a.method})"), ("metric", f"{a.feature}.{a.metric}"), ("key", key_text(a.key)),
        ("severity", a.severity), ("status", a.status), ("observed", _num(a.observed)),
        ("expected", _num(a.expected)), ("score", _num(a.score)), ("reason", a.reason or "—"),
        ("window", f"{_when(a.window_start)} → {_when(a.window_end)}"), ("detected", _when(a.detected_at)),
        ("resolved", _when(a.resolved_at)), ("id", a.id),
    )  # fmt: skip
    rows = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in facts)
    body = (
        f'<p><a href="/console">← pipeline {escape(pipeline)}</a></p>'
        f"<h1>{escape(a.detector)} on {escape(key_text(a.key))}</h1>"
        f'<div id="chart">{chart_svg}</div>'
        '<p class="empty">Line: the metric per window. Blue band: median ± 3 robust &sigma; of the windows before '
        "the alarm; dashed: the detector's expected value. Red: the alarm; green: resolved.</p>"
        f"<dl>{rows}</dl>"
    )
    return _page(f"Anomaly {a.id}", body)


def render_not_found(what: str) -> str:
    return _page("Not found", f'<p><a href="/console">← console</a></p><h1>{escape(what)}</h1>')
