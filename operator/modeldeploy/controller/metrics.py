"""Prometheus metrics of the operator, served by `modeldeploy run --metrics-port` (default 9090).

Every metric is documented in the README's Observability section. They describe what the operator
did (reconciles, writes, errors, API requests) and what it knows about each model (readiness,
sizes, accuracy, optimization time), so an admin can alert on a failing quality gate or a
ModelDeployment that stays not Ready.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("modeldeploy_reconciles_total", "Reconciles run, by result (ok or error).", ["result"])
RECONCILE_SECONDS = Histogram(
    "modeldeploy_reconcile_duration_seconds",
    "Wall time of one reconcile.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITES = Counter(
    "modeldeploy_writes_total",
    "Writes made by reconciles, by kind of write (create, apply, delete, status, event).",
    ["write"],
)
API_REQUESTS = Counter("modeldeploy_api_requests_total", "Requests to the Kubernetes API, by HTTP method.", ["method"])
READY = Gauge(
    "modeldeploy_model_deployment_ready", "1 when the ModelDeployment's Ready condition is True.", ["namespace", "name"]
)
SERVED_VERSION = Gauge(
    "modeldeploy_served_model_version", "Model version the serving pods load.", ["namespace", "name"]
)
MODEL_BYTES = Gauge(
    "modeldeploy_model_size_bytes",
    "Size of the served model: original SavedModel or optimized artifact.",
    ["namespace", "name", "artifact"],
)
ACCURACY = Gauge(
    "modeldeploy_model_accuracy",
    "Accuracy on the evaluation data, before and after optimization.",
    ["namespace", "name", "stage"],
)
OPTIMIZATION_SECONDS = Gauge(
    "modeldeploy_optimization_duration_seconds", "Wall time of the last successful optimization.", ["namespace", "name"]
)
TRANSITIONS = Counter(
    "modeldeploy_condition_transitions_total",
    "Condition changes, by condition type and reason (e.g. Optimized/QualityGateFailed).",
    ["condition", "reason"],
)


WORKQUEUE_DEPTH = Gauge("modeldeploy_workqueue_depth", "ModelDeployments waiting for a worker.")
WORKQUEUE_WAIT = Histogram(
    "modeldeploy_workqueue_wait_seconds",
    "Time a ModelDeployment waited in the work queue, from the event that queued it to a worker taking it; "
    "lane urgent: its spec had changed (an edit, a new object), normal: anything else.",
    ["lane"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def observe_queue_wait(seconds: float, lane: str) -> None:
    WORKQUEUE_WAIT.labels(lane).observe(seconds)


CACHE_OBJECTS = Gauge(
    "modeldeploy_cache_objects", "Objects held in the operator's cache, by kind (set at each resync).", ["kind"]
)


def serve(port: int) -> None:
    """Start the /metrics HTTP endpoint in a background thread."""
    start_http_server(port)


def forget(namespace: str, name: str) -> None:
    """Drop the per-object series of a deleted ModelDeployment."""
    for gauge, extra in (
        (READY, ()),
        (SERVED_VERSION, ()),
        (OPTIMIZATION_SECONDS, ()),
        (MODEL_BYTES, ("original",)),
        (MODEL_BYTES, ("optimized",)),
        (ACCURACY, ("before",)),
        (ACCURACY, ("after",)),
    ):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name, *extra)
