"""Shared by the provider webhook tests: enabling a provider with generated secrets, posting, reading rows."""

from __future__ import annotations

import base64
import hashlib
import hmac
from contextlib import contextmanager
from typing import Any, Iterator

import httpx
import orjson

CAMPAIGN = "6f1c2b1e-0b8e-4c55-9a57-1d2f3e4a5b6c"
SUBSCRIBER = "0b7c8a52-41f7-4a83-9a8c-0f5d2d6f1e11"


def write_secret(secrets, name: str, key: str, value: str) -> None:
    path = secrets.directory / name / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)


async def enable(make_client, secrets, provider: str, section: dict[str, Any] | None = None,
                 **secret_values: str) -> httpx.AsyncClient:
    """A client whose app has `provider` enabled; each secret value goes to Secret `<provider>`/<key>."""
    refs = {}
    for key, value in secret_values.items():
        write_secret(secrets, provider, key, value)
        refs[key] = {"secretRef": {"name": provider, "key": key}}
    return await make_client(webhooks={provider: {"enabled": True, **(section or {}), **refs}})


BASIC_PASSWORD = "hook-password"


async def enable_basic(make_client, secrets, provider: str) -> httpx.AsyncClient:
    """A provider that authenticates with HTTP Basic: user `<provider>`, password BASIC_PASSWORD."""
    return await enable(make_client, secrets, provider, {"username": provider}, password=BASIC_PASSWORD)


async def post_basic(client, provider: str, value: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return await post(client, provider, body(value), {**basic(provider, BASIC_PASSWORD), **(headers or {})})


def replace_provider(client, provider_class, **options):
    """Swap in a provider built with test options (a fixed clock, a local certificate server)."""
    name = provider_class.name
    provider = provider_class(client.app.state.config.webhooks[name], **options)
    client.app.state.providers[name] = provider
    return provider


def body(value: Any) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


async def post(client, provider: str, content: bytes, headers: dict[str, str] | None = None,
               params: dict[str, str] | None = None, auth: tuple[str, str] | None = None) -> httpx.Response:
    return await client.post(f"/webhooks/service/{provider}", content=content, headers=headers or {},
                             params=params, auth=auth)


def rows(db) -> list[dict]:
    return db.execute(
        "SELECT b.email, b.type::text AS type, b.source, b.meta, b.event_key, b.created_at, b.subscriber_id,"
        " c.uuid::text AS campaign FROM bounces b LEFT JOIN campaigns c ON c.id = b.campaign_id ORDER BY b.id"
    ).fetchall()


def by_email(db) -> dict[str, dict]:
    """Rows keyed by address: a batch's rows need not be stored in the order the provider listed them."""
    return {row["email"]: row for row in rows(db)}


def add_campaign(db, uuid: str = CAMPAIGN) -> None:
    db.execute("INSERT INTO campaigns (uuid, name) VALUES (%s, 'November news')", (uuid,))


def add_subscriber(db, email: str, uuid: str | None = None) -> int:
    if uuid is None:
        return db.execute("INSERT INTO subscribers (email) VALUES (%s) RETURNING id", (email,)).fetchone()["id"]
    return db.execute("INSERT INTO subscribers (email, uuid) VALUES (%s, %s) RETURNING id", (email, uuid)).fetchone()["id"]


def subscriber_status(db, subscriber_id: int) -> str:
    return db.execute("SELECT status::text AS s FROM subscribers WHERE id = %s", (subscriber_id,)).fetchone()["s"]


def hex_hmac(key: str | bytes, message: bytes) -> str:
    return hmac.new(key.encode() if isinstance(key, str) else key, message, hashlib.sha256).hexdigest()


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


async def metric(client, text: str) -> bool:
    return text in (await client.get("/metrics")).text


@contextmanager
def refusing_inserts(db, email: str) -> Iterator[None]:
    """A real PostgreSQL failure inside a request's transaction: inserting a bounce for `email` raises."""
    db.execute("""
        CREATE FUNCTION test_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.email = TG_ARGV[0] THEN RAISE EXCEPTION 'refused by the test trigger'; END IF;
            RETURN NEW;
        END $$""")
    db.execute(f"CREATE TRIGGER test_refuse_insert BEFORE INSERT ON bounces FOR EACH ROW"
               f" EXECUTE FUNCTION test_refuse_insert('{email}')")
    try:
        yield
    finally:
        db.execute("DROP TRIGGER test_refuse_insert ON bounces")
        db.execute("DROP FUNCTION test_refuse_insert()")


async def redelivered_once(db, deliver, email: str) -> dict:
    """Delivers a hard bounce for a subscriber, re-enables the subscriber, delivers it again (a provider's
    retry): one row, and the blocklist fired the first time only. Returns the row."""
    subscriber = add_subscriber(db, email)
    assert (await deliver()).status_code == 200
    assert subscriber_status(db, subscriber) == "blocklisted"
    db.execute("UPDATE subscribers SET status = 'enabled' WHERE id = %s", (subscriber,))
    assert (await deliver()).status_code == 200
    (row,) = rows(db)
    assert subscriber_status(db, subscriber) == "enabled"
    return row
