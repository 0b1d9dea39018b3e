"""Generates the ModelDeployment CustomResourceDefinition from the pydantic models.

The models are the single source of truth; this module turns their JSON schema into a
*structural* OpenAPI v3 schema the API server accepts (refs inlined, no titles or nulls, defaults
kept, free-form objects marked x-kubernetes-preserve-unknown-fields, CEL rules attached), and adds
the printer columns and the status and scale subresources.

Pure: `scripts/generate_api.py` (make crds / make check-crds) writes or checks the committed copies.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel

from modeldeploy.api.base import ApiModel
from modeldeploy.api.reasons import reasons_table_markdown
from modeldeploy.api.resource import (
    API_VERSION,
    GROUP,
    KIND,
    NAME_MAX,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ModelDeployment,
)
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus

CRD_FILENAME = f"{GROUP}_{PLURAL}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
    # What serves, next to what the spec asks for, and STATUS saying why they differ: a failed new
    # version must be visible without -o wide.
    {"name": "Serving", "type": "integer", "jsonPath": ".status.servedVersion"},
    {"name": "Version", "type": "integer", "jsonPath": ".spec.model.version"},
    {"name": "Status", "type": "string", "jsonPath": ".status.summary"},
    {"name": "Canary", "type": "string", "jsonPath": ".status.canary"},
    {"name": "Optimized", "type": "string", "jsonPath": ".status.optimizedSummary"},
    {"name": "Size", "type": "string", "jsonPath": ".status.sizeSummary"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "priority": 1,
    },
    {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
]

_DROP_KEYS = {"title", "additionalProperties", "$defs", "discriminator"}


class _Converter:
    """Inline one pydantic JSON schema into a structural schema."""

    def __init__(self, root: dict[str, Any], models: dict[str, type[BaseModel]]) -> None:
        self.defs: dict[str, Any] = root.get("$defs", {})
        self.models = models

    def convert(self, node: dict[str, Any], model: type[BaseModel] | None = None) -> dict[str, Any]:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            target = self.models.get(name)
            merged = {**self.defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
            return self.convert(merged, target)
        node = dict(node)
        any_of = node.pop("anyOf", None)
        if any_of is not None and not node.get("x-kubernetes-int-or-string"):
            # Optional[X] is anyOf [X, null]: the API has no nulls, an absent field means None.
            options = [o for o in any_of if o.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"cannot express anyOf {any_of} structurally")
            inner = self.convert(options[0])
            node.pop("default", None) if node.get("default") is None else None
            return {
                **inner,
                **{k: v for k, v in self._plain(node).items() if k not in inner or k == "description"},
            }
        if any_of is not None:
            out = self._plain(node)
            out["x-kubernetes-int-or-string"] = True
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            return out

        out = self._plain(node)
        if "enum" in node and "type" not in out:
            out["type"] = "string"
        if node.get("const") is not None:
            out = {
                "type": "string",
                "enum": [node["const"]],
                **{k: v for k, v in out.items() if k != "const"},
            }
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            out["type"] = "object"
            props = node.get("properties")
            if props:
                out["properties"] = {k: self.convert(v) for k, v in props.items()}
                if node.get("required"):
                    out["required"] = list(node["required"])
            else:
                extra = node.get("additionalProperties")
                if isinstance(extra, dict) and extra:
                    out["additionalProperties"] = self.convert(extra)
                else:
                    out["x-kubernetes-preserve-unknown-fields"] = True
            if model is not None and issubclass(model, ApiModel) and model.cel_rules:
                out["x-kubernetes-validations"] = [
                    {
                        "rule": r.cel,
                        "message": r.message,
                        **({"fieldPath": r.field_path} if r.field_path else {}),
                    }
                    for r in model.cel_rules
                ]
        elif kind == "array":
            out["items"] = self.convert(node.get("items", {}))
        return out

    @staticmethod
    def _plain(node: dict[str, Any]) -> dict[str, Any]:
        keep = {}
        for key, value in node.items():
            if key in _DROP_KEYS or key in {"properties", "required", "items", "anyOf", "const"}:
                continue
            if key == "default" and value is None:
                continue
            keep[key] = value
        return keep


def _models() -> dict[str, type[BaseModel]]:
    """Every model reachable from the resource, by its JSON-schema name."""
    found: dict[str, type[BaseModel]] = {}

    def walk(model: type[BaseModel]) -> None:
        if model.__name__ in found:
            return
        found[model.__name__] = model
        for field in model.model_fields.values():
            for arg in _type_args(field.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg)

    walk(ModelDeployment)
    return found


def _type_args(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    out: list[Any] = []
    for arg in args:
        out.extend(_type_args(arg))
    return out


def _apply_factory_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """pydantic leaves default_factory values out of the schema; the API server needs them so that
    nested defaults apply to an object the user did not write (spec.serving: {} -> full defaults)."""
    props = schema.get("properties", {})
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in props:
            continue
        if field.default_factory is not None:
            value = field.default_factory()  # type: ignore[call-arg]
            props[key]["default"] = value.to_api() if isinstance(value, ApiModel) else value
        for arg in _type_args(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and props[key].get("type") == "object":
                _apply_factory_defaults(props[key], arg)
            if isinstance(arg, type) and issubclass(arg, BaseModel) and props[key].get("type") == "array":
                _apply_factory_defaults(props[key]["items"], arg)


_KEY_ORDER = (
    "type",
    "description",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "maxItems",
    "pattern",
    "anyOf",
    "x-kubernetes-int-or-string",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
)


def _tidy(node: Any, *, in_properties: bool = False) -> Any:
    """A stable key order (type and description first) so the YAML reads well and diffs stay small."""
    if isinstance(node, list):
        return [_tidy(n) for n in node]
    if not isinstance(node, dict):
        return node
    if in_properties:
        return {k: _tidy(v) for k, v in node.items()}
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    ordered = sorted(node, key=lambda k: (rank.get(k, len(rank)), k))
    return {k: node[k] if k == "default" else _tidy(node[k], in_properties=k == "properties") for k in ordered}


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    out = _Converter(raw, _models()).convert(raw, model)
    _apply_factory_defaults(out, model)
    tidy: dict[str, Any] = _tidy(out)
    return tidy


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition, as a dict."""
    spec_schema = _schema_of(ModelDeploymentSpec)
    status_schema = _schema_of(ModelDeploymentStatus)
    # kopf records handler outcomes in status; keep what we do not describe instead of pruning it.
    status_schema["x-kubernetes-preserve-unknown-fields"] = True
    status_schema.pop("default", None)
    root_rules = [
        {"rule": r.cel, "message": r.message, "fieldPath": r.field_path}
        if r.field_path
        else {"rule": r.cel, "message": r.message}
        for r in ModelDeployment.cel_rules
    ]
    schema = {
        "type": "object",
        "description": (ModelDeployment.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "modeldeploy.io/v1alpha1"},
            "kind": {"type": "string", "description": "ModelDeployment"},
            # Bounded, so that the API server can estimate the cost of the CEL rule on the name.
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": NAME_MAX}}},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": root_rules,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modeldeploy"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "modeldeploy"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.serving.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render_docs() -> str:
    """docs/api.md: every spec field with its description, default and allowed values."""
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    lines = [
        "# ModelDeployment API reference (modeldeploy.io/v1alpha1)",
        "",
        "GENERATED by `make crds` from the pydantic models; `kubectl explain modeldeployment.spec` shows the same.",
        "",
        "| field | meaning |",
        "| --- | --- |",
    ]

    def walk(node: dict[str, Any], path: str) -> None:
        for key, child in node.get("properties", {}).items():
            here = f"{path}.{key}"
            text = child.get("description", "").replace("|", "/")
            default = child.get("default")
            if default not in (None, "", [], {}) and not isinstance(default, dict | list):
                text += f" Default `{json.dumps(default)}`."
            if "enum" in child:
                text += " One of " + ", ".join(f"`{e}`" for e in child["enum"]) + "."
            lines.append(f"| `{here}` | {text} |")
            if child.get("type") == "object":
                walk(child, here)

    walk(schema, "spec")
    rules = [r["message"] for _, r in _rules(schema)]
    lines += ["", "Cross-field rules (enforced by the API server with CEL, and by `modeldeploy render`):", ""]
    lines += [f"- {message}" for message in rules]
    lines += [
        "",
        "## Condition reasons",
        "",
        "Conditions `Optimized`, `ServingReady` and `Ready` carry one of these reasons; a change of reason",
        "posts an Event of the given type (`kubectl describe md NAME` shows them).",
        "",
        reasons_table_markdown(),
    ]
    return "\n".join(lines) + "\n"


def _rules(node: dict[str, Any], path: str = "spec") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, r) for r in node.get("x-kubernetes-validations", [])]
    for key, child in node.get("properties", {}).items():
        found += _rules(child, f"{path}.{key}")
    return found


def render_crd() -> str:
    header = (
        f"# GENERATED by `make crds` from operator/modeldeploy/api (scripts/generate_api.py --write).\n"
        f"# Do not edit: change the pydantic models instead. {API_VERSION} {KIND}.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
