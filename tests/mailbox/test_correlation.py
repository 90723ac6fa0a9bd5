"""Which subscriber and campaign a mailbox bounce belongs to, and what is kept about it."""

from __future__ import annotations

import uuid

from tests.mailbox.conftest import corpus_email, dsn, scan

CAMPAIGN = str(uuid.uuid4())
SUBSCRIBER = str(uuid.uuid4())
TRACKING = f"X-Listmonk-Campaign: {CAMPAIGN}\nX-Listmonk-Subscriber: {SUBSCRIBER}\n"


def add_subscriber(db, email: str, subscriber_uuid: str | None = None) -> int:
    return db.execute("INSERT INTO subscribers (uuid, email) VALUES (COALESCE(%s::uuid, gen_random_uuid()), %s)"
                      " RETURNING id", (subscriber_uuid, email)).fetchone()["id"]


def bounces(db) -> list[dict]:
    return db.execute("SELECT email, subscriber_id, campaign_id, source, meta, event_key FROM bounces ORDER BY email"
                      ).fetchall()


async def test_tracking_headers_of_the_returned_original_name_campaign_and_subscriber(mailbox_config, mail_user, db):
    # The subscriber has changed address since: the UUID still finds them.
    subscriber_id = add_subscriber(db, "alice.new@example.org", SUBSCRIBER)
    campaign_id = db.execute("INSERT INTO campaigns (uuid, name) VALUES (%s, 'news') RETURNING id",
                             (CAMPAIGN,)).fetchone()["id"]
    raw = dsn("alice@example.org", original_headers=TRACKING)
    mail_user.deliver(raw)

    await scan(mailbox_config())

    [row] = bounces(db)
    assert (row["email"], row["subscriber_id"], row["campaign_id"]) == ("alice@example.org", subscriber_id, campaign_id)
    message_id = raw.split(b"Message-ID: ")[1].split(b"\n")[0].decode()
    assert row["source"] == "bounces" and row["meta"] == {
        "from": "Mail Delivery System <MAILER-DAEMON@mx.example.net>",
        "subject": "Undelivered Mail Returned to Sender",
        "message_id": message_id,
        "status": "5.1.1",
        "diagnostic": "550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown",
        "mailbox": "bounces",
    }


async def test_raw_utf8_and_encoded_headers_are_kept_as_text_in_meta(mailbox_config, mail_user, db):
    raw = dsn("alice@example.org").replace(
        b"Subject: Undelivered Mail Returned to Sender", "Subject: Unzustellbar: Grüße aus Köln".encode()
    ).replace(b"From: Mail Delivery System", b"From: =?utf-8?q?Mail_Delivery_Syst=C3=A8me?=")
    mail_user.deliver(raw)

    await scan(mailbox_config())

    [row] = bounces(db)
    assert row["meta"]["subject"] == "Unzustellbar: Grüße aus Köln"
    assert row["meta"]["from"] == "Mail Delivery Système <MAILER-DAEMON@mx.example.net>"


async def test_a_verp_return_path_names_the_subscriber_when_configured(mailbox_config, mail_user, db):
    subscriber_id = add_subscriber(db, "bob.new@example.org", SUBSCRIBER)
    verp = f"Delivered-To: bounces+{SUBSCRIBER}@example.com\n"
    mail_user.deliver(dsn("bob@example.org", headers=verp))

    await scan(mailbox_config(verpPrefix="bounces+"))

    assert [r["subscriber_id"] for r in bounces(db)] == [subscriber_id]


async def test_without_a_verp_prefix_the_return_path_means_nothing(mailbox_config, mail_user, db):
    add_subscriber(db, "bob.new@example.org", SUBSCRIBER)
    mail_user.deliver(dsn("bob@example.org", headers=f"Delivered-To: bounces+{SUBSCRIBER}@example.com\n"))

    await scan(mailbox_config())

    assert [r["subscriber_id"] for r in bounces(db)] == [None]  # kept, as a bounce of an unknown address


async def test_otherwise_the_bounced_address_finds_the_subscriber(mailbox_config, mail_user, db):
    subscriber_id = add_subscriber(db, "Carol@Example.org")
    mail_user.deliver(dsn("carol@example.org"))

    await scan(mailbox_config(verpPrefix="bounces+"))

    assert [r["subscriber_id"] for r in bounces(db)] == [subscriber_id]


async def test_each_recipient_of_a_multi_recipient_report_is_its_own_subscriber(mailbox_config, mail_user, db):
    # Whatever subscriber UUID the returned original carries, it can belong to one recipient at most.
    ids = {email: add_subscriber(db, email) for email in ("kijitora@example.jp", "sabatora@example.jp")}
    add_subscriber(db, "someone.else@example.org", SUBSCRIBER)
    raw = corpus_email("lhost-exim-02.eml").replace(b"\nSubject: test", TRACKING.encode().join([b"\n", b"Subject: test"]))
    mail_user.deliver(raw)

    await scan(mailbox_config())

    rows = bounces(db)
    assert {r["email"]: r["subscriber_id"] for r in rows} == ids
    assert len({r["event_key"] for r in rows}) == 2


async def test_a_message_fetched_again_is_recorded_once(mailbox_config, mail_user, db):
    # The same report twice (with and without a Message-ID): what a re-run after a crash fetches.
    for raw in (dsn("dave@example.org"), dsn("erin@example.org", message_id=False)):
        mail_user.deliver(raw)
        mail_user.deliver(raw)

    counts = await scan(mailbox_config())

    assert counts.recorded == 2 and [r["email"] for r in bounces(db)] == ["dave@example.org", "erin@example.org"]
    assert mail_user.messages() == []
