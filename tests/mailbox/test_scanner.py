"""What a pass does with what it finds: sizes, long lines, downloads, message names, batches, unrecognised
mail, IMAP folders."""

from __future__ import annotations

import imaplib
import logging
import poplib

import pytest

from bounce_service.mailbox.imap import ImapClient, quote
from bounce_service.mailbox.progress import Progress
from tests.mailbox.conftest import bounce_rows, corpus_email, dsn, scan, scan_rows
from tests.mailbox.relay import DOWNLOAD, Relay
from tests.mailbox.test_protocols import AUTO_REPLY

BOUNCE = "lhost-postfix-04.eml"  # kijitora@example.co.jp, hard
HUMAN = b"From: Ann <ann@example.org>\nTo: bounces@example.com\nSubject: Hello\n\nDid my newsletter arrive?\n"


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_messages_over_the_size_limit_stay_and_count_as_skipped(protocol, mailbox_config, mail_user, db):
    big = corpus_email(BOUNCE).replace(b"kijitora", b"big") + b"padding line\n" * 1000
    mail_user.deliver(big)
    mail_user.deliver(corpus_email(BOUNCE))

    counts = await scan(mailbox_config(protocol=protocol, maxMessageSize=10_000))

    assert (counts.fetched, counts.recorded, counts.skipped) == (1, 1, 1)
    assert bounce_rows(db) == [("kijitora@example.co.jp", "hard")]
    assert mail_user.messages() == [big]


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_lines_far_over_2_kib_are_read(protocol, mailbox_config, mail_user, db):
    # poplib gives up on any line over 2048 bytes; real bounces carry long headers and unwrapped bodies.
    raw = corpus_email(BOUNCE).replace(b"\n", b"\nX-Trace: " + b"t" * 10_000 + b"\n", 1) + b"x" * 100_000 + b"\n"
    mail_user.deliver(raw)

    counts = await scan(mailbox_config(protocol=protocol))

    assert counts.status == 0 and bounce_rows(db) == [("kijitora@example.co.jp", "hard")]
    assert mail_user.messages() == []


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_each_message_is_downloaded_once_and_an_oversized_one_never(protocol, mailbox_config, mail_user,
                                                                          dovecot, db):
    big = dsn("big@example.org") + b"padding line\n" * 1000
    for raw in (corpus_email(BOUNCE), HUMAN, corpus_email(AUTO_REPLY), big):
        mail_user.deliver(raw)

    with Relay(dovecot.port(protocol, "none"), DOWNLOAD[protocol]) as relay:  # counts the download commands
        counts = await scan(mailbox_config(protocol=protocol, tls="none", port=relay.port, maxMessageSize=10_000))

    assert (counts.fetched, counts.skipped) == (3, 3) and relay.seen == 3
    assert bounce_rows(db) == [("kijitora@example.co.jp", "hard")]


def server_names(protocol: str, port: int, user) -> list[str]:
    """What the server itself calls the messages: POP3 UIDLs, IMAP UIDVALIDITY:UID."""
    if protocol == "pop3":
        pop = poplib.POP3("127.0.0.1", port)
        pop.user(user.name)
        pop.pass_(user.password)
        names = [line.split()[1].decode() for line in pop.uidl()[1]]
        pop.quit()
        return names
    with imaplib.IMAP4("127.0.0.1", port) as imap:
        imap.login(user.name, user.password)
        imap.select("INBOX", readonly=True)
        [validity] = imap.response("UIDVALIDITY")[1]
        uids = imap.uid("SEARCH", "ALL")[1][0].split()
        return [f"{validity.decode()}:{uid.decode()}" for uid in uids]


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_the_log_names_a_message_left_in_place_as_the_server_does_in_every_session(
        protocol, mailbox_config, mail_user, dovecot, db, caplog):
    mail_user.deliver(HUMAN)
    mail_user.deliver(dsn("big@example.org") + b"padding line\n" * 1000)
    _, big = server_names(protocol, dovecot.port(protocol, "none"), mail_user)

    with caplog.at_level(logging.INFO, logger="bounce_service.mailbox"):
        await scan(mailbox_config(protocol=protocol, maxMessageSize=10_000))
        await scan(mailbox_config(protocol=protocol, maxMessageSize=10_000))

    assert caplog.text.count(f"message {big} left in place") == 2


async def test_imap_removes_by_uid_while_another_client_expunges_mid_pass(mailbox_config, mail_user, dovecot, db,
                                                                          monkeypatch):
    first, last = HUMAN, HUMAN.replace(b"Hello", b"Hello again")
    for raw in (first, dsn("alice@example.org"), last):
        mail_user.deliver(raw)
    step = Progress.step

    def expunge_the_first_after_two_downloads(self: Progress) -> None:
        step(self)
        if self.done == 3:  # the bounce is downloaded, not removed yet: sequence numbers shift under it
            with imaplib.IMAP4("127.0.0.1", dovecot.port("imap", "none")) as other:
                other.login(mail_user.name, mail_user.password)
                other.select("INBOX")
                other.store("1", "+FLAGS.SILENT", r"(\Deleted)")
                other.expunge()

    monkeypatch.setattr(Progress, "step", expunge_the_first_after_two_downloads)
    counts = await scan(mailbox_config(protocol="imap"))

    assert counts.status == 0 and bounce_rows(db) == [("alice@example.org", "hard")]
    assert mail_user.messages() == [last]  # by sequence number, the bounce's removal would have hit this one


async def test_a_pass_works_through_the_whole_mailbox_batch_by_batch(mailbox_config, mail_user, db, caplog):
    addresses = [f"user{n}@example.org" for n in range(5)]
    for address in addresses:
        mail_user.deliver(dsn(address))

    with caplog.at_level(logging.INFO, logger="bounce_service.mailbox"):
        counts = await scan(mailbox_config(batchSize=2))

    assert counts.recorded == 5 and bounce_rows(db) == [(a, "hard") for a in addresses]
    assert mail_user.messages() == []
    progress = [r.getMessage() for r in caplog.records if "messages;" in r.getMessage()]
    assert [line.split(";")[0] for line in progress] == [
        "bounces: 2/5 messages", "bounces: 4/5 messages", "bounces: 5/5 messages"]


@pytest.mark.parametrize("delete_unrecognized", [False, True])
async def test_unrecognised_mail_is_deleted_only_when_configured(delete_unrecognized, mailbox_config, mail_user, db):
    for raw in (corpus_email(AUTO_REPLY), HUMAN, corpus_email(BOUNCE)):
        mail_user.deliver(raw)

    counts = await scan(mailbox_config(protocol="imap", deleteUnrecognized=delete_unrecognized))

    assert (counts.recorded, counts.skipped) == (1, 2)
    assert mail_user.messages() == ([] if delete_unrecognized else [corpus_email(AUTO_REPLY), HUMAN])


async def test_imap_moves_recorded_mail_from_its_folder_to_the_processed_one(mailbox_config, mail_user, db):
    for raw in (corpus_email(BOUNCE), HUMAN):
        mail_user.deliver(raw, folder="Bounces")
    mail_user.deliver(corpus_email("arf-02.eml"))  # INBOX is not the configured folder: not looked at

    counts = await scan(mailbox_config(protocol="imap", folder="Bounces", processedFolder="Erledigt Ä"))

    assert counts.status == 0 and bounce_rows(db) == [("kijitora@example.co.jp", "hard")]
    assert mail_user.messages("Bounces") == [HUMAN]
    assert mail_user.messages("Erledigt &AMQ-") == [corpus_email(BOUNCE)]  # Dovecot stores names in modified UTF-7
    assert mail_user.messages() == [corpus_email("arf-02.eml")]


async def test_imap_without_move_copies_flags_and_expunges_only_its_own(mailbox_config, mail_user, db, monkeypatch):
    opened = ImapClient._open

    def open_without_move(self: ImapClient) -> None:
        opened(self)
        self._capabilities.discard("MOVE")  # as on a server that predates RFC 6851

    monkeypatch.setattr(ImapClient, "_open", open_without_move)
    mail_user.deliver(HUMAN)
    [path] = (mail_user.folder() / "new").iterdir()
    path.rename(mail_user.folder() / "cur" / f"{path.name}:2,T")  # flagged \Deleted by another client
    mail_user.deliver(corpus_email(BOUNCE))

    assert (await scan(mailbox_config(protocol="imap", processedFolder="Processed"))).status == 0
    assert mail_user.messages("Processed") == [corpus_email(BOUNCE)]
    assert mail_user.messages() == [HUMAN]


def test_folder_names_are_quoted_and_non_ascii_is_modified_utf7():
    assert quote('Old "news"\\x') == '"Old \\"news\\"\\\\x"'
    assert quote("~peter/mail/台北/日本語") == '"~peter/mail/&U,BTFw-/&ZeVnLIqe-"'  # RFC 3501 5.1.3
    assert quote("R&D") == '"R&-D"'


async def test_every_pass_leaves_a_row_with_its_counts(mailbox_config, mail_user, db):
    for raw in (corpus_email(BOUNCE), HUMAN):
        mail_user.deliver(raw)
    config = mailbox_config()

    await scan(config)
    await scan(config)

    assert scan_rows(db) == [
        {"fetched": 2, "recorded": 1, "skipped": 1, "failed": 0, "error": None, "finished": True},
        {"fetched": 1, "recorded": 0, "skipped": 1, "failed": 0, "error": None, "finished": True},
    ]
