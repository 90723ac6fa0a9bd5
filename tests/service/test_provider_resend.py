"""Resend webhooks through Svix: HMAC-SHA256 over "id.timestamp.body", base64, "v1," prefix."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time

import orjson
import pytest

from bounce_service.providers.resend import Resend
from tests.service.providers_helpers import CAMPAIGN, add_campaign, enable, post, redelivered_once, replace_provider, rows

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
# Svix's published example (also the Standard Webhooks test vector).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = "1614265330"
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
VECTOR_BODY = b'{"test": 2432232314}'

BOUNCED = {
    "type": "email.bounced", "created_at": "2024-11-22T23:41:12.126Z",
    "data": {"email_id": "56761188-7520-42d8-8898-ff6fc54ce618", "created_at": "2024-11-22T23:41:11.894719+00:00",
             "from": "Acme <onboarding@resend.dev>", "to": ["Gone@example.com"], "subject": "November news",
             "bounce": {"type": "Permanent", "subType": "General",
                        "message": "The recipient's email provider sent a hard bounce message."},
             "tags": {"campaign_uuid": CAMPAIGN}},
}


def signed(content: bytes, message_id: str = "msg_2Kt", secret: str = SECRET, at: int | None = None,
           prefix: str = "svix") -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{message_id}.{stamp}.".encode() + content, hashlib.sha256).digest()
    return {f"{prefix}-id": message_id, f"{prefix}-timestamp": stamp,
            f"{prefix}-signature": "v1," + base64.b64encode(mac).decode()}


@pytest.fixture
async def resend(make_client, secrets):
    return await enable(make_client, secrets, "resend", secret=SECRET)


async def send(client, payload: dict, message_id: str = "msg_2Kt"):
    content = orjson.dumps(payload)
    return await post(client, "resend", content, signed(content, message_id))


async def test_svix_published_vector_verifies(make_client, secrets, db):
    client = await enable(make_client, secrets, "resend", secret=VECTOR_SECRET)
    replace_provider(client, Resend, clock=lambda: float(VECTOR_TIMESTAMP))
    headers = {"svix-id": VECTOR_ID, "svix-timestamp": VECTOR_TIMESTAMP, "svix-signature": VECTOR_SIGNATURE}
    assert (await post(client, "resend", VECTOR_BODY, headers)).status_code == 200  # verified; not an e-mail event
    assert (await post(client, "resend", b'{"test":2432232314}', headers)).status_code == 401  # re-serialised body
    assert rows(db) == []


async def test_bounce_and_complaint_are_recorded_with_campaign_time_and_meta(resend, db):
    add_campaign(db)
    assert (await send(resend, BOUNCED, "msg_1")).status_code == 200
    complained = {**BOUNCED, "type": "email.complained",
                  "data": {**BOUNCED["data"], "to": ["someone@example.com"], "bounce": None,
                           "tags": [{"name": "campaign_uuid", "value": CAMPAIGN}]}}
    assert (await send(resend, complained, "msg_2")).status_code == 200
    bounce, complaint = rows(db)
    assert (bounce["email"], bounce["type"], bounce["campaign"], bounce["event_key"]) == ("gone@example.com", "hard", CAMPAIGN, "resend:msg_1")
    assert bounce["created_at"].isoformat() == "2024-11-22T23:41:12.126000+00:00"
    assert bounce["meta"]["bounce"]["subType"] == "General" and bounce["meta"]["email_id"].startswith("56761188")
    assert (complaint["email"], complaint["type"], complaint["campaign"]) == ("someone@example.com", "complaint", CAMPAIGN)


@pytest.mark.parametrize("bounce_type, expected", [("Permanent", "hard"), ("Transient", "soft"), ("Undetermined", "soft")])
async def test_bounce_types(resend, db, bounce_type, expected):
    payload = {**BOUNCED, "data": {**BOUNCED["data"], "bounce": {"type": bounce_type, "subType": "General"}}}
    assert (await send(resend, payload)).status_code == 200
    assert [r["type"] for r in rows(db)] == [expected]


async def test_other_events_are_ignored(resend, db):
    for index, kind in enumerate(("email.sent", "email.delivered", "email.delivery_delayed", "email.opened", "email.clicked")):
        assert (await send(resend, {**BOUNCED, "type": kind}, f"msg_{index}")).status_code == 200
    assert rows(db) == []


async def test_redelivery_is_recorded_once_and_fires_once(resend, db):
    # Svix re-signs each retry with a fresh timestamp; svix-id stays.
    row = await redelivered_once(db, lambda: send(resend, BOUNCED, "msg_same"), "gone@example.com")
    assert row["event_key"] == "resend:msg_same"


async def test_white_labelled_headers_and_rotated_secrets(resend, db):
    content = orjson.dumps(BOUNCED)
    headers = signed(content, "msg_w", prefix="webhook")
    old = signed(content, "msg_w", secret="whsec_" + base64.b64encode(b"old-secret-old-secret").decode())
    headers["webhook-signature"] = old["svix-signature"] + " " + headers["webhook-signature"]
    assert (await post(resend, "resend", content, headers)).status_code == 200


async def test_forged_and_replayed_requests_are_401(resend, db):
    content = orjson.dumps(BOUNCED)
    now = int(time.time())
    good = signed(content)
    for headers in (
        {},
        {key: value for key, value in good.items() if key != "svix-signature"},
        signed(content, secret="whsec_" + base64.b64encode(b"someone else").decode()),
        {**good, "svix-id": "msg_other"},
        {**good, "svix-signature": good["svix-signature"].replace("v1,", "v2,")},
        signed(content, at=now - 301),
        signed(content, at=now + 301),
        {**good, "svix-timestamp": "soon"},
    ):
        assert (await post(resend, "resend", content, headers)).status_code == 401
    assert rows(db) == []
