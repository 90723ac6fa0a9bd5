"""POST /webhooks/service/{provider}: what every provider shares (dispatch, refusals, fail-closed)."""

from __future__ import annotations

import base64

import orjson
import pytest

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


def test_a_bad_resend_secret_stops_the_start(make_config, secrets):
    (secrets.directory / "resend").mkdir()
    (secrets.directory / "resend" / "secret").write_text("whsec_not*base64")
    config = make_config(webhooks={"resend": {"enabled": True, "secret": {"secretRef": {"name": "resend", "key": "secret"}}}})
    with pytest.raises(ConfigError, match=r"spec\.webhooks\.resend\.secret: not a Svix signing secret"):
        create_app(config)
