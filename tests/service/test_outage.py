"""A database outage: 503 with Retry-After while it lasts, recovery without a restart afterwards."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from bounce_service.app import create_app
from bounce_service.config import build_config
from bounce_service.migrate import migrate
from tests.conftest import auth, embedded_server, make_spec

BOUNCE = {"type": "hard", "source": "outage-test"}


@pytest.fixture
async def own_server():
    """A server of this test's own, so stopping it does not disturb the rest of the suite."""
    with embedded_server() as server:
        await migrate(server.url)
        yield server


async def test_outage_is_503_and_service_recovers_by_itself(own_server, secrets):
    app = create_app(build_config(make_spec(), secrets=secrets, environ={"DATABASE_URL": own_server.url}))
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        first = await client.post("/webhooks/bounce", json={**BOUNCE, "email": "before@example.com"}, auth=auth("poster"))
        assert first.status_code == 200

        own_server.stop()
        during = await client.post("/webhooks/bounce", json={**BOUNCE, "email": "during@example.com"}, auth=auth("poster"))
        assert during.status_code == 503
        assert during.headers["retry-after"] == "5"
        assert during.json() == {"message": "database unavailable, retry later"}
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200

        own_server.start()
        after = await client.post("/webhooks/bounce", json={**BOUNCE, "email": "after@example.com"}, auth=auth("poster"))
        assert after.status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        await client.aclose()

    with psycopg.connect(own_server.url) as conn:
        emails = [row[0] for row in conn.execute("SELECT email FROM bounces ORDER BY id")]
    assert emails == ["before@example.com", "after@example.com"]
