"""The canary rollout through the planner and the status: what is applied, held and deleted, and what
status.rollout, the CANARY column, Ready and the Events say, over a simulated cluster (pure)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy.api import ModelDeployment
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.controller.builders import Owner, build_deployment, desired_artifact
from modeldeploy.controller.builders.deployment import build_canary_deployment, revision_of
from modeldeploy.controller.builders.labels import REVISION_ANNOTATION, TRACK_LABEL
from modeldeploy.controller.plan import Plan, plan, stable_revision
from modeldeploy.controller.status import EventSpec, status_of
from modeldeploy.controller.views import Observed, canary_restarts, view_deployment

OWNER = Owner(name="digits", uid="uid-1")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AS_IS: dict[str, Any] = {
    "model": {"format": "savedmodel", "storageUri": "pvc://models/digits"},
    "optimization": {"enabled": False},
    "serving": {"replicas": 4},
    "autoscaling": {"enabled": False},
}
CANARY: dict[str, Any] = {
    "strategy": "Canary",
    "steps": [{"weight": 20, "pause": "30s"}, {"weight": 50, "pause": "30s"}],
}


class Cluster:
    """Children as the API server would keep them; Deployments roll at once unless told not to."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.status = ModelDeploymentStatus()
        self.pods: list[dict[str, Any]] = []
        self.stuck: set[str] = set()  # Deployments whose pods never become ready

    def observed(self) -> Observed:
        deployment = self.objects.get(("Deployment", "digits"))
        canary = self.objects.get(("Deployment", "digits-canary"))
        return Observed(
            deployment=view_deployment(deployment) if deployment else None,
            canary=view_deployment(canary) if canary else None,
            children=dict(self.objects),
            canary_restarts=canary_restarts(self.pods),
        )

    def store(self, manifest: dict[str, Any]) -> None:
        key = (manifest["kind"], manifest["metadata"]["name"])
        old = self.objects.get(key)
        obj = copy.deepcopy(manifest)
        generation = 1 if old is None else old["metadata"]["generation"] + (old.get("spec") != obj.get("spec"))
        obj["metadata"]["generation"] = generation
        if obj["kind"] == "Deployment":
            replicas = obj["spec"].get("replicas", 1)
            ready = 0 if key[1] in self.stuck else replicas
            obj["status"] = {
                "observedGeneration": generation,
                "replicas": replicas,
                "readyReplicas": ready,
                "updatedReplicas": replicas,
                "availableReplicas": ready,
                "conditions": [{"type": "Available", "status": "True" if ready else "False"}],
            }
        self.objects[key] = obj

    def reconcile(self, md: ModelDeployment, now: datetime) -> tuple[Plan, list[EventSpec]]:
        observed = self.observed()
        decided = plan(md, observed, self.status, OWNER, now=now)
        update = status_of(md, decided, observed, self.status, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        for manifest in decided.apply:
            self.store(manifest)
        for key in decided.delete:
            self.objects.pop(key, None)
        self.status = update.status
        return decided, update.events

    def template(self, name: str = "digits") -> dict[str, Any]:
        template: dict[str, Any] = self.objects[("Deployment", name)]["spec"]["template"]
        return template


@pytest.fixture
def v1(make_md: Callable[..., ModelDeployment]) -> ModelDeployment:
    return make_md(metadata={"generation": 1}, spec={**AS_IS, "rollout": CANARY})


def new_version(
    md: ModelDeployment, make_md: Callable[..., ModelDeployment], version: int = 2, **rollout: Any
) -> ModelDeployment:
    return make_md(
        metadata={"generation": version},
        spec={**AS_IS, "model": {**AS_IS["model"], "version": version}, "rollout": {**CANARY, **rollout}},
    )


def running(cluster: Cluster, md: ModelDeployment) -> None:
    cluster.reconcile(md, T0)
    cluster.reconcile(md, T0)
    assert cluster.status.phase == "Ready" and cluster.status.rollout is None
    assert cluster.status.canary == "-"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- builders ------------------------------------------------------------------------------------------


def test_stable_pods_carry_the_track_label_and_the_deployment_its_revision(v1: ModelDeployment) -> None:
    cluster = Cluster()
    running(cluster, v1)
    stable = cluster.objects[("Deployment", "digits")]
    assert stable["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] == "stable"
    assert TRACK_LABEL not in stable["spec"]["selector"]["matchLabels"], "the stable selector never changes"
    assert stable["metadata"]["annotations"][REVISION_ANNOTATION] == revision_of(stable)


def test_the_revision_ignores_the_track_and_follows_the_pods(
    v1: ModelDeployment, make_md: Callable[..., ModelDeployment]
) -> None:
    cluster = Cluster()
    running(cluster, v1)
    stable = cluster.objects[("Deployment", "digits")]
    retracked = copy.deepcopy(stable)
    retracked["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] = "canary"
    assert revision_of(retracked) == revision_of(stable)
    more_memory = make_md(spec={**AS_IS, "serving": {"replicas": 4, "resources": {"limits": {"memory": "3Gi"}}}})
    scaled = make_md(spec={**AS_IS, "serving": {"replicas": 9}})
    built = build_deployment(v1, desired_artifact(v1.name, v1.spec, v1.namespace), "x", OWNER)
    other = build_deployment(
        more_memory, desired_artifact(more_memory.name, more_memory.spec, more_memory.namespace), "x", OWNER
    )
    same = build_deployment(scaled, desired_artifact(scaled.name, scaled.spec, scaled.namespace), "x", OWNER)
    assert revision_of(built) != revision_of(other), "resources are part of the pods"
    assert revision_of(built) == revision_of(same), "replicas are not"


def test_canary_deployment(v1: ModelDeployment) -> None:
    cluster = Cluster()
    running(cluster, v1)
    stable = cluster.objects[("Deployment", "digits")]
    canary = build_canary_deployment(v1, stable, 3)
    assert canary["metadata"]["name"] == "digits-canary" and canary["spec"]["replicas"] == 3
    assert canary["metadata"]["ownerReferences"] == stable["metadata"]["ownerReferences"]
    assert canary["metadata"]["labels"] == stable["metadata"]["labels"]
    assert canary["spec"]["selector"]["matchLabels"] == {
        **stable["spec"]["selector"]["matchLabels"],
        TRACK_LABEL: "canary",
    }
    pod = canary["spec"]["template"]["metadata"]
    assert pod["labels"][TRACK_LABEL] == "canary"
    assert pod["annotations"][REVISION_ANNOTATION] == revision_of(stable)
    assert canary["metadata"]["annotations"][REVISION_ANNOTATION] == revision_of(stable)
    sources = canary["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    assert [s["configMap"]["name"] for s in sources] == ["digits-canary-model-config", "digits-canary-serving-config"]


def test_an_older_operator_s_stable_deployment_without_the_annotation(v1: ModelDeployment) -> None:
    cluster = Cluster()
    running(cluster, v1)
    ours = cluster.objects[("Deployment", "digits")]
    older = copy.deepcopy(ours)
    del older["metadata"]["annotations"][REVISION_ANNOTATION]
    older["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "abc"  # a field the server adds
    assert stable_revision(ours, older) == revision_of(ours), "already what we build: the same revision"
    del older["spec"]["template"]["metadata"]["labels"][TRACK_LABEL]
    assert stable_revision(ours, older) != revision_of(ours), "without the track label: another revision"


# -- the rollout through plan and status ----------------------------------------------------------------


def kinds_named(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(i["kind"], i["metadata"]["name"]) for i in items]


def test_rolling_update_applies_the_new_version_to_the_one_deployment(
    make_md: Callable[..., ModelDeployment],
) -> None:
    md = make_md(spec=AS_IS)
    cluster = Cluster()
    running(cluster, md)
    v2 = make_md(spec={**AS_IS, "model": {**AS_IS["model"], "version": 2}})
    decided, _ = cluster.reconcile(v2, at(1))
    assert decided.rollout is not None and decided.rollout.status is None
    assert ("Deployment", "digits") in kinds_named(decided.apply)
    assert ("Deployment", "digits-canary") not in cluster.objects
    assert cluster.status.rollout is None and cluster.status.canary == "-"


def test_promotion_through_two_steps(v1: ModelDeployment, make_md: Callable[..., ModelDeployment]) -> None:
    cluster = Cluster()
    running(cluster, v1)
    stable_before = copy.deepcopy(cluster.objects[("Deployment", "digits")])
    model_config_before = copy.deepcopy(cluster.objects[("ConfigMap", "digits-model-config")])
    v2 = new_version(v1, make_md)

    decided, events = cluster.reconcile(v2, at(1))
    applied = kinds_named(decided.apply)
    assert ("Deployment", "digits") not in applied and ("ConfigMap", "digits-model-config") not in applied
    assert ("Deployment", "digits-canary") in applied and ("ConfigMap", "digits-canary-model-config") in applied
    assert cluster.objects[("Deployment", "digits")] == stable_before, "the stable Deployment is untouched"
    assert cluster.objects[("ConfigMap", "digits-model-config")] == model_config_before
    assert "versions: 2" in cluster.objects[("ConfigMap", "digits-canary-model-config")]["data"]["models.config"]
    assert cluster.objects[("Deployment", "digits-canary")]["spec"]["replicas"] == 1  # 4 * 20/80
    rollout = cluster.status.rollout
    assert rollout is not None and rollout.phase == "Progressing" and rollout.step == 0
    assert cluster.status.served_version == 1, "the stable version serves"
    ready = {c.type: c for c in cluster.status.conditions}["Ready"]
    assert ready.status == "True" and ready.reason == "CanaryProgressing"
    assert ready.message.startswith("version 1 serves; step 1/2")
    assert cluster.status.phase == "RollingOut" and cluster.status.summary == "RollingOut: v2"
    assert cluster.status.canary == "0%" and [e.reason for e in events] == ["CanaryProgressing"]

    decided, events = cluster.reconcile(v2, at(2))  # the canary's pod is ready: 1 of 5
    assert cluster.status.canary == "20%" and decided.rollout is not None and decided.rollout.requeue_after == 30
    assert [(e.reason, e.message) for e in events] == [
        ("CanaryProgressing", "step 1/2: canary v2 at 20% (achieved 20%), pause 30s")
    ]
    cluster.reconcile(v2, at(32))  # pause over: step 2, 4 canary pods
    assert cluster.objects[("Deployment", "digits-canary")]["spec"]["replicas"] == 4
    _, events = cluster.reconcile(v2, at(33))
    assert cluster.status.canary == "50%" and [e.reason for e in events] == ["CanaryProgressing"]
    assert cluster.objects[("Deployment", "digits")] == stable_before

    decided, events = cluster.reconcile(v2, at(63))  # last pause over: promotion
    assert [e.reason for e in events] == ["Promoting"]
    assert ("Deployment", "digits") in kinds_named(decided.apply)
    assert ("ConfigMap", "digits-model-config") in kinds_named(decided.apply)
    stable = cluster.objects[("Deployment", "digits")]
    assert stable["metadata"]["annotations"]["modeldeploy.io/model-version"] == "2"
    assert stable["metadata"]["annotations"][REVISION_ANNOTATION] == cluster.status.rollout.revision  # type: ignore[union-attr]
    assert ("Deployment", "digits-canary") in cluster.objects, "the canary serves until the stable rolled"
    ready = {c.type: c for c in cluster.status.conditions}["Ready"]
    assert ready.reason == "Promoting" and cluster.status.phase == "RollingOut"

    decided, events = cluster.reconcile(v2, at(64))  # the stable Deployment rolled
    assert ("Promoted", "Normal") in [(e.reason, e.type) for e in events]
    assert ("Deployment", "digits-canary") in decided.delete
    assert ("ConfigMap", "digits-canary-model-config") in decided.delete
    assert ("Deployment", "digits-canary") not in cluster.objects
    assert cluster.status.rollout is not None and cluster.status.rollout.phase == "Promoted"
    assert cluster.status.canary == "-" and cluster.status.phase == "Ready" and cluster.status.served_version == 2
    decided, events = cluster.reconcile(v2, at(100))
    assert events == [] and decided.delete == [] and cluster.status.rollout.phase == "Promoted"


def test_abort_by_the_progress_deadline_keeps_the_stable_untouched(
    v1: ModelDeployment, make_md: Callable[..., ModelDeployment]
) -> None:
    cluster = Cluster()
    running(cluster, v1)
    stable_before = copy.deepcopy(cluster.objects[("Deployment", "digits")])
    cluster.stuck.add("digits-canary")
    v2 = new_version(v1, make_md, progressDeadlineSeconds=30)
    cluster.reconcile(v2, at(0))
    cluster.reconcile(v2, at(29))
    assert cluster.status.rollout is not None and cluster.status.rollout.phase == "Progressing"
    decided, events = cluster.reconcile(v2, at(30))
    assert [(e.type, e.reason) for e in events] == [("Warning", "RolloutAborted")]
    assert "check readiness: 0/1 canary pods ready" in events[0].message
    assert ("Deployment", "digits-canary") not in cluster.objects
    assert cluster.objects[("Deployment", "digits")] == stable_before
    ready = {c.type: c for c in cluster.status.conditions}["Ready"]
    assert ready.status == "True" and ready.reason == "RolloutAborted" and "version 1 serves untouched" in ready.message
    assert cluster.status.phase == "Degraded" and cluster.status.summary == "Degraded: v2 failed (RolloutAborted)"
    assert cluster.status.served_version == 1 and cluster.status.canary == "-"
    decided, events = cluster.reconcile(v2, at(500))
    assert events == [] and decided.apply and ("Deployment", "digits") not in kinds_named(decided.apply)
    # a new spec tries again
    v3 = new_version(v1, make_md, version=3)
    cluster.stuck.clear()
    cluster.reconcile(v3, at(501))
    assert cluster.status.rollout is not None and cluster.status.rollout.phase == "Progressing"
    assert cluster.status.rollout.version == 3 and cluster.status.rollout.step == 0


def test_canary_restarts_abort(v1: ModelDeployment, make_md: Callable[..., ModelDeployment]) -> None:
    cluster = Cluster()
    running(cluster, v1)
    v2 = new_version(v1, make_md)
    cluster.reconcile(v2, at(0))
    revision = cluster.status.rollout.revision  # type: ignore[union-attr]
    pod: dict[str, Any] = {
        "metadata": {"labels": {TRACK_LABEL: "canary"}, "annotations": {REVISION_ANNOTATION: revision}},
        "status": {"containerStatuses": [{"name": "tfserving", "restartCount": 1}]},
    }
    other = copy.deepcopy(pod)
    other["metadata"]["annotations"][REVISION_ANNOTATION] = "an-older-one"
    other["status"]["containerStatuses"][0]["restartCount"] = 7
    cluster.pods = [other]
    cluster.reconcile(v2, at(1))
    assert cluster.status.rollout is not None and cluster.status.rollout.phase == "Progressing"
    cluster.pods = [pod, other]
    _, events = cluster.reconcile(v2, at(2))
    assert cluster.status.rollout.phase == "Aborted"
    assert "check restarts: canary containers restarted 1 time (maxRestarts 0)" in events[0].message


def test_spec_back_to_the_stable_version_removes_the_canary(
    v1: ModelDeployment, make_md: Callable[..., ModelDeployment]
) -> None:
    cluster = Cluster()
    running(cluster, v1)
    stable_before = copy.deepcopy(cluster.objects[("Deployment", "digits")])
    cluster.reconcile(new_version(v1, make_md), at(0))
    assert ("Deployment", "digits-canary") in cluster.objects
    decided, _ = cluster.reconcile(v1, at(5))
    assert ("Deployment", "digits-canary") in decided.delete and cluster.status.rollout is None
    assert cluster.objects[("Deployment", "digits")] == stable_before
    assert {c.type: c for c in cluster.status.conditions}["Ready"].reason == "Ready"


def test_switching_to_rolling_update_mid_rollout_applies_the_new_version(
    v1: ModelDeployment, make_md: Callable[..., ModelDeployment]
) -> None:
    cluster = Cluster()
    running(cluster, v1)
    cluster.reconcile(new_version(v1, make_md), at(0))
    rolling = make_md(spec={**AS_IS, "model": {**AS_IS["model"], "version": 2}})
    decided, _ = cluster.reconcile(rolling, at(1))
    assert ("Deployment", "digits-canary") in decided.delete and ("Deployment", "digits") in kinds_named(decided.apply)
    assert cluster.status.rollout is None


def test_without_a_clock_the_planner_never_holds_the_stable(
    v1: ModelDeployment, make_md: Callable[..., ModelDeployment]
) -> None:
    cluster = Cluster()
    running(cluster, v1)
    decided = plan(new_version(v1, make_md), cluster.observed(), cluster.status, OWNER)
    assert decided.rollout is None and ("Deployment", "digits") in kinds_named(decided.apply)


def test_analysis_queries_fill_the_placeholders_and_never_raise(
    make_md: Callable[..., ModelDeployment], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modeldeploy.analysis import prometheus
    from modeldeploy.api.status import RolloutPhase, RolloutStatus
    from modeldeploy.controller.cache import Cache
    from modeldeploy.controller.reconcile import Reconciler

    checks = [
        {
            "name": "errors",
            "query": 'sum(x{namespace="${namespace}",md="${name}",v="${version}",r="${revision}"})',
            "threshold": 0.1,
        },
        {"name": "broken", "query": "y", "threshold": 1},
    ]
    md = make_md(
        spec={**AS_IS, "rollout": {**CANARY, "analysis": {"prometheus": {"url": "http://p:9090", "checks": checks}}}}
    )
    asked: list[tuple[str, str, float]] = []

    def query(url: str, promql: str, timeout: float) -> prometheus.Sample:
        asked.append((url, promql, timeout))
        if promql == "y":
            raise ValueError("a client defect")
        return prometheus.Sample(0.01)

    monkeypatch.setattr(prometheus, "query", query)
    status = RolloutStatus(revision="abc1234567", version=2, phase=RolloutPhase.PROGRESSING)
    samples = Reconciler(None, Cache())._analyse(md, status)  # type: ignore[arg-type]
    assert ("http://p:9090", 'sum(x{namespace="ml",md="digits",v="2",r="abc1234567"})', 5) in asked
    assert samples["errors"] == prometheus.Sample(0.01)
    assert samples["broken"].error is not None and "a client defect" in samples["broken"].error


def test_the_checks_are_measured_at_once_not_one_after_the_other(
    make_md: Callable[..., ModelDeployment], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten checks of 60 s each must not hold a reconcile worker for ten minutes: every query of an
    analysis runs at the same time (each fake query waits until all three are running)."""
    import threading

    from modeldeploy.analysis import prometheus
    from modeldeploy.api.status import RolloutPhase, RolloutStatus
    from modeldeploy.controller.cache import Cache
    from modeldeploy.controller.reconcile import Reconciler

    checks = [{"name": f"c{i}", "query": f"q{i}", "threshold": 1} for i in range(3)]
    md = make_md(
        spec={**AS_IS, "rollout": {**CANARY, "analysis": {"prometheus": {"url": "http://p:9090", "checks": checks}}}}
    )
    all_running = threading.Barrier(3, timeout=10)

    def query(url: str, promql: str, timeout: float) -> prometheus.Sample:
        all_running.wait()  # one after the other, the first would wait alone and break the barrier
        return prometheus.Sample(float(promql[1:]))

    monkeypatch.setattr(prometheus, "query", query)
    status = RolloutStatus(revision="abc1234567", version=2, phase=RolloutPhase.PROGRESSING)
    samples = Reconciler(None, Cache())._analyse(md, status)  # type: ignore[arg-type]
    assert samples == {f"c{i}": prometheus.Sample(float(i)) for i in range(3)}


def test_the_status_patch_removes_nested_fields_no_longer_set() -> None:
    """A step's stepReadyAt must go when the next step starts: a merge patch would keep it."""
    from modeldeploy.controller.reconcile import status_patch

    old = {
        "phase": "RollingOut",
        "rollout": {"step": 0, "stepReadyAt": "2026-12-01T12:00:02Z", "analysis": [{"name": "restarts"}]},
        "someoneElses": {"keep": 1},
    }
    new = {"phase": "RollingOut", "rollout": {"step": 1, "analysis": []}}
    assert status_patch(new, old) == {
        "phase": "RollingOut",
        "rollout": {"step": 1, "stepReadyAt": None, "analysis": []},
    }
    assert status_patch({}, old) == {"phase": None, "rollout": None}


def test_an_aborted_canary_is_recorded_once_in_the_history(
    v1: ModelDeployment, make_md: Callable[..., ModelDeployment]
) -> None:
    cluster = Cluster()
    running(cluster, v1)
    cluster.stuck.add("digits-canary")
    v2 = new_version(v1, make_md, progressDeadlineSeconds=30)
    cluster.reconcile(v2, at(0))
    cluster.reconcile(v2, at(30))
    cluster.reconcile(v2, at(60))
    aborted = [e for e in cluster.status.history if e.outcome == "Aborted"]
    assert len(aborted) == 1 and aborted[0].version == 2
    assert "check readiness" in aborted[0].message and aborted[0].from_ == stamp_of(at(0))
    assert cluster.status.history[-1].outcome == "Promoted" and cluster.status.history[-1].version == 1


def stamp_of(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_rollback_to_a_revision_in_the_history_skips_the_canary_steps(
    make_md: Callable[..., ModelDeployment],
) -> None:
    from modeldeploy.api.status import HistoryEntry

    as_is = make_md(spec={**AS_IS, "model": {**AS_IS["model"], "version": 2}, "rollout": CANARY})
    cluster = Cluster()
    running(cluster, as_is)
    optimized = make_md(spec={**AS_IS, "optimization": {"enabled": True}, "rollout": CANARY})
    digest = desired_artifact(optimized.name, optimized.spec, optimized.namespace).hash
    served_before = HistoryEntry.model_validate(
        {
            "version": 1,
            "artifactHash": digest,
            "storageUri": f"pvc://models/modeldeploy/digits/{digest}/1",
            "manifestSha256": "ab" * 32,
            "outcome": "Superseded",
            "from": "2026-11-30T12:00:00Z",
            "to": "2026-12-01T11:00:00Z",
        }
    )
    cluster.status = cluster.status.model_copy(update={"history": [*cluster.status.history, served_before]})
    decided, events = cluster.reconcile(optimized, at(1))
    assert decided.rollback is not None and decided.rollout is not None and decided.rollout.promote
    assert ("Deployment", "digits") in kinds_named(decided.apply) and (
        "Deployment",
        "digits-canary",
    ) not in cluster.objects
    assert cluster.status.rollout is not None and cluster.status.rollout.phase == "Promoting"
    assert ("Promoting", "version 1 served before (status.history): promoted without canary steps") in [
        (e.reason, e.message) for e in events
    ]
    cluster.reconcile(optimized, at(2))
    assert cluster.status.rollout is not None and cluster.status.rollout.phase == "Promoted"
