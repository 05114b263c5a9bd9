"""`python -m adnomaly.detector --config PATH`: run the detector until SIGTERM/SIGINT (then drain, exit 0).

Needs $ADNOMALY_POSTGRES_DSN; the `detector` section of the component config (see `.config`).
"""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from adnomaly.config import SecretEnv, secret_from_env
from adnomaly.detector.config import DETECTOR_SECTION, DetectorConfig
from adnomaly.detector.runner import DetectorRunner
from adnomaly.observability import serve_metrics
from adnomaly.sinks.config import load_section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.detector")
    parser.add_argument("--config", help="component config JSON (default: $ADNOMALY_CONFIG)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, section = load_section(args.config, DETECTOR_SECTION, DetectorConfig)
    dsn = secret_from_env(SecretEnv.POSTGRES_DSN)
    assert dsn is not None
    runner = DetectorRunner(config, section, dsn)

    def stop(signum: int, frame: FrameType | None) -> None:
        runner.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve_metrics(config.metrics_port)
    runner.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
