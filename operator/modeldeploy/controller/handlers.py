"""kopf wiring: watch events feed the runtime's cache and queue; nothing else lives here.

Only `on.event` handlers are used: they keep no state on the objects, so kopf adds no finalizer and
writes no annotations, and deleting a ModelDeployment never waits for the operator. The handlers
are `async` and only touch memory, so kopf's per-object queues never back up with event bodies;
the reconciles run on the runtime's worker threads. Every watch of an owned kind carries a
server-side label selector: unrelated pods and ConfigMaps never reach the operator.

An optional kind (HTTPRoute) is registered at startup, after the runtime asked discovery, and only
when the API server serves it: kopf starts its watches after the startup handlers, so the handler
is in place in time, and a kind the cluster lacks costs no watch and no warning from kopf.
"""

from __future__ import annotations

from typing import Any

import kopf

from modeldeploy.api import GROUP, KIND, PLURAL, VERSION
from modeldeploy.controller.runtime import Runtime, server_side_selector
from modeldeploy.k8s.kinds import WATCHED_KINDS, Kind

# Our own registry, not kopf's global default: importing this module twice, or next to another
# operator in tests, cannot double the handlers.
REGISTRY = kopf.OperatorRegistry()


@kopf.on.login(registry=REGISTRY)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own connection uses the credentials our client uses (in-cluster, then KUBECONFIG)."""
    return kopf.login_via_client(**kwargs)


@kopf.on.startup(registry=REGISTRY)
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # we post our own, meaningful Events
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="modeldeploy.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="modeldeploy.io")
    for kind in WATCHED_KINDS:
        selector = server_side_selector(kind)
        if selector:
            settings.watching.label_selectors[kind.api_version, kind.plural] = selector
    runtime: Runtime = memo.runtime
    runtime.prime()
    for kind in runtime.watched_kinds():
        if kind.optional:
            _register(kind)
    runtime.start()


@kopf.on.cleanup(registry=REGISTRY)
def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.stop()


@kopf.on.event(GROUP, VERSION, PLURAL, registry=REGISTRY)
async def on_model_deployment(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.on_event(KIND, event.get("type"), event["object"])


_REGISTERED: set[str] = set()


def _register(kind: Kind) -> None:
    """One kopf event handler for a watched kind; once per process (startup may run again in tests)."""
    if kind.kind in _REGISTERED:
        return
    _REGISTERED.add(kind.kind)

    async def on_watched(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.runtime.on_event(kind.kind, event.get("type"), event["object"])

    on_watched.__name__ = on_watched.__qualname__ = f"on_{kind.plural}"  # kopf's handler id
    kopf.on.event(kind.api_version, kind.plural, registry=REGISTRY)(on_watched)


for _kind in WATCHED_KINDS:
    if not _kind.optional:
        _register(_kind)
