"""Amazon SES via SNS: signature versions 1 and 2, certificate URL allow-list and cache, topics,
subscription handshakes, and the SES bounce/complaint mapping. Certificates come from a local HTTPS
server (a test CA on 127.0.0.1); nothing here touches the network."""

from __future__ import annotations

import asyncio
import base64
import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bounce_service.providers._sns import FetchError, HttpsFetcher
from bounce_service.providers.ses import Ses
from tests.service.providers_helpers import (
    CAMPAIGN, add_campaign, add_subscriber, by_email, enable, post, redelivered_once, replace_provider, rows, subscriber_status,
)

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
LOCAL_HOST = r"127\.0\.0\.1:[0-9]+"
CERT_PATH = "/SimpleNotificationService-0123456789abcdef.pem"
AWS_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class SnsServer:
    """An HTTPS server on 127.0.0.1 standing in for sns.<region>.amazonaws.com."""

    base: str
    client_context: ssl.SSLContext
    signing_key: rsa.RSAPrivateKey
    requests: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return self.base + CERT_PATH

    def fetcher(self) -> HttpsFetcher:
        return HttpsFetcher(context=self.client_context, timeout=5)


@pytest.fixture(scope="module")
def sns_server(tmp_path_factory) -> Iterator[SnsServer]:
    ca_key = rsa.generate_private_key(65537, 2048)
    ca_cert = _certificate("bounce-operator test CA", ca_key, "bounce-operator test CA", ca_key, ca=True)
    tls_key = rsa.generate_private_key(65537, 2048)
    tls_cert = _certificate("127.0.0.1", tls_key, "bounce-operator test CA", ca_key, ip="127.0.0.1")
    signing_key = rsa.generate_private_key(65537, 2048)
    signing_pem = _pem(_certificate("sns.amazonaws.com", signing_key, "bounce-operator test CA", ca_key))

    directory = tmp_path_factory.mktemp("sns-tls")
    (directory / "cert.pem").write_bytes(_pem(tls_cert))
    (directory / "key.pem").write_bytes(tls_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            if self.path == CERT_PATH:
                payload, status = signing_pem, 200
            elif self.path.startswith("/?Action=ConfirmSubscription&") and "Token=expired" not in self.path:
                payload, status = b"<ConfirmSubscriptionResponse/>", 200
            else:
                payload, status = b"not found", 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cadata=_pem(ca_cert).decode())
    yield SnsServer(f"https://127.0.0.1:{server.server_address[1]}", client_context, signing_key, requests)
    server.shutdown()
    server.server_close()


def sign(key: rsa.RSAPrivateKey, message: dict, cert_url: str, version: str = "2") -> dict:
    """Signs as SNS does: `Name\\nValue\\n` for each signed field present, in AWS's order."""
    fields = NOTIFICATION_FIELDS if message["Type"] == "Notification" else CONFIRMATION_FIELDS
    text = "".join(f"{name}\n{message[name]}\n" for name in fields if name in message)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": cert_url}


def now_iso(offset: float = 0) -> str:
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(ses_message: dict | str, **fields) -> dict:
    message = ses_message if isinstance(ses_message, str) else orjson.dumps(ses_message).decode()
    return {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC, "Message": message,
            "Timestamp": now_iso(), "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", **fields}


def bounce(bounce_type: str = "Permanent", sub_type: str = "General", recipients: list[dict] | None = None,
           key: str = "eventType") -> dict:
    return {
        key: "Bounce",
        "bounce": {"bounceType": bounce_type, "bounceSubType": sub_type,
                   "bouncedRecipients": recipients or [{"emailAddress": "recipient@example.com", "action": "failed",
                                                        "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                   "timestamp": "2017-08-05T00:41:02.669Z", "feedbackId": f"01000157c44f053b-{uuid.uuid4()}-000000",
                   "reportingMTA": "dsn; mta.example.com"},
        "mail": {"timestamp": "2017-08-05T00:40:02.012Z", "source": "sender@example.com",
                 "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
                 "destination": ["recipient@example.com"], "headersTruncated": False,
                 "headers": [{"name": "From", "value": "sender@example.com"},
                             {"name": "X-Listmonk-Campaign", "value": CAMPAIGN}]},
    }


def complaint(key: str = "notificationType", feedback_type: str = "abuse") -> dict:
    return {
        key: "Complaint",
        "complaint": {"userAgent": "ExampleCorp Feedback Loop (V0.01)",
                      "complainedRecipients": [{"emailAddress": "Recipient1@example.com"}],
                      "complaintFeedbackType": feedback_type, "arrivalDate": "2009-12-03T04:24:21.000-05:00",
                      "timestamp": "2012-05-25T14:59:38.623Z", "feedbackId": "000001378603177f-18c07c78-000000"},
        "mail": {"timestamp": "2012-05-25T14:59:30.000Z", "source": "sender@example.com",
                 "messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
                 "destination": ["recipient1@example.com"], "tags": {"campaign_uuid": [CAMPAIGN]}},
    }


def confirmation(kind: str, subscribe_url: str, token: str, topic: str = TOPIC) -> dict:
    return {"Type": kind, "MessageId": str(uuid.uuid4()), "Token": token, "TopicArn": topic,
            "Message": f"{kind} for {topic}", "Timestamp": now_iso(), "SubscribeURL": subscribe_url}


def local_subscribe_url(server: SnsServer, token: str) -> str:
    return f"{server.base}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"


@pytest.fixture
async def ses(make_client, secrets, sns_server):
    client = await enable(make_client, secrets, "ses", {"topicArns": [TOPIC]})
    replace_provider(client, Ses, fetcher=sns_server.fetcher(), sns_host=LOCAL_HOST)
    return client


async def deliver(client, message: dict, kind: str | None = None):
    headers = {"x-amz-sns-message-type": kind or message["Type"], "Content-Type": "text/plain; charset=UTF-8"}
    return await post(client, "ses", orjson.dumps(message), headers)


async def test_a_bounce_is_recorded_per_recipient_with_campaign_time_and_meta(ses, sns_server, db):
    add_campaign(db)
    sub = add_subscriber(db, "recipient@example.com")
    notification = envelope(bounce(recipients=[
        {"emailAddress": "recipient@example.com", "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
        {"emailAddress": "second@example.com", "action": "failed", "status": "5.1.1"},
    ]), Subject="Amazon SES Email Event Notification")
    response = await deliver(ses, sign(sns_server.signing_key, notification, sns_server.cert_url))
    assert response.status_code == 200 and response.json() == {"data": True}
    found = by_email(db)
    first = found["recipient@example.com"]
    assert set(found) == {"recipient@example.com", "second@example.com"}
    assert (first["type"], first["source"], first["campaign"]) == ("hard", "ses", CAMPAIGN)
    assert first["created_at"].isoformat() == "2017-08-05T00:41:02.669000+00:00"  # the bounce, not the send
    feedback_id = orjson.loads(notification["Message"])["bounce"]["feedbackId"]
    assert first["event_key"] == f"ses:{feedback_id}:recipient@example.com"
    assert first["meta"]["bounceSubType"] == "General" and first["meta"]["status"] == "5.1.1"
    assert first["meta"]["topic_arn"] == TOPIC and first["meta"]["diagnosticCode"] == "smtp; 550 5.1.1 user unknown"
    assert subscriber_status(db, sub) == "blocklisted"


async def test_signature_version_1_and_identity_complaints(ses, sns_server, db):
    add_campaign(db)
    message = sign(sns_server.signing_key, envelope(complaint()), sns_server.cert_url, version="1")
    assert (await deliver(ses, message)).status_code == 200
    (row,) = rows(db)
    assert (row["email"], row["type"], row["campaign"]) == ("recipient1@example.com", "complaint", CAMPAIGN)
    assert row["meta"]["complaintFeedbackType"] == "abuse"
    assert row["created_at"].isoformat() == "2012-05-25T14:59:38.623000+00:00"


@pytest.mark.parametrize("ses_message, expected", [
    (bounce("Transient", "MailboxFull", [{"emailAddress": "a@example.com", "status": "4.2.2"}]), "soft"),
    (bounce("Transient", "General", [{"emailAddress": "a@example.com", "status": "5.4.4"}]), "hard"),
    (bounce("Undetermined", "Undetermined", [{"emailAddress": "a@example.com"}]), "soft"),
    (bounce("Permanent", "Suppressed", [{"emailAddress": "a@example.com", "status": "5.1.1"}]), "hard"),
    (bounce("Permanent", "OnAccountSuppressionList", [{"emailAddress": "a@example.com"}], key="notificationType"), "hard"),
    (complaint(key="eventType"), "complaint"),  # event-publishing complaints, which listmonk rejected
])
async def test_ses_classification(ses, sns_server, db, ses_message, expected):
    assert (await deliver(ses, sign(sns_server.signing_key, envelope(ses_message), sns_server.cert_url))).status_code == 200
    assert [r["type"] for r in rows(db)] == [expected]


@pytest.mark.parametrize("ses_message", [
    {"eventType": "Delivery", "mail": {"destination": ["a@example.com"]}, "delivery": {}},
    {"notificationType": "Delivery", "mail": {}, "delivery": {}},
    {"eventType": "Open", "mail": {}, "open": {}},
    {"eventType": "DeliveryDelay", "mail": {}, "deliveryDelay": {}},
    complaint(feedback_type="not-spam"),
    "Successfully validated SNS topic for Amazon SES event publishing.",
])
async def test_non_bounce_notifications_are_accepted_and_ignored(ses, sns_server, db, ses_message):
    assert (await deliver(ses, sign(sns_server.signing_key, envelope(ses_message), sns_server.cert_url))).status_code == 200
    assert rows(db) == []


async def test_redelivery_is_recorded_once_and_the_certificate_fetched_once(ses, sns_server, db):
    fetched_before = sns_server.requests.count(CERT_PATH)
    message = sign(sns_server.signing_key, envelope(bounce()), sns_server.cert_url)
    row = await redelivered_once(db, lambda: deliver(ses, message), "recipient@example.com")
    assert row["event_key"].startswith("ses:01000157c44f053b-")
    other = sign(sns_server.signing_key, envelope(bounce(recipients=[{"emailAddress": "b@example.com"}])), sns_server.cert_url)
    assert (await deliver(ses, other)).status_code == 200
    assert sns_server.requests.count(CERT_PATH) - fetched_before == 1


async def test_one_report_in_two_sns_messages_is_recorded_once(ses, sns_server, db):
    # An identity's notifications and a configuration set's event destination both publish the same bounce.
    report = bounce()
    identity = {**report, "notificationType": report.pop("eventType")}
    for ses_message in (identity, report):
        assert (await deliver(ses, sign(sns_server.signing_key, envelope(ses_message), sns_server.cert_url))).status_code == 200
    (row,) = rows(db)
    assert row["event_key"] == f"ses:{report['bounce']['feedbackId']}:recipient@example.com"


async def test_a_report_without_a_feedback_id_is_keyed_by_its_sns_message(ses, sns_server, db):
    report = bounce()
    del report["bounce"]["feedbackId"]
    message = sign(sns_server.signing_key, envelope(report), sns_server.cert_url)
    row = await redelivered_once(db, lambda: deliver(ses, message), "recipient@example.com")
    assert row["event_key"] == f"ses:{message['MessageId']}:recipient@example.com"


async def test_a_subscription_is_confirmed_after_verification(ses, sns_server, db):
    token = uuid.uuid4().hex
    message = sign(sns_server.signing_key, confirmation("SubscriptionConfirmation", local_subscribe_url(sns_server, token), token),
                   sns_server.cert_url)
    forged = {**message, "Token": "other"}
    assert (await deliver(ses, forged)).status_code == 401
    assert not any(token in path or "other" in path for path in sns_server.requests)
    assert (await deliver(ses, message)).status_code == 200
    assert sum(token in path for path in sns_server.requests) == 1


async def test_an_unsubscribe_confirmation_does_not_subscribe_again(ses, sns_server, db):
    token = uuid.uuid4().hex
    message = sign(sns_server.signing_key, confirmation("UnsubscribeConfirmation", local_subscribe_url(sns_server, token), token),
                   sns_server.cert_url)
    assert (await deliver(ses, message)).status_code == 200
    assert not any(token in path for path in sns_server.requests)


async def test_without_auto_confirm_nothing_is_visited(make_client, secrets, sns_server, db):
    client = await enable(make_client, secrets, "ses", {"topicArns": [TOPIC], "autoConfirmSubscriptions": False})
    replace_provider(client, Ses, fetcher=sns_server.fetcher(), sns_host=LOCAL_HOST)
    token = uuid.uuid4().hex
    message = sign(sns_server.signing_key, confirmation("SubscriptionConfirmation", local_subscribe_url(sns_server, token), token),
                   sns_server.cert_url)
    assert (await deliver(client, message)).status_code == 200
    assert not any(token in path for path in sns_server.requests)


async def test_a_topic_that_is_not_allowed_is_refused_before_anything_is_fetched(ses, sns_server, db):
    requests_before = len(sns_server.requests)
    foreign = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"
    token = uuid.uuid4().hex
    for message in (
        envelope(bounce(), TopicArn=foreign),
        confirmation("SubscriptionConfirmation", local_subscribe_url(sns_server, token), token, topic=foreign),
    ):
        response = await deliver(ses, sign(sns_server.signing_key, message, sns_server.cert_url))
        assert response.status_code == 403
    assert len(sns_server.requests) == requests_before and rows(db) == []


async def test_forged_tampered_and_replayed_notifications_are_401(ses, sns_server, db):
    impostor = rsa.generate_private_key(65537, 2048)
    good = sign(sns_server.signing_key, envelope(bounce()), sns_server.cert_url)
    attempts = [
        sign(impostor, envelope(bounce()), sns_server.cert_url),
        {**good, "Message": good["Message"].replace("recipient@", "victim@")},
        {**good, "SignatureVersion": "3"},
        {**good, "Signature": "not base64!"},
        {**good, "Signature": "\u00e9" + good["Signature"][1:]},  # not ASCII: no base64 at all
        {key: value for key, value in good.items() if key != "Signature"},
        sign(sns_server.signing_key, envelope(bounce(), Timestamp=now_iso(-3 * 3600)), sns_server.cert_url),
        sign(sns_server.signing_key, envelope(bounce()), sns_server.base + "/SimpleNotificationService-missing.pem"),
    ]
    for message in attempts:
        assert (await deliver(ses, message)).status_code == 401
    assert rows(db) == []


@pytest.mark.parametrize("kind, content", [
    (None, None),  # no x-amz-sns-message-type header
    ("Notification", b"not json"),
    ("SubscriptionConfirmation", None),  # the header contradicts the body's Type
    ("Notification", orjson.dumps({"Type": "Notification", "MessageId": "m"})),  # fields missing
])
async def test_malformed_requests_are_400(ses, sns_server, db, kind, content):
    message = sign(sns_server.signing_key, envelope(bounce()), sns_server.cert_url)
    headers = {"x-amz-sns-message-type": kind} if kind else {}
    response = await post(ses, "ses", content if content is not None else orjson.dumps(message), headers)
    assert response.status_code == 400 and rows(db) == []


async def test_a_signed_bounce_without_recipients_is_400(ses, sns_server, db):
    broken = bounce()
    broken["bounce"]["bouncedRecipients"] = []
    assert (await deliver(ses, sign(sns_server.signing_key, envelope(broken), sns_server.cert_url))).status_code == 400


class RecordingFetcher:
    """Serves the test signing certificate for any URL, and remembers what it was asked for."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.calls: list[str] = []

    async def get(self, url: str) -> bytes:
        self.calls.append(url)
        return self.pem


@pytest.fixture
async def production_ses(make_client, secrets, sns_server):
    """SES with the production host pattern; the fetcher never leaves the process."""
    client = await enable(make_client, secrets, "ses", {"topicArns": [TOPIC]})
    pem = _pem(_certificate("sns", sns_server.signing_key, "sns", sns_server.signing_key))
    fetcher = RecordingFetcher(pem)
    replace_provider(client, Ses, fetcher=fetcher)
    return client, fetcher


@pytest.mark.parametrize("url", [
    "https://sns.evil.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-abc.pem",
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.txt",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem?x=.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
    "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://evil.com/sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.s3-external-1.amazonaws.com/SimpleNotificationService-abc.pem",  # an S3 bucket named "sns"
    "https://sns.us-east-1.amazonaws.com/other/SimpleNotificationService-abc.pem",
    "https://SNS.US-EAST-1.AMAZONAWS.COM/SimpleNotificationService-abc.pem",
])
async def test_look_alike_certificate_urls_are_refused_without_fetching(production_ses, sns_server, db, url):
    client, fetcher = production_ses
    assert (await deliver(client, sign(sns_server.signing_key, envelope(bounce()), url))).status_code == 401
    assert fetcher.calls == [] and rows(db) == []


@pytest.mark.parametrize("url", [
    AWS_CERT_URL,
    "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem",
    "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
])
async def test_real_sns_certificate_urls_are_fetched(production_ses, sns_server, db, url):
    client, fetcher = production_ses
    assert (await deliver(client, sign(sns_server.signing_key, envelope(bounce()), url))).status_code == 200
    assert fetcher.calls == [url]


async def test_a_look_alike_subscribe_url_is_not_visited(production_ses, sns_server, db):
    client, fetcher = production_ses
    look_alike = "https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription&Token=t"
    message = sign(sns_server.signing_key, confirmation("SubscriptionConfirmation", look_alike, "t"), AWS_CERT_URL)
    assert (await deliver(client, message)).status_code == 401
    assert fetcher.calls == [AWS_CERT_URL]


async def test_an_unreachable_certificate_host_is_503_so_sns_retries(make_client, secrets, sns_server, db):
    class Down:
        async def get(self, url: str) -> bytes:
            raise FetchError("ConnectionRefusedError", transient=True)

    client = await enable(make_client, secrets, "ses", {"topicArns": [TOPIC]})
    replace_provider(client, Ses, fetcher=Down())
    response = await deliver(client, sign(sns_server.signing_key, envelope(bounce()), AWS_CERT_URL))
    assert response.status_code == 503 and rows(db) == []


async def test_a_confirmation_that_sns_refuses_is_400_not_retried(ses, sns_server, db):
    message = sign(sns_server.signing_key, confirmation("SubscriptionConfirmation", local_subscribe_url(sns_server, "expired"),
                                                        "expired"), sns_server.cert_url)
    response = await deliver(ses, message)
    assert response.status_code == 400 and "HTTP 404" in response.json()["message"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers, like a host that has stopped responding."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


async def test_a_certificate_host_that_never_answers_times_out_as_503(make_client, secrets, sns_server, silent_server, db):
    client = await enable(make_client, secrets, "ses", {"topicArns": [TOPIC]})
    replace_provider(client, Ses, fetcher=HttpsFetcher(context=sns_server.client_context, timeout=0.2), sns_host=LOCAL_HOST)
    message = sign(sns_server.signing_key, envelope(bounce()), silent_server + CERT_PATH)
    response = await deliver(client, message)
    assert response.status_code == 503 and response.headers["retry-after"] == "5" and rows(db) == []


async def test_a_burst_on_a_cold_cache_fetches_the_certificate_once(ses, sns_server, db):
    messages = [sign(sns_server.signing_key, envelope(bounce(recipients=[{"emailAddress": f"r{i}@example.com"}])),
                     sns_server.cert_url) for i in range(8)]
    fetched_before = sns_server.requests.count(CERT_PATH)
    responses = await asyncio.gather(*(deliver(ses, message) for message in messages))
    assert [r.status_code for r in responses] == [200] * 8 and len(rows(db)) == 8
    assert sns_server.requests.count(CERT_PATH) - fetched_before == 1
