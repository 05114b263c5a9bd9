"""`python -m adnomaly.detector --config PATH`: run the detector until SIGTERM/SIGINT (then drain, exit 0).

Needs $ADNOMALY_POSTGRES_DSN; the `detector` section of the component config (see `.config`). With its
`notify` section, the Alertmanager login comes from $ADNOMALY_ALERTMANAGER_USERNAME/_PASSWORD or _TOKEN.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from adnomaly.config import SecretEnv, secret_from_env
from adnomaly.detector.config import DETECTOR_SECTION, DetectorConfig
from adnomaly.detector.metrics import DetectorMetrics
from adnomaly.detector.runner import DetectorRunner
from adnomaly.detector.supervise import run_until_stopped
from adnomaly.observability import serve_metrics
from adnomaly.sinks.config import load_section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.detector")
    parser.add_argument("--config", help="component config JSON (default: $ADNOMALY_CONFIG)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Alertmanager post otherwise
    config, section = load_section(args.config, DETECTOR_SECTION, DetectorConfig)
    dsn = secret_from_env(SecretEnv.POSTGRES_DSN)
    assert dsn is not None
    metrics = DetectorMetrics()  # one registry for the process, whichever runner is current
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve_metrics(config.metrics_port)
    return run_until_stopped(lambda: DetectorRunner(config, section, dsn, metrics), stopping)


if __name__ == "__main__":
    raise SystemExit(main())
