"""``parse_bounce``: bounced recipients, bounce type and correlation ids from one raw e-mail.

Order of evidence: feedback reports (complaints), Amazon SES JSON notifications, RFC 3464
delivery-status fields, then the free text of non-standard bounces. Auto-replies, success notices
and ordinary mail yield an empty list.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from .dsn import DsnRecipient, find_status, has_dsn_fields, parse_fields
from .parse_autoreply import is_auto_reply
from .parse_feedback import complainants, is_jmrp
from .parse_gate import from_mail_system, looks_like_bounce
from .parse_mime import Sections, decoded, header, parse_message, split
from .parse_original import Correlation, from_headers, from_message, from_text, headers_in_body, pasted_original
from .parse_reason import classify
from .parse_ses import parse_ses
from .parse_text import all_addresses, paragraph_for, split_original, strong_candidates

logger = logging.getLogger(__name__)

MAX_BYTES = 2 * 1024 * 1024  # the report and the original's headers come first; the rest is its body
MAX_RECIPIENTS = 200
MAX_DIAGNOSTIC = 1000
MAX_ADDRESS = 254  # RFC 5321's path less its brackets: a longer one is no address (and overflows an index entry)
_SPACE = re.compile(r"\s+")
# U+FFFD stands for bytes that did not decode: such an address names no subscriber, and is no address.
_MAILBOX = re.compile("^[^\\s@<>\ufffd]+@[^\\s@<>\ufffd]+$")
_DAEMON = re.compile(r"^(?:mailer-?daemon|mail-?daemon|noreply|no-reply|double-bounce)@", re.I)
# Addresses of the bounce's own envelope and of the original's sender are never the failed recipient.
_SELF_HEADERS = (
    "From", "To", "Cc", "Reply-To", "Sender", "Return-Path", "Delivered-To", "X-Original-To", "Envelope-To",
)
_SENDER_HEADERS = ("From", "Sender", "Reply-To", "Return-Path")


@dataclass(frozen=True, slots=True)
class ParsedBounce:
    email: str  # bounced recipient, lower-cased
    type: str  # "hard" | "soft" | "complaint"
    status: str = ""  # enhanced status code e.g. "5.1.1", "" if unknown
    diagnostic: str = ""  # diagnostic / reason text (trimmed, bounded length)
    campaign_uuid: str | None = None  # from X-Listmonk-Campaign in the returned original message
    subscriber_uuid: str | None = None  # from X-Listmonk-Subscriber in the returned original message
    original_message_id: str | None = None  # Message-ID of the returned original message


@dataclass(slots=True)
class _Found:
    email: str
    type: str
    status: str
    diagnostic: str


def parse_bounce(raw: bytes) -> list[ParsedBounce]:
    """Bounced/complaining recipients in ``raw`` (an RFC 5322 message); [] if it is not a bounce.

    Never raises: the mailbox poller feeds it whatever arrives.
    """
    try:
        return read_bounce(raw)
    except Exception:  # last line of defence; each step below is written not to raise
        size = len(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else type(raw).__name__
        logger.warning("bounce parser failed on a message (%s bytes); ignoring it", size, exc_info=True)
        return []


def read_bounce(raw: bytes) -> list[ParsedBounce]:
    """parse_bounce, except that a failure raises: the scanner then leaves the message in place, where
    [] ("not a bounce") would let deleteUnrecognized remove it."""
    # POP3 and IMAP hand out CRLF, files and pipes LF: one form, so that "$" ends every line alike.
    return _parse(bytes(raw[:MAX_BYTES]).replace(b"\r\n", b"\n"))


def _parse(raw: bytes) -> list[ParsedBounce]:
    msg = parse_message(raw)
    sec = split(msg)
    subject = decoded(header(msg, "Subject"))
    cut = [split_original(t) for t in (sec.report_texts or sec.html_texts)]
    report = "\n\n".join(r for r, _ in cut)
    quoted = "\n\n".join(q for _, q in cut)
    corr = _correlate(sec, report, quoted)

    if sec.feedback_texts or is_jmrp(sec.originals, subject):
        found = [_Found(a, "complaint", "", "") for a in complainants(sec.feedback_texts, sec.originals)]
        return _result(found, corr)

    ses = parse_ses(sec.report_text) if sec.report_texts else None
    if ses is not None:
        from_headers(corr, ses.headers)
        return _result([_Found(a.lower(), k, s, d) for a, k, s, d in ses.recipients], corr)

    blocks = _dsn_blocks(sec)
    if blocks:
        return _result(_from_dsn(blocks, report), corr)
    # Exim marks its bounces "Auto-Submitted: auto-replied" too, so a bounce-like sender wins.
    if is_auto_reply(msg, subject) and not from_mail_system(msg):
        return []
    if not looks_like_bounce(msg, subject, report):
        return []
    return _result(_from_text(msg, sec, report, subject), corr)


def _correlate(sec: Sections, report: str, quoted: str) -> Correlation:
    corr = Correlation()
    for original in sec.originals:
        from_message(corr, original)
    if not corr.complete():
        for original in sec.originals:
            from_text(corr, headers_in_body(original))
        for text in (*sec.dsn_texts, *sec.report_texts, quoted):
            from_text(corr, pasted_original(text))
        from_text(corr, quoted)
        from_text(corr, report, message_id=False)
    return corr


def _dsn_blocks(sec: Sections) -> list[DsnRecipient]:
    texts = sec.dsn_texts + [t for t in sec.report_texts if has_dsn_fields(t)]
    return [b for t in texts for b in parse_fields(t)]


def _from_dsn(blocks: list[DsnRecipient], report: str) -> list[_Found]:
    """Failed and delayed recipients; an all-success DSN yields []."""
    first: dict[str, DsnRecipient] = {}  # each address's first block, at most MAX_RECIPIENTS of them
    for b in blocks:
        if not b.succeeded and b.address not in first and len(first) < MAX_RECIPIENTS:
            first[b.address] = b
    single = len(first) == 1
    out: dict[str, _Found] = {}
    for b in first.values():
        paragraph = paragraph_for(report, b.address, first)
        texts = [b.diagnostic, paragraph] + ([report] if single else [])
        kind = classify(b.status, texts, delayed=b.action == "delayed")
        status = b.status or find_status(b.diagnostic) or find_status(paragraph)
        out[b.address] = _Found(b.address, kind, status, b.diagnostic or paragraph)
    return list(out.values())


def _from_text(msg: Message, sec: Sections, report: str, subject: str) -> list[_Found]:
    """Recipients named by X-Failed-Recipients or by the report's wording."""
    failed = [a.lower() for _, a in getaddresses([header(msg, "X-Failed-Recipients")]) if "@" in a]
    if failed:
        candidates = list(dict.fromkeys(failed))
    else:
        excluded = _addresses(msg, _SELF_HEADERS)
        for original in sec.originals:
            excluded |= _addresses(original, _SENDER_HEADERS)
        strong = [a for a in strong_candidates(report) if not _DAEMON.match(a)]
        candidates = [a for a in strong if a not in excluded] or strong
        if not candidates:
            targets = set().union(*(_addresses(o, ("To", "Cc")) for o in sec.originals))
            candidates = [a for a in all_addresses(report) if a in targets]
    out = []
    single = len(candidates) == 1
    named = candidates[:MAX_RECIPIENTS]
    for address in named:
        paragraph = paragraph_for(report, address, named)
        texts = [paragraph] + ([report, subject] if single else [])
        status = find_status(paragraph) or (find_status(report) if single else "")
        out.append(_Found(address, classify(status, texts), status, paragraph))
    return out


def _addresses(msg: Message, names: tuple[str, ...]) -> set[str]:
    values = [header(msg, n) for n in names]
    return {a.lower() for _, a in getaddresses([v for v in values if v]) if "@" in a}


def _result(found: list[_Found], corr: Correlation) -> list[ParsedBounce]:
    return [
        ParsedBounce(
            email=f.email,
            type=f.type,
            status=f.status,
            diagnostic=_SPACE.sub(" ", f.diagnostic).strip()[:MAX_DIAGNOSTIC],
            campaign_uuid=corr.campaign,
            subscriber_uuid=corr.subscriber,
            original_message_id=corr.message_id,
        )
        for f in found[:MAX_RECIPIENTS]
        if len(f.email) <= MAX_ADDRESS and _MAILBOX.match(f.email)
    ]
