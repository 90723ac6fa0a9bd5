"""Azure Communication Services delivery reports through Event Grid, behind a shared secret."""

from __future__ import annotations

import orjson
import pytest

from tests.service.providers_helpers import enable, post, redelivered_once, rows

SECRET = "azure-shared-secret"


def report(status: str, detail: str = "", event_id: str = "e-1", recipient: str = "Gone@example.com") -> dict:
    return {
        "id": event_id, "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Communication/communicationServices/z",
        "subject": "sender/news@example.org/message/m-1", "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        "dataVersion": "1.0", "eventTime": "2026-11-22T10:15:01Z",
        "data": {"sender": "news@example.org", "recipient": recipient, "messageId": "m-1", "status": status,
                 "deliveryStatusDetails": {"statusMessage": detail}, "deliveryAttemptTimeStamp": "2026-11-22T10:15:00.123Z"},
    }


VALIDATION = [{"id": "v-1", "topic": "t", "subject": "", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
               "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "https://rp.example"},
               "eventTime": "2026-11-22T10:00:00Z", "dataVersion": "2"}]


@pytest.fixture
async def azure(make_client, secrets):
    return await enable(make_client, secrets, "azure", {"secretHeader": "X-Bounce-Secret"}, secret=SECRET)


async def send(client, events, params=None, headers=None, kind="Notification"):
    return await post(client, "azure", orjson.dumps(events), {"aeg-event-type": kind, **(headers or {})},
                      params if params is not None else {"code": SECRET})


async def test_the_handshake_answers_the_validation_code_but_only_with_the_secret(azure, db):
    assert (await send(azure, VALIDATION, params={}, kind="SubscriptionValidation")).status_code == 401
    response = await send(azure, VALIDATION, kind="SubscriptionValidation")
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


async def test_delivery_reports_are_recorded(azure, db):
    events = [report("Bounced", "550 5.1.1 user unknown"), report("Delivered", event_id="e-2"),
              {**report("Failed", event_id="e-3"), "eventType": "Microsoft.Communication.EmailEngagementTrackingReportReceived"}]
    assert (await send(azure, events)).status_code == 200
    (row,) = rows(db)
    assert (row["email"], row["type"], row["source"], row["event_key"]) == ("gone@example.com", "hard", "azure", "azure:e-1")
    assert row["campaign"] is None  # ACS delivery reports carry no custom data to link a campaign with
    assert row["created_at"].isoformat() == "2026-11-22T10:15:00.123000+00:00"
    assert row["meta"]["deliveryStatusDetails"]["statusMessage"] == "550 5.1.1 user unknown"


@pytest.mark.parametrize("status, detail, expected", [
    ("Suppressed", "", "hard"),
    ("Failed", "550 5.1.1 mailbox does not exist", "hard"),
    ("Failed", "452 4.2.2 mailbox full", "soft"),
    ("Failed", "550 5.7.1 blocked by policy", "soft"),
    ("Failed", "recipient does not exist", "hard"),
    ("Failed", "connection timeout", "soft"),
    ("FilteredSpam", "spam complaint from recipient", "complaint"),
    ("Quarantined", "content filter", "soft"),
])
async def test_status_mapping(azure, db, status, detail, expected):
    assert (await send(azure, [report(status, detail)])).status_code == 200
    assert [r["type"] for r in rows(db)] == [expected]


async def test_the_header_also_carries_the_secret(azure, db):
    assert (await send(azure, [report("Bounced")], params={}, headers={"X-Bounce-Secret": SECRET})).status_code == 200


async def test_redelivery_is_recorded_once_and_fires_once(azure, db):
    row = await redelivered_once(db, lambda: send(azure, [report("Bounced"), report("Bounced")]), "gone@example.com")
    assert row["event_key"] == "azure:e-1"


async def test_missing_or_wrong_secrets_are_401(azure, db):
    for params, headers in (({}, {}), ({"code": "wrong"}, {}), ({"code": ""}, {}), ({}, {"X-Bounce-Secret": "wrong"}),
                            ({}, {"X-Other": SECRET})):
        assert (await send(azure, [report("Bounced")], params=params, headers=headers)).status_code == 401
    assert rows(db) == []


@pytest.mark.parametrize("events, kind", [
    ({"not": "an array"}, "Notification"),
    ([report("Bounced", recipient="nobody")], "Notification"),
    ([{"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {}}], "SubscriptionValidation"),
    ([], "SubscriptionValidation"),
])
async def test_malformed_requests_are_400(azure, db, events, kind):
    assert (await send(azure, events, kind=kind)).status_code == 400
    assert rows(db) == []
