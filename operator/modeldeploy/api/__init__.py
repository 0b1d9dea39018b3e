"""The ModelDeployment API (modeldeploy.io/v1alpha1): typed spec and status, parsing with
field-path errors. Imports pydantic only, so every layer may depend on it."""

from modeldeploy.api.resource import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InvalidModelDeployment,
    ModelDeployment,
    parse_model_deployment,
    parse_status,
)
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "InvalidModelDeployment",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "parse_model_deployment",
    "parse_status",
]
