"""The pipeline's features read through Feast itself (Feast 0.67 in its own venv), on the real Redis and
PostgreSQL: the sink's bytes are Feast's, get_online_features answers what the serving API answers, and
get_historical_features over `feature_aggregates` is point-in-time correct."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from adnomaly.feast import layout
from adnomaly.feast.cli import write_repo
from adnomaly.feast.repo import FeastConnections, feast_repo
from adnomaly.features.record import FeatureRecord
from adnomaly.services.feast import ensure_feast
from adnomaly.services.postgres import DATABASE, SUPERUSER, PostgresServer
from adnomaly.services.redis import RedisServer
from adnomaly.sinks.features.batch import HistoryRow
from adnomaly.sinks.features.online import epoch_ms, feast_targets, online_write
from adnomaly.sinks.features.stores import HistoryStore, OnlineStore
from adnomaly.sinks.sections import feature_views
from adnomaly.spec import load_pipeline

from tests.conftest import REPO_ROOT
from tests.integration.test_online_api import ApiProcess, apis  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration

PROBE = Path(__file__).with_name("feast_probe.py")
EXAMPLE = REPO_ROOT / "manifests" / "examples" / "clickstream-ad-fraud.yaml"
VIEW = "traffic_5m_by_geo_platform"
FEATURES = [f"{VIEW}:ctr_avg", f"{VIEW}:bounce_rate_avg", f"{VIEW}:event_count"]
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def feast(request: dict[str, Any]) -> Any:
    done = subprocess.run([str(ensure_feast()), str(PROBE)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.rstrip().rsplit("\n", 1)[-1])


def window(dims: dict[str, str], end: datetime, ctr: float | None, bounce: float, count: int) -> FeatureRecord:
    return FeatureRecord(feature=VIEW, dimensions=dims, window_start=end - timedelta(minutes=5), window_end=end,
                         metrics={"ctr_avg": ctr, "bounce_rate_avg": bounce, "event_count": float(count)},
                         event_count=count)  # fmt: skip


def test_the_sinks_redis_bytes_are_feasts_own() -> None:
    """Key, field names and values byte for byte as Feast's helpers make them (our own `_adnomaly_` fields
    aside), and the key decodes back with our decoder as with Feast's own: an upgrade that changes Feast's layout
    fails here."""
    pipeline = load_pipeline(EXAMPLE)
    views = {v.name: v for v in feature_views(pipeline)}
    target = feast_targets(views, "ad_fraud")[VIEW]
    end = NOW + timedelta(milliseconds=250)
    for dims, ctr in (({"platform": "ios", "geo": "US"}, 0.031), ({"geo": "DÉ", "platform": "web"}, None)):
        record = window(dims, end, ctr, 0.5, 412)
        write = online_write(target, record)
        theirs = feast({
            "op": "layout", "project": "ad_fraud", "view": VIEW, "entity": dims, "end_ms": epoch_ms(record.window_end),
            "values": {"ctr_avg": ["double_val", ctr], "bounce_rate_avg": ["double_val", 0.5],
                       "event_count": ["int64_val", 412]},
        })  # fmt: skip
        assert write.key.hex() == theirs["key"]
        ours = {name.hex(): value.hex() for name, value in write.fields if not name.startswith(layout.OWN_FIELD_PREFIX)}
        assert ours == theirs["fields"]
        assert [name for name, _ in write.fields if name.startswith(layout.OWN_FIELD_PREFIX)] == [
            layout.end_ms_field(VIEW), layout.window_field(VIEW)]
        assert theirs["entity"] == dims and layout.entity_of(write.key, "ad_fraud") == dims


def connections(redis: RedisServer, postgres: PostgresServer) -> FeastConnections:
    return FeastConnections(
        redis=f"127.0.0.1:{redis.port},password={redis.password}", pg_host="127.0.0.1", pg_port=str(postgres.port),
        pg_database=DATABASE, pg_user=SUPERUSER, pg_password=postgres.password,
    )  # fmt: skip


def test_feast_reads_the_sinks_windows_online_and_point_in_time(
    redis: RedisServer, postgres: PostgresServer, tmp_path: Path, apis: list[ApiProcess]  # noqa: F811
) -> None:
    pipeline = load_pipeline(EXAMPLE)
    views = {v.name: v for v in feature_views(pipeline)}
    view = views[VIEW]
    schema = f"feast_{NOW.strftime('%H%M%S')}"
    repo = tmp_path / "repo"
    write_repo(feast_repo(pipeline, schema, connections(redis, postgres)), repo)
    subprocess.run([str(ensure_feast()), "-m", "feast.cli.cli", "apply"], cwd=repo, check=True, capture_output=True,
                   timeout=300)  # fmt: skip

    us, de = {"geo": "US", "platform": "ios"}, {"geo": "DE", "platform": "web"}
    t1, t2, t3 = (NOW - timedelta(minutes=m) for m in (3, 2, 1))
    windows = [  # out of order, as the sink may see them
        window(us, t2, 0.20, 0.4, 20), window(us, t3, 0.30, 0.5, 30), window(us, t1, 0.10, 0.3, 10),
        window(de, t1, None, 0.9, 0),
    ]  # fmt: skip
    targets = feast_targets(views, "ad_fraud")
    with redis.client() as client:
        OnlineStore(client).write([online_write(targets[VIEW], w) for w in windows])
    history = HistoryStore(postgres.dsn, schema)
    history.ensure_table()
    history.write([HistoryRow(VIEW, "|".join(f"{k}={w.dimensions[k]}" for k in view.dimensions), dict(w.dimensions),
                              w.window_start, w.window_end, dict(w.metrics), w.event_count) for w in windows])
    history.close()

    # The original Adnomaly's snippet: the latest window of each entity, as the serving API answers it.
    got = feast({"op": "online", "repo": str(repo), "features": FEATURES, "entity_rows": [us, de]})
    assert got["ctr_avg"] == [0.30, None] and got["bounce_rate_avg"] == [0.5, 0.9] and got["event_count"] == [30, 0]
    api = ApiProcess(tmp_path / "api", "ad_fraud", redis.url, features=[view]).start()
    apis.append(api)
    for n, dims in enumerate((us, de)):
        served = httpx.get(f"{api.base}/v1/features/{VIEW}", params=dims, timeout=5)
        assert served.status_code == 200, served.text
        assert {m: got[m][n] for m in ("ctr_avg", "bounce_rate_avg", "event_count")} == served.json()["metrics"]

    # Point in time: each training row sees the newest window that had closed by its timestamp, none before.
    rows = [
        {**us, "event_timestamp": (t1 - timedelta(seconds=1)).isoformat()},  # before any window closed
        {**us, "event_timestamp": t1.isoformat()},
        {**us, "event_timestamp": (t2 + timedelta(seconds=30)).isoformat()},
        {**us, "event_timestamp": (NOW + timedelta(hours=1)).isoformat()},
        {**de, "event_timestamp": (t3).isoformat()},
    ]
    got_rows = feast({"op": "historical", "repo": str(repo), "features": FEATURES, "entity_rows": rows})
    assert [r["ctr_avg"] for r in got_rows] == [None, 0.10, 0.20, 0.30, None]
    assert [r["event_count"] for r in got_rows] == [None, 10, 20, 30, 0]
    assert [r["bounce_rate_avg"] for r in got_rows] == [None, 0.3, 0.4, 0.5, 0.9]
