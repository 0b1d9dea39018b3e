"""The common base of every API type: camelCase on the wire, snake_case in Python, unknown
fields rejected (a typo in a ModelDeployment must be an error, not a silently ignored key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, stated once: `cel` goes into the CRD as an x-kubernetes-validations
    entry (the API server enforces it), `message` is shared with the Python validator that
    checks the same thing offline (render, unit tests)."""

    cel: str
    message: str
    field_path: str | None = None


class ApiModel(BaseModel):
    """Base for spec and status types."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    # CEL rules attached to this object's schema by the CRD generator.
    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    def to_api(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
