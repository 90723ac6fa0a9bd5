"""Mailgun webhooks: HMAC-SHA256 of timestamp + token, one-time tokens shared by all replicas, and a window."""

from __future__ import annotations

import re
import secrets as random
import time

import orjson
import pytest

from bounce_service.providers.mailgun import Mailgun
from tests.service.providers_helpers import (
    CAMPAIGN, add_campaign, enable, hex_hmac, post, redelivered_once, refusing_inserts, replace_provider, rows,
)

KEY = "key-mailgun-webhook-signing"


def event_data(**fields) -> dict:
    base = {"event": "failed", "severity": "permanent", "reason": "bounce", "log-level": "error",
            "id": "pl271FzxTTmGRW8Uj3dUWw", "timestamp": 1534110422.389832, "recipient": "Invalid@example.com",
            "recipient-domain": "example.com",
            "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "attempt-no": 1,
                                "message": "5.1.1 The email account that you tried to reach does not exist."},
            "message": {"headers": {"to": "invalid@example.com", "message-id": "20180812214658.1.0DF5@example.org"}},
            "tags": ["newsletter"], "user-variables": {"campaign_uuid": CAMPAIGN}}
    return {**base, **fields}


def signed(data: dict, key: str = KEY, at: int | None = None, token: str | None = None) -> bytes:
    stamp = str(int(time.time()) if at is None else at)
    token = token or random.token_hex(25)
    signature = {"timestamp": stamp, "token": token, "signature": hex_hmac(key, (stamp + token).encode())}
    return orjson.dumps({"signature": signature, "event-data": data})


@pytest.fixture
async def mailgun(make_client, secrets):
    return await enable(make_client, secrets, "mailgun", secret=KEY)


async def send(client, content: bytes):
    return await post(client, "mailgun", content, {"Content-Type": "application/json"})


async def test_a_permanent_failure_is_recorded_with_campaign_time_and_meta(mailgun, db):
    add_campaign(db)
    assert (await send(mailgun, signed(event_data()))).status_code == 200
    (row,) = rows(db)
    assert (row["email"], row["type"], row["source"], row["campaign"]) == ("invalid@example.com", "hard", "mailgun", CAMPAIGN)
    assert row["created_at"].timestamp() == pytest.approx(1534110422.389832)
    assert row["meta"]["delivery-status"]["enhanced-code"] == "5.1.1" and row["meta"]["reason"] == "bounce"


@pytest.mark.parametrize("fields, expected", [
    ({"event": "complained", "severity": None, "reason": None}, "complaint"),
    ({"reason": "suppress-bounce", "delivery-status": {"code": 605}}, "hard"),
    ({"reason": "suppress-complaint"}, "complaint"),
    ({"reason": "bounce", "delivery-status": {"code": 550, "enhanced-code": "5.7.1", "message": "rejected by policy"}}, "soft"),
    # The policy class only in the reply's text, as when Mailgun leaves enhanced-code empty.
    ({"reason": "bounce", "delivery-status": {"code": 550, "enhanced-code": "",
                                              "message": "550 5.7.1 Message rejected due to content policy"}}, "soft"),
    ({"reason": "bounce", "delivery-status": {"code": 550, "enhanced-code": "", "message": "550 5.1.1 no such user"}}, "hard"),
    ({"reason": "generic", "delivery-status": {"bounce-code": "5.1.1"}}, "hard"),
    ({"reason": "generic", "delivery-status": {"bounce-code": "5.2.2"}}, "soft"),
    ({"reason": "old", "severity": "temporary"}, "soft"),
    ({"reason": "old", "severity": "permanent"}, "soft"),
])
async def test_failure_mapping(mailgun, db, fields, expected):
    assert (await send(mailgun, signed(event_data(**fields)))).status_code == 200
    assert [r["type"] for r in rows(db)] == [expected]


@pytest.mark.parametrize("fields", [
    {"event": "delivered"}, {"event": "opened"}, {"event": "accepted"}, {"event": "rejected"},
    {"severity": "temporary", "reason": "greylisted"}, {"reason": "suppress-unsubscribe"},
])
async def test_non_bounces_and_deferrals_are_ignored(mailgun, db, fields):
    assert (await send(mailgun, signed(event_data(**fields)))).status_code == 200
    assert rows(db) == []


async def test_a_resigned_redelivery_is_recorded_once_and_fires_once(mailgun, db):
    row = await redelivered_once(db, lambda: send(mailgun, signed(event_data())), "invalid@example.com")  # new tokens
    assert row["event_key"].startswith("mailgun:sha256:")  # event-data.id with its timestamp: ids repeat across days


async def test_the_same_request_again_is_answered_and_records_nothing(mailgun, db):
    # Mailgun retries for hours whatever is not a 200 or a 406: a retry after a lost answer, or a replay.
    content = signed(event_data())
    refusals = await auth_failures(mailgun)
    for _ in range(3):
        response = await send(mailgun, content)
        assert response.status_code == 200 and response.json() == {"data": True}
    assert len(rows(db)) == 1
    assert await auth_failures(mailgun) == refusals  # nothing to alert on


async def auth_failures(client) -> float:
    found = re.search(r'^bounce_auth_failures_total\{provider="mailgun"\} (\S+)$', (await client.get("/metrics")).text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_token_is_only_spent_by_a_committed_request(mailgun, db):
    token = random.token_hex(25)
    broken = signed(event_data(recipient="not an address"), token=token)
    assert (await send(mailgun, broken)).status_code == 400
    assert (await send(mailgun, signed(event_data(), token=token))).status_code == 200


async def test_forged_and_stale_requests_are_401(mailgun, db):
    now = int(time.time())
    for content in (
        orjson.dumps({"event-data": event_data()}),
        signed(event_data(), key="the-api-key-not-the-signing-key"),
        signed(event_data(), at=now - 10 * 3600),  # beyond the 9h default window
        signed(event_data(), at=now + 3600 * 10),
        orjson.dumps({"signature": {"timestamp": str(now), "token": "t", "signature": "00"}, "event-data": event_data()}),
        orjson.dumps({"signature": "x", "event-data": event_data()}),
    ):
        assert (await send(mailgun, content)).status_code == 401
    assert rows(db) == []


async def test_a_token_is_shared_by_the_replicas(make_client, secrets, db):
    """Two apps with their own processes' state, one database: what two replicas (or workers) share."""
    first = await enable(make_client, secrets, "mailgun", secret=KEY)
    token = random.token_hex(25)
    assert (await send(first, signed(event_data(), token=token))).status_code == 200
    second = await enable(make_client, secrets, "mailgun", secret=KEY)
    assert (await send(second, signed(event_data(), token=token))).status_code == 200  # recorded: nothing to do
    forged = signed(event_data(recipient="victim@example.com", id="forged"), token=token)
    response = await send(second, forged)
    assert response.status_code == 401
    assert response.json()["message"] == "signature token already used with another event"
    assert len(rows(db)) == 1


async def test_a_captured_token_cannot_carry_another_event(mailgun, db):
    token = random.token_hex(25)
    assert (await send(mailgun, signed(event_data(event="delivered"), token=token))).status_code == 200
    forged = signed(event_data(recipient="victim@example.com", id="forged"), token=token)  # same signature block
    assert (await send(mailgun, forged)).status_code == 401
    assert rows(db) == []


async def test_a_retry_after_a_failed_commit_goes_through(mailgun, db):
    content = signed(event_data())
    with refusing_inserts(db, "invalid@example.com"):
        assert (await send(mailgun, content)).status_code == 500
    assert (await send(mailgun, content)).status_code == 200  # same token, same event: not yet recorded
    assert len(rows(db)) == 1
    assert (await send(mailgun, content)).status_code == 200  # now it has been: answered, nothing recorded
    assert len(rows(db)) == 1


async def test_tokens_no_window_accepts_are_pruned(mailgun, db):
    now = time.time()
    clock = {"now": now}
    replace_provider(mailgun, Mailgun, clock=lambda: clock["now"])
    assert (await send(mailgun, signed(event_data(event="delivered"), token="old", at=int(now)))).status_code == 200
    clock["now"] = now + 2 * 9 * 3600 + 60  # two 9h windows later
    assert (await send(mailgun, signed(event_data(event="delivered"), token="new", at=int(clock["now"])))).status_code == 200
    assert [row["token"] for row in db.execute("SELECT token FROM webhook_tokens").fetchall()] == ["new"]
