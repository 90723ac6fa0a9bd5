"""Mailbox scan rate: 10,000 real bounce messages through a real Dovecot into a real PostgreSQL.

For POP3 and IMAP (implicit TLS, the usual production setting), one pass of `bounce-service scan`'s
scanner over a mailbox holding N messages (the dev corpus over and over, each copy with its own
Message-ID so each is recorded), against the baseline of the same run: parsing the same N messages
without any mailbox or database. The ratio says what fetching, recording and removing cost on top.
Progress goes to stderr; the figures to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import sys
import time
from itertools import cycle, islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' Dovecot launcher

from bounce_service.config import build_config  # noqa: E402
from bounce_service.devdb import EmbeddedPostgres  # noqa: E402
from bounce_service.mailbox.parser import parse_bounce  # noqa: E402
from bounce_service.mailbox.scanner import open_scanner  # noqa: E402
from bounce_service.mailbox.settings import MailboxSettings  # noqa: E402
from bounce_service.migrate import migrate  # noqa: E402
from bounce_service.secrets import SecretSource  # noqa: E402
from tests.mailbox.conftest import CORPUS  # noqa: E402
from tests.mailbox.dovecot import PASSWORD, Dovecot, install  # noqa: E402

_MESSAGE_ID = re.compile(rb"^Message-ID:[^\n]*\n", re.IGNORECASE | re.MULTILINE)


def messages(count: int, tag: str) -> list[bytes]:
    """`count` corpus messages, each given a Message-ID of its own (else they would be duplicates)."""
    corpus = [path.read_bytes() for path in sorted((CORPUS / "emails").glob("*.eml"))]
    out = []
    for number, raw in enumerate(islice(cycle(corpus), count)):
        header = b"Message-ID: <bench-%d@%s.example>\n" % (number, tag.encode())
        out.append(header + _MESSAGE_ID.sub(b"", raw, count=1) if _MESSAGE_ID.search(raw) else header + raw)
    return out


def parse_rate(raws: list[bytes]) -> float:
    started = time.perf_counter()
    for raw in raws:
        parse_bounce(raw)
    return len(raws) / (time.perf_counter() - started)


async def scan_rate(protocol: str, raws: list[bytes], dovecot: Dovecot, database_url: str) -> tuple[float, str]:
    """Messages per second of one pass over a mailbox holding `raws`."""
    user = dovecot.add_user()
    for raw in raws:
        user.deliver(raw)
    spec = {"mailboxes": [{
        "name": f"bench-{protocol}", "protocol": protocol, "host": "127.0.0.1", "port": dovecot.port(protocol, "implicit"),
        "tls": "implicit", "tlsSkipVerify": True, "username": user.name, "scanInterval": "1m",
        "password": {"secretRef": {"name": "mail", "key": "password"}},
    }]}
    secrets = SecretSource(directory=None, environ={"BOUNCE_SECRET_MAIL_PASSWORD": PASSWORD})
    config = build_config(spec, secrets=secrets, environ={"DATABASE_URL": database_url})
    async with open_scanner(config, MailboxSettings.from_config(config, f"bench-{protocol}")) as scanner:
        started = time.perf_counter()
        counts = await scanner.scan()
        elapsed = time.perf_counter() - started
    if counts.error or counts.fetched != len(raws) or len(user.messages()) != counts.skipped:
        raise SystemExit(f"{protocol}: the pass did not get through the mailbox: {counts}")
    return len(raws) / elapsed, counts.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")

    install()
    data = ROOT / ".tmp" / "bench-scan"
    shutil.rmtree(data, ignore_errors=True)
    database = EmbeddedPostgres(data, durable=False).start()
    dovecot = Dovecot().start()
    try:
        asyncio.run(migrate(database.url))
        print(f"mailbox scan, {args.messages} messages from {CORPUS}, implicit TLS, batchSize 500")
        for protocol in ("pop3", "imap"):
            raws = messages(args.messages, protocol)
            rate, summary = asyncio.run(scan_rate(protocol, raws, dovecot, database.url))
            baseline = parse_rate(raws)
            print(f"  {protocol}: {rate:,.0f} messages/s ({summary}); parse only {baseline:,.0f} messages/s; "
                  f"scan/parse = {rate / baseline:.2f}")
    finally:
        dovecot.stop()
        database.stop(mode="immediate")
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
