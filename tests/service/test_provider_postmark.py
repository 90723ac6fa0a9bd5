"""Postmark's Bounce, Spam Complaint and Subscription Change webhooks behind HTTP Basic."""

from __future__ import annotations

import pytest

from tests.service.providers_helpers import (
    CAMPAIGN, SUBSCRIBER, add_campaign, add_subscriber, enable_basic, post_basic, redelivered_once, rows, subscriber_status,
)

HARD_BOUNCE = {
    "RecordType": "Bounce", "MessageStream": "outbound", "ID": 42, "Type": "HardBounce", "TypeCode": 1,
    "Name": "Hard bounce", "Tag": "newsletter", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 1234,
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    "Email": "Gone@Example.com", "From": "news@example.org", "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "November news",
    "Content": "<the whole message, when IncludeContent is on>",
    "Metadata": {"X-Listmonk-Campaign": CAMPAIGN, "X-Listmonk-Subscriber": SUBSCRIBER},
}
COMPLAINT = {
    "RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 43, "Type": "SpamComplaint", "TypeCode": 512,
    "Name": "Spam complaint", "Tag": "newsletter", "MessageID": "00000000-0000-0000-0000-000000000000",
    "ServerID": 1234, "Description": "", "Details": "Test spam complaint details", "Email": "someone@example.com",
    "From": "news@example.org", "BouncedAt": "2014-08-01T13:28:10.2735393-04:00", "DumpAvailable": True,
    "Inactive": True, "CanActivate": False, "Subject": "November news", "Metadata": {"campaign_uuid": CAMPAIGN},
}

# A broadcast stream's complaint: the fields of Postmark's SubscriptionChangeWebhook (its Node.js client's type).
SUPPRESSED = {
    "RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 1234,
    "MessageStream": "broadcast", "ChangedAt": "2026-11-30T10:15:04.1234567Z", "Recipient": "Reader@Example.com",
    "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "SpamComplaint", "Tag": "newsletter",
    "Metadata": {"campaign_uuid": CAMPAIGN},
}


@pytest.fixture
async def postmark(make_client, secrets):
    return await enable_basic(make_client, secrets, "postmark")


async def send(client, value):
    return await post_basic(client, "postmark", value, {"Content-Type": "application/json"})


async def test_bounce_and_complaint_are_recorded_with_campaign_time_and_meta(postmark, db):
    add_campaign(db)
    sub = add_subscriber(db, "previous@example.com", uuid=SUBSCRIBER)
    assert (await send(postmark, HARD_BOUNCE)).status_code == 200
    assert (await send(postmark, COMPLAINT)).status_code == 200
    bounce, complaint = rows(db)
    assert (bounce["email"], bounce["type"], bounce["source"], bounce["campaign"]) == ("gone@example.com", "hard", "postmark", CAMPAIGN)
    assert bounce["subscriber_id"] == sub and subscriber_status(db, sub) == "blocklisted"
    assert bounce["created_at"].isoformat() == "2019-11-05T16:33:54.907025+00:00"
    assert bounce["event_key"] == "postmark:42"
    assert bounce["meta"]["Details"].startswith("smtp;550 5.1.1") and bounce["meta"]["Inactive"] is True
    assert "Content" not in bounce["meta"]
    assert (complaint["email"], complaint["type"], complaint["campaign"]) == ("someone@example.com", "complaint", CAMPAIGN)
    assert complaint["created_at"].isoformat() == "2014-08-01T17:28:10.273539+00:00"


@pytest.mark.parametrize("bounce_type, expected", [
    ("HardBounce", "hard"), ("BadEmailAddress", "hard"), ("Transient", "soft"), ("SoftBounce", "soft"),
    ("DnsError", "soft"), ("SpamNotification", "soft"), ("VirusNotification", "soft"), ("Blocked", "soft"),
    ("DMARCPolicy", "soft"), ("Unknown", "soft"),
    ("SomethingPostmarkAddsNextYear", "soft"),  # accepted: a 400 would be retried for hours, then dropped
])
async def test_bounce_types(postmark, db, bounce_type, expected):
    assert (await send(postmark, {**HARD_BOUNCE, "Type": bounce_type})).status_code == 200
    assert [r["type"] for r in rows(db)] == [expected]


@pytest.mark.parametrize("record", [
    *({**HARD_BOUNCE, "Type": kind} for kind in (
        "Unsubscribe", "Subscribe", "AutoResponder", "AddressChange", "OpenRelayTest", "ChallengeVerification",
        "ManuallyDeactivated", "Unconfirmed", "SMTPApiError", "InboundError", "TemplateRenderingFailed")),
    {"RecordType": "Delivery", "MessageID": "x", "Recipient": "a@example.com", "DeliveredAt": "2019-11-05T16:33:54Z"},
    {"RecordType": "Open", "MessageID": "x", "Recipient": "a@example.com"},
])
async def test_non_bounces_are_accepted_and_ignored(postmark, db, record):
    assert (await send(postmark, record)).status_code == 200
    assert rows(db) == []


async def test_a_broadcast_streams_complaint_arrives_as_a_subscription_change(postmark, db):
    add_campaign(db)
    sub = add_subscriber(db, "reader@example.com")
    assert (await send(postmark, SUPPRESSED)).status_code == 200
    (row,) = rows(db)
    assert (row["email"], row["type"], row["campaign"], row["subscriber_id"]) == \
        ("reader@example.com", "complaint", CAMPAIGN, sub)
    assert row["created_at"].isoformat() == "2026-11-30T10:15:04.123456+00:00"
    assert (row["meta"]["MessageStream"], row["meta"]["SuppressionReason"]) == ("broadcast", "SpamComplaint")
    assert subscriber_status(db, sub) == "blocklisted"


async def test_a_complaint_reported_by_both_webhooks_is_recorded_once(postmark, db):
    # A transactional stream with Spam Complaint and Subscription Change both ticked.
    complaint = {**COMPLAINT, "MessageID": SUPPRESSED["MessageID"], "Email": "reader@example.com"}
    assert (await send(postmark, complaint)).status_code == 200
    assert (await send(postmark, {**SUPPRESSED, "MessageStream": "outbound"})).status_code == 200
    assert [(r["email"], r["type"]) for r in rows(db)] == [("reader@example.com", "complaint")]


@pytest.mark.parametrize("change", [
    {"SuppressSending": False},  # a reactivation
    {"SuppressionReason": "HardBounce"},  # the Bounce webhook reports the bounce itself
    {"SuppressionReason": "ManualSuppression", "Origin": "Customer", "MessageID": None},
])
async def test_other_subscription_changes_are_accepted_and_ignored(postmark, db, change):
    assert (await send(postmark, {**SUPPRESSED, **change})).status_code == 200
    assert rows(db) == []


async def test_redelivery_is_recorded_once_and_fires_once(postmark, db):
    row = await redelivered_once(db, lambda: send(postmark, HARD_BOUNCE), "gone@example.com")
    assert row["event_key"] == "postmark:42"


@pytest.mark.parametrize("record", [
    {**HARD_BOUNCE, "Email": "not an address"},
    {**HARD_BOUNCE, "ID": None},
    {**HARD_BOUNCE, "BouncedAt": "last tuesday"},
    {**HARD_BOUNCE, "BouncedAt": "9999-12-31T23:59:59-14:00"},  # could be stored, never read back
    {**HARD_BOUNCE, "Metadata": "campaign"},
    [HARD_BOUNCE],
    {**SUPPRESSED, "Recipient": "not an address"},
    {**SUPPRESSED, "ChangedAt": "yesterday"},
])
async def test_malformed_records_are_400(postmark, db, record):
    assert (await send(postmark, record)).status_code == 400
    assert rows(db) == []
