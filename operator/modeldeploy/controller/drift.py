"""Drift: does a live child still carry every field we want it to have?

The API server adds defaults and other controllers add fields, so a child is never equal to what
we apply; what matters is that each field we set has our value. Only then is the child re-applied.
"""

from __future__ import annotations

from typing import Any


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field we set has that value on the live object. Lists compare element-wise
    and must have the same length."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(is_subset, desired, live))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(desired) == float(live)
    return bool(desired == live or str(desired) == str(live))
