"""Soak: mixed traffic against the real service for minutes, watching for drift in latency and memory.

    python bench/soak.py [--seconds 300] [--scan-every 5] [--sample-every 5]

`bounce-service serve` (2 workers) on a durable PostgreSQL takes, all at once and on 127.0.0.1 only:
the native webhook, SendGrid signed batches (ECDSA), Mailgun (HMAC) and Postmark (HTTP Basic), each a
bounded loop of a few concurrent requests until the deadline; meanwhile a Dovecot mailbox is refilled
with delivery reports and `bounce-service scan` empties it every few seconds, as its CronJob would.

Reports per stream throughput, p50/p99 latency and non-2xx answers; the workers' resident memory sampled
every few seconds (start, middle, end, growth); and the baseline measured in the same run: the first 20%
of the measured time against the last 20% (throughput, p99, memory), where a leak or a slowing table
would show. It exits non-zero unless every request was answered 2xx, every scan pass exited 0, every
acknowledged event is in the database exactly once, the mailbox is empty and memory stayed flat. Progress goes to stderr; the figures to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Awaitable, Callable

import httpx
import orjson
import psycopg
from psycopg.rows import dict_row
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import TOKEN, database, progress, service, workdir  # noqa: E402
from bench.providers import native_bounce, sendgrid_batch  # noqa: E402
from tests.mailbox.conftest import dsn  # noqa: E402
from tests.mailbox.dovecot import PASSWORD, Dovecot, install  # noqa: E402
from tests.service.providers_helpers import basic, hex_hmac  # noqa: E402

MAILGUN_KEY = "soak-mailgun-signing-key"
POSTMARK_PASSWORD = "soak-postmark-password"
MAILBOX = "soak-mailbox"
WARM_UP = 5.0  # seconds of traffic before measuring: pools, caches, the first scans
# A leak grows with the traffic served; allocator noise and caches filling up stay within a few percent.
MEMORY_GROWTH_ALLOWED = 1.10
Request = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@dataclass
class Stream:
    """One kind of traffic: how to make a request, how many run at once, how many events each carries."""

    name: str
    concurrency: int
    events_per_request: int
    make: Callable[[], Request]
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (start, ms, status); 0: no answer
    failures: Counter = field(default_factory=Counter)  # what each request that failed got: a status or an exception


def write_config(work: Path, dovecot: Dovecot, mail_user: str, sendgrid_key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    secrets = work / "secrets"
    public = sendgrid_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for name, key, value in (("api", "bench", TOKEN), ("sendgrid", "key", base64.b64encode(public).decode()),
                             ("mailgun", "key", MAILGUN_KEY), ("postmark", "password", POSTMARK_PASSWORD),
                             ("mail", "password", PASSWORD)):
        (secrets / name).mkdir(parents=True, exist_ok=True)
        (secrets / name / key).write_text(value)
    spec = {
        "api": {"users": [{"name": "bench", "token": {"secretRef": {"name": "api", "key": "bench"}},
                           "permissions": ["webhooks:post_bounce", "bounces:get"]}]},
        "webhooks": {
            "sendgrid": {"enabled": True, "verificationKey": {"secretRef": {"name": "sendgrid", "key": "key"}}},
            "mailgun": {"enabled": True, "secret": {"secretRef": {"name": "mailgun", "key": "key"}}},
            "postmark": {"enabled": True, "username": "postmark",
                         "password": {"secretRef": {"name": "postmark", "key": "password"}}},
        },
        "mailboxes": [{"name": MAILBOX, "protocol": "imap", "host": "127.0.0.1", "port": dovecot.port("imap", "implicit"),
                       "tls": "implicit", "tlsSkipVerify": True, "username": mail_user, "scanInterval": "1m",
                       "password": {"secretRef": {"name": "mail", "key": "password"}}}],
        "service": {"workers": 2, "logLevel": "warning"},
    }
    config = work / "soak.yaml"
    config.write_text(yaml.safe_dump({"apiVersion": "bounce-operator.io/v1alpha1", "kind": "BounceConfig",
                                      "metadata": {"name": "soak"}, "spec": spec}))
    return config, secrets


def streams(sendgrid_key: ec.EllipticCurvePrivateKey, sendgrid_batch_size: int) -> list[Stream]:
    ids = count(int(time.time()) * 1000)  # Postmark record ids: unique in this run and the next

    def native() -> Request:
        body = orjson.dumps({**native_bounce(), "source": "soak-native"})
        return lambda client: client.post("/webhooks/bounce", content=body, auth=("bench", TOKEN),
                                          headers={"Content-Type": "application/json"})

    def sendgrid() -> Request:
        content, headers = sendgrid_batch(sendgrid_key, sendgrid_batch_size)
        return lambda client: client.post("/webhooks/service/sendgrid", content=content, headers=headers)

    def mailgun() -> Request:
        stamp, token = str(int(time.time())), uuid.uuid4().hex
        event = {"event": "failed", "severity": "permanent", "reason": "bounce", "id": uuid.uuid4().hex,
                 "timestamp": time.time(), "recipient": f"mg-{uuid.uuid4().hex[:12]}@example.com",
                 "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "message": "5.1.1 user unknown"}}
        body = orjson.dumps({"signature": {"timestamp": stamp, "token": token,
                                           "signature": hex_hmac(MAILGUN_KEY, (stamp + token).encode())},
                             "event-data": event})
        return lambda client: client.post("/webhooks/service/mailgun", content=body,
                                          headers={"Content-Type": "application/json"})

    def postmark() -> Request:
        body = orjson.dumps({"RecordType": "Bounce", "Type": "HardBounce", "ID": next(ids),
                             "Email": f"pm-{uuid.uuid4().hex[:12]}@example.com", "BouncedAt": "2026-11-05T16:33:54Z",
                             "Details": "smtp;550 5.1.1 user unknown"})
        headers = {"Content-Type": "application/json", **basic("postmark", POSTMARK_PASSWORD)}
        return lambda client: client.post("/webhooks/service/postmark", content=body, headers=headers)

    return [Stream("native webhook", 8, 1, native), Stream("SendGrid batch", 2, sendgrid_batch_size, sendgrid),
            Stream("Mailgun", 3, 1, mailgun), Stream("Postmark", 3, 1, postmark)]


async def load(stream: Stream, client: httpx.AsyncClient, started: float, deadline: float) -> None:
    """`stream.concurrency` loops, each one request at a time, until the deadline."""

    async def loop() -> None:
        while time.monotonic() < deadline:
            request = stream.make()
            at = time.monotonic()
            try:
                status = (await request(client)).status_code
                outcome = str(status)
            except httpx.HTTPError as exc:
                status, outcome = 0, type(exc).__name__
            if not 200 <= status < 300:
                stream.failures[outcome] += 1
            stream.samples.append((at - started, (time.monotonic() - at) * 1000, status))

    await asyncio.gather(*(loop() for _ in range(stream.concurrency)))


@dataclass
class Scans:
    delivered: int = 0
    passes: list[tuple[float, float, int]] = field(default_factory=list)  # (start, seconds, exit status)


async def scan_once(config: Path, secrets: Path, db_url: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bounce_service", "scan", "--config", str(config), "--secrets-dir", str(secrets),
        "--mailbox", MAILBOX, env={**os.environ, "DATABASE_URL": db_url},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await process.wait()


async def scanner(user, scans: Scans, every: float, per_pass: int, started: float, deadline: float, run_scan) -> None:
    """Refill the mailbox and scan it every `every` seconds, as a CronJob with a short interval would."""
    while time.monotonic() < deadline:
        tick = time.monotonic()
        for _ in range(per_pass):
            user.deliver(dsn(f"mbx-{uuid.uuid4().hex[:12]}@example.org"))
        scans.delivered += per_pass
        status = await run_scan()
        scans.passes.append((tick - started, time.monotonic() - tick, status))
        await asyncio.sleep(max(0.0, tick + every - time.monotonic()))


def worker_pids(config: Path) -> list[int]:
    """The uvicorn workers of the `serve` process started with `config`: its children, forked from it."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
                children = (proc / "task" / proc.name / "children").read_text().split()
            except OSError:
                continue
            argv = cmdline.split(b"\0")
            workers = [int(pid) for pid in children if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline]
            if b"serve" in argv and str(config).encode() in argv and workers:
                return workers
    raise RuntimeError("the service's workers were not found")


def rss_mib(pid: int) -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def sample_memory(pids: list[int], samples: list[tuple[float, list[float]]], every: float, started: float,
                        deadline: float) -> None:
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - started, [rss_mib(pid) for pid in pids]))
        await asyncio.sleep(every)


# What PostgreSQL did meanwhile: WAL written, checkpoints begun, blocks read from outside shared_buffers.
DATABASE_SAMPLE = """
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS wal,
       (SELECT num_timed + num_requested FROM pg_stat_checkpointer) AS checkpoints,
       (SELECT blks_read FROM pg_stat_database WHERE datname = current_database()) AS blocks_read
"""


async def sample_database(db_url: str, samples: list[tuple[float, dict]], every: float, started: float,
                          deadline: float) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        while time.monotonic() < deadline:
            samples.append((time.monotonic() - started, await (await conn.execute(DATABASE_SAMPLE)).fetchone()))
            await asyncio.sleep(every)


async def report_progress(all_streams: list[Stream], scans: Scans, memory, started: float, deadline: float) -> None:
    every = max(10.0, (deadline - started) / 10)
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        done = sum(len(s.samples) for s in all_streams)
        rss = " + ".join(f"{v:.0f}" for v in memory[-1][1]) if memory else "?"
        progress(f"{time.monotonic() - started:5.0f}s: {done} requests, {len(scans.passes)} scan passes, "
                 f"workers' RSS {rss} MiB")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def window(samples, low: float, high: float):
    return [s for s in samples if low <= s[0] < high]


async def run(args: argparse.Namespace, db_url: str, work: Path, dovecot: Dovecot) -> int:
    user = dovecot.add_user()
    sendgrid_key = ec.generate_private_key(ec.SECP256R1())
    config, secrets = write_config(work, dovecot, user.name, sendgrid_key)
    all_streams = streams(sendgrid_key, args.sendgrid_batch)
    scans = Scans()
    memory: list[tuple[float, list[float]]] = []
    database: list[tuple[float, dict]] = []
    with service(db_url, config, secrets, log=work / "service.log") as url:
        pids = worker_pids(config)
        progress(f"service at {url}, workers {pids}; {args.seconds}s of mixed traffic after {WARM_UP:.0f}s of warm-up")
        limits = httpx.Limits(max_connections=sum(s.concurrency for s in all_streams))
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            started = time.monotonic()
            deadline = started + WARM_UP + args.seconds
            await asyncio.gather(
                *(load(stream, client, started, deadline) for stream in all_streams),
                scanner(user, scans, args.scan_every, args.scan_messages, started, deadline,
                        lambda: scan_once(config, secrets, db_url)),
                sample_memory(pids, memory, args.sample_every, started, deadline),
                sample_database(db_url, database, args.sample_every, started, deadline),
                report_progress(all_streams, scans, memory, started, deadline),
            )
        progress("load over; a last pass empties the mailbox")
        final_status = await scan_once(config, secrets, db_url)
        memory.append((time.monotonic() - started, [rss_mib(pid) for pid in pids]))
    if any(stream.failures for stream in all_streams):
        # What the service said about them: its log goes with the scratch directory when the run ends.
        logged = (work / "service.log").read_text().splitlines()
        progress("the service's log, its warnings and errors:\n" + "\n".join(
            line for line in logged if "WARNING" in line or "ERROR" in line or line.startswith((" ", "Traceback"))))
    with psycopg.connect(db_url) as conn:
        stored = dict(conn.execute("SELECT source, count(*) FROM bounces GROUP BY source").fetchall())
    return summarize(args, all_streams, scans, memory, database, stored, final_status, len(user.messages()))


def database_timeline(database: list[tuple[float, dict]], events: list[int], begin: float, tenth: float) -> None:
    """Per tenth of the run: WAL per stored event, checkpoints begun, blocks PostgreSQL read from the OS."""
    def at(moment: float) -> dict:
        return min(database, key=lambda sample: abs(sample[0] - moment))[1]

    marks = [at(begin + n * tenth) for n in range(11)]
    wal = [(b["wal"] - a["wal"]) / max(1, stored) / 1024 for a, b, stored in zip(marks, marks[1:], events)]
    print("timeline, WAL KiB per stored event: " + " ".join(f"{w:.1f}" for w in wal))
    print("timeline, checkpoints begun: " + " ".join(str(b["checkpoints"] - a["checkpoints"]) for a, b in zip(marks, marks[1:])))
    print("timeline, blocks read from outside shared_buffers (thousands): "
          + " ".join(f"{(b['blocks_read'] - a['blocks_read']) / 1000:.0f}" for a, b in zip(marks, marks[1:])))


def summarize(args, all_streams: list[Stream], scans: Scans, memory, database, stored: dict[str, int], final_status: int,
              left_in_mailbox: int) -> int:
    begin, end = WARM_UP, WARM_UP + args.seconds
    fifth = args.seconds / 5
    print(f"\nsoak: {args.seconds}s of mixed traffic (after {WARM_UP:.0f}s warm-up), bounce-service serve with 2 workers, "
          f"durable PostgreSQL, all on 127.0.0.1")
    print(f"{'stream':<18}{'in flight':>10}{'req/s':>9}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
          f"{'req/s first 20%':>17}{'last 20%':>10}{'p99 first':>11}{'p99 last':>10}")
    failures = 0
    for stream in all_streams:
        measured = window(stream.samples, begin, end)
        first, last = window(measured, begin, begin + fifth), window(measured, end - fifth, end)
        ms = [s[1] for s in measured]
        bad = sum(1 for s in stream.samples if not 200 <= s[2] < 300)
        failures += bad
        rate = len(measured) / args.seconds
        print(f"{stream.name:<18}{stream.concurrency:>10}{rate:>9.1f}{rate * stream.events_per_request:>10.1f}"
              f"{percentile(ms, 0.5):>9.1f}{percentile(ms, 0.99):>9.1f}{bad:>9}"
              f"{len(first) / fifth:>17.1f}{len(last) / fifth:>10.1f}"
              f"{percentile([s[1] for s in first], 0.99):>11.1f}{percentile([s[1] for s in last], 0.99):>10.1f}")
    for stream in all_streams:
        if stream.failures:
            print(f"{stream.name} failed requests: " + ", ".join(f"{count} x {outcome}" for outcome, count in stream.failures.items()))
    everything = [s for stream in all_streams for s in window(stream.samples, begin, end)]
    first = window(everything, begin, begin + fifth)
    last = window(everything, end - fifth, end)
    print(f"\nall streams: {len(everything) / args.seconds:.1f} req/s, p50 {percentile([s[1] for s in everything], 0.5):.1f} ms, "
          f"p99 {percentile([s[1] for s in everything], 0.99):.1f} ms, {failures} non-2xx (warm-up included)")
    print(f"baseline, first 20% -> last 20%: {len(first) / fifth:.1f} -> {len(last) / fifth:.1f} req/s "
          f"(ratio {len(last) / max(1, len(first)):.2f}); p99 {percentile([s[1] for s in first], 0.99):.1f} -> "
          f"{percentile([s[1] for s in last], 0.99):.1f} ms (ratio "
          f"{percentile([s[1] for s in last], 0.99) / percentile([s[1] for s in first], 0.99):.2f})")

    tenth = args.seconds / 10
    buckets = [window(everything, begin + n * tenth, begin + (n + 1) * tenth) for n in range(10)]
    print("timeline, req/s per tenth of the run: " + " ".join(f"{len(b) / tenth:.0f}" for b in buckets))
    print("timeline, p99 ms per tenth of the run: " + " ".join(f"{percentile([s[1] for s in b], 0.99):.0f}" for b in buckets))
    events = [sum(len(window(stream.samples, begin + n * tenth, begin + (n + 1) * tenth)) * stream.events_per_request
                  for stream in all_streams) for n in range(10)]
    database_timeline(database, events, begin, tenth)

    passes = scans.passes
    failed_passes = sum(1 for p in passes if p[2] != 0) + (final_status != 0)
    print(f"\nmailbox: {len(passes) + 1} passes of `bounce-service scan` (IMAP, implicit TLS), {scans.delivered} reports "
          f"delivered, {args.scan_messages} every {args.scan_every:.0f}s; pass time median "
          f"{statistics.median(p[1] for p in passes):.2f}s, max {max(p[1] for p in passes):.2f}s; "
          f"{failed_passes} passes exited non-zero; {left_in_mailbox} messages left")

    totals = [(t, sum(values)) for t, values in memory]
    measured_memory = [m for m in totals if begin <= m[0]] or totals
    start, middle, finish = measured_memory[0], measured_memory[len(measured_memory) // 2], measured_memory[-1]
    first_mem = statistics.mean(v for t, v in measured_memory if t < begin + fifth)
    last_mem = statistics.mean(v for t, v in measured_memory if t >= end - fifth)
    per_worker = " / ".join(f"{a:.0f}->{b:.0f}" for a, b in zip(memory[0][1], memory[-1][1]))
    print(f"\nworkers' RSS (sum of 2, sampled every {args.sample_every:.0f}s, {len(memory)} samples): "
          f"start {start[1]:.1f} MiB (t={start[0]:.0f}s), middle {middle[1]:.1f} MiB (t={middle[0]:.0f}s), "
          f"end {finish[1]:.1f} MiB (t={finish[0]:.0f}s); growth {finish[1] - start[1]:+.1f} MiB; "
          f"mean first 20% {first_mem:.1f} -> last 20% {last_mem:.1f} MiB (ratio {last_mem / first_mem:.3f}); "
          f"per worker {per_worker} MiB")
    flat = last_mem <= first_mem * MEMORY_GROWTH_ALLOWED
    print(f"memory flat (last 20% within {MEMORY_GROWTH_ALLOWED - 1:.0%} of the first 20%): {'yes' if flat else 'NO'}")

    acknowledged = {
        "soak-native": sum(1 for s in all_streams[0].samples if 200 <= s[2] < 300),
        "sendgrid": sum(1 for s in all_streams[1].samples if 200 <= s[2] < 300) * args.sendgrid_batch,
        "mailgun": sum(1 for s in all_streams[2].samples if 200 <= s[2] < 300),
        "postmark": sum(1 for s in all_streams[3].samples if 200 <= s[2] < 300),
        MAILBOX: scans.delivered,
    }
    exact = all(stored.get(source, 0) == n for source, n in acknowledged.items()) and left_in_mailbox == 0
    print("\nexactly once: " + ", ".join(f"{source} {stored.get(source, 0)}/{n}" for source, n in acknowledged.items())
          + (" stored/acknowledged: OK" if exact else " stored/acknowledged: MISMATCH"))
    return 0 if failures == 0 and failed_passes == 0 and exact and flat else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=300, help="measured time, after a short warm-up")
    parser.add_argument("--scan-every", type=float, default=5.0, help="seconds between mailbox passes")
    parser.add_argument("--scan-messages", type=int, default=50, help="reports delivered before each pass")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--sendgrid-batch", type=int, default=100, help="events per SendGrid request")
    args = parser.parse_args()
    if args.seconds < 10:
        parser.error("--seconds must be at least 10")
    install()
    work = workdir()
    dovecot = Dovecot().start()
    try:
        with database(work) as db:
            return asyncio.run(run(args, db.url, work, dovecot))
    finally:
        dovecot.stop()


if __name__ == "__main__":
    sys.exit(main())
