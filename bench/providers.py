"""Provider webhooks: a 1,000-event SendGrid batch end to end (ms), and SNS notifications per second.

    python bench/providers.py [--rounds 15] [--notifications 2000] [--concurrency 32]

Both run through the whole app in this process (ASGI: routing, signature verification, parsing, the
recorder's commit on a durable PostgreSQL), each next to a baseline measured in the same run: the same
events posted to the native webhook, which has no signature to check. The SNS signing certificate comes
from an in-process fetcher (cached after the first message, as in production); nothing leaves the host.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import TOKEN, database, progress, workdir  # noqa: E402
from bounce_service.app import create_app  # noqa: E402
from bounce_service.config import build_config  # noqa: E402
from bounce_service.migrate import migrate  # noqa: E402
from bounce_service.providers.ses import Ses  # noqa: E402
from bounce_service.secrets import SecretSource  # noqa: E402

TOPIC = "arn:aws:sns:us-east-1:123456789012:bench"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-bench.pem"
NATIVE_AUTH = ("bench", TOKEN)
SNS_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")


class StaticFetcher:
    def __init__(self, pem: bytes) -> None:
        self.pem = pem

    async def get(self, url: str) -> bytes:
        return self.pem


def signing_certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def app_config(work: Path, db_url: str, sendgrid_key: ec.EllipticCurvePrivateKey):
    secrets = work / "secrets"
    for name, key, value in (("api", "bench", TOKEN), ("sendgrid", "key", base64.b64encode(
            sendgrid_key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)).decode())):
        (secrets / name).mkdir(parents=True, exist_ok=True)
        (secrets / name / key).write_text(value)
    spec = {
        "api": {"users": [{"name": "bench", "token": {"secretRef": {"name": "api", "key": "bench"}},
                           "permissions": ["webhooks:post_bounce"]}]},
        "webhooks": {"sendgrid": {"enabled": True, "verificationKey": {"secretRef": {"name": "sendgrid", "key": "key"}}},
                     "ses": {"enabled": True, "topicArns": [TOPIC]}},
    }
    return build_config(spec, secrets=SecretSource(directory=secrets, environ={}), environ={"DATABASE_URL": db_url})


def sendgrid_batch(key: ec.EllipticCurvePrivateKey, size: int) -> tuple[bytes, dict[str, str]]:
    now = int(time.time())
    events = [{"email": f"sg-{uuid.uuid4().hex[:12]}@example.com", "timestamp": now, "event": "bounce", "type": "bounce",
               "sg_event_id": uuid.uuid4().hex, "status": "5.1.1", "bounce_classification": "Invalid Address",
               "reason": "550 5.1.1 user unknown", "campaign_uuid": str(uuid.uuid4())} for _ in range(size)]
    content = orjson.dumps(events) + b"\r\n"
    signature = key.sign(str(now).encode() + content, ec.ECDSA(hashes.SHA256()))
    return content, {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                     "X-Twilio-Email-Event-Webhook-Timestamp": str(now)}


def native_bounce() -> dict[str, str]:
    return {"email": f"n-{uuid.uuid4().hex[:12]}@example.com", "type": "hard", "source": "bench", "event_id": uuid.uuid4().hex}


def sns_notification(key: rsa.RSAPrivateKey) -> bytes:
    record = {"eventType": "Bounce", "mail": {"destination": ["x@example.com"], "headers": []},
              "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-11-22T10:00:00Z",
                         "bouncedRecipients": [{"emailAddress": f"sns-{uuid.uuid4().hex[:12]}@example.com", "status": "5.1.1"}]}}
    message: dict[str, Any] = {
        "Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC, "Message": orjson.dumps(record).decode(),
        "Timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    text = "".join(f"{name}\n{message[name]}\n" for name in SNS_FIELDS if name in message)
    signature = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    message.update(SignatureVersion="2", Signature=base64.b64encode(signature).decode(), SigningCertURL=CERT_URL)
    return orjson.dumps(message)


async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> float:
    started = time.perf_counter()
    response = await call()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.url.path}: {response.status_code} {response.text}")
    return elapsed


async def elapsed(calls: list[Callable[[], Awaitable[httpx.Response]]], concurrency: int) -> float:
    """Seconds to complete `calls` with `concurrency` requests in flight."""
    queue = list(reversed(calls))

    async def worker() -> None:
        while queue:
            await timed(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def rates(runs: dict[str, list[Callable[[], Awaitable[httpx.Response]]]], concurrency: int) -> dict[str, float]:
    """Requests/s per kind, measured in A-B-B-A halves so warm-up and table growth favour neither."""
    halves = {name: (calls[: len(calls) // 2], calls[len(calls) // 2:]) for name, calls in runs.items()}
    first, second = list(runs)
    seconds = dict.fromkeys(runs, 0.0)
    for name, half in ((first, 0), (second, 0), (second, 1), (first, 1)):
        progress(f"{len(halves[name][half])} x {name}, {concurrency} in flight")
        seconds[name] += await elapsed(halves[name][half], concurrency)
    return {name: len(calls) / seconds[name] for name, calls in runs.items()}


async def run(args: argparse.Namespace, db_url: str, work: Path) -> None:
    await migrate(db_url)
    sendgrid_key = ec.generate_private_key(ec.SECP256R1())
    sns_key = rsa.generate_private_key(65537, 2048)
    app = create_app(app_config(work, db_url, sendgrid_key))
    app.state.providers["ses"] = Ses(app.state.config.webhooks["ses"], fetcher=StaticFetcher(signing_certificate(sns_key)))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            sendgrid_ms, native_ms = [], []
            for round_no in range(1, args.rounds + 1):
                progress(f"1,000-event batches, round {round_no}/{args.rounds}")
                content, headers = sendgrid_batch(sendgrid_key, 1000)
                native = orjson.dumps([native_bounce() for _ in range(1000)])
                pair = [(sendgrid_ms, lambda: client.post("/webhooks/service/sendgrid", content=content, headers=headers)),
                        (native_ms, lambda: client.post("/webhooks/bounce", content=native, auth=NATIVE_AUTH))]
                for results, call in pair[:: 1 if round_no % 2 else -1]:  # alternate who goes first
                    results.append(await timed(call))

            progress(f"signing {args.notifications} SNS notifications")
            notifications = [sns_notification(sns_key) for _ in range(args.notifications)]
            sns_headers = {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain; charset=UTF-8"}
            sns_calls = [lambda body=body: client.post("/webhooks/service/ses", content=body, headers=sns_headers)
                         for body in notifications]
            native_calls = [lambda body=orjson.dumps(native_bounce()): client.post("/webhooks/bounce", content=body, auth=NATIVE_AUTH)
                            for _ in range(args.notifications)]
            measured = await rates({"native single bounce": native_calls, "SNS notification": sns_calls}, args.concurrency)
            sns_rate, native_rate = measured["SNS notification"], measured["native single bounce"]

    sendgrid_median, native_median = statistics.median(sendgrid_ms), statistics.median(native_ms)
    rows = [
        (f"SendGrid 1,000-event batch, end to end, median of {args.rounds} (ms)", f"{sendgrid_median:.1f}"),
        ("native webhook, the same 1,000 events (baseline, ms)", f"{native_median:.1f}"),
        ("ratio SendGrid / native", f"{sendgrid_median / native_median:.2f}"),
        (f"SNS notifications/s ({args.notifications}, {args.concurrency} in flight)", f"{sns_rate:.0f}"),
        ("native single bounces/s (baseline)", f"{native_rate:.0f}"),
        ("ratio SNS / native", f"{sns_rate / native_rate:.2f}"),
    ]
    print()
    for label, value in rows:
        print(f"{label:<64}{value:>10}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--notifications", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    work = workdir()
    with database(work) as db:
        asyncio.run(run(args, db.url, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
