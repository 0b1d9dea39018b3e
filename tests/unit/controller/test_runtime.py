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


def _md(name: str, generation: int, resource_version: str) -> dict[str, object]:
    meta = {"namespace": "ml", "name": name, "uid": name, "generation": generation, "resourceVersion": resource_version}
    return {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "metadata": meta, "spec": {}}


def test_a_spec_edit_is_queued_before_status_changes() -> None:
    """An event with a new generation (an edit) is urgent; a status-only change of the same object is not."""
    runtime = Runtime(kube=None, config=OperatorConfig())  # type: ignore[arg-type]
    runtime.on_event("ModelDeployment", "ADDED", _md("a", 1, "10"))
    runtime.on_event("ModelDeployment", "ADDED", _md("b", 1, "11"))
    assert [runtime.queue.get(timeout=0), runtime.queue.get(timeout=0)] == [("ml", "a"), ("ml", "b")]
    runtime.queue.done(("ml", "a"))
    runtime.queue.done(("ml", "b"))
    runtime.on_event("ModelDeployment", "MODIFIED", _md("a", 1, "12"))  # status only: same generation
    runtime.on_event("ModelDeployment", "MODIFIED", _md("b", 2, "13"))  # an edit
    assert [runtime.queue.get(timeout=0), runtime.queue.get(timeout=0)] == [("ml", "b"), ("ml", "a")]
