"""A database outage: 503 with Retry-After while it lasts, recovery without a restart afterwards."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from bounce_service import queries
from bounce_service.app import create_app
from bounce_service.config import build_config
from bounce_service.migrate import migrate
from tests.conftest import auth, embedded_server, make_spec
from tests.serving import serve

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


async def test_outage_under_load_loses_nothing_acknowledged(own_server, tmp_path):
    """Steady webhook traffic through a real `serve` (2 workers) while PostgreSQL stops and restarts."""
    acked: set[str] = set()
    during: list[tuple[str, int, str | None]] = []  # (id, status, Retry-After) answered inside the outage
    phase = {"name": "before"}
    counter = iter(range(10**9))

    async def sender(client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            event_id = f"load-{next(counter)}"
            sent_in = phase["name"]
            try:
                response = await client.post("/webhooks/bounce", auth=("mailer", "dev-mailer-token"), json={
                    "email": f"{event_id}@example.com", "type": "soft", "source": "load", "event_id": event_id})
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                acked.add(event_id)
            if sent_in == "outage" and phase["name"] == "outage":
                during.append((event_id, response.status_code, response.headers.get("retry-after")))

    async def wait_for(what: str, predicate, deadline: float = 60.0) -> None:
        end = asyncio.get_running_loop().time() + deadline
        while not predicate():
            assert asyncio.get_running_loop().time() < end, f"timed out waiting for {what}: {len(acked)} acked, {len(during)} during"
            await asyncio.sleep(0.05)  # polling a condition the senders change, not synchronisation

    with serve(own_server.url, workers=2) as (url, _):
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            senders = [asyncio.create_task(sender(client, stop)) for _ in range(8)]
            await wait_for("traffic", lambda: len(acked) >= 300)
            await asyncio.to_thread(own_server.stop)
            phase["name"] = "outage"
            await wait_for("the outage", lambda: len(during) >= 30)
            phase["name"] = "after"
            before_restart = len(acked)
            await asyncio.to_thread(own_server.start)
            await wait_for("recovery", lambda: len(acked) >= before_restart + 300)  # recovered without a restart
            stop.set()
            await asyncio.gather(*senders)

    assert {status for _, status, _ in during} == {503}
    assert {retry for _, _, retry in during} == {"5"}
    with psycopg.connect(own_server.url) as conn:
        keys = [row[0] for row in conn.execute("SELECT event_key FROM bounces WHERE source = 'load'")]
    stored = [key.removeprefix("native:load:") for key in keys]
    assert len(stored) == len(set(stored))  # nothing twice
    assert acked <= set(stored)  # nothing acknowledged is lost


async def test_a_transaction_that_fails_alone_does_not_refuse_the_requests_after_it(client, db, monkeypatch):
    """A deadlock (two imports updating the same subscribers in different orders, say) fails its own
    request with a 503 to retry; the database is not down, and the next request is served."""
    db.execute("INSERT INTO subscribers (email) VALUES ('a@example.com')")  # updated, so the import stages it
    monkeypatch.setattr(queries, "UPDATE_IMPORTED_SUBSCRIBERS",
                        "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$")
    body = b'{"email": "a@example.com", "name": "A"}\n{"email": "b@example.com"}\n'
    response = await client.post("/api/subscribers/import", content=body, auth=auth())
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert (await client.get("/api/bounces", auth=auth("viewer"))).status_code == 200
    assert [row["name"] for row in db.execute("SELECT name FROM subscribers")] == [""]
