"""The runtime's error boundary: a failed reconcile is one log line and a back-off, never a crash."""

from __future__ import annotations

import logging

import pytest

from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.reconcile import ReconcileResult
from modeldeploy.controller.runtime import Runtime

KEY = ("ml", "digits")


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures

    def reconcile(self, namespace: str, name: str) -> ReconcileResult:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the API server said no")
        return ReconcileResult()


def test_failures_back_off_then_a_success_forgets_them(caplog: pytest.LogCaptureFixture) -> None:
    runtime = Runtime(kube=None, config=OperatorConfig())  # type: ignore[arg-type]
    runtime.reconciler = Flaky(failures=2)  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="modeldeploy.runtime"):
        runtime.process(KEY)
        runtime.process(KEY)
    assert runtime.queue.failures(KEY) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "ml/digits: reconcile failed (attempt 1), retrying in 1s: RuntimeError: the API server said no",
        "ml/digits: reconcile failed (attempt 2), retrying in 2s: RuntimeError: the API server said no",
    ]
    assert not any(r.exc_info for r in caplog.records), "no traceback unless --verbose"
    runtime.process(KEY)
    assert runtime.queue.failures(KEY) == 0


class Due:
    """A reconcile whose canary step is due again in 30 seconds."""

    def reconcile(self, namespace: str, name: str) -> ReconcileResult:
        return ReconcileResult(requeue_after=30.0)


def test_a_due_canary_step_requeues_the_key_at_that_time() -> None:
    now = [1000.0]
    runtime = Runtime(kube=None, config=OperatorConfig())  # type: ignore[arg-type]
    runtime.queue.clock = lambda: now[0]
    runtime.reconciler = Due()  # type: ignore[assignment]
    runtime.process(KEY)
    assert runtime.queue.get(timeout=0) is None, "not before it is due"
    now[0] += 30
    assert runtime.queue.get(timeout=0) == KEY
