"""POST /webhooks/service/{provider}: what every provider shares (dispatch, refusals, fail-closed)."""

from __future__ import annotations

import base64

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bounce_service.app import create_app
from bounce_service.config import ConfigError
from tests.service.providers_helpers import basic, enable, metric, post, rows

BASIC_AUTH = {
    "postmark": {"RecordType": "Bounce", "ID": 1, "Type": "HardBounce", "Email": "a@example.com",
                 "BouncedAt": "2019-11-05T16:33:54Z"},
    "brevo": {"event": "hard_bounce", "email": "a@example.com", "ts_epoch": 1795346100123, "message-id": "<m@x>"},
    "mailjet": [{"event": "bounce", "time": 1430812195, "email": "a@example.com", "MessageID": 1,
                 "hard_bounce": True, "error_related_to": "recipient", "error": "user unknown"}],
    "sparkpost": [{"msys": {"message_event": {"type": "bounce", "bounce_class": "10", "event_id": "1",
                                              "timestamp": "1454442600", "rcpt_to": "a@example.com"}}}],
}


async def test_an_unknown_provider_is_404(client, db):
    response = await post(client, "nosuchmail", b"{}")
    assert response.status_code == 404
    assert response.json()["message"].startswith("unknown provider; known providers: azure, brevo, forwardemail")
    assert await metric(client, 'bounce_webhook_requests_total{provider="unknown",status="404"}')


async def test_a_provider_that_is_not_enabled_is_404_and_says_so(client, db):
    response = await post(client, "postmark", orjson.dumps(BASIC_AUTH["postmark"]), basic("u", "p"))
    assert response.status_code == 404
    assert response.json() == {"message": "provider postmark is not enabled (spec.webhooks.postmark.enabled)"}
    assert rows(db) == []


async def test_only_post_is_routed(make_client, secrets, db):
    client = await enable(make_client, secrets, "postmark", {"username": "postmark"}, password="pw")
    assert (await client.get("/webhooks/service/postmark")).status_code == 405


@pytest.mark.parametrize("provider", sorted(BASIC_AUTH))
async def test_basic_auth_providers_fail_closed(make_client, secrets, db, provider):
    client = await enable(make_client, secrets, provider, {"username": "hook"}, password="s3cret-pw")
    content = orjson.dumps(BASIC_AUTH[provider])
    for headers in (
        {},
        basic("hook", "wrong"),
        basic("other", "s3cret-pw"),
        basic("hook", ""),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic \u00e9t\u00e9".encode("latin-1")},  # not ASCII, so not base64
        {"Authorization": "Bearer s3cret-pw"},
        {"Authorization": "Basic " + base64.b64encode(b"hook").decode()},
        {"Authorization": "Basic " + base64.b64encode("hook:s3cret-pw\u00e9".encode()).decode()},
    ):
        response = await post(client, provider, content, headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Basic realm=")
    assert rows(db) == []
    assert await metric(client, f'bounce_auth_failures_total{{provider="{provider}"}}')
    response = await post(client, provider, content, basic("hook", "s3cret-pw"))
    assert response.status_code == 200 and [r["type"] for r in rows(db)] == ["hard"]


@pytest.mark.parametrize("provider, content", [(name, b"{not json") for name in sorted(BASIC_AUTH)])
async def test_malformed_json_from_an_authenticated_provider_is_400(make_client, secrets, db, provider, content):
    client = await enable(make_client, secrets, provider, {"username": "hook"}, password="pw")
    response = await post(client, provider, content, basic("hook", "pw"))
    assert response.status_code == 400 and response.json()["message"].startswith("Invalid data")


def test_an_empty_secret_stops_the_start(make_config, secrets):
    (secrets.directory / "mailgun").mkdir()
    (secrets.directory / "mailgun" / "secret").write_text("\n")
    config = make_config(webhooks={"mailgun": {"enabled": True, "secret": {"secretRef": {"name": "mailgun", "key": "secret"}}}})
    with pytest.raises(ConfigError) as caught:
        create_app(config)
    assert caught.value.problems == ["spec.webhooks.mailgun.secret: a non-empty secret is required"]


# An empty or short key would accept signatures anyone can make.
@pytest.mark.parametrize("secret", ["whsec_not*base64", "whsec_", "whsec_AA==", "whsec_" + "A" * 20])
def test_a_bad_resend_secret_stops_the_start(make_config, secrets, secret):
    (secrets.directory / "resend").mkdir()
    (secrets.directory / "resend" / "secret").write_text(secret)
    config = make_config(webhooks={"resend": {"enabled": True, "secret": {"secretRef": {"name": "resend", "key": "secret"}}}})
    with pytest.raises(ConfigError, match=r"spec\.webhooks\.resend\.secret: not a Svix signing secret"):
        create_app(config)


def _sendgrid_key() -> str:
    der = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


# Every provider, enabled the way its setup guide says: (section, secret values).
ENABLED = {
    "ses": ({"topicArns": ["arn:aws:sns:us-east-1:123456789012:ses-feedback"]}, {}),
    "sendgrid": ({}, {"verificationKey": _sendgrid_key()}),
    "postmark": ({"username": "hook"}, {"password": "pw"}),
    "forwardemail": ({}, {"secret": "key"}),
    "lettermint": ({}, {"secret": "key"}),
    "azure": ({"secretHeader": "X-Hook-Secret"}, {"secret": "key"}),
    "mailgun": ({}, {"secret": "key"}),
    "brevo": ({"username": "hook"}, {"password": "pw"}),
    "mailjet": ({"username": "hook"}, {"password": "pw"}),
    "sparkpost": ({"username": "hook"}, {"password": "pw"}),
    "resend": ({}, {"secret": "whsec_" + base64.b64encode(b"resend-signing-secret").decode()}),
}
# Every header any provider reads, filled with bytes no provider sends (latin-1, not ASCII).
HOSTILE_HEADERS = {
    name: "\u00e9\u00ff=,".encode("latin-1") for name in (
        "Authorization", "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp",
        "X-Webhook-Signature", "X-Lettermint-Signature", "X-Hook-Secret", "aeg-event-type", "svix-id",
        "svix-timestamp", "svix-signature", "webhook-signature", "x-amz-sns-message-type")
}
GARBAGE = [
    ({}, b""),
    ({}, b"{not json"),
    ({"Content-Type": "application/json"}, b"null"),
    ({}, b"[]"),
    ({}, b"[" * 5000 + b"]" * 5000),
    ({"x-amz-sns-message-type": "Notification", "aeg-event-type": "SubscriptionValidation"},
     b'{"Type": "Notification", "signature": {"timestamp": "1e999", "token": "t", "signature": "00"}}'),
    (HOSTILE_HEADERS, b'{"signature": {"timestamp": "\\u00e9", "token": "\\u00e9", "signature": "\\u00e9"}}'),
    ({}, b'{"signature": {"timestamp": "1700000000", "token": "t", "signature": 12345}}'),
]


@pytest.mark.parametrize("provider", sorted(ENABLED))
async def test_unauthenticated_garbage_is_refused_without_a_5xx_and_writes_nothing(make_client, secrets, db, provider):
    section, values = ENABLED[provider]
    client = await enable(make_client, secrets, provider, section, **values)
    for headers, content in GARBAGE:
        response = await post(client, provider, content, headers)
        assert response.status_code in (400, 401, 403), (headers, content[:40], response.status_code)
        assert "message" in response.json()
    for value in ("", "\u00e9t\u00e9"):
        response = await post(client, provider, b"{}", params={"code": value})
        assert response.status_code in (400, 401, 403)
    assert rows(db) == []


@pytest.mark.parametrize("provider", sorted(name for name, (_, values) in ENABLED.items() if values))
def test_every_provider_refuses_to_start_without_its_secret(make_config, secrets, provider):
    section, values = ENABLED[provider]
    refs = {key: {"secretRef": {"name": "nowhere", "key": key}} for key in values}
    with pytest.raises(ConfigError) as caught:
        create_app(make_config(webhooks={provider: {"enabled": True, **section, **refs}}))
    assert all(problem.startswith(f"spec.webhooks.{provider}.") for problem in caught.value.problems)
    without = {key: value for key, value in section.items() if key != "username"}
    with pytest.raises(ConfigError):  # the CRD's own rule: enabled requires the secret (and a username)
        create_app(make_config(webhooks={provider: {"enabled": True, **without}}))
