"""API authentication and permissions, on every route of the app."""

from __future__ import annotations

import base64

import pytest
from starlette.routing import Route

from bounce_service.app import ROUTES
from bounce_service.openapi import documented_routes
from tests.conftest import PERMISSIONS, TOKENS

PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/webhooks/service/{provider}"}
SECURED = [(m, p, perm) for m, p, perm in documented_routes(ROUTES) if p not in PUBLIC]


def concrete(path: str) -> str:
    return path.replace("{id}", "1")


async def test_the_running_app_has_exactly_these_routes_and_guards_every_api_one(client):
    """The parametrised tests below walk ROUTES; this ties them to what the app really serves."""
    assert all(isinstance(route, Route) for route in client.app.routes)  # no Mount whose routes go unchecked
    served = documented_routes(client.app.routes)
    assert served == documented_routes(ROUTES)
    guarded = [(m, p) for m, p, permission in served if permission is not None]
    assert {(m, p) for m, p, _ in served if p.startswith("/api/") or p == "/webhooks/bounce"} == set(guarded)


def test_every_non_public_route_declares_a_permission():
    assert SECURED, "no secured routes found"
    assert all(permission is not None for _, _, permission in SECURED)
    assert {p for _, p, perm in documented_routes(ROUTES) if perm is None} == PUBLIC


@pytest.mark.parametrize("method, path, permission", SECURED)
async def test_missing_and_wrong_credentials_are_401_with_challenge(client, method, path, permission):
    for headers in (
        {},
        {"Authorization": "token admin:wrong-token"},
        {"Authorization": "token nobody:" + TOKENS["admin"]},
        {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer " + TOKENS["admin"]},
        {"Authorization": "token admin"},
    ):
        response = await client.request(method, concrete(path), headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith("Basic realm=")
        assert response.json()["message"] in ("missing credentials", "invalid API credentials")


@pytest.mark.parametrize("method, path, permission", SECURED)
async def test_missing_permission_is_403(client, method, path, permission):
    user = next(name for name, perms in PERMISSIONS.items() if permission not in perms)
    response = await client.request(method, concrete(path), auth=(user, TOKENS[user]))
    assert response.status_code == 403
    assert response.json() == {"message": f"permission denied: {permission}"}


async def test_token_scheme_and_basic_both_authenticate(client):
    token = await client.get("/api/bounces", headers={"Authorization": f"token viewer:{TOKENS['viewer']}"})
    basic = await client.get("/api/bounces", auth=("viewer", TOKENS["viewer"]))
    assert token.status_code == basic.status_code == 200


async def test_auth_failures_are_counted(client):
    await client.get("/api/bounces", headers={"Authorization": "token admin:wrong"})
    metrics = (await client.get("/metrics")).text
    assert 'bounce_auth_failures_total{provider="api"}' in metrics
