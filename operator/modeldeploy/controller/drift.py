"""Drift: does a live child still carry every field we want it to have?

The API server adds defaults and other controllers add fields, so a child is never equal to what
we apply; what matters is that each field we set has our value. Only then is the child re-applied.
The comparison is semantic, as server-side apply merges: lists of named things (containers, env,
volumes, ports) are matched by their merge key, not by position, and entries another manager added
are not ours to compare; quantities compare by value (the API server stores `0.5` as `500m`). A
re-apply could not change any of that, so comparing it textually would re-apply on every pass.

Some edits apply cannot repair: a Service port renumbered by hand keeps our port's name under
another number, and applying our port next to it fails on the duplicate name every time.
`service_ports_repair` finds them; the caller replaces the list whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from modeldeploy.api.quantity import parse_quantity

# Lists server-side apply merges by key (their listMapKeys in the Kubernetes API), by field name.
_NAMED = ("name",)
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": _NAMED,
    "initContainers": _NAMED,
    "env": _NAMED,
    "volumes": _NAMED,
    "imagePullSecrets": _NAMED,
    "volumeMounts": ("mountPath",),
}
# Maps whose values are quantities, and single quantity fields.
_QUANTITY_MAPS = frozenset({"requests", "limits"})
_QUANTITY_FIELDS = frozenset({"sizeLimit"})
_DEFAULT_PROTOCOL = "TCP"


def _port_key(item: dict[str, Any]) -> tuple[Any, ...] | None:
    """A container port is keyed by containerPort and protocol, a Service port by port and protocol."""
    for number in ("containerPort", "port"):
        if number in item:
            return (number, item[number], item.get("protocol", _DEFAULT_PROTOCOL))
    return None


def _key_function(field: str | None, items: Sequence[Any]) -> Callable[[dict[str, Any]], Any] | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field == "ports" and all(_port_key(i) is not None for i in items):
        return _port_key
    keys = MERGE_KEYS.get(field or "")
    if keys is not None and all(all(k in i for k in keys) for i in items):
        return lambda item: tuple(item.get(k) for k in keys)
    return None


def _quantity(value: Any) -> Decimal | None:
    try:
        return parse_quantity(str(value))
    except (ValueError, InvalidOperation):
        return None


def _same_scalar(desired: Any, live: Any, *, quantity: bool) -> bool:
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(desired) == float(live)
    if desired == live or str(desired) == str(live):
        return True
    if quantity:
        ours, theirs = _quantity(desired), _quantity(live)
        return ours is not None and ours == theirs
    return False


def is_subset(desired: Any, live: Any, field: str | None = None) -> bool:
    """True when every field we set has that value on the live object. Keyed lists match entries
    by key and ignore entries we do not set; other lists compare element-wise and must have the
    same length (server-side apply replaces them whole)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        quantities = field in _QUANTITY_MAPS
        return all(
            k in live
            and (
                _same_scalar(v, live[k], quantity=True)
                if quantities and not isinstance(v, dict | list)
                else is_subset(v, live[k], k)
            )
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        key = _key_function(field, desired)
        if key is not None and all(isinstance(i, dict) for i in live):
            by_key = {key(i): i for i in live}
            return all(key(i) in by_key and is_subset(i, by_key[key(i)], field) for i in desired)
        return len(desired) == len(live) and all(is_subset(d, v, field) for d, v in zip(desired, live, strict=True))
    return _same_scalar(desired, live, quantity=field in _QUANTITY_FIELDS)


def service_ports_repair(desired: dict[str, Any], live: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The port list to write when a live port that is not ours (another number or protocol) uses one
    of our ports' names, else None. Apply would add our port next to it and fail on the duplicate
    name; ours replace it, and the other ports (another client's) stay."""
    ours: list[dict[str, Any]] = desired.get("spec", {}).get("ports", [])
    theirs: list[dict[str, Any]] = live.get("spec", {}).get("ports", []) or []
    our_keys = {_port_key(p) for p in ours}
    our_names = {p.get("name") for p in ours}
    foreign = [p for p in theirs if _port_key(p) not in our_keys]
    if not any(p.get("name") in our_names for p in foreign):
        return None
    live_by_key = {_port_key(p): p for p in theirs}
    kept = [p for p in foreign if p.get("name") not in our_names]
    return [{**live_by_key.get(_port_key(p), {}), **p} for p in ours] + kept
