"""Lettermint webhooks: `t=...,v1=...`, HMAC-SHA256 over "<t>.<raw body>", a 300 s window."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.service.providers_helpers import CAMPAIGN, add_campaign, enable, hex_hmac, post, redelivered_once, rows

KEY = "lm-signing-secret"
EVENT = {
    "id": "evt_01JDXK6Q2N8M3V", "event": "message.hard_bounced", "timestamp": "2026-11-22T10:15:00+00:00",
    "data": {"message_id": "msg_123", "subject": "November news", "recipient": "Gone@example.com",
             "response": {"status_code": 550, "enhanced_status_code": "5.1.1", "content": "user unknown"},
             "metadata": {"X-Listmonk-Campaign": CAMPAIGN}, "tag": "newsletter"},
}


def signed(content: bytes, key: str = KEY, at: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    return {"X-Lettermint-Signature": f"t={stamp},v1={hex_hmac(key, stamp.encode() + b'.' + content)}"}


@pytest.fixture
async def lettermint(make_client, secrets):
    return await enable(make_client, secrets, "lettermint", secret=KEY)


async def send(client, payload: dict):
    content = orjson.dumps(payload)
    return await post(client, "lettermint", content, signed(content))


async def test_events_are_recorded_with_campaign_time_and_meta(lettermint, db):
    add_campaign(db)
    assert (await send(lettermint, EVENT)).status_code == 200
    assert (await send(lettermint, {**EVENT, "id": "evt_2", "event": "message.spam_complaint"})).status_code == 200
    assert (await send(lettermint, {**EVENT, "id": "evt_3", "event": "message.soft_bounced"})).status_code == 200
    hard, complaint, soft = rows(db)
    assert (hard["email"], hard["type"], hard["source"], hard["campaign"]) == ("gone@example.com", "hard", "lettermint", CAMPAIGN)
    assert hard["created_at"].isoformat() == "2026-11-22T10:15:00+00:00"
    assert hard["meta"]["response"]["enhanced_status_code"] == "5.1.1"
    assert (complaint["type"], soft["type"]) == ("complaint", "soft")


async def test_test_pings_and_deliveries_are_ignored(lettermint, db):
    for name in ("webhook.test", "message.delivered", "message.opened"):
        assert (await send(lettermint, {**EVENT, "event": name})).status_code == 200
    assert rows(db) == []


async def test_redelivery_is_recorded_once_and_fires_once(lettermint, db):
    row = await redelivered_once(db, lambda: send(lettermint, EVENT), "gone@example.com")  # re-signed, same id
    assert row["event_key"] == "lettermint:evt_01JDXK6Q2N8M3V"


async def test_forged_and_replayed_requests_are_401(lettermint, db):
    content = orjson.dumps(EVENT)
    now = int(time.time())
    good = signed(content, at=now)["X-Lettermint-Signature"]  # not signed(content): the clock may tick in between
    for header in ("", "v1=abc", f"t={now}", good.replace(f"t={now}", f"t={now - 1}"),
                   signed(content, key="other")["X-Lettermint-Signature"],
                   signed(content, at=now - 301)["X-Lettermint-Signature"],  # outside Lettermint's 300 s
                   signed(content, at=now + 301)["X-Lettermint-Signature"],
                   signed(content, at=0)["X-Lettermint-Signature"], "t=nan,v1=00"):
        assert (await post(lettermint, "lettermint", content, {"X-Lettermint-Signature": header})).status_code == 401, header
    assert rows(db) == []


async def test_signed_but_malformed_is_400(lettermint, db):
    assert (await send(lettermint, {**EVENT, "data": {"recipient": "nobody"}})).status_code == 400
    assert (await send(lettermint, {**EVENT, "id": 7})).status_code == 400
    assert (await send(lettermint, {**EVENT, "event": ["message.hard_bounced"]})).status_code == 400  # was a 500
    assert rows(db) == []
