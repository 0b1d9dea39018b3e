"""The one table of the Kubernetes kinds the operator touches, and what it does with each.

Everything that depends on "which kinds" reads it: the client's URL paths, the watches the
handlers register (and their server-side label selectors), the kinds the planner deletes when no
longer wanted, and the chart's RBAC rules (a test checks that the chart grants exactly these
verbs). Pure data: no client import. The operator GETs nothing: it LISTs and watches.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The field manager of every write the operator makes (server-side apply, create, merge patch): the
# name its fields carry in managedFields. Here, with the pure data, so the pure core can recognise
# its own managedFields entries without importing the client.
FIELD_MANAGER = "modeldeploy-operator"


class Role(StrEnum):
    PRIMARY = "primary"  # the ModelDeployment itself
    CHILD = "child"  # created and owned by a ModelDeployment, watched by our labels
    OBSERVED = "observed"  # read, never written (pods' termination messages, claims)
    EVENTS = "events"  # written, never read


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str  # group/version, or "v1" for the core group
    plural: str
    role: Role
    verbs: tuple[str, ...]  # what the operator's RBAC must grant, no more
    watched: bool = False  # a watch wakes the reconcile of the owning ModelDeployment
    prunable: bool = False  # deleted when the spec no longer asks for it (e.g. autoscaling turned off)
    subresources: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (subresource, RBAC verbs)
    optional: bool = False  # the API server may not serve it (a CRD someone else installs)

    @property
    def owned_by_label(self) -> bool:
        """Watched with a server-side label selector: only objects labelled with a ModelDeployment."""
        return self.role == Role.CHILD or self.kind == "Pod"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def path_prefix(self) -> str:
        return f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"


_WATCH = ("list", "watch")
_OWNED = (*_WATCH, "create", "patch", "delete")

KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind(
            "ModelDeployment",
            "modeldeploy.io/v1alpha1",
            "modeldeployments",
            Role.PRIMARY,
            _WATCH,
            # status: our merge patch. finalizers: children carry ownerReferences with
            # blockOwnerDeletion, which OwnerReferencesPermissionEnforcement checks against it.
            subresources=(("status", ("patch",)), ("finalizers", ("update",))),
        ),
        Kind("Job", "batch/v1", "jobs", Role.CHILD, (*_WATCH, "create", "delete"), watched=True),
        Kind("Deployment", "apps/v1", "deployments", Role.CHILD, _OWNED, watched=True),
        Kind("Service", "v1", "services", Role.CHILD, _OWNED, watched=True),
        Kind("ConfigMap", "v1", "configmaps", Role.CHILD, _OWNED, watched=True),
        Kind(
            "HorizontalPodAutoscaler",
            "autoscaling/v2",
            "horizontalpodautoscalers",
            Role.CHILD,
            _OWNED,
            watched=True,
            prunable=True,
        ),
        Kind(
            "PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", Role.CHILD, _OWNED, watched=True, prunable=True
        ),
        Kind("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", Role.CHILD, _OWNED, watched=True),
        # rollout.trafficRouting.gatewayAPI: exact canary percentages. The Gateway API CRDs are the
        # cluster's business, so the kind may be absent.
        Kind(
            "HTTPRoute",
            "gateway.networking.k8s.io/v1",
            "httproutes",
            Role.CHILD,
            _OWNED,
            watched=True,
            prunable=True,
            optional=True,
        ),
        # Our optimizer and serving pods (by label): termination messages, waiting reasons, refusals.
        Kind("Pod", "v1", "pods", Role.OBSERVED, ("list", "watch"), watched=True),
        # Any claim (users create them): a ModelDeployment waits for the claims it mounts.
        Kind("PersistentVolumeClaim", "v1", "persistentvolumeclaims", Role.OBSERVED, ("list", "watch"), watched=True),
        # core/v1, not events.k8s.io/v1: only core/v1 takes lastTimestamp next to eventTime (see emit_event).
        Kind("Event", "v1", "events", Role.EVENTS, ("create",)),
    )
}

PRUNABLE_KINDS = frozenset(k.kind for k in KINDS.values() if k.prunable)
WATCHED_KINDS = tuple(k for k in KINDS.values() if k.watched)
OPTIONAL_KINDS = tuple(k for k in KINDS.values() if k.optional)


def rbac_rules() -> dict[tuple[str, str], frozenset[str]]:
    """(API group, resource) -> the verbs the operator needs, for every kind and subresource."""
    rules: dict[tuple[str, str], frozenset[str]] = {}
    for kind in KINDS.values():
        rules[(kind.group, kind.plural)] = frozenset(kind.verbs)
        for sub, verbs in kind.subresources:
            rules[(kind.group, f"{kind.plural}/{sub}")] = frozenset(verbs)
    return rules
