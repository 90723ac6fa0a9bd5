"""Property-based tests: the parser survives any input; verifiers never accept a tampered request."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers, QueryParams

from bounce_service import parse_bounce
from bounce_service.errors import ApiError
from bounce_service.providers import Inbound
from bounce_service.providers.forwardemail import ForwardEmail
from bounce_service.providers.lettermint import Lettermint
from bounce_service.providers.mailgun import Mailgun
from bounce_service.providers.resend import Resend
from bounce_service.providers.sendgrid import SendGrid
from bounce_service.secrets import Secret
from tests.service import test_provider_forwardemail, test_provider_lettermint, test_provider_mailgun, test_provider_resend
from tests.service.providers_helpers import hex_hmac
from tests.service.test_provider_sendgrid import Signer, event

CORPUS = sorted((Path(__file__).parent.parent / "fixtures" / "corpus" / "emails").glob("*.eml"))
# A generous bound per input: the parser bounds its own work; this only catches a hang.
BOUNDED = settings(deadline=2000, suppress_health_check=[HealthCheck.too_slow], database=None, max_examples=300)


def check_result(found) -> None:
    assert isinstance(found, list)
    for bounce in found:
        assert bounce.type in ("hard", "soft", "complaint") and "@" in bounce.email


@BOUNDED
@given(st.binary(max_size=20_000))
def test_parser_never_raises_on_arbitrary_bytes(raw):
    check_result(parse_bounce(raw))


@st.composite
def mutated_messages(draw):
    raw = bytearray(CORPUS[draw(st.integers(0, len(CORPUS) - 1))].read_bytes())
    for _ in range(draw(st.integers(1, 8))):
        operation = draw(st.sampled_from(["flip", "cut", "insert", "duplicate"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if operation == "flip" and raw:
            raw[at] = draw(st.integers(0, 255))
        elif operation == "cut":
            del raw[at:at + draw(st.integers(1, 4000))]
        elif operation == "insert":
            raw[at:at] = draw(st.sampled_from([b"\r\n--", b"Content-Type: multipart/mixed; boundary=x\r\n",
                                               b"\x00\xff", b"=?utf-8?B?////?=", b"\r\n\r\n", b"<" * 500]))
        else:
            raw[at:at] = raw[at:at + draw(st.integers(1, 2000))] * draw(st.integers(2, 20))
    return bytes(raw)


@BOUNDED
@given(mutated_messages())
def test_parser_never_raises_on_mutated_real_bounces(raw):
    check_result(parse_bounce(raw))


# ---- verifiers ----------------------------------------------------------------------------------------

def receive(provider, body: bytes, headers: dict[str, str]):
    return asyncio.run(provider.receive(Inbound(body=body, headers=Headers(headers), query=QueryParams(""))))


def refused(provider, body: bytes, headers: dict[str, str]) -> bool:
    try:
        receive(provider, body, headers)
    except ApiError as exc:
        return exc.status in (400, 401)
    return False


def tamper(data: bytes, position: int, value: int) -> bytes:
    """Change one byte. Never only its letter case: hex signatures are case-insensitive, so 'e' -> 'E'
    is the same signature, not a forgery."""
    position %= len(data)
    replacement = value
    while chr(replacement).lower() == chr(data[position]).lower():
        replacement = (replacement + 1) % 256
    return data[:position] + bytes([replacement]) + data[position + 1:]


def decoded(value: bytes) -> bytes | None:
    try:
        return base64.b64decode(value.removeprefix(b"v1,"))
    except ValueError:
        return None


SENDGRID_SIGNER = Signer()
SENDGRID_BODY = orjson.dumps([event(), event(email="other@example.com", sg_event_id="other")]) + b"\r\n"
HMAC_BODY = orjson.dumps(test_provider_lettermint.EVENT)
FORWARDEMAIL_BODY = orjson.dumps(test_provider_forwardemail.BOUNCE)


def providers():
    sendgrid = SendGrid({"enabled": True, "verificationKey": Secret(SENDGRID_SIGNER.public_base64()), "maxAge": "10m"})
    lettermint = Lettermint({"enabled": True, "secret": Secret(test_provider_lettermint.KEY), "maxAge": "5m"})
    resend = Resend({"enabled": True, "secret": Secret(test_provider_resend.SECRET), "maxAge": "5m"})
    forwardemail = ForwardEmail({"enabled": True, "secret": Secret(test_provider_forwardemail.KEY)})
    return {
        "sendgrid": (sendgrid, SENDGRID_BODY, SENDGRID_SIGNER.headers(SENDGRID_BODY)),
        "lettermint": (lettermint, HMAC_BODY, test_provider_lettermint.signed(HMAC_BODY)),
        "resend": (resend, HMAC_BODY, test_provider_resend.signed(HMAC_BODY)),
        "forwardemail": (forwardemail, FORWARDEMAIL_BODY,
                         {"X-Webhook-Signature": hex_hmac(test_provider_forwardemail.KEY, FORWARDEMAIL_BODY)}),
    }


@pytest.mark.parametrize("name", ["sendgrid", "lettermint", "resend", "forwardemail"])
def test_the_untampered_request_is_accepted(name):
    provider, body, headers = providers()[name]
    receive(provider, body, headers)  # raises if refused


@pytest.mark.parametrize("name", ["sendgrid", "lettermint", "resend", "forwardemail"])
@settings(max_examples=150, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_a_tampered_body_is_never_accepted(name, position, value):
    provider, body, headers = providers()[name]
    assert refused(provider, tamper(body, position, value), headers)


@pytest.mark.parametrize("name", ["sendgrid", "lettermint", "resend", "forwardemail"])
@settings(max_examples=150, database=None)
@given(data=st.data())
def test_a_tampered_signature_header_is_never_accepted(name, data):
    provider, body, headers = providers()[name]
    header = data.draw(st.sampled_from(sorted(h for h in headers if h.lower() != "content-type")))
    mutated = tamper(headers[header].encode(), data.draw(st.integers(0, 1000)), data.draw(st.integers(33, 126)))
    # Base64 has slack (unused trailing bits, ignorable characters): a change that decodes to the same
    # signature bytes is the same signature, not a forgery.
    assume(decoded(mutated) is None or decoded(mutated) != decoded(headers[header].encode()))
    assert refused(provider, body, {**headers, header: mutated.decode("latin-1")})


@settings(max_examples=150, database=None)
@given(field=st.sampled_from(["timestamp", "token", "signature"]), position=st.integers(0, 1000),
       value=st.integers(48, 122))
def test_mailgun_never_accepts_a_tampered_signature_block(field, position, value):
    provider = Mailgun({"enabled": True, "secret": Secret(test_provider_mailgun.KEY), "maxAge": "9h"})
    payload = json.loads(test_provider_mailgun.signed(test_provider_mailgun.event_data()))
    original = payload["signature"][field].encode()
    payload["signature"][field] = tamper(original, position, value).decode("latin-1")
    assert refused(provider, orjson.dumps(payload), {"Content-Type": "application/json"})
