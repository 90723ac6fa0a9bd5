"""Comparing and merge-patching children: what the operator wants against what the API server holds.

A JSON merge patch (RFC 7386) only adds and changes, and `is_subset` cannot tell a field the operator set
once from one the API server defaulted; so a field the operator no longer wants (an Ingress's TLS, a
resource limit, an annotation) would stay forever. Each child therefore records, in an annotation, the
shape (the keys, nested) of what the operator last wrote. A changed shape means the child must be written
again, and the patch sets to null the map keys no longer wanted; lists are replaced whole by a merge
patch, which removes what went from inside them. Fields added by others (the API server's defaults, a
label set by hand) are never in that record, so they are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import GROUP

FIELDS_ANNOTATION = f"{GROUP}/fields"


def is_subset(desired: Any, actual: Any) -> bool:
    """Whether `actual` already holds everything in `desired` (the API server adds defaults, never less).

    `desired` is rendered (plain dicts), so it is checked as a dict: this walks a child on every event of
    it, and an ABC check costs several times as much. `actual` may be a kopf body, a Mapping."""
    if isinstance(desired, dict):
        return isinstance(actual, Mapping) and all(
            key in actual and is_subset(value, actual[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(desired) == len(actual)
                and all(is_subset(d, a) for d, a in zip(desired, actual, strict=True)))
    return desired == actual


def fields_of(value: Any) -> Any:
    """The shape of a manifest (plain dicts and lists): its keys, nested; every scalar is 1."""
    if isinstance(value, dict):
        return {key: fields_of(item) for key, item in value.items()}
    if isinstance(value, list):
        return [fields_of(item) for item in value]
    return 1


def stamped(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with the record of its own map keys, as it is to be written."""
    meta = manifest["metadata"]
    record = json.dumps(fields_of(manifest), separators=(",", ":"), sort_keys=True)
    return {**manifest, "metadata": {**meta, "annotations": {**meta.get("annotations", {}), FIELDS_ANNOTATION: record}}}


def written_fields(current: Mapping[str, Any]) -> dict[str, Any]:
    """The record on an existing child; none (nothing to remove) if it lacks one or it was mangled."""
    try:
        record = json.loads(current["metadata"].get("annotations", {}).get(FIELDS_ANNOTATION) or "{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def merge_patch(desired: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """`desired`, plus a null for every key recorded in `previous` that `desired` no longer has."""
    patch = dict(desired)
    for key, was in previous.items():
        if key not in desired:
            patch[key] = None
        elif isinstance(was, dict) and isinstance(desired[key], dict):
            patch[key] = merge_patch(desired[key], was)
    return patch
