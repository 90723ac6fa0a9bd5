"""Error envelopes, body limits, health endpoints and the OpenAPI document."""

from __future__ import annotations

import logging

from bounce_service.app import ROUTES
from bounce_service.openapi import OPERATIONS, documented_routes
from tests.conftest import TOKENS, auth


async def test_unknown_path_and_method_use_the_envelope(client):
    missing = await client.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"message": "unknown endpoint"}
    wrong = await client.patch("/api/bounces", auth=auth())
    assert wrong.status_code == 405 and wrong.json() == {"message": "method not allowed"}


async def test_body_over_the_limit_is_413(make_client, db):
    client = await make_client(service={"maxBodySize": 2048})
    announced = await client.post("/webhooks/bounce", content=b"x" * 4096, auth=auth("poster"))
    assert announced.status_code == 413
    assert announced.json() == {"message": "request body larger than 2048 bytes"}

    async def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(4):
            yield b"y" * 1024

    streamed = await client.post("/webhooks/bounce", content=chunks(), auth=auth("poster"))
    assert streamed.status_code == 413
    assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 0


async def test_internal_error_is_500_without_details(client, db, caplog):
    client.app.state.recorder.record = None  # a programming error deep inside a request
    with caplog.at_level(logging.ERROR):
        response = await client.post("/webhooks/bounce", auth=auth("poster"),
                                     json={"email": "a@example.com", "type": "hard", "source": "x"})
    assert response.status_code == 500 and response.json() == {"message": "internal server error"}
    assert "Traceback" not in response.text and TOKENS["poster"] not in caplog.text
    assert "unhandled error on POST /webhooks/bounce" in caplog.text


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).json() == {"data": "ok"}
    assert (await client.get("/readyz")).json() == {"data": "ready"}


async def test_openapi_documents_exactly_the_routes(client):
    document = (await client.get("/openapi.json")).json()
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert documented == {(m, p) for m, p, _ in documented_routes(ROUTES)} == set(OPERATIONS)
    post_bounce = document["paths"]["/webhooks/bounce"]["post"]
    assert "webhooks:post_bounce" in post_bounce["description"] and "401" in post_bounce["responses"]
    assert "security" not in document["paths"]["/healthz"]["get"]
