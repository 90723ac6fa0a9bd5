"""Mailjet's Event API behind HTTP Basic: grouped arrays or a bare event."""

from __future__ import annotations

import orjson
import pytest

from tests.service.providers_helpers import CAMPAIGN, add_campaign, by_email, enable_basic, post_basic, redelivered_once, rows

BOUNCE = {
    "event": "bounce", "time": 1430812195, "MessageID": 13792286917004336,
    "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "bounce@example.com", "mj_campaign_id": 0,
    "mj_contact_id": 0, "customcampaign": "", "CustomID": CAMPAIGN, "Payload": "", "blocked": False,
    "hard_bounce": True, "error_related_to": "recipient", "error": "user unknown",
    "comment": "550 5.1.1 <bounce@example.com>: Recipient address rejected: User unknown",
}
SPAM = {"event": "spam", "time": 1430812195, "MessageID": 13792286917004336,
        "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "someone@example.com", "mj_campaign_id": 0,
        "mj_contact_id": 0, "customcampaign": "", "CustomID": "",
        "Payload": orjson.dumps({"campaign_uuid": CAMPAIGN}).decode(), "source": "JMRPP"}


@pytest.fixture
async def mailjet(make_client, secrets):
    return await enable_basic(make_client, secrets, "mailjet")


async def send(client, value):
    return await post_basic(client, "mailjet", value)


async def test_grouped_events_are_recorded_with_campaign_time_and_meta(mailjet, db):
    add_campaign(db)
    assert (await send(mailjet, [BOUNCE, SPAM, {**BOUNCE, "event": "open", "email": "reader@example.com"}])).status_code == 200
    found = by_email(db)
    assert set(found) == {"bounce@example.com", "someone@example.com"}
    bounce = found["bounce@example.com"]
    assert (bounce["type"], bounce["source"], bounce["campaign"]) == ("hard", "mailjet", CAMPAIGN)
    assert bounce["created_at"].timestamp() == 1430812195
    assert bounce["meta"]["error"] == "user unknown" and bounce["meta"]["comment"].startswith("550 5.1.1")
    assert (found["someone@example.com"]["type"], found["someone@example.com"]["campaign"]) == ("complaint", CAMPAIGN)


@pytest.mark.parametrize("fields, expected", [
    ({"hard_bounce": False, "error": "user unknown"}, "soft"),  # Mailjet: look at both before acting
    ({"error": "quota exceeded"}, "soft"),
    ({"error_related_to": "spam", "error": "sender blocked"}, "soft"),
    ({"error_related_to": "domain", "error": "invalid domain"}, "hard"),
    ({"error_related_to": "domain", "error": "typofix", "hard_bounce": False}, "hard"),
    ({"error": "spam reporter"}, "complaint"),
    ({"event": "blocked", "error_related_to": "mailjet", "error": "preblocked"}, "hard"),
    ({"event": "blocked", "error_related_to": "system", "error": "connection issue"}, "soft"),
])
async def test_bounce_and_blocked_mapping(mailjet, db, fields, expected):
    assert (await send(mailjet, {**BOUNCE, **fields})).status_code == 200  # a bare object: grouping off
    assert [r["type"] for r in rows(db)] == [expected]


@pytest.mark.parametrize("fields", [
    {"event": "blocked", "error_related_to": "mailjet", "error": "duplicate in campaign"},
    {"error_related_to": "content", "error": "bad or empty template"},
    {"event": "sent"}, {"event": "click"}, {"event": "unsub"},
])
async def test_non_bounces_are_ignored(mailjet, db, fields):
    assert (await send(mailjet, [{**BOUNCE, **fields}])).status_code == 200
    assert rows(db) == []


async def test_redelivery_is_recorded_once_and_fires_once(mailjet, db):
    row = await redelivered_once(db, lambda: send(mailjet, [BOUNCE]), "bounce@example.com")
    assert row["event_key"].startswith("mailjet:sha256:")
