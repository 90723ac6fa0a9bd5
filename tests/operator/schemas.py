"""Validate manifests against real schemas: Kubernetes' own for built-in kinds, the CRDs' for the rest.

kmock checks nothing, so every object the operator renders or ships is checked here instead:
built-in kinds with kubernetes-validate in strict mode (unknown fields fail, and so does a kind it has
no schema for), ServiceMonitor and PrometheusRule with the schema of the prometheus-operator's own Go
types (as generated into cloudcoil's models), BounceConfig with our CRD's openAPIV3Schema.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
from bounce_service.schema import crd

KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")


def _closed(schema: Any) -> Any:
    """Refuse unknown fields in every object that lists its properties (as strict validation does)."""
    if isinstance(schema, dict):
        schema = {key: _closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


@cache
def _monitoring_validator(kind: str) -> jsonschema.Validator:
    from cloudcoil.models.prometheus_operator import v1

    schema = getattr(v1, kind).model_json_schema(by_alias=True)
    schema["$defs"]["ObjectMeta"] = {"type": "object"}  # metadata is Kubernetes' part, checked elsewhere
    return jsonschema.Draft202012Validator(_closed(schema))


@cache
def _bounceconfig_validator() -> jsonschema.Validator:
    schema = copy.deepcopy(crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(_closed(schema))


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    """Every way `manifest` breaks its kind's schema (on each supported Kubernetes version)."""
    kind = manifest["kind"]
    if kind in ("ServiceMonitor", "PrometheusRule"):
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in _monitoring_validator(kind).iter_errors(manifest)]
    if kind == "BounceConfig":
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in _bounceconfig_validator().iter_errors(manifest)]
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{version} {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{version}: no schema for {kind} {manifest['apiVersion']}: {exc.message}")
    return errors
