"""Pure anomaly detection: detectors, anomaly lifecycle, an offline windowing reference, scoring, NAB.

`tail` and `auto` (the default detector's hot path) may run compiled by mypyc; `adnomaly.compiled` makes
sure an import here never runs an extension older than its source."""

from adnomaly.compiled import GROUPS, use_current

# What runs the hot path: `compiled`, or `sources` / `stale` (adnomaly.compiled.verdict); benchmarks report it.
RUNNING = use_current(__name__, GROUPS[__name__])
