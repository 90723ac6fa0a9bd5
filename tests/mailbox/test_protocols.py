"""Every way of reaching a mailbox, against a real Dovecot: POP3 and IMAP, each in every TLS mode."""

from __future__ import annotations

import socket

import pytest

from tests.mailbox.conftest import bounce_rows, corpus_email, expected_recipients, scan, scan_rows

BOUNCES = ["lhost-postfix-04.eml", "arf-02.eml", "lhost-exim-02.eml"]  # hard; complaint; two hard recipients
AUTO_REPLY = "rfc3834-02.eml"


@pytest.mark.parametrize("tls", ["implicit", "starttls", "none"])
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_bounces_are_recorded_and_removed_auto_replies_stay(protocol, tls, mailbox_config, mail_user, db):
    for name in [*BOUNCES, AUTO_REPLY]:
        mail_user.deliver(corpus_email(name))

    counts = await scan(mailbox_config(protocol=protocol, tls=tls))

    assert counts.status == 0
    assert bounce_rows(db) == sorted(r for name in BOUNCES for r in expected_recipients(name))
    assert mail_user.messages() == [corpus_email(AUTO_REPLY)]
    assert scan_rows(db) == [{"fetched": 4, "recorded": 4, "skipped": 1, "failed": 0, "error": None, "finished": True}]


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_the_certificate_is_verified_unless_told_not_to(protocol, tls, mailbox_config, mail_user, dovecot, db,
                                                              monkeypatch):
    mail_user.deliver(corpus_email(BOUNCES[0]))
    config = mailbox_config(protocol=protocol, tls=tls, tlsSkipVerify=False)

    refused = await scan(config)
    assert refused.status == 2 and "certificate verify failed" in refused.error
    assert len(mail_user.messages()) == 1 and bounce_rows(db) == []

    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))  # now the server's certificate is trusted
    assert (await scan(config)).status == 0
    assert mail_user.messages() == [] and len(bounce_rows(db)) == 1


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_auth_none_takes_the_session_the_server_hands_out(protocol, mailbox_config, mail_user, dovecot, db):
    mail_user.deliver(corpus_email(BOUNCES[0]))
    with dovecot.preauth(protocol, mail_user) as port:
        config = mailbox_config(protocol=protocol, tls="none", port=port, auth="none")
        counts = await scan(config)
    assert counts.status == 0 and counts.recorded == 1
    assert mail_user.messages() == []


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_a_refused_login_stops_the_pass_and_is_recorded(protocol, mailbox_config, mail_user, secrets, db):
    mail_user.deliver(corpus_email(BOUNCES[0]))
    (secrets.directory / "mail" / "password").write_text("wrong password")

    counts = await scan(mailbox_config(protocol=protocol, tls="starttls"))

    assert counts.status == 2 and f"login as {mail_user.name} refused" in counts.error
    assert scan_rows(db) == [{"fetched": 0, "recorded": 0, "skipped": 0, "failed": 0, "error": counts.error,
                              "finished": True}]
    assert len(mail_user.messages()) == 1


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_a_server_that_never_answers_times_out(protocol, mailbox_config, db):
    with socket.socket() as silent:  # the kernel accepts connections; nobody ever says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        counts = await scan(mailbox_config(protocol=protocol, tls="none", port=silent.getsockname()[1],
                                           timeout="200ms"))
    assert counts.status == 2 and "timed out" in counts.error


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_a_connection_that_is_never_accepted_times_out(protocol, mailbox_config, db):
    with socket.socket() as full, socket.socket() as queued:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        queued.connect(full.getsockname())  # fills the accept queue: the kernel now drops new handshakes
        port = full.getsockname()[1]
        counts = await scan(mailbox_config(protocol=protocol, tls="none", port=port, timeout="200ms"))
    assert counts.status == 2 and counts.error == f"cannot connect to 127.0.0.1:{port}: timed out"


async def test_an_unreachable_server_is_a_connection_error(mailbox_config, db):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        counts = await scan(mailbox_config(port=port))
    assert counts.status == 2 and counts.error.startswith(f"cannot connect to 127.0.0.1:{port}")


def scripted_pop3(listing: bytes, *messages: bytes) -> tuple[socket.socket, list[bytes]]:
    """A POP3 server of one session that answers as scripted (Dovecot never says what other servers say):
    `listing` is its LIST answer, message n its answer to RETR n. Returns its listening socket and the
    commands it received."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []
    uidl = b"".join(b"%d uid-%d\r\n" % (n, n) for n in range(1, len(messages) + 1))
    replies = {b"LIST": b"+OK\r\n" + listing + b".\r\n", b"UIDL": b"+OK\r\n" + uidl + b".\r\n"}

    def session() -> None:
        connection, _ = server.accept()
        with connection, connection.makefile("rb") as lines:
            connection.sendall(b"+OK scripted\r\n")
            for line in lines:
                received.append(line.strip())
                verb, *args = line.split()
                if verb.upper() == b"RETR":
                    body = messages[int(args[0]) - 1].replace(b"\n", b"\r\n")
                    connection.sendall(b"+OK\r\n" + body + b"\r\n.\r\n")
                else:
                    connection.sendall(replies.get(verb.upper(), b"+OK\r\n"))
                if verb.upper() == b"QUIT":
                    return

    threading.Thread(target=session, daemon=True).start()
    return server, received


async def test_pop3_listing_lines_may_carry_more_than_the_size(mailbox_config, db):
    """RFC 1939: a LIST line is the number, the size, and whatever the server adds (listmonk #589)."""
    from tests.mailbox.conftest import dsn

    message = dsn("alice@example.org")
    server, received = scripted_pop3(b"1 %d octets, delivered yesterday\r\n" % len(message), message)
    with server:
        counts = await scan(mailbox_config(protocol="pop3", tls="none", port=server.getsockname()[1], auth="none"))
    assert (counts.status, counts.recorded) == (0, 1), counts
    assert bounce_rows(db) == [("alice@example.org", "hard")]
    assert b"DELE 1" in received


async def test_an_unreadable_pop3_listing_is_a_clear_error(mailbox_config, db):
    server, _ = scripted_pop3(b"first 120\r\n")
    with server:
        counts = await scan(mailbox_config(protocol="pop3", tls="none", port=server.getsockname()[1], auth="none"))
    assert counts.status == 2 and "unreadable LIST line from the server" in counts.error
    assert scan_rows(db)[0]["finished"] is True


async def test_imap_credentials_that_login_cannot_carry_go_by_sasl_plain(mailbox_config, mail_user, secrets, db):
    """imaplib's LOGIN sends ASCII only: a password with "ä" crashed the pass with a traceback naming one
    of its characters. SASL PLAIN carries it (this server's password is another, so it refuses)."""
    (secrets.directory / "mail").mkdir(exist_ok=True)
    (secrets.directory / "mail" / "password").write_text("pässwört")
    counts = await scan(mailbox_config(protocol="imap"))
    assert counts.status == 2 and f"login as {mail_user.name} refused" in counts.error
    assert "pässwört" not in counts.error and scan_rows(db)[-1]["finished"] is True


def test_uid_sets_collapse_runs_and_stay_short_enough_to_send():
    from bounce_service.mailbox.imap import UID_SET_LENGTH, uid_sets

    assert list(uid_sets([1, 2, 3, 5, 7, 8, 9, 20])) == ["1:3,5,7:9,20"]
    assert list(uid_sets([])) == []
    # A batch of 10,000 six-digit UIDs, no two consecutive: one set was ~70 KB, past Dovecot's 64 KiB line.
    scattered = list(range(100_000, 120_000, 2))
    sets = list(uid_sets(scattered))
    assert len(sets) > 1 and all(len(s) <= UID_SET_LENGTH for s in sets)
    assert [int(uid) for s in sets for uid in s.split(",")] == scattered


async def test_a_pop3_message_larger_than_its_listing_said_stays_and_the_pass_goes_on(mailbox_config, db):
    from tests.mailbox.conftest import dsn

    big = dsn("big@example.org", headers=("X-Padding: " + "x" * 70 + "\n") * 40)
    good = dsn("alice@example.org")
    listing = b"1 100\r\n2 %d\r\n" % len(good)  # the server understates the first message's size
    server, received = scripted_pop3(listing, big, good)
    with server:
        counts = await scan(mailbox_config(protocol="pop3", tls="none", port=server.getsockname()[1], auth="none",
                                           maxMessageSize=2048))
    assert (counts.status, counts.recorded, counts.failed) == (1, 1, 1), counts
    assert bounce_rows(db) == [("alice@example.org", "hard")]
    assert b"DELE 2" in received and b"DELE 1" not in received
