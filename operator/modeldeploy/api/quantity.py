"""Kubernetes resource quantities ("500m", "2", "1Gi"): a validated type for the API models and
the one conversion the builders need (CPU limit -> whole CPUs for TF Serving's thread flags)."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

# The grammar from k8s.io/apimachinery/pkg/api/resource (the same regex the OpenAPI uses).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
QUANTITY_MAX = 64
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def _coerce(value: Any) -> Any:
    if isinstance(value, bool):
        return value  # let pydantic reject it: `cpu: true` is not a quantity
    if isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str) and (len(value) > QUANTITY_MAX or not _QUANTITY_RE.match(value)):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)")
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_coerce),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            # bounds the cost the API server estimates for CEL rules that parse quantities
            "maxLength": QUANTITY_MAX,
        }
    ),
]


def parse_quantity(value: str) -> Decimal:
    """'500m' -> 0.5, '2Gi' -> 2147483648."""
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9.]+)?)([a-zA-Z]*)", value)
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    return Decimal(match.group(1)) * _SUFFIX[match.group(2)]


def whole_cpus(value: str) -> int:
    """CPUs a container may use, rounded up, at least 1: TF Serving sizes its thread pools from
    the host's cores unless told, so a 1-CPU pod on a 64-core node would start 64 threads."""
    return max(1, math.ceil(parse_quantity(value)))
