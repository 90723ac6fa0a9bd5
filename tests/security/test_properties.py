"""Property-based tests: the parser survives any input; no provider's verifier accepts a tampered request.

Every provider is here: the signed ones (SES/SNS RSA, SendGrid ECDSA, the HMACs of Lettermint, Resend,
Forward Email and Mailgun) with their payloads and signatures mutated, and the ones that authenticate
with a credential (HTTP Basic for Postmark, Brevo, Mailjet and SparkPost; Azure's shared secret) with
that credential mutated.
"""

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

from cryptography.hazmat.primitives.asymmetric import rsa

from bounce_service import parse_bounce
from bounce_service.config import build_config
from bounce_service.errors import ApiError
from bounce_service.providers import REGISTRY, Inbound
from bounce_service.providers._base import BasicAuthProvider
from bounce_service.providers.azure import Azure
from bounce_service.providers.ses import Ses
from bounce_service.providers.forwardemail import ForwardEmail
from bounce_service.providers.lettermint import Lettermint
from bounce_service.providers.mailgun import Mailgun
from bounce_service.providers.resend import Resend
from bounce_service.providers.sendgrid import SendGrid
from bounce_service.secrets import Secret, SecretSource
from tests.service import test_provider_forwardemail, test_provider_lettermint, test_provider_mailgun, test_provider_resend
from tests.service.providers_helpers import basic, hex_hmac
from tests.service.test_provider_ses import AWS_CERT_URL, TOPIC, RecordingFetcher, _certificate, _pem, bounce, envelope, sign
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

def receive(provider, body: bytes, headers: dict[str, str], query: str = ""):
    return asyncio.run(provider.receive(Inbound(body=body, headers=Headers(headers), query=QueryParams(query))))


def refused(provider, body: bytes, headers: dict[str, str], query: str = "", statuses=(400, 401)) -> bool:
    try:
        receive(provider, body, headers, query)
    except ApiError as exc:
        return exc.status in statuses
    return False


def configured(name: str, section: dict, **secret_values: str):
    """Provider `name` built from its section with the CRD's defaults, as the service builds it."""
    refs = {key: {"secretRef": {"name": name, "key": key}} for key in secret_values}
    environ = {f"BOUNCE_SECRET_{name}_{key}".upper(): value for key, value in secret_values.items()}
    spec = {"webhooks": {name: {"enabled": True, **section, **refs}}}
    config = build_config(spec, secrets=SecretSource(directory=None, environ=environ), environ={"DATABASE_URL": "postgresql://x"})
    return config.webhooks[name]


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


# ---- SES: RSA signatures over the SNS fields ----------------------------------------------------------

SNS_KEY = rsa.generate_private_key(65537, 2048)
SNS_PEM = _pem(_certificate("sns.amazonaws.com", SNS_KEY, "sns.amazonaws.com", SNS_KEY))
SIGNED_SNS = sign(SNS_KEY, envelope(bounce()), AWS_CERT_URL)
# SigningCertURL is left out: this fetcher returns the same certificate for any URL, so changing the URL
# proves nothing here (the SSRF tests of test_provider_ses.py cover which URLs are ever fetched).
SNS_MUTABLE = ["Message", "MessageId", "Timestamp", "TopicArn", "Type", "Signature", "SignatureVersion"]


def ses() -> Ses:
    return Ses(configured("ses", {"topicArns": [TOPIC]}), fetcher=RecordingFetcher(SNS_PEM))


def test_the_untampered_sns_notification_is_accepted():
    assert len(receive(ses(), orjson.dumps(SIGNED_SNS), {"x-amz-sns-message-type": "Notification"}).events) == 1


@settings(max_examples=150, database=None)
@given(field=st.sampled_from(SNS_MUTABLE), position=st.integers(0, 10_000), value=st.integers(32, 126))
def test_a_tampered_sns_notification_is_never_accepted(field, position, value):
    original = SIGNED_SNS[field].encode()
    mutated = tamper(original, position, value)
    assume(field != "Signature" or decoded(mutated) != decoded(original))
    message = {**SIGNED_SNS, field: mutated.decode("latin-1")}
    # 403: a topic not allowed; either way nothing is accepted.
    assert refused(ses(), orjson.dumps(message), {"x-amz-sns-message-type": "Notification"}, statuses=(400, 401, 403))


# ---- HTTP Basic and Azure's shared secret ---------------------------------------------------------------

BASIC_PROVIDERS = sorted(name for name, cls in REGISTRY.items() if issubclass(cls, BasicAuthProvider))
BASIC_PASSWORD = "basic-property-password"


def test_the_basic_auth_providers_are_the_four_known_ones():
    assert BASIC_PROVIDERS == ["brevo", "mailjet", "postmark", "sparkpost"]


@pytest.mark.parametrize("name", BASIC_PROVIDERS)
@settings(max_examples=100, database=None)
@given(position=st.integers(0, 1000), value=st.integers(33, 126))
def test_a_tampered_basic_credential_is_never_accepted(name, position, value):
    provider = REGISTRY[name](configured(name, {"username": name}, password=BASIC_PASSWORD))
    header = basic(name, BASIC_PASSWORD)["Authorization"].encode()
    mutated = tamper(header, position, value)
    scheme, _, encoded = mutated.partition(b" ")
    assume(decoded(encoded) != decoded(header.partition(b" ")[2]) or scheme.lower() != b"basic")
    assert refused(provider, b"{}", {"Authorization": mutated.decode("latin-1")})


AZURE_SECRET = "azure-property-secret"


def azure() -> Azure:
    return Azure(configured("azure", {"secretHeader": "X-Bounce-Secret"}, secret=AZURE_SECRET))


def test_azure_accepts_its_secret_in_the_query_or_the_header():
    receive(azure(), b"[]", {}, f"code={AZURE_SECRET}")
    receive(azure(), b"[]", {"X-Bounce-Secret": AZURE_SECRET})


@settings(max_examples=150, database=None)
@given(where=st.sampled_from(["query", "header"]), position=st.integers(0, 1000), value=st.integers(33, 126))
def test_a_tampered_azure_secret_is_never_accepted(where, position, value):
    mutated = tamper(AZURE_SECRET.encode(), position, value).decode("latin-1")
    if where == "query":
        assert refused(azure(), b"[]", {}, str(QueryParams({"code": mutated})))
    else:
        assert refused(azure(), b"[]", {"X-Bounce-Secret": mutated})


def test_every_provider_has_a_tampering_test_here():
    signed = {"sendgrid", "lettermint", "resend", "forwardemail", "mailgun", "ses"}
    assert signed | set(BASIC_PROVIDERS) | {"azure"} == set(REGISTRY)
