"""Start the operator: credentials, metrics endpoint, then kopf's loop with our handlers.

Called by `modeldeploy run` with a finished `OperatorConfig`; returns the process exit code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import kopf

from modeldeploy.controller import handlers, metrics
from modeldeploy.controller.config import LogFormat, OperatorConfig
from modeldeploy.controller.runtime import Runtime
from modeldeploy.k8s.client import load_client

EXIT_NO_CREDENTIALS = 2

log = logging.getLogger("modeldeploy")


def run_operator(config: OperatorConfig) -> int:
    if config.kubeconfig:
        os.environ["KUBECONFIG"] = config.kubeconfig  # kopf logs in on its own and reads it
    kopf.configure(
        verbose=config.verbose,
        log_format=kopf.LogFormat.JSON if config.log_format == LogFormat.JSON else kopf.LogFormat.PLAIN,
    )
    log.setLevel(logging.DEBUG if config.verbose else logging.INFO)
    if not config.verbose:
        # kopf logs every handler call ("Handler 'on_child' succeeded"); our own lines say what happened.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        kube = load_client(
            config.kubeconfig,
            on_request=lambda method: metrics.API_REQUESTS.labels(method).inc(),
            connections=config.api_connections,
        )
    except Exception as exc:  # no kubeconfig / no in-cluster credentials: one line, no traceback
        print(f"modeldeploy run: cannot load Kubernetes credentials: {exc}", file=sys.stderr)
        return EXIT_NO_CREDENTIALS
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    liveness = f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port else None
    log.info("modeldeploy operator starting; watching %s", config.scope)
    memo = kopf.Memo(runtime=Runtime(kube, config))
    try:
        asyncio.run(
            kopf.operator(
                registry=handlers.REGISTRY,
                memo=memo,
                clusterwide=not config.namespaces,
                namespaces=list(config.namespaces),
                liveness_endpoint=liveness,
                # Passing a peering name makes peering mandatory in kopf: only when asked for.
                standalone=config.peering is None,
                peering_name=config.peering,
                priority=config.priority if config.peering else None,
            )
        )
    finally:
        kube.close()
    return 0
