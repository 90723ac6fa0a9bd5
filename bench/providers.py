"""Provider webhooks: a 1,000-event SendGrid batch end to end (ms), SNS notifications per second, and
1,000 SNS notifications/s sustained for 60 s.

    python bench/providers.py [--rounds 15] [--notifications 2000] [--concurrency 32]
                              [--sustain-rate 1000] [--sustain-seconds 60]

Both run through the whole app in this process (ASGI: routing, signature verification, parsing, the
recorder's commit on a durable PostgreSQL), each next to a baseline measured in the same run: the same
events posted to the native webhook, which has no signature to check. The SNS signing certificate comes
from an in-process fetcher (cached after the first message, as in production); nothing leaves the host.

The sustained run goes to the app in 2 real uvicorn workers (bench/_sns_app.py; this process only sends):
distinct signed notifications on a fixed schedule (open loop: a slow answer does not slow the sender),
counting errors and latency, and the workers' resident memory every second. Its baselines are the target
rate and the memory after the first 10 s (the warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable, ContextManager, Iterator

import httpx
import orjson
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import TOKEN, database, progress, uvicorn_app, workdir  # noqa: E402
from bench._sns_app import FileFetcher  # noqa: E402
from bench.bulk import rss_mib  # noqa: E402
from bounce_service.app import create_app  # noqa: E402
from bounce_service.config import build_config  # noqa: E402
from bounce_service.migrate import migrate  # noqa: E402
from bounce_service.providers.ses import Ses  # noqa: E402
from bounce_service.secrets import SecretSource  # noqa: E402

TOPIC = "arn:aws:sns:us-east-1:123456789012:bench"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-bench.pem"
NATIVE_AUTH = ("bench", TOKEN)
SNS_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUSTAIN_SENDERS = 64  # connections of the sustained run: AWS too delivers over many at once


def signing_certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def app_config(work: Path, db_url: str, sendgrid_key: ec.EllipticCurvePrivateKey):
    """The bench's service config (written to `work` too, for the sustained run's server)."""
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
    manifest = {"apiVersion": "bounce-operator.io/v1alpha1", "kind": "BounceConfig", "metadata": {"name": "bench"},
                "spec": {**spec, "service": {"workers": 2, "logLevel": "warning"}}}
    (work / "providers.yaml").write_text(yaml.safe_dump(manifest))
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
    """A signed SNS notification of one SES bounce to a recipient of its own."""
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


def _sign_many(pem: bytes, count: int) -> list[bytes]:
    key = serialization.load_pem_private_key(pem, password=None)
    return [sns_notification(key) for _ in range(count)]


def signed_notifications(key: rsa.RSAPrivateKey, count: int) -> list[bytes]:
    """`count` notifications signed on every core (about 1 ms of RSA each), with progress."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    chunk = 2000
    notifications: list[bytes] = []
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for part in pool.map(_sign_many, [pem] * -(-count // chunk), [min(chunk, count - start) for start in range(0, count, chunk)]):
            notifications += part
            progress(f"signed {len(notifications):,} of {count:,} SNS notifications")
    return notifications


def sns_server(work: Path, db_url: str, certificate: bytes) -> ContextManager[str]:
    """The app in 2 uvicorn workers (the service's settings), its SNS certificate from a file."""
    (work / "sns.pem").write_bytes(certificate)
    env = {**os.environ, "DATABASE_URL": db_url, "BOUNCE_CONFIG": str(work / "providers.yaml"),
           "BOUNCE_SECRETS_DIR": str(work / "secrets"), "BENCH_SNS_CERT": str(work / "sns.pem"),
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="bench-metrics-", dir=work)}
    return uvicorn_app("bench._sns_app:app", ready="/readyz", env=env, factory=True)


async def post_forever(url: str, requests: Iterator[tuple[int, bytes]], pace: Callable[[int], Awaitable[None]],
                       answered: Callable[[int, float], None]) -> None:
    """POST each SNS body of `requests`, once `pace` lets it go, on one kept-alive HTTP/1.1 connection.

    A sender far lighter than httpx, whose connection pool costs milliseconds per request at this rate
    and would be the bottleneck instead of the service.
    """
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (b"POST /webhooks/service/ses HTTP/1.1\r\nHost: bench\r\nx-amz-sns-message-type: Notification\r\n"
            b"Content-Type: text/plain; charset=UTF-8\r\nContent-Length: ")
    try:
        for index, body in requests:
            await pace(index)
            sent = time.perf_counter()
            writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            answered(status, time.perf_counter() - sent)
    finally:
        writer.close()


async def sustained(url: str, notifications: list[bytes], rate: int, senders: int) -> dict[str, float]:
    """Send `notifications` at `rate` per second on a fixed schedule; errors, latency and memory per second.

    `senders` connections take the notifications in order, each waiting for its due time: a slow answer
    delays only its own connection, and the rate falls behind the schedule only if all of them are busy.
    """
    latencies: list[float] = []
    failures = 0
    memory: list[float] = []
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def pace(index: int) -> None:
        delay = started + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    def answered(status: int, seconds: float) -> None:
        nonlocal failures
        latencies.append(seconds)
        failures += status != 200

    async def monitor() -> None:
        while True:
            memory.append(rss_mib())
            progress(f"sustained SNS: {len(memory) - 1} s, {len(latencies):,} answered, {failures} failed, "
                     f"RSS {memory[-1]:.0f} MiB")
            await asyncio.sleep(1)

    watching = asyncio.create_task(monitor())
    queue = iter(enumerate(notifications))
    await asyncio.gather(*(post_forever(url, queue, pace, answered) for _ in range(senders)))
    took = loop.time() - started
    watching.cancel()
    memory.append(rss_mib())
    latencies.sort()
    return {"rate": len(notifications) / took, "failures": failures, "seconds": took,
            "p50": latencies[len(latencies) // 2] * 1000, "p99": latencies[int(len(latencies) * 0.99)] * 1000,
            "rss_warm": memory[min(10, len(memory) - 1)], "rss_end": memory[-1], "rss_peak": max(memory)}


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


async def run(args: argparse.Namespace, db_url: str, work: Path) -> int:
    await migrate(db_url)
    sendgrid_key = ec.generate_private_key(ec.SECP256R1())
    sns_key = rsa.generate_private_key(65537, 2048)
    app = create_app(app_config(work, db_url, sendgrid_key))
    app.state.providers["ses"] = Ses(app.state.config.webhooks["ses"], fetcher=FileFetcher(signing_certificate(sns_key)))
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


    held = None
    if args.sustain_seconds:
        notifications = signed_notifications(sns_key, args.sustain_rate * args.sustain_seconds)
        with sns_server(work, db_url, signing_certificate(sns_key)) as url:
            progress(f"{args.sustain_rate:,} SNS notifications/s for {args.sustain_seconds} s against {url}")
            held = await sustained(url, notifications, args.sustain_rate, SUSTAIN_SENDERS)

    sendgrid_median, native_median = statistics.median(sendgrid_ms), statistics.median(native_ms)
    rows = [
        (f"SendGrid 1,000-event batch, end to end, median of {args.rounds} (ms)", f"{sendgrid_median:.1f}"),
        ("native webhook, the same 1,000 events (baseline, ms)", f"{native_median:.1f}"),
        ("ratio SendGrid / native", f"{sendgrid_median / native_median:.2f}"),
        (f"SNS notifications/s ({args.notifications}, {args.concurrency} in flight)", f"{sns_rate:.0f}"),
        ("native single bounces/s (baseline)", f"{native_rate:.0f}"),
        ("ratio SNS / native", f"{sns_rate / native_rate:.2f}"),
    ]
    if held is not None:
        rows += [
            (f"sustained SNS notifications/s (target {args.sustain_rate:,}/s for {args.sustain_seconds} s)", f"{held['rate']:.0f}"),
            ("ratio achieved / target", f"{held['rate'] / args.sustain_rate:.2f}"),
            ("sustained: failed requests", f"{held['failures']}"),
            ("sustained: p50 / p99 latency (ms)", f"{held['p50']:.1f} / {held['p99']:.1f}"),
            ("sustained: RSS after 10 s warm-up (baseline, MiB)", f"{held['rss_warm']:.0f}"),
            ("sustained: RSS at the end / peak (MiB)", f"{held['rss_end']:.0f} / {held['rss_peak']:.0f}"),
            ("ratio RSS end / after warm-up", f"{held['rss_end'] / held['rss_warm']:.2f}"),
        ]
    print()
    for label, value in rows:
        print(f"{label:<72}{value:>14}")
    return 1 if held is not None and held["failures"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--notifications", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sustain-rate", type=int, default=1000, help="notifications per second of the sustained run")
    parser.add_argument("--sustain-seconds", type=int, default=60, help="length of the sustained run (0: skip it)")
    args = parser.parse_args()
    work = workdir()
    with database(work) as db:
        return asyncio.run(run(args, db.url, work))


if __name__ == "__main__":
    sys.exit(main())
