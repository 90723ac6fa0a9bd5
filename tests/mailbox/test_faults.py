"""Faults in the middle of a pass, against a real Dovecot and a real PostgreSQL: the mailbox connection
breaking mid-message, the database going away mid-pass, a 50 MB message and MIME bombs.

Also covered elsewhere: a database outage mid-pass in-process (test_outage.py) and a scanner killed between
commit and removal (test_cli.py, test_a_crash_between_commit_and_removal_records_nothing_twice).
"""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from pathlib import Path

import psycopg
import pytest

from bounce_service.migrate import migrate
from tests.conftest import embedded_server
from tests.mailbox.conftest import bounce_rows, dsn, scan, scan_rows
from tests.mailbox.relay import DOWNLOAD, Relay
from tests.mailbox.test_cli import cli, finish  # noqa: F401 - cli is a fixture

HERE = Path(__file__).parent
ADDRESSES = [f"{name}@example.org" for name in ("alice", "bob", "carol", "dave", "erin")]
HARD = [(address, "hard") for address in ADDRESSES]


def deliver_bounces(mail_user) -> list[bytes]:
    messages = [dsn(address) for address in ADDRESSES]
    for raw in messages:
        mail_user.deliver(raw)
    return messages


@pytest.mark.parametrize("fault", ["drop", "stall"])
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_a_connection_broken_mid_message_stops_the_pass_and_the_next_pass_completes(
        protocol, fault, mailbox_config, mail_user, dovecot, db):
    messages = deliver_bounces(mail_user)
    settings = {"protocol": protocol, "tls": "none", "batchSize": 2, "timeout": "2s"}
    # The fourth download (the second batch's second message) breaks after 300 of its ~1,000 bytes.
    with Relay(dovecot.port(protocol, "none"), DOWNLOAD[protocol], nth=4, cut_after=300, fault=fault) as relay:
        broken = await scan(mailbox_config(**settings, port=relay.port))

    assert relay.triggered.is_set()
    assert broken.status == 2 and broken.fetched == 3
    assert bounce_rows(db) == HARD[:2]  # the first batch was committed; nothing of the broken one was
    # IMAP removed the first batch at once; POP3 removes only at QUIT, which a broken session never reaches.
    assert mail_user.messages() == (messages if protocol == "pop3" else messages[2:])

    again = await scan(mailbox_config(**settings))

    assert again.status == 0 and again.recorded == 3
    assert bounce_rows(db) == HARD and mail_user.messages() == []  # each once, and the mailbox is clean
    first, second = scan_rows(db)
    assert first["error"] == broken.error and first["finished"] and second["error"] is None


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_database_outage_mid_pass_exits_2_and_the_rerun_records_each_bounce_once(
        protocol, cli, mailbox_config, mail_user, dovecot):  # noqa: F811 - the fixture
    messages = deliver_bounces(mail_user)
    settings = {"protocol": protocol, "tls": "none", "batchSize": 2}
    with embedded_server() as server:
        asyncio.run(migrate(server.url))

        # The database goes at the third download: the first batch is committed, the second is not yet.
        with Relay(dovecot.port(protocol, "none"), DOWNLOAD[protocol], nth=3,
                   on_trigger=lambda: server.stop(mode="immediate")) as relay:
            status, stderr = finish(cli(mailbox_config(**settings, port=relay.port), database=server.url))
        assert relay.triggered.is_set()
        assert status == 2 and "database unavailable, nothing more removed" in stderr
        assert mail_user.messages() == messages[2:]  # what was committed went, and nothing more

        server.start()
        status, stderr = finish(cli(mailbox_config(**settings), database=server.url))
        assert status == 0, stderr
        with psycopg.connect(server.url, row_factory=psycopg.rows.dict_row) as conn:
            assert bounce_rows(conn) == HARD and mail_user.messages() == []


def padded(raw: bytes, size: int) -> bytes:
    """`raw` grown to `size` bytes with 76-character lines, as base64 attachments come."""
    line = b"x" * 76 + b"\n"
    return raw + line * ((size - len(raw)) // len(line))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_50_mb_message_stays_in_place_without_being_downloaded(protocol, cli, mailbox_config, mail_user, db):  # noqa: F811
    huge = padded(dsn("huge@example.org"), 50 * 1024 * 1024)
    mail_user.deliver(huge)
    mail_user.deliver(dsn("alice@example.org"))

    # maxMessageSize at its default, 10 MiB
    status, stderr = finish(cli(mailbox_config(protocol=protocol), script=[sys.executable, str(HERE / "measured_scan.py")]))

    assert status == 0, stderr
    assert bounce_rows(db) == [("alice@example.org", "hard")]
    assert scan_rows(db) == [{"fetched": 1, "recorded": 1, "skipped": 1, "failed": 0, "error": None, "finished": True}]
    assert mail_user.messages() == [huge]
    growth = int(re.search(r"peak memory growth: (-?\d+) KiB", stderr)[1])
    assert growth < 16 * 1024  # holding the message would take 50 MB at the very least


def returning(recipient: str, original: bytes, subject: str = "Undelivered Mail Returned to Sender") -> bytes:
    """A delivery report whose returned message is `original`, a MIME part."""
    report = dsn(recipient).replace(b"Subject: Undelivered Mail Returned to Sender", f"Subject: {subject}".encode())
    return report.replace(b"--report--\n", b"--report\n" + original + b"\n--report--\n")


def nested_multiparts(levels: int) -> bytes:
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="n%d"\n\n--n%d\n' % (n, n) for n in range(levels))
    return opening + b"Content-Type: text/plain\n\ndeepest\n" + b"".join(b"--n%d--\n" % n for n in reversed(range(levels)))


def many_parts(count: int) -> bytes:
    return b'Content-Type: multipart/mixed; boundary="p"\n\n' + b"--p\nContent-Type: text/plain\n\nx\n" * count + b"--p--\n"


def huge_base64_line(size: int) -> bytes:
    return b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" + base64.b64encode(b"\0" * size)


def nested_messages(levels: int) -> bytes:
    return b"Content-Type: message/rfc822\n\n" * levels + b"From: news@example.com\n\ninnermost\n"


ENCODED_WORDS = " ".join(["=?utf-8?q?=C3=A4?="] * 100_000)  # 1.9 MB; decoding used to take time quadratic in it


def failed_recipient_only(recipient: str, subject: str) -> bytes:
    """A bounce that names its recipient in a header, with a Subject past the 2 MiB the parser reads."""
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\nX-Failed-Recipients: {recipient}\n"
            f"Message-ID: <headers-{recipient}>\nSubject: {subject}\n\n550 5.1.1 User unknown\n").encode()


def bombs() -> dict[tuple[str, str], bytes]:
    """What each bomb should record, and the bomb: each within the default maxMessageSize (10 MiB); the
    parser reads the first 2 MiB of a message."""
    return {
        ("nested-multipart@example.org", "hard"): returning("nested-multipart@example.org", nested_multiparts(20_000)),
        ("parts@example.org", "hard"): returning("parts@example.org", many_parts(100_000)),
        ("base64@example.org", "hard"): returning("base64@example.org", huge_base64_line(7_000_000)),
        ("nested-message@example.org", "hard"): returning("nested-message@example.org", nested_messages(50_000)),
        ("encoded-words@example.org", "hard"): returning("encoded-words@example.org", b"Content-Type: text/plain\n\nx\n",
                                                         subject=ENCODED_WORDS),
        # Undecodable encoded-words (bad base64, a charset with a NUL) in the report's own headers.
        ("encoded-word-errors@example.org", "hard"): returning("encoded-word-errors@example.org", b"Content-Type: text/plain\n\nx\n",
                                                               subject="=?utf-8?b?a?= =?us-\0ascii?q?x?="),
        # Its report text is past what the parser reads: no status, so the parser's default for that, soft.
        ("header-only@example.org", "soft"): failed_recipient_only("header-only@example.org", " ".join([ENCODED_WORDS] * 5)),
    }


NOT_A_BOUNCE = b"From: Ann <ann@example.org>\nSubject: Hello\nMIME-Version: 1.0\n" + many_parts(10_000)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_mime_bombs_are_read_within_bounds_and_the_pass_goes_on(protocol, mailbox_config, mail_user, db):
    expected = bombs()
    for raw in [*expected.values(), NOT_A_BOUNCE, dsn("alice@example.org")]:
        assert len(raw) < 10 * 1024 * 1024
        mail_user.deliver(raw)

    counts = await scan(mailbox_config(protocol=protocol))

    assert counts.status == 0 and (counts.fetched, counts.recorded, counts.skipped) == (9, 8, 1)
    assert bounce_rows(db) == sorted([*expected, ("alice@example.org", "hard")])
    assert mail_user.messages() == [NOT_A_BOUNCE]  # the bombs that are bounces went; the other one stays


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_bounces_the_database_refuses_hold_back_only_their_own_message(protocol, mailbox_config, mail_user, db):
    """One message's bounce refused (here by a trigger; an address too long for an index entry did it
    before the parser bounded addresses): the rest of the batch is recorded and removed, that one stays
    and is counted failed, on this pass and the next, instead of every pass failing at the same batch."""
    for raw in (dsn("alice@example.org"), dsn("refused@example.org"), dsn("bob@example.org")):
        mail_user.deliver(raw)
    db.execute("""
        CREATE FUNCTION refuse_bounce() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN IF NEW.email = 'refused@example.org' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '54000'; END IF;
        RETURN NEW; END $$;
        CREATE TRIGGER refuse_bounce BEFORE INSERT ON bounces FOR EACH ROW EXECUTE FUNCTION refuse_bounce();
    """)
    try:
        for _ in range(2):
            counts = await scan(mailbox_config(protocol=protocol))
            assert counts.status == 1 and counts.failed == 1, counts
            assert [message for message in mail_user.messages() if b"refused@example.org" in message]
            assert len(mail_user.messages()) == 1
        assert bounce_rows(db) == [("alice@example.org", "hard"), ("bob@example.org", "hard")]
    finally:
        db.execute("DROP TRIGGER refuse_bounce ON bounces; DROP FUNCTION refuse_bounce()")


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_a_message_the_parser_fails_on_stays_even_with_delete_unrecognized(protocol, mailbox_config, mail_user,
                                                                                 db, monkeypatch):
    """listmonk #1311/#2884: a message the parser cannot read is not "not a bounce"."""
    from bounce_service.mailbox import parser

    crashing = dsn("crash@example.org")
    for raw in (dsn("alice@example.org"), crashing):
        mail_user.deliver(raw)
    real = parser._parse
    monkeypatch.setattr(parser, "_parse", lambda raw: real(raw) if b"crash@" not in raw else 1 / 0)
    counts = await scan(mailbox_config(protocol=protocol, deleteUnrecognized=True))
    assert (counts.status, counts.recorded, counts.failed, counts.skipped) == (1, 1, 1, 0)
    assert len(mail_user.messages()) == 1 and b"crash@example.org" in mail_user.messages()[0]
