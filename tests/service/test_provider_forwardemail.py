"""Forward Email bounce webhooks: HMAC-SHA256 (hex) of the raw body in X-Webhook-Signature."""

from __future__ import annotations

import orjson
import pytest

from tests.service.providers_helpers import CAMPAIGN, add_campaign, enable, hex_hmac, metric, post, redelivered_once, rows

KEY = "fe-webhook-key"
BOUNCE = {
    "email_id": "64f1c2a3b4d5e6f708192a3b", "list_id": "news.example.org", "list_unsubscribe": "<mailto:u@example.org>",
    "feedback_id": "", "recipient": "Gone@Example.com", "message": "550 5.1.1 user unknown",
    "response": "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown", "response_code": 550,
    "truth_source": "example.com", "headers": {"X-Listmonk-Campaign": CAMPAIGN, "Subject": "November news"},
    "bounce": {"action": "reject", "message": "User unknown", "category": "recipient", "code": 550, "status": "5.1.1", "line": 12},
    "bounced_at": "2026-11-22T10:15:00.000Z",
}


@pytest.fixture
async def forwardemail(make_client, secrets):
    return await enable(make_client, secrets, "forwardemail", secret=KEY)


async def send(client, payload: dict, key: str = KEY, content: bytes | None = None):
    content = content if content is not None else orjson.dumps(payload)
    return await post(client, "forwardemail", content, {"X-Webhook-Signature": hex_hmac(key, content)})


async def test_a_signed_bounce_is_recorded_with_campaign_time_and_meta(forwardemail, db):
    add_campaign(db)
    assert (await send(forwardemail, BOUNCE)).status_code == 200
    (row,) = rows(db)
    assert (row["email"], row["type"], row["source"], row["campaign"]) == ("gone@example.com", "hard", "forwardemail", CAMPAIGN)
    assert row["created_at"].isoformat() == "2026-11-22T10:15:00+00:00"
    assert row["meta"]["bounce"]["category"] == "recipient" and row["meta"]["response_code"] == 550
    assert "headers" not in row["meta"]


@pytest.mark.parametrize("bounce, expected", [
    ({"category": "recipient"}, "hard"),
    ({"category": "other", "status": "5.1.1"}, "hard"),
    ({"category": "block", "status": "5.7.1"}, "soft"),  # listmonk: hard; the address itself is fine
    ({"category": "spam", "status": "5.7.1"}, "soft"),
    ({"category": "capacity", "status": "4.2.2"}, "soft"),
    ({}, "soft"),
])
async def test_categories(forwardemail, db, bounce, expected):
    assert (await send(forwardemail, {**BOUNCE, "bounce": bounce})).status_code == 200
    assert [r["type"] for r in rows(db)] == [expected]


async def test_redelivery_is_recorded_once_and_fires_once(forwardemail, db):
    row = await redelivered_once(db, lambda: send(forwardemail, BOUNCE), "gone@example.com")
    assert row["event_key"].startswith("forwardemail:sha256:")


async def test_unsigned_forged_and_tampered_requests_are_401(forwardemail, db):
    content = orjson.dumps(BOUNCE)
    for headers in ({}, {"X-Webhook-Signature": hex_hmac("guess", content)}, {"X-Webhook-Signature": "zz"},
                    {"X-Webhook-Signature": hex_hmac(KEY, content + b" ")}, {"X-Webhook-Signature": "é".encode("latin-1") * 64}):
        assert (await post(forwardemail, "forwardemail", content, headers)).status_code == 401
    assert rows(db) == []
    assert await metric(forwardemail, 'bounce_auth_failures_total{provider="forwardemail"}')


async def test_uppercase_hex_is_accepted(forwardemail, db):
    content = orjson.dumps(BOUNCE)
    assert (await post(forwardemail, "forwardemail", content, {"X-Webhook-Signature": hex_hmac(KEY, content).upper()})).status_code == 200


@pytest.mark.parametrize("payload", [{**BOUNCE, "recipient": "nobody"}, {**BOUNCE, "bounce": "hard"}, [BOUNCE]])
async def test_signed_but_malformed_is_400(forwardemail, db, payload):
    assert (await send(forwardemail, payload)).status_code == 400 and rows(db) == []
