"""The console in a real browser (Debian's headless Chromium driven by Playwright): what a person sees.

Screenshots land in the test's tmp dir (console.png, anomaly.png); set ADNOMALY_CONSOLE_SCREENSHOT=PATH to
also save the overview there (docs/console.png in the README is made that way).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from adnomaly.plan import db_schema_name
from adnomaly.services.postgres import PostgresServer
from adnomaly.services.redis import RedisServer
from playwright import sync_api as playwright

from tests.integration.anomaly_data import PIPELINE, SEEDED, LiveServing, seeded_serving

CHROMIUM = shutil.which("chromium")
SCHEMA = db_schema_name(PIPELINE)


@pytest.fixture(scope="module")
def serving(postgres: PostgresServer, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[LiveServing]:  # fmt: skip
    with seeded_serving(tmp_path_factory.mktemp("console"), postgres.dsn, redis.url, SCHEMA) as live:
        yield live


@pytest.fixture
def page(tmp_path: Path) -> Iterator[object]:
    if CHROMIUM is None:
        pytest.fail("no chromium on PATH: `make services` installs it (apt package chromium)")
    with playwright.sync_playwright() as p:
        # the system browser: Playwright downloads none of its own
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1180, "height": 860})
        yield context.new_page()
        browser.close()


def test_a_person_finds_the_anomaly_and_sees_its_chart(serving: LiveServing, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    expect = playwright.expect
    page.goto(f"{serving.base_url}/")  # redirects to the console
    expect(page).to_have_url(re.compile(r"/console$"))
    expect(page.locator("h1")).to_contain_text(f"pipeline {PIPELINE}")
    expect(page.locator("#throughput b")).to_have_text("72")  # 360 events stored in the last 5 minutes
    open_count = sum(a.status == "open" for a in SEEDED)
    expect(page.locator("#open-count b")).to_have_text(str(open_count))
    row = page.locator("#open tr.anomaly", has_text="geo=US, platform=ios")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("ctr-spike")
    expect(row).to_contain_text("critical")
    expect(page.locator("#recent tr.anomaly")).to_have_count(len(SEEDED))
    page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
    if target := os.environ.get("ADNOMALY_CONSOLE_SCREENSHOT"):
        page.screenshot(path=target, full_page=True)

    row.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/console/anomalies/{SEEDED[0].id}$"))
    expect(page.locator("h1")).to_have_text("ctr-spike on geo=US, platform=ios")
    chart = page.locator("#chart svg.chart")
    expect(chart).to_be_visible()
    for part in ("polyline.series", "rect.band", "line.alarm", "circle.alarm-point", "line.expected"):
        expect(chart.locator(part)).to_have_count(1)
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 200
    expect(page.locator("dl")).to_contain_text("ctr_avg 0.42 far above 0.05")
    page.screenshot(path=str(tmp_path / "anomaly.png"), full_page=True)
    assert (tmp_path / "console.png").stat().st_size > 10_000 and (tmp_path / "anomaly.png").stat().st_size > 10_000


def test_an_unknown_anomaly_is_a_page_not_an_error(serving: LiveServing, page) -> None:  # type: ignore[no-untyped-def]
    response = page.goto(f"{serving.base_url}/console/anomalies/00000000-0000-0000-0000-000000000000")
    assert response is not None and response.status == 404
    playwright.expect(page.locator("h1")).to_contain_text("No anomaly")
    playwright.expect(page.get_by_role("link", name="← console")).to_be_visible()
