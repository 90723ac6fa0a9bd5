"""Fixtures for the scanner: one real Dovecot per session, a fresh mailbox per test, real bounce mail."""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path
from typing import Iterator

import pytest

from bounce_service.config import ServiceConfig
from bounce_service.mailbox.scanner import ScanCounts, open_scanner
from bounce_service.mailbox.settings import MailboxSettings
from bounce_service.secrets import SecretSource
from tests.conftest import ROOT
from tests.mailbox.dovecot import Dovecot, MailUser, install

# The parser's copy of the corpus once it is in the repository, else the shared one beside the checkout.
CORPUS = next(p for p in (ROOT / "tests/fixtures/corpus", ROOT.parent / "shared/corpus/dev") if p.is_dir())


def corpus_email(name: str) -> bytes:
    return (CORPUS / "emails" / name).read_bytes()


@cache
def _expected() -> dict[str, dict]:
    return {Path(item["file"]).name: item for item in json.loads((CORPUS / "expected.json").read_text())}


def expected_recipients(name: str) -> list[tuple[str, str]]:
    """(address, kind) of each bounced recipient the corpus says `name` holds."""
    return [(r["address"], r["kind"]) for r in _expected()[name]["recipients"]]


def bounce_rows(db) -> list[tuple[str, str]]:
    return sorted((r["email"], r["type"]) for r in db.execute("SELECT email, type::text FROM bounces"))


def scan_rows(db) -> list[dict]:
    return db.execute("SELECT fetched, recorded, skipped, failed, error, finished_at IS NOT NULL AS finished"
                      " FROM mailbox_scans ORDER BY id").fetchall()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    install()
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def mail_user(dovecot: Dovecot) -> MailUser:
    return dovecot.add_user()


@pytest.fixture
def mailbox_config(make_config, secrets: SecretSource, dovecot: Dovecot, mail_user: MailUser):
    """Build a config whose one mailbox, `bounces`, is this test's user on the session's Dovecot."""
    (secrets.directory / "mail").mkdir(exist_ok=True)
    (secrets.directory / "mail" / "password").write_text(mail_user.password)

    def build(protocol: str = "pop3", tls: str = "implicit", **mailbox) -> ServiceConfig:
        spec = {
            "name": "bounces", "protocol": protocol, "host": "127.0.0.1", "port": dovecot.port(protocol, tls),
            "tls": tls, "tlsSkipVerify": True, "username": mail_user.name,
            "password": {"secretRef": {"name": "mail", "key": "password"}}, "scanInterval": "1m",
        }
        spec.update(mailbox)
        return make_config(mailboxes=[spec])

    return build


async def scan(config: ServiceConfig, name: str = "bounces") -> ScanCounts:
    """One pass in this process, as `bounce-service scan` runs it."""
    async with open_scanner(config, MailboxSettings.from_config(config, name)) as scanner:
        return await scanner.scan()


def dsn(recipient: str, *, headers: str = "", original_headers: str = "", message_id: bool = True) -> bytes:
    """A textbook RFC 3464 bounce of a newsletter to `recipient`, returning the original's headers.

    `headers` and `original_headers` are extra header lines, each ending in a newline.
    """
    if message_id:
        headers += f"Message-ID: <dsn-{uuid.uuid4().hex}@mx.example.net>\n"
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
Date: Mon, 02 Mar 2026 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="report"
{headers}
--report
Content-Type: text/plain

<{recipient}>: host mx.example.org said: 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

--report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

--report
Content-Type: text/rfc822-headers

From: News <news@example.com>
To: {recipient}
Subject: Our monthly news
Message-ID: <newsletter-1@example.com>
{original_headers}
--report--
""".encode()
