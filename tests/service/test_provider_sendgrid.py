"""SendGrid's signed Event Webhook: ECDSA P-256 over timestamp + raw body, batches, sg_event_id."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bounce_service.app import create_app
from bounce_service.config import ConfigError
from bounce_service.providers.sendgrid import SendGrid
from tests.service.providers_helpers import (
    CAMPAIGN, SUBSCRIBER, add_campaign, add_subscriber, by_email, enable, metric, post, redelivered_once, refusing_inserts,
    replace_provider, rows, subscriber_status, write_secret,
)

# SendGrid's own SDK test vector (sendgrid-python test/unit/test_eventwebhook.py).
VECTOR_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaIN"
              "XvVpiglSI8eNEc6wEA3F+g==")
VECTOR_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
VECTOR_TIMESTAMP = "1600112502"
VECTOR_BODY = orjson.dumps([{
    "email": "hello@world.com", "event": "dropped", "reason": "Bounced Address",
    "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
    "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
    "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>", "timestamp": 1600112492,
}], option=orjson.OPT_SORT_KEYS) + b"\r\n"


class Signer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def public_base64(self) -> str:
        der = self.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def public_pem(self) -> str:
        return self.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def headers(self, content: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.key.sign(stamp.encode() + content, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp, "Content-Type": "application/json"}


def event(**fields) -> dict:
    base = {"email": "gone@example.com", "timestamp": 1513299569, "event": "bounce", "type": "bounce",
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.", "status": "5.1.1",
            "bounce_classification": "Invalid Address", "category": "newsletter", "campaign_uuid": CAMPAIGN}
    return {**base, **fields}


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
async def sendgrid(make_client, secrets, signer):
    return await enable(make_client, secrets, "sendgrid", verificationKey=signer.public_base64())


async def send(client, signer: Signer, events: list, timestamp: int | None = None):
    content = orjson.dumps(events) + b"\r\n"  # real SendGrid bodies end in CRLF, which is signed too
    return await post(client, "sendgrid", content, signer.headers(content, timestamp))


async def test_a_signed_batch_is_recorded_with_campaign_time_and_meta(sendgrid, signer, db):
    add_campaign(db)
    sub = add_subscriber(db, "old-address@example.com", uuid=SUBSCRIBER)
    response = await send(sendgrid, signer, [
        event(XListmonkSubscriber=SUBSCRIBER),
        event(event="spamreport", email="Someone@Example.com", sg_event_id="37nvH5QBz858KGVYCM4uOA=="),
        event(email="blocked@example.com", sg_event_id="b1", type="blocked", bounce_classification="Reputation",
              status="5.7.1"),
    ])
    assert response.status_code == 200 and response.json() == {"data": True}
    found = by_email(db)
    first, second, third = found["gone@example.com"], found["someone@example.com"], found["blocked@example.com"]
    assert (first["email"], first["type"], first["source"], first["campaign"]) == ("gone@example.com", "hard", "sendgrid", CAMPAIGN)
    assert first["subscriber_id"] == sub and subscriber_status(db, sub) == "blocklisted"
    assert first["created_at"].timestamp() == 1513299569
    assert first["event_key"] == "sendgrid:6g4ZI7SA-xmRDv57GoPIPw=="
    assert first["meta"]["bounce_classification"] == "Invalid Address" and first["meta"]["status"] == "5.1.1"
    assert "campaign_uuid" not in first["meta"]  # each event keeps its own fields, not the whole body
    assert (second["email"], second["type"]) == ("someone@example.com", "complaint")
    assert (third["email"], third["type"]) == ("blocked@example.com", "soft")


@pytest.mark.parametrize("fields, expected", [
    ({"bounce_classification": "INVALID ADDRESS"}, "hard"),  # matched case-insensitively
    ({"bounce_classification": "technical failure", "status": "5.0.0"}, "soft"),
    ({"bounce_classification": "Content"}, "soft"),
    ({"bounce_classification": "Frequency or Volume Too High", "status": "4.7.0"}, "soft"),
    ({"bounce_classification": "Mailbox Unavailable", "status": "5.2.1", "reason": "mailbox disabled"}, "soft"),
    ({"bounce_classification": "Mailbox Unavailable", "status": "5.1.1"}, "hard"),
    ({"bounce_classification": None, "type": "blocked", "status": ""}, "soft"),
    ({"bounce_classification": None, "status": "5.0.0"}, "hard"),
    ({"event": "dropped", "reason": "Bounced Address"}, "hard"),
    ({"event": "dropped", "reason": "Invalid"}, "hard"),
    ({"event": "dropped", "reason": "Spam Reporting Address"}, "complaint"),
    ({"event": "dropped", "reason": "Expired"}, "soft"),
])
async def test_classification(sendgrid, signer, db, fields, expected):
    assert (await send(sendgrid, signer, [event(**fields)])).status_code == 200
    assert [r["type"] for r in rows(db)] == [expected]


async def test_non_bounce_events_are_accepted_and_ignored(sendgrid, signer, db):
    response = await send(sendgrid, signer, [
        event(event="delivered", sg_event_id="d"), event(event="open", sg_event_id="o"),
        event(event="deferred", sg_event_id="q", attempt="2"), event(event="dropped", reason="Unsubscribed Address"),
        event(event="dropped", reason="Spam Content", sg_event_id="sc"),
    ])
    assert response.status_code == 200 and rows(db) == []


async def test_redelivery_is_recorded_once_and_fires_once(sendgrid, signer, db):
    # The same event twice within one batch, then the batch again.
    row = await redelivered_once(db, lambda: send(sendgrid, signer, [event(), event()]), "gone@example.com")
    assert row["event_key"] == "sendgrid:6g4ZI7SA-xmRDv57GoPIPw=="


async def test_a_batch_with_a_malformed_event_writes_nothing(sendgrid, signer, db):
    response = await send(sendgrid, signer, [event(), event(email="not an address", sg_event_id="x")])
    assert response.status_code == 400 and response.json()["message"] == "Invalid data: [1].email is not an e-mail address"
    response = await send(sendgrid, signer, [event(), event(sg_event_id=None)])
    assert response.status_code == 400 and rows(db) == []


@pytest.mark.parametrize("content", [b'{"event": "bounce"}', b"[1, 2]", b"not json", b""])
async def test_malformed_bodies_are_400(sendgrid, signer, db, content):
    response = await post(sendgrid, "sendgrid", content, signer.headers(content))
    assert response.status_code == 400 and rows(db) == []


async def test_a_retry_after_an_outage_with_its_first_signature_is_recorded_once(sendgrid, signer, db):
    # SendGrid retries for up to 24 hours; whether it signs a retry afresh is not documented.
    content = orjson.dumps([event()])
    headers = signer.headers(content, timestamp=int(time.time()) - 12 * 3600)
    for _ in range(2):  # the retry, then one more (a replay of it): sg_event_id records it once
        assert (await post(sendgrid, "sendgrid", content, headers)).status_code == 200
    assert len(rows(db)) == 1


async def test_forged_unsigned_and_replayed_requests_are_401(sendgrid, signer, db):
    content = orjson.dumps([event()])
    other = Signer()
    now = int(time.time())
    attempts = [
        {},  # the unsigned Event Webhook (listmonk #725)
        other.headers(content),  # someone else's key
        {**signer.headers(content, timestamp=now), "X-Twilio-Email-Event-Webhook-Timestamp": str(now + 1)},  # signed at another time
        {**signer.headers(content), "X-Twilio-Email-Event-Webhook-Signature": "bm90IGEgc2lnbmF0dXJl"},
        {**signer.headers(content), "X-Twilio-Email-Event-Webhook-Signature": "%%%"},
        signer.headers(content, timestamp=now - 26 * 3600),  # replayed after a day (maxAge 25h)
        signer.headers(content, timestamp=now + 26 * 3600),
        {**signer.headers(content), "X-Twilio-Email-Event-Webhook-Timestamp": "yesterday"},
    ]
    for headers in attempts:
        response = await post(sendgrid, "sendgrid", content, headers)
        assert response.status_code == 401, headers
    tampered = content.replace(b"gone@", b"other@")
    assert (await post(sendgrid, "sendgrid", tampered, signer.headers(content))).status_code == 401
    assert rows(db) == []
    assert await metric(sendgrid, 'bounce_auth_failures_total{provider="sendgrid"}')


async def test_sendgrids_published_vector_verifies_including_the_trailing_crlf(make_client, secrets, db):
    client = await enable(make_client, secrets, "sendgrid", verificationKey=VECTOR_KEY)
    replace_provider(client, SendGrid, clock=lambda: 1600112502.0)
    headers = {"X-Twilio-Email-Event-Webhook-Signature": VECTOR_SIGNATURE,
               "X-Twilio-Email-Event-Webhook-Timestamp": VECTOR_TIMESTAMP}
    assert (await post(client, "sendgrid", VECTOR_BODY.rstrip(), headers)).status_code == 401
    assert (await post(client, "sendgrid", VECTOR_BODY, headers)).status_code == 200
    (row,) = rows(db)
    assert (row["email"], row["type"], row["event_key"]) == (
        "hello@world.com", "hard", "sendgrid:ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA")


async def test_a_pem_key_is_accepted(make_client, secrets, signer, db):
    client = await enable(make_client, secrets, "sendgrid", verificationKey=signer.public_pem())
    assert (await send(client, signer, [event()])).status_code == 200


@pytest.mark.parametrize("key", [
    "not base64!",
    base64.b64encode(b"garbage der").decode(),
    # an RSA key is a key, but not one SendGrid signs with
    base64.b64encode(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode(),
    ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
])
def test_a_bad_key_is_a_configuration_error_at_start(make_config, secrets, key):
    write_secret(secrets, "sendgrid", "verificationKey", key)
    config = make_config(webhooks={"sendgrid": {"enabled": True, "verificationKey": {"secretRef": {"name": "sendgrid", "key": "verificationKey"}}}})
    with pytest.raises(ConfigError) as caught:
        create_app(config)
    assert caught.value.problems[0].startswith("spec.webhooks.sendgrid.verificationKey: ")



async def test_a_batch_that_fails_in_the_database_is_a_5xx_and_stores_nothing(sendgrid, signer, db):
    sub = add_subscriber(db, "gone@example.com")
    # A failure on the second event rolls back the first one too: the batch is one transaction.
    batch = [event(sg_event_id="a-good"), event(email="poison@example.com", sg_event_id="z-poison")]
    with refusing_inserts(db, "poison@example.com"):
        response = await send(sendgrid, signer, batch)
    assert response.status_code == 500 and response.json() == {"message": "internal server error"}
    assert rows(db) == [] and subscriber_status(db, sub) == "enabled"  # nothing stored, no action fired
    # The fault is gone: SendGrid's retry of the same batch is recorded whole.
    assert (await send(sendgrid, signer, batch)).status_code == 200
    assert sorted(r["email"] for r in rows(db)) == ["gone@example.com", "poison@example.com"]
    assert subscriber_status(db, sub) == "blocklisted"
