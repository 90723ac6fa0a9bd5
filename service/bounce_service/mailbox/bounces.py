"""From one fetched message and what the parser found in it to BounceEvents.

The event key is derived from the message itself (its Message-ID, else its bytes), so a message that
is fetched again after a crash between commit and delete records nothing twice.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from typing import Sequence

from ..events import BounceEvent, plausible_time
from . import verp
from .parse_mime import decoded, header
from .parser import ParsedBounce
from .settings import MailboxSettings

MAX_HEADER_TEXT = 998  # RFC 5322's line limit; meta is for people, not a copy of the mail
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def bounce_events(raw: bytes, found: Sequence[ParsedBounce], settings: MailboxSettings) -> list[BounceEvent]:
    if not found:
        return []
    headers = read_headers(raw)
    message_id = header_text(headers, "Message-ID")
    digest = hashlib.sha256(message_id.encode() if message_id else raw).hexdigest()
    single = len(found) == 1
    # A subscriber UUID (from the returned original or the VERP address) belongs to one recipient; with
    # several recipients in one report it would name the wrong subscriber for the others.
    verp_uuid = verp.subscriber_uuid(headers, settings.verp_prefix) if single and settings.verp_prefix else None
    meta = {
        "from": header_text(headers, "From"),
        "subject": header_text(headers, "Subject"),
        "message_id": message_id,
        "mailbox": settings.name,
    }
    created_at = sent_at(headers)
    return [
        BounceEvent(
            type=bounce.type,
            source=settings.name,
            email=clean(bounce.email),
            subscriber_uuid=(bounce.subscriber_uuid or verp_uuid) if single else None,
            campaign_uuid=bounce.campaign_uuid,
            meta={**meta, "status": clean(bounce.status), "diagnostic": clean(bounce.diagnostic)},
            created_at=created_at,
            event_key=f"mailbox:{digest}" if single else f"mailbox:{digest}:{index}",
        )
        for index, bounce in enumerate(found)
    ]


def read_headers(raw: bytes) -> Message:
    """The message's own header block; the body (with the returned original) is the parser's business."""
    end = _HEADER_END.search(raw)
    return BytesHeaderParser(policy=compat32).parsebytes(raw[: end.start()] if end else raw)


def header_text(headers: Message, name: str) -> str:
    return clean(" ".join(decoded(header(headers, name)).split()))[:MAX_HEADER_TEXT]


def sent_at(headers: Message) -> datetime | None:
    """When the report was written; None (the recording time) when the Date is missing, bad or ahead."""
    try:
        when = parsedate_to_datetime(header_text(headers, "Date"))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when if plausible_time(when) and when <= datetime.now(timezone.utc) else None


def clean(text: str) -> str:
    """Text PostgreSQL and JSON accept: raw 8-bit header bytes read as UTF-8 where they are, no NUL."""
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from an undecodable byte
        data = text.encode("utf-8", "replace")
    return data.decode("utf-8", "replace").replace("\x00", "")
