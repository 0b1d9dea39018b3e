"""Instant PromQL queries against a Prometheus server, for the canary analysis.

The one module that talks to Prometheus (like `modeldeploy.k8s.client` for the API server): the step
machine stays pure and gets `Sample`s. Interface only in this commit; the client lands with its
tests against a real Prometheus server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One query's answer: a value, no data (an empty result or NaN), or an error a human can act on."""

    value: float | None = None
    error: str | None = None  # e.g. "Prometheus at http://...: connection refused", or its parse error

    @property
    def no_data(self) -> bool:
        return self.value is None and self.error is None


def query(url: str, promql: str, timeout: float) -> Sample:
    """Run an instant query; never raises (an unreachable server is a Sample with an error)."""
    raise NotImplementedError("the Prometheus client is being written")
