"""Timed `get_online_features` lookups, run by `adnomaly bench online --via feast` in Feast's own venv.

Imports only feast and the standard library (never adnomaly: it runs with Feast's Python). Reads one JSON
request on stdin: {"repo", "features", "entities": [...], "indexes": [...], "warmup"}; looks up
`entities[i]` for each i in `indexes`, one call per lookup (as the serving API answers one entity per
request), and prints {"seconds": [...], "values": {i: {feature: value}}} as the last line of stdout.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    from feast import FeatureStore

    request = json.load(sys.stdin)
    store = FeatureStore(repo_path=request["repo"])
    features, entities = request["features"], request["entities"]
    names = [f.split(":", 1)[1] for f in features]
    seconds: list[float] = []
    values: dict[int, dict[str, object]] = {}
    indexes = request["indexes"]
    for n, index in enumerate(indexes):
        started = time.perf_counter()
        answer = store.get_online_features(features=features, entity_rows=[entities[index]]).to_dict()
        elapsed = time.perf_counter() - started
        if n >= request["warmup"]:
            seconds.append(elapsed)
        values[index] = {name: answer[name][0] for name in names}
    sys.stdout.write("\n" + json.dumps({"seconds": seconds, "values": values}))


if __name__ == "__main__":
    main()
