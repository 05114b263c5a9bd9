"""`adnomaly bench autoscale`: how much faster an autoscaled processor drains a burst than a fixed one.

Starts a real Kafka broker and PostgreSQL in a temporary directory and runs the same rate step twice through
the local backend's processes (`adnomaly.local.up.LocalPipeline`): `--base-rate` events/s, then
`--step-rate` for `--step-seconds`, then the base rate again. Once with one fixed processor (the ceiling it
is compared with, measured in the same run), once with `autoscaling` on the processor, whose replicas the
local executor of `adnomaly.scaling.decide` sets from the real consumer lag, round by round.

Reported per run: the largest lag, the seconds from the end of the step until the backlog is drained (lag
below one second of base traffic), the most replicas and the scale events; and `lost` / `duplicated`
counted by event id in PostgreSQL against every id Kafka acknowledged. `ratio` is the fixed run's drain
time over the autoscaled one's. On a 2-core machine the replicas share the cores with PostgreSQL and the
load generator, which bounds what more processes can buy: the fixed run's drain also measures that bound,
`ceiling_ratio`, the machine's total over busy CPU time while the fixed processor drained (1.25 when the
machine was 80 % busy: no scaler could drain more than 1.25x faster on it, the per-event costs being the
same), so `ratio` can be read against what the machine had to give.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from adnomaly.bench.ceiling import cpu_times, machine_load, spare_capacity_speedup
from adnomaly.bench.processor import sample_events
from adnomaly.kafka_client import producer_config
from adnomaly.local.live import LiveView
from adnomaly.local.state import open_state_dir
from adnomaly.local.up import LocalPipeline, Services, start_pipeline, tend
from adnomaly.processor.store import stored_ids
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.spec import parse_pipeline


@dataclass(frozen=True)
class Step:
    base_rate: float
    step_rate: float
    before_s: float
    step_s: float

    def due(self, elapsed: float) -> int:
        """Events the load should have sent `elapsed` seconds after it started (base, step, base again)."""
        before = min(elapsed, self.before_s) * self.base_rate
        during = min(max(elapsed - self.before_s, 0.0), self.step_s) * self.step_rate
        after = max(elapsed - self.before_s - self.step_s, 0.0) * self.base_rate
        return int(before + during + after)

    @property
    def step_end_s(self) -> float:
        return self.before_s + self.step_s


@dataclass
class Load:
    """A producer thread that follows `step`; `acked` counts what Kafka acknowledged (ids `<prefix>-<n>`)."""

    bootstrap: str
    topic: str
    prefix: str
    step: Step
    sent: int = 0
    acked: int = 0
    failed: int = 0
    started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"load-{self.prefix}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed += 1

    def _run(self) -> None:
        producer = Producer(producer_config(self.bootstrap, linger_ms=20))
        chunk = 1000
        while not self._stop.is_set():
            due = self.step.due(time.monotonic() - self.started)
            while self.sent < due:
                count = min(chunk, due - self.sent)
                for value in sample_events(count, prefix=self.prefix, start=self.sent):
                    while True:
                        try:
                            producer.produce(self.topic, value=value, on_delivery=self._delivered)
                            break
                        except BufferError:
                            producer.poll(0.05)
                self.sent += count
                producer.poll(0)
            producer.poll(0.02)
        producer.flush(120)


def one_run(mode: str, kafka: KafkaBroker, postgres: PostgresServer, state_root: Path,
            args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    name = f"bench-{mode}"
    processor: dict[str, Any] = {"replicas": 1}
    if mode == "autoscaled":
        processor = {"autoscaling": {"minReplicas": 1, "maxReplicas": args.partitions,
                                     "lagThreshold": args.lag_threshold,
                                     "scaleDownStabilization": f"{args.stabilization_seconds}s"}}  # fmt: skip
    pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": name}, "spec": {
        "events": {"schema": "clickstream"},
        "source": {"generator": {"enabled": False}, "ingest": {"enabled": False}},
        "lake": {"enabled": False},
        "kafka": {"topics": {"raw": {"partitions": args.partitions, "retention": "1d"}}},
        "components": {"processor": processor},
    }})  # fmt: skip
    local = LocalPipeline(pipeline, open_state_dir(state_root / mode), Services(kafka, postgres))
    local.create_topics()
    raw = local.plan.topics["raw"].name
    step = Step(args.base_rate, args.step_rate, args.before_seconds, args.step_seconds)
    load = Load(kafka.bootstrap_servers, raw, mode, step)
    scaler = local.scaler()
    scaler.round_s = args.round_seconds
    view = LiveView(name, live=False, stderr=True)
    peak_lag, drained_after, peak_replicas, final_replicas = 0, None, 1, 1
    step_end_cpu: tuple[float, float] | None = None
    headroom: float | None = None
    try:
        start_pipeline(local)
        load.start()
        deadline = load.started + step.step_end_s + args.max_tail_seconds
        while time.monotonic() < deadline:
            tend(local, scaler, view)
            peak_replicas = max(peak_replicas, local.replicas("processor"))
            lag = local.backlog()
            peak_lag = max(peak_lag, lag)
            elapsed = time.monotonic() - load.started
            if step_end_cpu is None and elapsed > step.step_end_s:
                step_end_cpu = cpu_times()
            if drained_after is None and elapsed > step.step_end_s and lag <= args.base_rate:
                drained_after = elapsed - step.step_end_s
                headroom = spare_capacity_speedup(step_end_cpu, cpu_times()) if step_end_cpu else None
            back_down = mode == "fixed" or local.replicas("processor") == 1
            if drained_after is not None and back_down:
                break
            time.sleep(0.5)
        final_replicas = local.replicas("processor")  # before the processes stop: then it reads 1 whatever ran
        load.stop()
        while local.backlog() > 0 and time.monotonic() < deadline + 120:
            time.sleep(0.5)
    finally:
        load.stop()
        local.stop_component("processor", timeout=60)
    ids = stored_ids(postgres.dsn, local.processor_section().db_schema)
    distinct = set(ids)
    return {
        "events": load.acked, "failed_deliveries": load.failed, "max_lag": peak_lag,
        "drain_seconds": None if drained_after is None else round(drained_after, 1),
        "drain_speedup_ceiling": headroom,
        "max_replicas": peak_replicas, "scale_events": [e.text() for e in scaler.events],
        "scaled_back_to": final_replicas,
        "lost": load.acked - len(distinct & {f"{mode}-{n}" for n in range(load.sent)}),
        "duplicated": len(ids) - len(distinct),
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = machine_load()
    # Not under a 0700 directory: PostgreSQL runs as the `postgres` user when this runs as root.
    with tempfile.TemporaryDirectory(prefix="adnomaly-bench-autoscale-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        state = open_state_dir(root / "state")
        with PostgresServer(state.service_dir("postgres")) as postgres, \
                KafkaBroker(state.service_dir("kafka")) as kafka:  # fmt: skip
            fixed = one_run("fixed", kafka, postgres, root, args)
            autoscaled = one_run("autoscaled", kafka, postgres, root, args)
    ratio = None
    if fixed["drain_seconds"] and autoscaled["drain_seconds"]:
        ratio = round(fixed["drain_seconds"] / autoscaled["drain_seconds"], 2)
    return {
        "benchmark": "autoscale",
        "settings": {"base_rate": args.base_rate, "step_rate": args.step_rate, "step_seconds": args.step_seconds,
                     "partitions": args.partitions, "lag_threshold": args.lag_threshold,
                     "round_seconds": args.round_seconds, "stabilization_seconds": args.stabilization_seconds},
        "fixed": fixed, "autoscaled": autoscaled,
        "max_replicas": autoscaled["max_replicas"], "ratio": ratio,
        "ceiling_ratio": fixed["drain_speedup_ceiling"], **load,
        "lost": fixed["lost"] + autoscaled["lost"], "duplicated": fixed["duplicated"] + autoscaled["duplicated"],
    }  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "autoscale", help="drain time of a rate step: one fixed processor vs the autoscaled processor",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--base-rate", type=float, default=500.0, help="events/s before and after the step")
    parser.add_argument("--step-rate", type=float, default=20_000.0, help="events/s during the step")
    parser.add_argument("--step-seconds", type=float, default=60.0, help="how long the step lasts")
    parser.add_argument("--before-seconds", type=float, default=10.0, help="base traffic before the step")
    parser.add_argument("--partitions", type=int, default=4, help="raw topic partitions (the replica cap)")
    parser.add_argument("--lag-threshold", type=int, default=5000, help="autoscaling lagThreshold")
    parser.add_argument("--round-seconds", type=float, default=15.0, help="seconds between scaling rounds")
    parser.add_argument("--stabilization-seconds", type=int, default=30, help="autoscaling scaleDownStabilization")
    parser.add_argument("--max-tail-seconds", type=float, default=600.0, help="give up this long after the step")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
