"""Run in Feast's own venv (never the main one): answers one JSON request on stdin with Feast's own functions.

    {"op": "layout", "project", "view", "entity": {...}, "values": {name: [type, value]}, "end_ms"}
        → Feast's Redis key, field names and serialized values (hex), from feast's helpers and protos, and the
          entity Feast's own deserializer reads back from the key
    {"op": "online", "repo", "features": [...], "entity_rows": [...]}   → get_online_features(...).to_dict()
    {"op": "historical", "repo", "features": [...], "entity_rows": [... with "event_timestamp" (ISO)]}
        → get_historical_features(...).to_df() as records, ordered like the entity rows
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any


def layout(request: dict[str, Any]) -> dict[str, Any]:
    from feast.infra.key_encoding_utils import deserialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from google.protobuf.timestamp_pb2 import Timestamp

    entity = request["entity"]
    key = EntityKey(join_keys=list(entity), entity_values=[Value(string_val=v) for v in entity.values()])
    fields = {}
    for name, (kind, value) in request["values"].items():
        proto = Value() if value is None else Value(**{kind: value})
        fields[_mmh3(f"{request['view']}:{name}").hex()] = proto.SerializeToString().hex()
    ts = Timestamp()
    ts.FromDatetime(datetime.fromtimestamp(request["end_ms"] / 1000, UTC))
    fields[f"_ts:{request['view']}".encode().hex()] = ts.SerializeToString().hex()
    redis_key = _redis_key(request["project"], key, 3)
    back = deserialize_entity_key(redis_key[: -len(request["project"].encode())], 3)
    entity_back = {k: v.string_val for k, v in zip(back.join_keys, back.entity_values, strict=True)}
    return {"key": redis_key.hex(), "fields": fields, "entity": entity_back}


def online(request: dict[str, Any]) -> dict[str, Any]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=request["repo"])
    return store.get_online_features(features=request["features"], entity_rows=request["entity_rows"]).to_dict()


def historical(request: dict[str, Any]) -> list[dict[str, Any]]:
    import pandas as pd
    from feast import FeatureStore

    store = FeatureStore(repo_path=request["repo"])
    rows = pd.DataFrame(request["entity_rows"])
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    rows["row"] = range(len(rows))
    frame = store.get_historical_features(entity_df=rows, features=request["features"]).to_df()
    frame = frame.sort_values("row").drop(columns=["row", "event_timestamp"])
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict(orient="records")]


def main() -> None:
    request = json.load(sys.stdin)
    answer = {"layout": layout, "online": online, "historical": historical}[request["op"]](request)
    sys.stdout.write("\n" + json.dumps(answer, default=str))


if __name__ == "__main__":
    main()
