"""parse_bounce: what a user of the bounce mailbox notices.

The corpus test scores the parser on real bounces (sisimai's set-of-emails, see
tests/fixtures/corpus/LICENSE-sisimai-set-of-emails) with the metrics of the acceptance scorer;
the other tests pin individual behaviours on small hand-written messages.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bounce_service.mailbox.parser import ParsedBounce, parse_bounce

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"
CAMPAIGN = "6f1c2a9e-3b4d-4c5e-8f70-112233445566"
SUBSCRIBER = "a0b1c2d3-e4f5-4a6b-9c8d-7e6f5a4b3c2d"


# --- the real-world corpus ------------------------------------------------------------------------


def _norm(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def score_corpus() -> dict[str, float]:
    """Recall, precision, complaint recall, kind accuracy and non-bounce hits, as score.py counts them."""
    entries = json.loads((CORPUS / "expected.json").read_text())
    expected = found = returned = correct = kind_ok = complaints = complaints_found = flagged = 0
    for entry in entries:
        got: dict[str, str] = {}
        for bounce in parse_bounce((CORPUS / entry["file"]).read_bytes()):
            got.setdefault(_norm(bounce.email), bounce.type)
        bounced = [r for r in entry["recipients"] if r["kind"] != "none"]
        accept = {_norm(a) for r in bounced for a in [r["address"], *r["alternates"]] if a}
        returned += len(got)
        correct += sum(a in accept for a in got)
        flagged += bool(got) and not bounced
        for r in bounced:
            names = [_norm(a) for a in [r["address"], *r["alternates"]] if a]
            if not names:
                continue
            expected += 1
            complaints += r["kind"] == "complaint"
            hit = next((a for a in names if a in got), None)
            if hit is not None:
                found += 1
                kind_ok += got[hit] == r["kind"]
                complaints_found += r["kind"] == "complaint"
    return {
        "recall": found / expected,
        "precision": correct / returned,
        "complaint_recall": complaints_found / complaints,
        "kind_accuracy": kind_ok / found,
        "nonbounce_flagged": flagged,
    }


def test_corpus_meets_the_acceptance_targets():
    score = score_corpus()
    assert score["recall"] >= 0.95, score
    assert score["precision"] >= 0.99, score
    assert score["complaint_recall"] >= 0.90, score
    assert score["kind_accuracy"] >= 0.90, score
    assert score["nonbounce_flagged"] == 0, score


@pytest.mark.parametrize("path", sorted((CORPUS / "emails").glob("*.eml")), ids=lambda p: p.name)
def test_corpus_messages_give_well_formed_results_whatever_the_line_endings(path: Path):
    found = parse_bounce(path.read_bytes())
    for bounce in found:
        assert isinstance(bounce, ParsedBounce)
        assert bounce.email == bounce.email.lower() and "@" in bounce.email
        assert bounce.type in ("hard", "soft", "complaint")
        assert len(bounce.diagnostic) <= 1000
    # The scanner gets every message with CRLF line endings (POP3, IMAP); the corpus files have LF.
    assert parse_bounce(path.read_bytes().replace(b"\n", b"\r\n")) == found


# --- hand-written messages ------------------------------------------------------------------------


def original(*, campaign: str = CAMPAIGN, subscriber: str = SUBSCRIBER, to: str = "kijitora@example.jp") -> str:
    return (
        "From: news@lists.example.org\r\n"
        f"To: {to}\r\n"
        "Subject: Our newsletter\r\n"
        "Message-ID: <orig-1@lists.example.org>\r\n"
        f"X-Listmonk-Campaign: {campaign}\r\n"
        f"X-Listmonk-Subscriber: {subscriber}\r\n"
        "\r\n"
        "Hello!\r\n"
    )


def dsn(
    recipient: str = "kijitora@example.jp",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <kijitora@example.jp>... User unknown",
    action: str = "failed",
    returned: str | None = None,
    returned_type: str = "message/rfc822",
) -> bytes:
    """A multipart/report bounce as Postfix writes it."""
    returned = original(to=recipient) if returned is None else returned
    return (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n"
        "--B\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "\r\n"
        "--B\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n"
        "\r\n"
        "--B\r\n"
        f"Content-Type: {returned_type}\r\n"
        "\r\n"
        f"{returned}\r\n"
        "--B--\r\n"
    ).encode()


def only(raw: bytes) -> ParsedBounce:
    found = parse_bounce(raw)
    assert len(found) == 1, found
    return found[0]


def test_unknown_user_is_a_hard_bounce_with_status_and_diagnostic():
    bounce = only(dsn())
    assert (bounce.email, bounce.type, bounce.status) == ("kijitora@example.jp", "hard", "5.1.1")
    assert "User unknown" in bounce.diagnostic
    assert bounce.original_message_id == "orig-1@lists.example.org"


def test_recipient_is_lower_cased():
    assert only(dsn(recipient="KijiTora@Example.JP")).email == "kijitora@example.jp"


@pytest.mark.parametrize(
    "status, diagnostic",
    [
        ("5.2.2", "smtp; 552 5.2.2 <kijitora@example.jp>: Mailbox full"),
        ("5.7.1", "smtp; 554 5.7.1 Message rejected for policy reasons"),
        ("5.7.1", "smtp; 550 5.7.1 Client host rejected: blocked using zen.spamhaus.org"),
        ("5.7.26", "smtp; 550 5.7.26 Unauthenticated email is not accepted due to DMARC policy"),
        ("5.1.1", "smtp; 550 5.1.1 <kijitora@example.jp>: user is over quota"),
        ("4.4.1", "X-Postfix; connect to mx.example.jp[192.0.2.1]:25: Connection timed out"),
    ],
    ids=["mailbox-full", "policy", "blocklist", "dmarc", "quota-despite-5.1.1", "temporary"],
)
def test_failures_that_leave_the_address_alive_are_soft(status: str, diagnostic: str):
    assert only(dsn(status=status, diagnostic=diagnostic)).type == "soft"


@pytest.mark.parametrize(
    "status, diagnostic",
    [
        ("5.1.2", "X-Postfix; Host or domain name not found. Name service error for name=example.jp"),
        ("5.0.0", "smtp; 550 Requested action not taken: no such user here"),
        ("5.1.6", "smtp; 551 5.1.6 recipient no longer on server"),
        ("5.0.0", "smtp; 550 kijitora@example.jp... not known at this site"),
        ("5.0.0", "smtp; 550 No such mail drop defined for kijitora@example.jp"),
        ("5.0.0", "smtp; 550 No existe ese usuario"),
        ("5.0.0", "smtp; 550 Unrouteable mail domain \"example.jp\""),
    ],
    ids=["unknown-domain", "no-such-user", "moved", "not-known", "mail-drop", "es", "unrouteable-domain"],
)
def test_dead_addresses_are_hard(status: str, diagnostic: str):
    assert only(dsn(status=status, diagnostic=diagnostic)).type == "hard"


@pytest.mark.parametrize(
    "status, diagnostic, kind",
    [
        # Said to DATA, "user unknown" is a content filter's wording; said to RCPT TO it is the verdict.
        ("5.0.0", "smtp; 550 Unknown user kijitora@example.jp (in reply to end of DATA command)", "soft"),
        ("5.0.0", "smtp; 550 Unknown user kijitora@example.jp (in reply to RCPT TO command)", "hard"),
        # An X.1.1 status code is the server's own verdict, whatever the command.
        ("5.1.1", "smtp; 550 5.1.1 Unknown user kijitora@example.jp (in reply to end of DATA command)", "hard"),
        # X.2.x says the mailbox exists (RFC 3463); only a refused RCPT TO outweighs it.
        ("5.2.1", "smtp; 550 5.2.1 <kijitora@example.jp>... User Unknown", "soft"),
        ("5.2.1", "smtp; 550 5.2.1 <kijitora@example.jp>... User Unknown (in reply to RCPT TO command)", "hard"),
        # Wording that names the account's absence is meant even at DATA, where some servers refuse recipients.
        ("5.0.0", "smtp; 554 delivery error: dd This user doesn't have a yahoo.com account "
                  "(kijitora@yahoo.com) [0] (in reply to end of DATA command)", "hard"),
        ("5.5.0", "smtp; 550 5.5.0 Invalid recipient (in reply to end of DATA command)", "hard"),
        # X.0.0 is "undefined" (RFC 3463): the diagnostic's own code decides, here the mail system's class.
        ("5.0.0", "smtp; 5.3.0 - Other mail system problem 550-'Unknown user kijitora@example.jp'", "soft"),
        ("5.0.0", "smtp; 550 5.1.1 Unknown user kijitora@example.jp (in reply to end of DATA command)", "hard"),
    ],
    ids=["data", "rcpt", "5.1.1-at-data", "5.2.1", "5.2.1-at-rcpt", "no-account-at-data", "invalid-at-data",
         "5.0.0-then-5.3.0", "5.0.0-then-5.1.1"],
)
def test_unknown_user_wording_counts_as_dead_only_where_the_smtp_dialogue_says_so(status, diagnostic, kind):
    assert only(dsn(status=status, diagnostic=diagnostic)).type == kind


def test_a_transcript_shows_which_command_the_server_refused():
    def sendmail(command: str) -> bytes:
        return (
            "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\r\n"
            "Subject: Returned mail: see transcript for details\r\n"
            "\r\n"
            "   ----- The following addresses had permanent fatal errors -----\r\n"
            "<kijitora@example.jp>\r\n"
            "\r\n"
            "   ----- Transcript of session follows -----\r\n"
            "... while talking to mx.example.jp.:\r\n"
            f">>> {command}\r\n"
            "<<< 550 Unknown user kijitora@example.jp\r\n"
        ).encode()

    assert only(sendmail("DATA")).type == "soft"
    assert only(sendmail("RCPT To:<kijitora@example.jp>")).type == "hard"


def test_an_address_as_the_display_name_of_another_is_not_the_recipient():
    raw = (
        "From: Mail Delivery System <mailer-daemon@mx.example.org>\r\n"
        "Subject: Mail failure - malformed recipient address\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "\r\n"
        "A message that you sent contained one or more recipient addresses that were\r\n"
        "incorrectly constructed:\r\n"
        "\r\n"
        "  kijitora@example.com <neko@example.net>: malformed address: <neko@example.net> may not follow"
        " kijitora@example.com\r\n"
    ).encode()
    assert [b.email for b in parse_bounce(raw)] == ["neko@example.net"]


def test_delayed_dsn_is_a_soft_bounce():
    bounce = only(dsn(action="delayed", status="4.4.7", diagnostic="smtp; 421 4.4.7 Message delayed"))
    assert bounce.type == "soft"


@pytest.mark.parametrize("action", ["delivered", "relayed", "expanded"])
def test_success_notices_yield_nothing(action: str):
    assert parse_bounce(dsn(action=action, status="2.0.0", diagnostic="smtp; 250 2.0.0 OK")) == []


def test_arf_feedback_report_is_a_complaint_for_the_original_recipient():
    raw = (
        "From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>\r\n"
        "To: abuse@lists.example.org\r\n"
        "Subject: FW: Our newsletter\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        "\r\n"
        "--F\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "This is an email abuse report.\r\n"
        "--F\r\n"
        "Content-Type: message/feedback-report\r\n"
        "\r\n"
        "Feedback-Type: abuse\r\n"
        "User-Agent: Yahoo!-Mail-Feedback/1.0\r\n"
        "Version: 1\r\n"
        "Original-Mail-From: <news@lists.example.org>\r\n"
        "\r\n"
        "--F\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        f"{original(to='Tora <Tora@Example.COM>')}\r\n"
        "--F--\r\n"
    ).encode()
    bounce = only(raw)
    assert (bounce.email, bounce.type) == ("tora@example.com", "complaint")
    assert (bounce.campaign_uuid, bounce.subscriber_uuid) == (CAMPAIGN, SUBSCRIBER)


def test_auto_replies_yield_nothing():
    raw = (
        "From: Kiji Tora <kijitora@example.jp>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Automatic reply: Our newsletter\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "\r\n"
        "I am out of the office until Monday. The message could not be delivered to me in person.\r\n"
    ).encode()
    assert parse_bounce(raw) == []


@pytest.mark.parametrize("subject", ["Automatic reply", "Automatisch antwoord", "Autosvar", "Réponse automatique",
                                     "Автоматический ответ", "自動応答"])
def test_auto_replies_known_by_their_subject_yield_nothing(subject: str):
    # RFC 3834 responders send from a null return path, as bounces come; only the subject tells.
    raw = (
        "Return-Path: <>\r\n"
        "From: Kiji Tora <kijitora@example.jp>\r\n"
        f"Subject: {subject}: Our newsletter\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "I am away until Monday; mail sent now will not be delivered to me before then. Urgent matters:\r\n"
        "sabatora@example.jp\r\n"
    ).encode()
    assert parse_bounce(raw) == []


def test_ordinary_mail_yields_nothing():
    raw = (
        "From: Kiji Tora <kijitora@example.jp>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Re: Our newsletter\r\n"
        "\r\n"
        "Please send it to sabatora@example.net from now on.\r\n"
    ).encode()
    assert parse_bounce(raw) == []


# What mail systems and robots send besides bounces: each names an address, none says anything failed.
NOT_BOUNCES = {
    "delivered": (
        "From: Microsoft Outlook <postmaster@example.onmicrosoft.com>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Delivered: Our newsletter\r\n"
        "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        "Message-ID: <delivered-1@example.onmicrosoft.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Your message has been delivered to the following recipients:\r\n"
        "\r\n"
        "Kiji Tora (kijitora@example.jp)\r\n"
        "\r\n"
        "Subject: Our newsletter\r\n"
    ),
    "mdn": (
        "Return-Path: <>\r\n"
        "From: Kiji Tora <kijitora@example.jp>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Read: Our newsletter\r\n"
        "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        "Message-ID: <mdn-1@example.jp>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=disposition-notification; boundary=\"R\"\r\n"
        "\r\n"
        "--R\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Your message\r\n"
        "\r\n"
        "  To: kijitora@example.jp\r\n"
        "  Subject: Our newsletter\r\n"
        "  Sent: Mon, 02 Mar 2026 09:00:00 +0000\r\n"
        "\r\n"
        "was read on Mon, 02 Mar 2026 10:00:00 +0000.\r\n"
        "\r\n"
        "--R\r\n"
        "Content-Type: message/disposition-notification\r\n"
        "\r\n"
        "Reporting-UA: mail.example.jp; Microsoft Outlook\r\n"
        "Final-Recipient: rfc822;kijitora@example.jp\r\n"
        "Original-Message-ID: <orig-1@lists.example.org>\r\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\r\n"
        "\r\n"
        "--R--\r\n"
    ),
    "postmaster-human": (
        "From: Postmaster <postmaster@example.jp>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Your newsletter\r\n"
        "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        "Message-ID: <pm-1@example.jp>\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Hello, please stop sending newsletters to our role address. Send them to\r\n"
        "the list owner instead:\r\n"
        "\r\n"
        "  owner@example.jp\r\n"
    ),
    "relayed": (
        "From: postmaster@example.jp\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Delivery Status Notification (Relay)\r\n"
        "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        "Message-ID: <relay-1@example.jp>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "This is an automatically generated Delivery Status Notification.\r\n"
        "\r\n"
        "Your message has been successfully relayed to the following recipients, but the requested delivery status notifications may not be generated by the destination.\r\n"
        "\r\n"
        "       kijitora@example.jp\r\n"
    ),
    "ticket": (
        "Return-Path: <>\r\n"
        "From: Example Support <support@example.com>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: [Ticket #12345] We received your message\r\n"
        "Auto-Submitted: auto-generated\r\n"
        "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        "Message-ID: <ticket-12345@example.com>\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Thank you for contacting us. Your request has been sent to our team at\r\n"
        "help-desk@example.com and we will get back to you shortly.\r\n"
        "\r\n"
        "Address: support@example.com\r\n"
    ),
    "vacation": (
        "Return-Path: <>\r\n"
        "From: Kiji Tora <kijitora@example.jp>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Abwesend: Our newsletter\r\n"
        "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        "Message-ID: <vac-1@example.jp>\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Ich bin bis 10. März nicht im Büro. In dringenden Fällen wenden Sie sich bitte an\r\n"
        "Empfänger: sabatora@example.jp\r\n"
    ),
}


@pytest.mark.parametrize("sentence", [
    "Ihre Nachricht konnte nicht zugestellt werden an:",
    "次のアドレスへメールを送信できませんでした。",
    "Votre message n'a pas pu être remis aux destinataires suivants :",
], ids=["de", "ja", "fr"])
def test_a_bounce_worded_only_in_its_own_language_still_counts(sentence: str):
    raw = (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        "Subject: =?utf-8?b?TWFpbA==?=\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{sentence}\r\n"
        "\r\n"
        "kijitora@example.jp\r\n"
    ).encode()
    assert only(raw).email == "kijitora@example.jp"


@pytest.mark.parametrize("raw", [m.encode() for m in NOT_BOUNCES.values()], ids=list(NOT_BOUNCES))
def test_notices_receipts_and_acknowledgements_yield_nothing(raw: bytes):
    assert parse_bounce(raw) == []


def test_people_writing_about_undelivered_mail_are_not_bounces():
    raw = (
        "From: Kiji Tora <kijitora@example.jp>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Undelivered mail?\r\n"
        "In-Reply-To: <orig-1@lists.example.org>\r\n"
        "\r\n"
        "My mail could not be delivered to the following address:\r\n"
        "sabatora@example.net\r\n"
    ).encode()
    assert parse_bounce(raw) == []


def test_x_failed_recipients_alone_names_the_bounced_address():
    raw = (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Mail delivery failed: returning message to sender\r\n"
        "X-Failed-Recipients: kijitora@example.jp\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "\r\n"
        "A message that you sent could not be delivered to one or more of its recipients.\r\n"
    ).encode()
    assert only(raw).email == "kijitora@example.jp"


def test_an_address_of_bytes_that_do_not_decode_is_not_reported():
    raw = (
        b"From: Mail Delivery System <Mailer-Daemon@mx.example.org>\r\n"
        b"Subject: Mail delivery failed: returning message to sender\r\n"
        b"X-Failed-Recipients: \xe7\x8c\xab@\xff\xfe.example, kijitora@example.jp\r\n"
        b"\r\n"
        b"A message that you sent could not be delivered to one or more of its recipients.\r\n"
    )
    assert [found.email for found in parse_bounce(raw)] == ["kijitora@example.jp"]


def test_an_address_longer_than_any_smtp_path_is_not_reported():
    # 3,000 characters once made the recording fail (an index entry's limit) and blocked the mailbox.
    long = "x" * 3000 + "@example.jp"
    raw = dsn(recipient=long, diagnostic=f"smtp; 550 5.1.1 <{long}>... User unknown")
    assert [found.email for found in parse_bounce(raw)] == []
    assert only(dsn(recipient="y" * 240 + "@example.jp")).email == "y" * 240 + "@example.jp"


def test_plain_text_bounce_without_dsn_fields():
    raw = (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: failure notice\r\n"
        "\r\n"
        "Hi. This is the qmail-send program at mx.example.org.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n"
        "\r\n"
        "<kijitora@example.jp>:\r\n"
        "192.0.2.1 does not like recipient.\r\n"
        "Remote host said: 550 5.1.1 <kijitora@example.jp>... User Unknown\r\n"
        "\r\n"
        "--- Below this line is a copy of the message.\r\n"
        "\r\n"
        f"{original()}"
    ).encode()
    bounce = only(raw)
    assert (bounce.email, bounce.type, bounce.status) == ("kijitora@example.jp", "hard", "5.1.1")
    assert (bounce.campaign_uuid, bounce.subscriber_uuid) == (CAMPAIGN, SUBSCRIBER)
    assert bounce.original_message_id == "orig-1@lists.example.org"


# --- correlation ------------------------------------------------------------------------------------


def test_listmonk_ids_from_a_message_rfc822_part():
    bounce = only(dsn())
    assert (bounce.campaign_uuid, bounce.subscriber_uuid) == (CAMPAIGN, SUBSCRIBER)


def test_listmonk_ids_from_a_text_rfc822_headers_part():
    headers = original().split("\r\n\r\n")[0] + "\r\n"
    bounce = only(dsn(returned=headers, returned_type="text/rfc822-headers"))
    assert (bounce.campaign_uuid, bounce.subscriber_uuid) == (CAMPAIGN, SUBSCRIBER)
    assert bounce.original_message_id == "orig-1@lists.example.org"


def test_listmonk_ids_quoted_in_plain_text_with_any_header_case_and_hex_case():
    quoted = original(campaign=CAMPAIGN.upper()).replace("X-Listmonk-Subscriber", "x-listmonk-SUBSCRIBER")
    raw = (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: Mail delivery failed: returning message to sender\r\n"
        "\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n"
        "\r\n"
        "  kijitora@example.jp\r\n"
        "    SMTP error from remote mail server after RCPT TO:<kijitora@example.jp>:\r\n"
        "    550 5.1.1 <kijitora@example.jp>: Recipient address rejected: User unknown\r\n"
        "\r\n"
        "------ This is a copy of the message, including all the headers. ------\r\n"
        "\r\n"
        + "".join("> " + line + "\r\n" for line in quoted.split("\r\n"))
    ).encode()
    bounce = only(raw)
    assert (bounce.email, bounce.type) == ("kijitora@example.jp", "hard")
    assert (bounce.campaign_uuid, bounce.subscriber_uuid) == (CAMPAIGN, SUBSCRIBER)



# Real layouts whose returned original is damaged or misplaced, with listmonk's headers added to the original
# just after its Message-ID: (corpus file, that Message-ID line).
DAMAGED_ORIGINALS = {
    "a continuation line not indented ends its headers early": ("lhost-postfix-57.eml", "Message-ID: <44kWHZ2S3Qz1yxHC@rokujo.cr.nyaan.jp>"),
    "a blank line before its headers": ("lhost-x3-02.eml", "Message-ID: <00000000000000000000000000000000@example.org>"),
    "its part's boundary does not match": ("rhost-franceptt-08.eml", "Message-Id: <1576578757.xxxx@xxxx.fr>"),
    "attached as a bare part, not message/rfc822": ("lhost-x1-02.eml", "Message-Id: <000000000000000000000000000000000000@example.jp>"),
    "a forwarded bounce, '>'-quoted": ("lhost-sendmail-14.eml", "> Message-Id: <6D736808-04A1-47D3-92BD-44388ABFCCE4@example.jp>"),
    "a bounce pasted as text after its DSN fields": ("lhost-postfix-49.eml", "Message-ID: <1409050600.12984636501178305590.JavaMail.root@mz-cb000p.noc-kyoto2jo.ocn.ad.jp>"),
}


@pytest.mark.parametrize("name", list(DAMAGED_ORIGINALS))
def test_ids_of_a_damaged_or_misplaced_original_are_still_found(name: str):
    file, line = DAMAGED_ORIGINALS[name]
    raw = (CORPUS / "emails" / file).read_bytes().replace(b"\r\n", b"\n")
    quote = "> " if line.startswith(">") else ""
    tracking = f"{quote}X-Listmonk-Campaign: {CAMPAIGN}\n{quote}X-Listmonk-Subscriber: {SUBSCRIBER}\n"
    assert line.encode() + b"\n" in raw
    (found, *_) = parse_bounce(raw.replace(line.encode() + b"\n", (line + "\n" + tracking).encode(), 1))
    assert (found.campaign_uuid, found.subscriber_uuid) == (CAMPAIGN, SUBSCRIBER)
    assert found.original_message_id == line.split("<")[1].rstrip(">")

@pytest.mark.parametrize("bad", ["not-a-uuid", CAMPAIGN[:-1], CAMPAIGN + "0", CAMPAIGN.replace("-", "")])
def test_malformed_uuids_are_ignored(bad: str):
    bounce = only(dsn(returned=original(campaign=bad, subscriber=bad)))
    assert (bounce.campaign_uuid, bounce.subscriber_uuid) == (None, None)


def test_no_returned_original_means_no_correlation():
    bounce = only(dsn(returned=""))
    assert (bounce.campaign_uuid, bounce.subscriber_uuid, bounce.original_message_id) == (None, None, None)


# --- Amazon SES notifications -----------------------------------------------------------------------


def ses(body: dict) -> bytes:
    return (
        "From: SES <no-reply@sns.amazonaws.com>\r\n"
        "To: news@lists.example.org\r\n"
        "Subject: AWS Notification Message\r\n"
        "\r\n" + json.dumps(body) + "\r\n"
    ).encode()


def test_ses_bounce_and_complaint_notifications():
    mail = {"headers": [{"name": "X-Listmonk-Campaign", "value": CAMPAIGN}]}
    bounce = only(ses({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "bouncedRecipients": [{
            "emailAddress": "kijitora@example.jp", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown",
        }]},
        "mail": mail,
    }))
    assert (bounce.email, bounce.type, bounce.campaign_uuid) == ("kijitora@example.jp", "hard", CAMPAIGN)
    complaint = only(ses({
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "kijitora@example.jp"}]},
        "mail": mail,
    }))
    assert complaint.type == "complaint"
    assert parse_bounce(ses({"notificationType": "Delivery", "mail": mail})) == []


# --- hostile input ------------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    return b"From: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail\r\n" + head + b"\r\nx\r\n"


HOSTILE = {
    "empty": b"",
    "random-bytes": bytes(range(256)) * 400,
    "truncated-dsn": dsn()[:700],
    "deep-nesting": nested(3000),
    "deep-message-rfc822": b"Content-Type: message/rfc822\r\n\r\n" * 3000,
    "huge-header": b"Subject: " + b"x" * 3_000_000 + b"\r\n\r\nbody",
    "bad-charset": (
        b"From: MAILER-DAEMON@mx.example.org\r\nSubject: =?x-bogus?q?=FF?=\r\n"
        b"Content-Type: text/plain; charset=\"no-such-charset\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"!!not base64\xff\xfe"
    ),
    "many-parts": b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n'
    + b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 20000,
    "address-characters": b"From: MAILER-DAEMON@x.example\r\n\r\n" + b"a." * 1_000_000,
    "whitespace-runs": b"From: MAILER-DAEMON@x.example\r\n\r\nrecipient" + b" " * 1_000_000 + b"x",
    "json-garbage": b"From: x@example.org\r\n\r\n{\"notificationType\": \"Bounce\", \"bounce\": [" + b"[" * 10000,
    "nul-in-charset": (
        b"From: MAILER-DAEMON@mx.example.org\r\nContent-Type: text/plain; charset=\"us-\x00ascii\"\r\n\r\n"
        b"550 5.1.1 <kijitora@example.jp>: User unknown \xe9\r\n"
    ),
}


@pytest.mark.parametrize("raw", list(HOSTILE.values()), ids=list(HOSTILE))
def test_never_raises_on_hostile_input(raw: bytes, caplog):
    found = parse_bounce(raw)
    assert isinstance(found, list)
    assert all("@" in b.email for b in found)
    # Each step copes on its own: the last-resort handler (which loses the message) never ran.
    assert "bounce parser failed" not in caplog.text


MUTATIONS = [b"\n", b"\r\n\r\n", b"--", b"=?", b"?=", b"<", b">", b"@", b"\x00", b"=\n", b'charset="utf-16"',
             b'Content-Type: multipart/mixed; boundary="x"\n', b"Final-Recipient: rfc822; ", b"Status: 5.1.1\n"]


def mutated(raw: bytes, rnd: random.Random) -> bytes:
    """`raw` with a few random byte edits, inserted MIME/DSN fragments, deletions and copied spans."""
    out = bytearray(raw)
    for _ in range(rnd.randint(1, 20)):
        at, op = rnd.randrange(len(out) or 1), rnd.random()
        if op < 0.3:
            out[at:at + 1] = bytes([rnd.randrange(256)])
        elif op < 0.5:
            del out[at:at + rnd.randint(1, 200)]
        elif op < 0.7:
            out[at:at] = rnd.choice(MUTATIONS)
        else:
            start = rnd.randrange(len(out) or 1)
            out[at:at] = out[start:start + rnd.randint(1, 500)]
    return bytes(out)


def test_mutated_corpus_messages_never_reach_the_last_resort_handler(caplog):
    rnd = random.Random(20261201)  # fixed: the same inputs on every run
    corpus = [p.read_bytes() for p in sorted((CORPUS / "emails").glob("*.eml"))]
    for _ in range(1500):
        parse_bounce(mutated(rnd.choice(corpus), rnd))
    assert "bounce parser failed" not in caplog.text


@pytest.mark.parametrize("subject", ["=?utf-8?b?a?=", "=?us-\xe4scii?q?x?="], ids=["bad-base64", "bad-charset"])
def test_a_malformed_encoded_word_in_the_subject_does_not_hide_the_bounce(subject: str):
    raw = dsn().replace(b"Subject: Undelivered Mail Returned to Sender", f"Subject: {subject}".encode("latin-1"))
    assert only(raw).email == "kijitora@example.jp"


def test_recipient_count_and_diagnostic_length_are_bounded():
    blocks = "".join(
        f"Final-Recipient: rfc822; user{i}@example.jp\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 {'no such user ' * 200}\r\n\r\n"
        for i in range(1000)
    )
    raw = (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        f"{blocks}--B--\r\n"
    ).encode()
    found = parse_bounce(raw)
    assert 0 < len(found) <= 1000
    assert all(len(b.diagnostic) <= 1000 for b in found)


def test_a_report_naming_thousands_of_recipients_yields_the_first_ones_each_from_its_own_lines():
    # DSN fields pasted into plain-text parts, which no block limit of message/delivery-status covers; each
    # recipient's lines say something else. This layout took minutes per megabyte when every recipient's
    # paragraph was looked for in the whole report (bench/parse.py measures it now).
    def block(part: int, i: int) -> str:
        status, words = ("5.1.1", "user unknown") if i % 2 == 0 else ("4.2.2", "mailbox full")
        return (f"Final-Recipient: rfc822; p{part}u{i}@example.jp\nAction: failed\nStatus: {status}\n"
                f"Diagnostic-Code: smtp; 550 {status} {words}\n\n")

    parts = "".join("--Z\nContent-Type: text/plain\n\n" + "".join(block(part, i) for i in range(2000)) for part in range(3))
    raw = ("From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered Mail Returned to Sender\n"
           f'Content-Type: multipart/mixed; boundary="Z"\n\n{parts}--Z--\n').encode()
    found = parse_bounce(raw)
    assert [b.email for b in found] == [f"p0u{i}@example.jp" for i in range(200)]
    assert [b.type for b in found] == ["hard", "soft"] * 100
    assert [b.status for b in found[:2]] == ["5.1.1", "4.2.2"]


def test_os_independent_line_endings():
    unix = dsn().replace(b"\r\n", b"\n")
    assert [(b.email, b.type) for b in parse_bounce(unix)] == [(b.email, b.type) for b in parse_bounce(dsn())]
