"""The OpenAPI 3.1 document, built from the app's own routes so no route can go undocumented.

Each operation's details live in OPERATIONS keyed by (method, path); the security requirement comes from
the permission the route really enforces. A test checks that routes and document agree both ways.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Iterable

from starlette.routing import BaseRoute, Route

from . import __version__
from .providers import REGISTRY
from .routes.bounces import COUNT_CAP

UUID = {"type": "string", "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}
BOUNCE_TYPE = {"type": "string", "enum": ["soft", "hard", "complaint"]}
ERROR = {"$ref": "#/components/schemas/Error"}


def envelope(schema: dict) -> dict:
    return {"type": "object", "required": ["data"], "properties": {"data": schema}}


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
    "Bounce": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "type": BOUNCE_TYPE,
            "source": {"type": "string"},
            "meta": {"type": "object"},
            "created_at": TIME,
            "email": {"type": "string"},
            "event_key": {"type": ["string", "null"]},
            "action": {"type": ["string", "null"], "description": "Threshold action this bounce fired."},
            "subscriber_id": {"type": ["integer", "null"]},
            "subscriber_uuid": {"type": ["string", "null"]},
            "subscriber_status": {"type": ["string", "null"]},
            "campaign": {
                "oneOf": [
                    {"type": "null"},
                    {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "uuid": UUID}},
                ]
            },
        },
    },
    "BounceInput": {
        "type": "object",
        "required": ["type", "source"],
        "description": "One of email or subscriber_uuid is required.",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "subscriber_uuid": UUID,
            "campaign_uuid": UUID,
            "type": BOUNCE_TYPE,
            "source": {"type": "string", "minLength": 1, "maxLength": 200},
            "meta": {"oneOf": [{"type": "object"}, {"type": "string", "description": "A JSON object, encoded."}]},
            "created_at": TIME,
            "event_id": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Makes retries idempotent."},
        },
    },
    "Subscriber": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "uuid": UUID,
            "email": {"type": "string"},
            "name": {"type": "string"},
            "attribs": {"type": "object"},
            "status": {"type": "string", "enum": ["enabled", "disabled", "blocklisted"]},
            "created_at": TIME,
            "updated_at": TIME,
            "lists": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "uuid": UUID,
                        "name": {"type": "string"},
                        "subscription_status": {"type": "string", "enum": ["unconfirmed", "confirmed", "unsubscribed"]},
                    },
                },
            },
        },
    },
    "SubscriberInput": {
        "type": "object",
        "required": ["email"],
        "properties": {
            "email": {"type": "string", "format": "email"},
            "uuid": UUID,
            "name": {"type": "string", "maxLength": 1000},
            "attribs": {"type": "object"},
            "status": {"type": "string", "enum": ["enabled", "disabled", "blocklisted"]},
            "lists": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["uuid"],
                    "properties": {"uuid": UUID, "status": {"type": "string", "enum": ["unconfirmed", "confirmed", "unsubscribed"]}},
                },
            },
        },
    },
    "List": {"type": "object", "properties": {"id": {"type": "integer"}, "uuid": UUID, "name": {"type": "string"}, "created_at": TIME, "updated_at": TIME}},
    "ListInput": {"type": "object", "required": ["name"], "properties": {"uuid": UUID, "name": {"type": "string", "minLength": 1, "maxLength": 1000}}},
    "Campaign": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "uuid": UUID, "name": {"type": "string"}, "sent": {"type": "integer"}, "created_at": TIME, "updated_at": TIME},
    },
    "CampaignInput": {
        "type": "object",
        "required": ["uuid", "name"],
        "properties": {"uuid": UUID, "name": {"type": "string", "minLength": 1, "maxLength": 1000}, "sent": {"type": "integer", "minimum": 0}},
    },
}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def query(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
FILTERS = [
    query("campaign_id", {"type": "integer", "minimum": 1}),
    query("campaign_uuid", {"type": "string", "format": "uuid"}, "The campaign's uuid, as the campaign alerts label it."),
    query("subscriber_id", {"type": "integer", "minimum": 1}),
    query("source", {"type": "string"}, "Exact match."),
    query("type", BOUNCE_TYPE),
    query("email", {"type": "string"}, "Case-insensitive exact match."),
    query("from", TIME, "created_at >= from"),
    query("to", TIME, "created_at < to"),
]
TRUE = envelope({"type": "boolean", "const": True})

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/webhooks/bounce"): {
        "summary": "Record a bounce (or a JSON array of up to 1,000, atomically); answered after commit.",
        "requestBody": {"oneOf": [ref("BounceInput"), {"type": "array", "items": ref("BounceInput"), "minItems": 1, "maxItems": 1000}]},
        "responses": {"200": TRUE},
    },
    ("post", "/webhooks/service/{provider}"): {
        "summary": "A mail provider's bounce and complaint events in its own format, authenticated by the provider's "
                   "signature or secret (no API user; docs/providers.md); 401 when that fails or is a replay, 403 for an SNS "
                   "topic not allowed, 400 for a verified body of the wrong shape, 404 for an unknown or disabled "
                   "provider, 200 for ignored events; answered after commit.",
        "parameters": [{"name": "provider", "in": "path", "required": True, "schema": {"type": "string", "enum": sorted(REGISTRY)}}],
        "requestBody": {"description": "The provider's payload, verified over the raw bytes."},
        "responses": {"200": {"oneOf": [TRUE, {"type": "object", "properties": {"validationResponse": {"type": "string"}},
                                                "description": "Azure Event Grid subscription handshake."}]}},
    },
    ("get", "/api/bounces"): {
        "summary": f"List bounces, filtered, ordered and paginated. `total` is exact up to {COUNT_CAP:,} matches; "
                   f"beyond, it is PostgreSQL's estimate (at least {COUNT_CAP + 1:,}).",
        "parameters": FILTERS + [
            query("order_by", {"type": "string", "enum": ["email", "campaign_name", "source", "created_at", "type"]}),
            query("order", {"type": "string", "enum": ["asc", "desc"]}),
            query("page", {"type": "integer", "minimum": 1}),
            query("per_page", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ],
        "responses": {
            "200": envelope({
                "type": "object",
                "properties": {
                    "results": {"type": "array", "items": ref("Bounce")},
                    "total": {"type": "integer"},
                    "per_page": {"type": "integer"},
                    "page": {"type": "integer"},
                    "query": {"type": "string"},
                    "search": {"type": "string"},
                },
            })
        },
    },
    ("delete", "/api/bounces"): {
        "summary": "Delete all bounces (all=true) or those listed (repeated id).",
        "parameters": [query("all", {"type": "boolean"}), query("id", {"type": "array", "items": {"type": "integer", "minimum": 1}})],
        "responses": {"200": TRUE},
    },
    ("get", "/api/bounces/export"): {
        "summary": "Stream every matching bounce, oldest first, as CSV or NDJSON (constant memory).",
        "parameters": FILTERS + [query("format", {"type": "string", "enum": ["csv", "ndjson"]})],
        "responses": {"200": {"content": {"text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}}},
    },
    ("post", "/api/bounces/import"): {
        "summary": "Import bounces from NDJSON, one native webhook body per line, recorded like webhooks (same event "
                   "keys, subscriber matching and thresholds). Every line is validated first (an error names its line "
                   "and records nothing); then the whole file is one transaction, recorded entirely or not at all.",
        "requestBody": {"type": "string", "contentMediaType": "application/x-ndjson", "description": "Lines of BounceInput."},
        "contentType": "application/x-ndjson",
        "responses": {"200": envelope({
            "type": "object",
            "properties": {"imported": {"type": "integer"}, "recorded": {"type": "integer"}, "duplicates": {"type": "integer"}},
        })},
    },
    ("put", "/api/bounces/blocklist"): {
        "summary": "Blocklist every subscriber that has bounced (and unsubscribe all its lists).",
        "responses": {"200": TRUE},
    },
    ("get", "/api/bounces/{id}"): {"summary": "One bounce.", "parameters": [ID_PARAM], "responses": {"200": envelope(ref("Bounce"))}},
    ("delete", "/api/bounces/{id}"): {"summary": "Delete one bounce.", "parameters": [ID_PARAM], "responses": {"200": TRUE}},
    ("get", "/api/subscribers/{id}/bounces"): {
        "summary": "A subscriber's bounces, newest first (at most 1,000).",
        "parameters": [ID_PARAM],
        "responses": {"200": envelope({"type": "array", "items": ref("Bounce")})},
    },
    ("delete", "/api/subscribers/{id}/bounces"): {
        "summary": "Clear a subscriber's bounces.",
        "parameters": [ID_PARAM],
        "responses": {"200": TRUE},
    },
    ("post", "/api/subscribers"): {
        "summary": "Create or update a subscriber (by e-mail) and its list memberships.",
        "requestBody": ref("SubscriberInput"),
        "responses": {"200": envelope(ref("Subscriber"))},
        "errors": {"409": "The uuid belongs to another subscriber."},
    },
    ("post", "/api/subscribers/import"): {
        "summary": "Import subscribers from NDJSON, one per line, all or nothing (an error names its line `line N: ...`).",
        "requestBody": {"type": "string", "contentMediaType": "application/x-ndjson"},
        "contentType": "application/x-ndjson",
        "responses": {"200": envelope({"type": "object", "properties": {"imported": {"type": "integer"}}})},
        "errors": {"409": "A uuid belongs to another subscriber."},
    },
    ("get", "/api/subscribers/{id}"): {"summary": "One subscriber with its lists.", "parameters": [ID_PARAM], "responses": {"200": envelope(ref("Subscriber"))}},
    ("post", "/api/lists"): {"summary": "Create or update a list (by uuid).", "requestBody": ref("ListInput"), "responses": {"200": envelope(ref("List"))}},
    ("post", "/api/campaigns"): {
        "summary": "Create or update a campaign (by uuid), including its sent count.",
        "requestBody": ref("CampaignInput"),
        "responses": {"200": envelope(ref("Campaign"))},
    },
    ("get", "/healthz"): {"summary": "Liveness.", "responses": {"200": envelope({"type": "string"})}},
    ("get", "/readyz"): {"summary": "Readiness: the database answers.", "responses": {"200": envelope({"type": "string"})}},
    ("get", "/metrics"): {"summary": "Prometheus metrics.", "responses": {"200": {"content": {"text/plain": {"schema": {"type": "string"}}}}}},
    ("get", "/openapi.json"): {"summary": "This document.", "responses": {"200": {"content": {"application/json": {"schema": {"type": "object"}}}}}},
}

COMMON_ERRORS = {
    "400": "Invalid request.",
    "404": "Not found.",
    "413": "Request body too large.",
    "503": "Database unavailable; retry later.",
}


def _responses(spec: dict[str, Any], secured: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, body in spec["responses"].items():
        content = body.get("content") or {"application/json": {"schema": body}}
        responses[status] = {"description": "OK", "content": content}
    errors = {**COMMON_ERRORS, **spec.get("errors", {})}
    if secured:
        errors.update({"401": "Missing or wrong credentials.", "403": "Missing permission."})
    for status, description in errors.items():
        responses[status] = {"description": description, "content": {"application/json": {"schema": ERROR}}}
    return responses


def _operation(method: str, path: str, permission: str | None) -> dict[str, Any]:
    spec = OPERATIONS[(method, path)]
    operation: dict[str, Any] = {
        "summary": spec["summary"],
        "operationId": f"{method}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '').replace('.', '_')}",
        "responses": _responses(spec, permission is not None),
    }
    if "parameters" in spec:
        operation["parameters"] = spec["parameters"]
    if "requestBody" in spec:
        media = spec.get("contentType", "application/json")
        operation["requestBody"] = {"required": True, "content": {media: {"schema": spec["requestBody"]}}}
    if permission is not None:
        operation["security"] = [{"token": []}, {"basic": []}]
        operation["description"] = f"Requires permission `{permission}`."
    return operation


def documented_routes(routes: Iterable[BaseRoute]) -> list[tuple[str, str, str | None]]:
    """(method, path, permission) of every HTTP route of the app."""
    found = []
    for route in routes:
        if isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    found.append((method.lower(), route.path, getattr(route.endpoint, "permission", None)))
    return found


def openapi_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    return _document(tuple(documented_routes(routes)))


@cache
def _document(routes: tuple[tuple[str, str, str | None], ...]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, permission in routes:
        paths.setdefault(path, {})[method] = _operation(method, path, permission)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bounce-operator service", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "token USER:TOKEN"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }
