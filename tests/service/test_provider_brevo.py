"""Brevo transactional and marketing webhooks behind HTTP Basic; single events and batches."""

from __future__ import annotations

import orjson
import pytest

from tests.service.providers_helpers import CAMPAIGN, add_campaign, by_email, enable_basic, post_basic, redelivered_once, rows

HARD_BOUNCE = {
    "event": "hard_bounce", "email": "Not-A-User@example.com", "id": 123456, "date": "2026-11-22 10:15:00",
    "ts": 1795346100, "ts_event": 1795346100, "ts_epoch": 1795346100123,
    "message-id": "<202611221015.1234567890@smtp-relay.mailin.fr>", "subject": "November news",
    "reason": " RecipientError: 550 5.5.0 Requested action not taken: mailbox unavailable.",
    "X-Mailin-custom": orjson.dumps({"campaign_uuid": CAMPAIGN}).decode(), "tags": ["newsletter"],
    "sending_ip": "185.41.28.109", "template_id": 22,
}
SPAM = {"event": "spam", "email": "example@domain.com", "id": 123456, "camp_id": 42, "campaign name": "November news",
        "date_sent": "2026-11-22 10:00:00", "date_event": "2026-11-22 11:00:00", "ts_sent": 1795345200,
        "ts_event": 1795348800, "ts": 1795348800, "reason": "undesired", "tag": ""}


@pytest.fixture
async def brevo(make_client, secrets):
    return await enable_basic(make_client, secrets, "brevo")


async def send(client, value):
    return await post_basic(client, "brevo", value)


async def test_single_events_and_batches_are_recorded(brevo, db):
    add_campaign(db)
    assert (await send(brevo, HARD_BOUNCE)).status_code == 200
    assert (await send(brevo, [SPAM, {**HARD_BOUNCE, "event": "soft_bounce", "email": "full@example.com"}])).status_code == 200
    found = by_email(db)
    hard = found["not-a-user@example.com"]
    assert (hard["type"], hard["source"], hard["campaign"]) == ("hard", "brevo", CAMPAIGN)
    assert hard["created_at"].timestamp() == 1795346100.123  # ts_epoch (ms), the one timestamp Brevo keeps in UTC
    assert hard["meta"]["reason"].strip().startswith("RecipientError") and hard["meta"]["message-id"].startswith("<2026")
    assert (found["example@domain.com"]["type"], found["example@domain.com"]["campaign"]) == ("complaint", None)
    assert found["example@domain.com"]["created_at"].timestamp() == 1795348800
    assert found["full@example.com"]["type"] == "soft"


@pytest.mark.parametrize("event, expected", [
    ("hard_bounce", "hard"), ("invalid_email", "hard"), ("soft_bounce", "soft"), ("blocked", "soft"),
    ("spam", "complaint"), ("complaint", "complaint"),
])
async def test_event_mapping(brevo, db, event, expected):
    assert (await send(brevo, {**HARD_BOUNCE, "event": event})).status_code == 200
    assert [r["type"] for r in rows(db)] == [expected]


async def test_deliveries_opens_and_deferrals_are_ignored(brevo, db):
    events = [{**HARD_BOUNCE, "event": name} for name in ("delivered", "opened", "click", "deferred", "request", "unsubscribed")]
    assert (await send(brevo, events)).status_code == 200
    assert rows(db) == []


async def test_redelivery_is_recorded_once_and_a_batch_is_atomic(brevo, db):
    row = await redelivered_once(db, lambda: send(brevo, HARD_BOUNCE), "not-a-user@example.com")
    assert row["event_key"].startswith("brevo:sha256:")  # Brevo sends no event id: a digest of what identifies it
    response = await send(brevo, [{**HARD_BOUNCE, "email": "new@example.com"}, {**HARD_BOUNCE, "email": "broken"}])
    assert response.status_code == 400 and response.json()["message"] == "Invalid data: [1].email is not an e-mail address"
    assert len(rows(db)) == 1


@pytest.mark.parametrize("event", [{**HARD_BOUNCE, "event": ["hard_bounce"]}, {**HARD_BOUNCE, "event": None},
                                   {**HARD_BOUNCE, "ts_epoch": "yesterday"}, {**HARD_BOUNCE, "email": 42}])
async def test_malformed_events_are_400(brevo, db, event):
    response = await send(brevo, [SPAM, event])
    assert response.status_code == 400 and response.json()["message"].startswith("Invalid data: [1].")
    assert rows(db) == []
