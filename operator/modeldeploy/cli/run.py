"""`modeldeploy run`: start the operator (kopf) for one namespace, several, or all.

Flags (with environment defaults, as the chart sets them) become one `OperatorConfig`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from modeldeploy.controller.config import DEFAULT_RESYNC_SECONDS, DEFAULT_WORKERS

EXIT_BAD_FLAG = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run the operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    parser.add_argument(
        "--liveness-port",
        type=int,
        default=int(os.environ.get("MODELDEPLOY_LIVENESS_PORT", "8080")),
        help="serve /healthz on this port (0 = off)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("MODELDEPLOY_METRICS_PORT", "9090")),
        help="serve Prometheus /metrics on this port (0 = off)",
    )
    parser.add_argument(
        "--log-format", choices=("plain", "json"), default=os.environ.get("MODELDEPLOY_LOG_FORMAT", "plain")
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=float(os.environ.get("MODELDEPLOY_RESYNC_SECONDS", str(DEFAULT_RESYNC_SECONDS))),
        help="re-plan every ModelDeployment from the cache this often, whatever happened (no request)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("MODELDEPLOY_WORKERS", str(DEFAULT_WORKERS))),
        help="reconciles running at once (different ModelDeployments)",
    )
    parser.add_argument(
        "--default-signing-key-secret",
        default=os.environ.get("MODELDEPLOY_DEFAULT_SIGNING_KEY_SECRET") or None,
        help="sign published models with this Secret (signing.key, signing.pub) in each ModelDeployment's "
        "namespace when its spec.artifacts.signingKeySecret is unset",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster, then KUBECONFIG)")
    parser.add_argument(
        "--peering",
        default=os.environ.get("MODELDEPLOY_PEERING") or None,
        help="kopf peering name for several replicas (needs the peering CRDs); default: standalone",
    )
    parser.add_argument(
        "--priority",
        default=os.environ.get("MODELDEPLOY_PRIORITY", "0"),
        help="peering priority (replicas need distinct ones), or 'ordinal': 100 minus the StatefulSet pod's ordinal",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modeldeploy.controller.config import LogFormat, OperatorConfig, peering_priority
    from modeldeploy.controller.main import run_operator

    try:
        priority = peering_priority(args.priority, os.environ.get("HOSTNAME", ""))
    except ValueError as exc:
        print(f"modeldeploy run: --priority: {exc}", file=sys.stderr)
        return EXIT_BAD_FLAG
    config = OperatorConfig(
        namespaces=tuple(args.namespace),
        resync_seconds=args.resync_seconds,
        workers=max(1, args.workers),
        liveness_port=args.liveness_port,
        metrics_port=args.metrics_port,
        log_format=LogFormat(args.log_format),
        verbose=args.verbose,
        kubeconfig=args.kubeconfig,
        peering=args.peering,
        priority=priority,
        default_signing_key_secret=args.default_signing_key_secret,
    )
    return run_operator(config)
