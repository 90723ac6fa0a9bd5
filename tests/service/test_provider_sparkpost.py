"""SparkPost event webhooks behind HTTP Basic: arrays of {"msys": {...}}, keyed by event_id."""

from __future__ import annotations

import pytest

from tests.service.providers_helpers import CAMPAIGN, add_campaign, by_email, enable_basic, post_basic, redelivered_once, rows

BOUNCE = {"type": "bounce", "bounce_class": "10", "event_id": "92356927693813856", "timestamp": "1454442600",
          "transmission_id": "65832150921904138", "message_id": "000443ee14578172be22", "rcpt_to": "gone@example.com",
          "raw_rcpt_to": "Gone@example.com", "rcpt_type": "to", "error_code": "550", "reason": "550 5.1.1 user unknown",
          "raw_reason": "550 5.1.1 <Gone@example.com>: user unknown", "campaign_id": "november-news", "rcpt_tags": [],
          "rcpt_meta": {"campaign_uuid": CAMPAIGN}}
COMPLAINT = {"type": "spam_complaint", "event_id": "92356927693813857", "fbtype": "abuse", "report_by": "server.email.com",
             "report_to": "abuse.example.com", "timestamp": "1454442600", "transmission_id": "65832150921904138",
             "rcpt_to": "someone@example.com", "raw_rcpt_to": "someone@example.com", "rcpt_meta": {"campaign_uuid": CAMPAIGN}}


def batch(*events: dict, group: str = "message_event") -> list:
    return [{"msys": {group: event}} for event in events]


@pytest.fixture
async def sparkpost(make_client, secrets):
    return await enable_basic(make_client, secrets, "sparkpost")


async def send(client, value):
    return await post_basic(client, "sparkpost", value, {"X-MessageSystems-Batch-ID": "b-1"})


async def test_a_batch_is_recorded_with_campaign_time_and_meta(sparkpost, db):
    add_campaign(db)
    events = batch(BOUNCE, COMPLAINT) + batch({"type": "click", "rcpt_to": "c@example.com"}, group="track_event")
    assert (await send(sparkpost, events)).status_code == 200
    found = by_email(db)
    assert set(found) == {"gone@example.com", "someone@example.com"}
    gone = found["gone@example.com"]
    assert (gone["type"], gone["source"], gone["campaign"], gone["event_key"]) == ("hard", "sparkpost", CAMPAIGN, "sparkpost:92356927693813856")
    assert gone["created_at"].timestamp() == 1454442600 and gone["meta"]["bounce_class"] == "10"
    assert (found["someone@example.com"]["type"], found["someone@example.com"]["meta"]["fbtype"]) == ("complaint", "abuse")


@pytest.mark.parametrize("fields, expected", [
    ({"bounce_class": "30"}, "hard"), ({"bounce_class": "22"}, "soft"), ({"bounce_class": "25"}, "soft"),
    ({"bounce_class": "51"}, "soft"), ({"bounce_class": "1"}, "soft"),
    ({"type": "out_of_band", "bounce_class": "10"}, "hard"),
])
async def test_bounce_classes(sparkpost, db, fields, expected):
    assert (await send(sparkpost, batch({**BOUNCE, **fields}))).status_code == 200
    assert [r["type"] for r in rows(db)] == [expected]


async def test_the_validation_ping_and_non_bounces_are_accepted(sparkpost, db):
    assert (await send(sparkpost, [{"msys": {}}])).status_code == 200
    ignored = batch({**BOUNCE, "bounce_class": "60"}, {**BOUNCE, "type": "delivery"}, {**BOUNCE, "type": "delay"},
                    {**BOUNCE, "type": "policy_rejection", "bounce_class": "25"})
    assert (await send(sparkpost, ignored)).status_code == 200
    assert rows(db) == []


async def test_redelivery_is_recorded_once_and_a_batch_is_atomic(sparkpost, db):
    row = await redelivered_once(db, lambda: send(sparkpost, batch(BOUNCE, BOUNCE)), "gone@example.com")
    assert row["event_key"] == "sparkpost:92356927693813856"
    response = await send(sparkpost, batch(COMPLAINT, {**BOUNCE, "event_id": ""}))
    assert response.status_code == 400 and len(rows(db)) == 1
    assert (await send(sparkpost, {"msys": {}})).status_code == 400  # not an array
