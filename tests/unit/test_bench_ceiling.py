"""The ceiling/ratio shape every benchmark reports, and `bench all`'s table (pure parts)."""

from __future__ import annotations

import pytest
from adnomaly.bench import all as bench_all
from adnomaly.bench.ceiling import (
    cpu_bound,
    cpu_times,
    percentile,
    ratio,
    share,
    spare_capacity_speedup,
    steal_times,
    with_ceiling,
)
from adnomaly.bench.processor import cpu_bound_fields


def test_ratio_of_a_rate_is_value_over_ceiling() -> None:
    assert ratio(85_000, 100_000) == 0.85


def test_ratio_of_a_latency_is_ceiling_over_value() -> None:
    assert ratio(2.0, 0.5, higher_is_better=False) == 0.25


@pytest.mark.parametrize(("value", "ceiling"), [(0, 10), (10, 0), (-1, 10)])
def test_ratio_is_none_without_two_positive_figures(value: float, ceiling: float) -> None:
    assert ratio(value, ceiling) is None


def test_with_ceiling_names_the_ceiling_after_the_metric() -> None:
    assert with_ceiling("p99_ms", 1.2, 0.3, higher_is_better=False) == {
        "p99_ms": 1.2, "ceiling_p99_ms": 0.3, "ratio": 0.25,
    }  # fmt: skip


def test_percentile_is_nearest_rank_on_unsorted_values() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.99) == 5.0
    assert percentile(values, 0.01) == 1.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def _row(
    name: str, result: dict | None, load: float = 3.1, error: str = "", steal: float | None = None
) -> bench_all.Row:
    return bench_all.Row(name, bench_all.command_line(name, ["--events", "10"]), result, error, load, 2.5, 2,
                         "2026-12-05 18:40", steal)  # fmt: skip


def test_headline_cells_of_a_rate_and_a_latency() -> None:
    processor = {"events_per_second": 64135, "ceiling_events_per_second": 67720, "ratio": 0.947}
    assert bench_all.headline("processor", processor) == ("64,135 events/s", "67,720 events/s", "0.947")
    online = {"p99_ms": 1.31, "ceiling_p99_ms": 0.21, "ratio": 0.16}
    assert bench_all.headline("online", online) == ("1.31 ms", "0.21 ms", "0.160")
    assert bench_all.headline("generator", {"pure": 1}) == ("—", "—", "—")
    assert bench_all.headline("generator", {"broker": {"produced_per_s": 72226.8}}) == ("72,227 events/s", "—", "—")
    assert bench_all.headline("operator", {"seconds_to_ready": 7.4}) == ("7.4 s", "—", "—")
    assert bench_all.headline("lake", {"events_per_second": 47600}) == ("47,600 events/s", "—", "—")


def test_render_table_has_the_command_the_load_and_failures() -> None:
    table = bench_all.render_table([
        _row("processor", {"events_per_second": 64135, "ceiling_events_per_second": 67720, "ratio": 0.947},
             steal=0.163),
        _row("detector", {"records_per_second": 15000, "ceiling_records_per_second": 400000, "ratio": 0.0375},
             load=0.2),
        _row("ingest", None, error="RuntimeError: no broker | down"),
    ])  # fmt: skip
    lines = table.splitlines()
    assert lines[0].startswith("| benchmark | command |")
    assert lines[2] == ("| processor | `adnomaly bench processor --events 10 --json` | 64,135 events/s | "
                        "67,720 events/s | 0.947 | 3.10 → 2.50 (2) | 16.3% | 2026-12-05 18:40 |")  # fmt: skip
    assert "| 0.20 → 2.50 (2) idle | — |" in lines[3]
    assert "| failed: RuntimeError: no broker / down |" in lines[4]


def test_replace_table_keeps_the_rest_of_the_readme() -> None:
    begin, end = bench_all.MARKERS
    text = f"# Benchmarks\n\nintro\n\n{begin}\nold table\n{end}\n\n## More\n"
    assert bench_all.replace_table(text, "new\n") == f"# Benchmarks\n\nintro\n\n{begin}\nnew\n{end}\n\n## More\n"


def test_replace_table_appends_the_markers_when_absent() -> None:
    begin, end = bench_all.MARKERS
    assert bench_all.replace_table("# Benchmarks\n", "t\n") == f"# Benchmarks\n\n{begin}\nt\n{end}\n"


def test_spare_capacity_speedup_is_total_over_busy_cpu_time() -> None:
    assert spare_capacity_speedup((10.0, 100.0), (18.0, 110.0)) == 1.25  # 80 % busy: at most 1.25x
    assert spare_capacity_speedup((10.0, 100.0), (20.0, 110.0)) == 1.0  # every CPU busy: nothing to gain
    assert spare_capacity_speedup((10.0, 100.0), (10.0, 110.0)) is None  # nothing measured


def test_cpu_times_are_busy_at_most_total_and_grow() -> None:
    busy, total = cpu_times()
    sum(range(200_000))
    later_busy, later_total = cpu_times()
    assert 0 < busy <= total and later_busy >= busy and later_total >= total


def test_cpu_bound_is_every_cpu_spent_on_the_summed_cost_per_event() -> None:
    assert cpu_bound(2, [10.0, 25.0, 5.0]) == 50_000  # 40 µs per event on 2 CPUs
    assert cpu_bound(1, [20.0]) == 50_000
    assert cpu_bound(2, []) is None and cpu_bound(0, [10.0]) is None


def test_the_processor_reports_how_far_its_cpu_lets_it_reach_the_ceiling() -> None:
    cpu = {"processor_cpu_us_per_event": 10.0, "postgres_cpu_us_per_event": 25.0, "broker_cpu_us_per_event": 5.0}
    fields = cpu_bound_fields(45_000, 70_000, 2, cpu)
    # 2 CPUs at 40 µs per event: 50k/s at most, 45k of it reached; 50k of PostgreSQL's 70k is the best ratio.
    assert fields == {"cpu_bound_events_per_second": 50_000, "cpu_bound_ratio": 0.9, "reachable_ratio": 0.714}
    # a bound above the ceiling cannot raise the reachable ratio past 1
    assert cpu_bound_fields(45_000, 30_000, 2, cpu)["reachable_ratio"] == 1.0
    # a CPU figure missing (e.g. no PostgreSQL backend found): no bound rather than a wrong one
    assert cpu_bound_fields(45_000, 70_000, 2, {"processor_cpu_us_per_event": 10.0}) == {}


def test_share_is_the_part_over_the_whole_between_two_readings() -> None:
    assert share((1.0, 100.0), (4.0, 110.0)) == 0.3  # 3 s stolen of 10 s of CPU time
    assert share((1.0, 100.0), (1.0, 100.0)) is None
    steal, total = steal_times()
    assert 0 <= steal <= total
