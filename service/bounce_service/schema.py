"""Validation of a BounceConfig spec against the CRD's own openAPIV3Schema and CEL rules.

The cluster's API server checks a BounceConfig with `crds/bounceconfigs.yaml`; a laptop config file is
checked here with the very same file, so a document that one accepts the other accepts too. Unknown
fields are refused (as `kubectl apply --validate=strict` does) and defaults are applied the way the API
server applies them, so the service reads a complete document.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Iterator

import celpy
import jsonschema
import yaml

from .durations import parse_duration

DURATION_PATTERN = "^([0-9]+(ms|s|m|h))+$"


@dataclass(frozen=True)
class SchemaViolation:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@cache
def crd() -> dict:
    text = resources.files("bounce_service").joinpath("crd/bounceconfigs.yaml").read_text()
    # libyaml's loader when PyYAML has it: several times faster on this large file, the same safe subset.
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def spec_schema() -> dict:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


@cache
def _closed_validator() -> jsonschema.Draft7Validator:
    """The spec schema with every object that lists its properties closed to unknown fields."""
    schema = copy.deepcopy(spec_schema())

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return jsonschema.Draft7Validator(schema)


def apply_defaults(schema: dict, value: Any) -> Any:
    """Fill in `default`s top-down, as the API server does (a defaulted object gets its own defaults)."""
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                value[name] = apply_defaults(prop, value[name])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _path(base: str, parts: Iterator[Any]) -> str:
    path = base
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_MESSAGES = {
    "minimum": lambda limit: f"must be >= {limit}",
    "maximum": lambda limit: f"must be <= {limit}",
    "minLength": lambda limit: f"must be at least {limit} characters long",
    "maxLength": lambda limit: f"must be at most {limit} characters long",
    "minItems": lambda limit: f"must have at least {limit} items",
    "maxItems": lambda limit: f"must have at most {limit} items",
    "enum": lambda limit: "must be one of: " + ", ".join(map(str, limit)),
    "type": lambda limit: f"must be {'an' if str(limit)[0] in 'aeiou' else 'a'} {limit}",
    "anyOf": lambda limit: "must be an integer or a quantity string such as 500m or 1Gi",
    "pattern": lambda limit: (
        "must be a duration such as 90s, 15m or 720h" if limit == DURATION_PATTERN else f"must match the pattern {limit}"
    ),
}


def _describe(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """Turn one jsonschema error into (relative path suffix, message) pairs a person can act on."""
    kind, limit, instance = error.validator, error.validator_value, error.instance
    if kind == "required":
        return [(f".{name}", "is required") for name in limit if name not in instance]
    if kind == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        return [(f".{name}", "unknown field") for name in instance if name not in known]
    return [("", _MESSAGES.get(kind, lambda _limit: error.message)(limit))]


@cache
def _cel_programs() -> dict[str, Any]:
    env = celpy.Environment()
    programs: dict[str, Any] = {}

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations", []):
                programs.setdefault(rule["rule"], env.program(env.compile(rule["rule"])))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(spec_schema())
    return programs


def _nodes(schema: dict, value: Any, path: str) -> Iterator[tuple[dict, Any, str]]:
    """Every (schema, value, path) of the document, parents first: where the API server applies rules."""
    yield schema, value, path
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                yield from _nodes(prop, value[name], f"{path}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _nodes(schema["items"], item, f"{path}[{index}]")


def _cel_violations(spec: dict, base: str) -> Iterator[SchemaViolation]:
    """Evaluate the CRD's `x-kubernetes-validations` rules where the API server would."""
    for schema, value, path in _nodes(spec_schema(), spec, base):
        for rule in schema.get("x-kubernetes-validations", []):
            try:
                ok = bool(_cel_programs()[rule["rule"]].evaluate({"self": celpy.json_to_cel(value)}))
            except Exception:  # noqa: BLE001 - a rule that cannot evaluate rejects, as in the API server
                ok = False
            if not ok:
                yield SchemaViolation(path + rule.get("fieldPath", ""), rule.get("message", f"failed rule {rule['rule']}"))


def _duration_violations(spec: dict, base: str) -> Iterator[SchemaViolation]:
    """Durations the pattern admits but no one could mean (`99999999999h`): refused here, not a crash later."""
    for schema, value, path in _nodes(spec_schema(), spec, base):
        if schema.get("pattern") == DURATION_PATTERN and isinstance(value, str):
            try:
                parse_duration(value)
            except ValueError as exc:
                yield SchemaViolation(path, str(exc))


def validate_spec(spec: Any, base: str = "spec") -> tuple[dict, list[SchemaViolation]]:
    """Return the defaulted spec and every violation found (structural first, then CEL)."""
    if not isinstance(spec, dict):
        return {}, [SchemaViolation(base, "must be an object")]
    defaulted = apply_defaults(spec_schema(), copy.deepcopy(spec))
    violations = [
        SchemaViolation(_path(base, iter(error.absolute_path)) + suffix, message)
        for error in sorted(_closed_validator().iter_errors(defaulted), key=lambda e: list(map(str, e.absolute_path)))
        for suffix, message in _describe(error)
    ]
    if not violations:
        violations = list(_duration_violations(defaulted, base))
    if not violations:
        violations = list(_cel_violations(defaulted, base))
    return defaulted, violations
