"""The ModelDeployment resource as a whole, and how YAML/dicts become one with clear errors.

`parse_model_deployment` is what the CLI and the operator use: it returns a typed object or raises
`InvalidModelDeployment` whose `problems` are one line each, naming the field path.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modeldeploy.api.base import ApiModel, Rule
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus

GROUP = "modeldeploy.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ("md",)
# A name is also a label value (app.kubernetes.io/instance), so it is a DNS-1123 label.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 63


class ObjectMeta(BaseModel):
    """The parts of metadata the builders use; the rest is kept but not interpreted."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ModelDeployment(ApiModel):
    """A trained TensorFlow model to optimize and serve."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            f"size(self.metadata.name) <= {NAME_MAX}",
            f"metadata.name must be at most {NAME_MAX} characters: it is used as a label value",
        ),
        Rule(
            f"self.metadata.name.matches('{NAME_PATTERN}')",
            "metadata.name must be a lowercase DNS label (a-z, 0-9 and '-', starting and ending with a letter "
            "or digit): it names the Service and other children",
            ".metadata.name",
        ),
    )

    api_version: Literal["modeldeploy.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ModelDeployment"]
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace


class InvalidModelDeployment(ValueError):
    """A ModelDeployment that cannot be used, with one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            path += f".{part}" if path else part
        else:
            path += f"[{part!r}]"
    return path


def validation_problems(error: ValidationError) -> list[str]:
    """pydantic's errors as 'field.path: message' lines, in the API's camelCase names."""
    problems = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "literal_error" and loc in (("apiVersion",), ("kind",)):
            message = f"must be {item['ctx']['expected']}"
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        if loc == ("metadata", "name") and item["type"] == "string_pattern_mismatch":
            message = "must be a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit"
        path = _field_path(loc)
        problems.append(f"{path}: {message}" if path else message)
    return problems


def parse_model_deployment(obj: Any) -> ModelDeployment:
    """Validate a dict (from YAML or the API server) into a ModelDeployment."""
    if not isinstance(obj, dict):
        raise InvalidModelDeployment([f"expected a mapping (a Kubernetes object), got {type(obj).__name__}"])
    if obj.get("kind") != KIND:
        raise InvalidModelDeployment([f"kind: expected {KIND}, got {obj.get('kind')!r}"])
    # The API server adds fields (managedFields, creationTimestamp...) that we keep but ignore;
    # status written by other tools (kopf's bookkeeping) is not ours to validate.
    data = {k: v for k, v in obj.items() if k != "status"}
    try:
        return ModelDeployment.model_validate(data)
    except ValidationError as exc:
        raise InvalidModelDeployment(validation_problems(exc)) from None


def parse_status(obj: dict[str, Any]) -> ModelDeploymentStatus:
    """The status as last written by the operator (unknown keys, e.g. kopf's, dropped)."""
    fields = set(ModelDeploymentStatus.model_fields) | {
        f.alias for f in ModelDeploymentStatus.model_fields.values() if f.alias
    }
    raw = {k: v for k, v in (obj.get("status") or {}).items() if k in fields}
    try:
        return ModelDeploymentStatus.model_validate(raw)
    except ValidationError:
        return ModelDeploymentStatus()
