"""Benchmarks, reachable as `adnomaly bench NAME`. Each module has `register(subparsers)`; the
function it sets as `func` returns a JSON-able dict that the CLI prints (one object with `--json`)."""

BENCHMARKS = (
    "processor", "ingest", "e2e", "generator", "lake", "online", "features", "detection", "detector", "nab",
    "operator", "reliability", "autoscale", "feature_sink", "all",
)
