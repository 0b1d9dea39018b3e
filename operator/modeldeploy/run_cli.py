"""`modeldeploy run`: start the operator (kopf) for one namespace, several, or all."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any


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
        default=float(os.environ.get("MODELDEPLOY_RESYNC_SECONDS", "60")),
        help="reconcile every ModelDeployment this often, whatever happened",
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


def peering_priority(value: str, hostname: str) -> int:
    """kopf freezes replicas of equal priority, so each needs its own: 'ordinal' turns a StatefulSet
    pod name (modeldeploy-operator-2) into 100 - 2; the first pod is the preferred leader."""
    if value != "ordinal":
        return int(value)
    _, _, ordinal = hostname.rpartition("-")
    if not ordinal.isdigit():
        raise ValueError(f"'ordinal' needs a StatefulSet pod name ending in -N, got HOSTNAME={hostname!r}")
    return 100 - int(ordinal)


def run(args: argparse.Namespace) -> int:
    import kopf

    from modeldeploy import handlers
    from modeldeploy.k8s import load_client
    from modeldeploy.reconcile import Reconciler

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("modeldeploy").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        # kopf logs every handler call ("Handler 'on_child' succeeded"); our own lines say what happened.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        kube = load_client(args.kubeconfig)
    except Exception as exc:  # no kubeconfig / no in-cluster credentials: one line, no traceback
        print(f"modeldeploy run: cannot load Kubernetes credentials: {exc}", file=sys.stderr)
        return 2
    try:
        priority = peering_priority(args.priority, os.environ.get("HOSTNAME", ""))
    except ValueError as exc:
        print(f"modeldeploy run: --priority: {exc}", file=sys.stderr)
        return 2
    handlers.install(Reconciler(kube), list(args.namespace), args.resync_seconds)
    if args.metrics_port:
        from modeldeploy import metrics

        metrics.serve(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    scope = "namespaces " + ", ".join(args.namespace) if args.namespace else "all namespaces"
    logging.getLogger("modeldeploy").info("modeldeploy operator starting; watching %s", scope)
    try:
        asyncio.run(
            kopf.operator(
                clusterwide=not args.namespace,
                namespaces=list(args.namespace),
                liveness_endpoint=liveness,
                # Passing a peering name makes peering mandatory in kopf: only when asked for.
                standalone=args.peering is None,
                peering_name=args.peering,
                priority=priority if args.peering else None,
            )
        )
    finally:
        kube.close()
    return 0
