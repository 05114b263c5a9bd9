"""`adnomaly-operator`: run the operator (default), or print the CRD (`adnomaly-operator crd`).

    adnomaly-operator [--namespace NS ...] [--peering NAME] [--metrics-port 8000] [--liveness-port 8080]
                      [--drift-interval 60] [--workers 16] [--discovery-interval 30]
                      [--status-interval 2] [--status-rate 10]

Credentials come from the in-cluster service account, else from $KUBECONFIG (or ~/.kube/config).
Peering is off by default (`--standalone`); `--peering NAME` turns it on for an HA pair (it needs
kopf's peering CRDs, which the Helm chart installs).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence

import kopf
from adnomaly.observability import serve_metrics

from adnomaly_operator import crd
from adnomaly_operator.handlers import OperatorConfig, register
from adnomaly_operator.render import Images


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adnomaly-operator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the operator (the default)")
    sub.add_parser("crd", help="print the Pipeline CRD (YAML) generated from the model")
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="watch only these namespaces (repeatable); default: all namespaces")
    parser.add_argument("--peering", metavar="NAME", default=os.environ.get("ADNOMALY_OPERATOR_PEERING"),
                        help="enable kopf peering under NAME (for HA); default: standalone")
    parser.add_argument("--priority", type=int, default=0, help="peering priority")
    parser.add_argument("--metrics-port", type=int,
                        default=int(os.environ.get("ADNOMALY_OPERATOR_METRICS_PORT", "8000")),
                        help="Prometheus /metrics port (0: off)")
    parser.add_argument("--liveness-port", type=int,
                        default=int(os.environ.get("ADNOMALY_OPERATOR_LIVENESS_PORT", "8080")),
                        help="liveness endpoint port (/healthz; 0: off)")
    parser.add_argument("--drift-interval", type=float,
                        default=float(os.environ.get("ADNOMALY_OPERATOR_DRIFT_INTERVAL", "60")),
                        help="seconds between drift checks of each Pipeline")
    parser.add_argument("--discovery-interval", type=float,
                        default=float(os.environ.get("ADNOMALY_OPERATOR_DISCOVERY_INTERVAL", "30")),
                        help="seconds between checks for optional APIs (Strimzi, Flink, ServiceMonitor)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("ADNOMALY_OPERATOR_WORKERS", "16")),
                        help="Pipelines reconciled concurrently")
    parser.add_argument("--status-interval", type=float,
                        default=float(os.environ.get("ADNOMALY_OPERATOR_STATUS_INTERVAL", "2")),
                        help="seconds between progress-only status writes of one Pipeline (a phase change is "
                             "written at once)")
    parser.add_argument("--status-rate", type=float,
                        default=float(os.environ.get("ADNOMALY_OPERATOR_STATUS_RATE", "10")),
                        help="progress-only status writes per second across all Pipelines (0: unlimited)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


def run(args: argparse.Namespace) -> int:
    kopf.configure(verbose=args.verbose)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    config = OperatorConfig(
        drift_interval=args.drift_interval,
        workers=args.workers,
        status_interval=args.status_interval,
        status_rate=args.status_rate,
        discovery_interval=args.discovery_interval,
        images=Images.from_env(),
        instance=os.environ.get("POD_NAME") or socket.gethostname(),
    )
    registry = kopf.OperatorRegistry()
    register(registry, config)
    serve_metrics(args.metrics_port or None)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    asyncio.run(kopf.operator(
        registry=registry,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority,
        liveness_endpoint=liveness,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
    ))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "crd":
        return crd.main()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
